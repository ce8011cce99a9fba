//! Batch jobs (see `jobs/batches.rs`) for PostgreSQL.

use tokio_postgres::Row;

use super::{claim_points, insert_items, to_i32, PgResultExt};
use crate::jobs::batch::unique_by_point;
use crate::jobs::batches::{BatchImage, BatchImageRecord};
use crate::jobs::{ItemState, JobStoreError, NewItem};
use crate::messages::Priority;

pub(super) async fn create(
    client: &mut deadpool_postgres::Client,
    job_id: &str,
    priority: Priority,
    collection: Option<&str>,
    items: &[NewItem],
    images: &[BatchImage],
) -> Result<(), JobStoreError> {
    const CONTEXT: &str = "create_batch_job";
    let unique = unique_by_point(items);
    let total = to_i32(unique.len(), "batch size")?;
    let tx = client.transaction().await.ctx(CONTEXT)?;
    tx.execute(
        "INSERT INTO jobs (job_id, status, priority, total, collection) VALUES ($1, 'queued', $2, $3, $4)",
        &[&job_id, &priority.as_str(), &total, &collection],
    )
    .await
    .ctx(CONTEXT)?;
    claim_points(&tx, job_id, &unique).await?;
    insert_items(&tx, job_id, &unique).await?;
    let idx: Vec<i32> = images.iter().map(|i| to_i32(i.index, "batch index")).collect::<Result<_, _>>()?;
    let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
    let points: Vec<uuid::Uuid> = images.iter().map(|i| i.point_id).collect();
    tx.execute(
        "INSERT INTO batch_images (job_id, idx, name, point_id)
         SELECT $1::text, u.idx, u.name, u.point_id FROM unnest($2::int4[], $3::text[], $4::uuid[]) AS u(idx, name, point_id)",
        &[&job_id, &idx, &names, &points],
    )
    .await
    .ctx(CONTEXT)?;
    tx.commit().await.ctx(CONTEXT)
}

pub(super) async fn images(
    client: &deadpool_postgres::Client,
    job_id: &str,
) -> Result<Option<Vec<BatchImageRecord>>, JobStoreError> {
    const CONTEXT: &str = "batch_images";
    let stmt = client
        .prepare_cached(
            "SELECT b.idx, b.name, b.point_id, i.path, i.state, i.attempts, i.failure_kind, i.reason, i.started_at, i.finished_at, i.object_key
             FROM batch_images b JOIN job_items i ON i.job_id = b.job_id AND i.point_id = b.point_id
             WHERE b.job_id = $1 ORDER BY b.idx",
        )
        .await
        .ctx(CONTEXT)?;
    let rows = client.query(&stmt, &[&job_id]).await.ctx(CONTEXT)?;
    let images = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
    Ok((!images.is_empty()).then_some(images))
}

fn record(row: &Row) -> Result<BatchImageRecord, JobStoreError> {
    const CONTEXT: &str = "batch_images";
    let state: &str = row.try_get(4).ctx(CONTEXT)?;
    Ok(BatchImageRecord {
        index: u32::try_from(row.try_get::<_, i32>(0).ctx(CONTEXT)?).unwrap_or(0),
        name: row.try_get(1).ctx(CONTEXT)?,
        point_id: row.try_get(2).ctx(CONTEXT)?,
        path: row.try_get(3).ctx(CONTEXT)?,
        state: ItemState::parse(state).ok_or_else(|| JobStoreError::Other(format!("{CONTEXT}: unknown state {state}")))?,
        attempts: u32::try_from(row.try_get::<_, i32>(5).ctx(CONTEXT)?).unwrap_or(0),
        failure_kind: row.try_get(6).ctx(CONTEXT)?,
        reason: row.try_get(7).ctx(CONTEXT)?,
        started_at: row.try_get(8).ctx(CONTEXT)?,
        finished_at: row.try_get(9).ctx(CONTEXT)?,
        object_key: row.try_get(10).ctx(CONTEXT)?,
    })
}

pub(super) async fn purge(
    client: &deadpool_postgres::Client,
    finished_before: chrono::DateTime<chrono::Utc>,
    limit: usize,
) -> Result<u64, JobStoreError> {
    const CONTEXT: &str = "purge_batches";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let stmt = client
        .prepare_cached(
            "DELETE FROM jobs WHERE job_id IN (
                 SELECT j.job_id FROM jobs j
                 WHERE j.status IN ('completed', 'failed', 'cancelled') AND j.completed_at < $1
                   AND EXISTS (SELECT 1 FROM batch_images b WHERE b.job_id = j.job_id)
                 ORDER BY j.completed_at, j.job_id LIMIT $2)",
        )
        .await
        .ctx(CONTEXT)?;
    client.execute(&stmt, &[&finished_before, &limit]).await.ctx(CONTEXT)
}

pub(super) async fn jobs(client: &deadpool_postgres::Client, limit: usize) -> Result<Vec<String>, JobStoreError> {
    const CONTEXT: &str = "batch_jobs";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let stmt = client
        .prepare_cached(
            "SELECT j.job_id FROM jobs j WHERE EXISTS (SELECT 1 FROM batch_images b WHERE b.job_id = j.job_id)
             ORDER BY j.created_at DESC, j.job_id DESC LIMIT $1",
        )
        .await
        .ctx(CONTEXT)?;
    let rows = client.query(&stmt, &[&limit]).await.ctx(CONTEXT)?;
    rows.iter().map(|r| r.try_get(0).ctx(CONTEXT)).collect()
}
