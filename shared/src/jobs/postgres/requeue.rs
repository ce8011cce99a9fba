//! What the reconcile puts back on the task queue, for PostgreSQL:
//! [`JobStore::requeue_stale_items`](crate::jobs::JobStore::requeue_stale_items) and the
//! items of jobs never published ([`JobStore::unpublished_items`](crate::jobs::JobStore::unpublished_items)).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::PgResultExt;
use crate::jobs::{ItemKey, JobStoreError, NewItem, RequeueItem};
use crate::jobs::batch::stamp;
use crate::messages::Priority;

/// One statement, so the pick and the stamp are atomic. `SKIP LOCKED` lets concurrent
/// reconcilers pass over each other's items instead of taking them twice (a row one of
/// them stamped meanwhile fails the re-checked cutoff). Only item rows are locked, never
/// job rows, so this cannot deadlock with `apply_events` (jobs first, then items).
const TAKE_STALE: &str = "
    WITH taken AS (
        UPDATE job_items i
        SET queued_at = greatest(now(), $1::timestamptz + interval '1 microsecond')
        FROM (
            SELECT p.job_id, p.point_id, j.created_at, j.priority, j.collection
            FROM job_items p JOIN jobs j ON j.job_id = p.job_id
            WHERE p.state = 'pending' AND p.queued_at <= $1::timestamptz
              AND j.status IN ('queued', 'running')
            ORDER BY j.created_at, j.job_id, p.point_id
            LIMIT $2
            FOR UPDATE OF p SKIP LOCKED
        ) s
        WHERE i.job_id = s.job_id AND i.point_id = s.point_id
        RETURNING i.job_id, s.priority, i.point_id, i.path, i.size, i.mtime_ns, s.created_at, s.collection
    )
    SELECT job_id, priority, point_id, path, size, mtime_ns, collection FROM taken
    ORDER BY created_at, job_id, point_id";

pub(super) async fn take_stale(
    client: &deadpool_postgres::Client,
    queued_before: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<RequeueItem>, JobStoreError> {
    const CONTEXT: &str = "requeue_stale_items";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let stmt = client.prepare_cached(TAKE_STALE).await.ctx(CONTEXT)?;
    let rows = client.query(&stmt, &[&queued_before, &limit]).await.ctx(CONTEXT)?;
    rows.iter().map(requeue_item).collect()
}

/// Keyset over `(job_id, point_id)`; `('', nil)` sorts before every real item.
const UNPUBLISHED: &str = "
    SELECT i.job_id, j.priority, i.point_id, i.path, i.size, i.mtime_ns, j.collection
    FROM jobs j JOIN job_items i ON i.job_id = j.job_id
    WHERE j.published_at IS NULL AND j.status IN ('queued', 'running') AND j.created_at <= $1
      AND i.state = 'pending' AND (i.job_id, i.point_id) > ($2::text, $3::uuid)
    ORDER BY i.job_id, i.point_id
    LIMIT $4";

pub(super) async fn unpublished(
    client: &deadpool_postgres::Client,
    created_before: DateTime<Utc>,
    after: Option<&ItemKey>,
    limit: usize,
) -> Result<Vec<RequeueItem>, JobStoreError> {
    const CONTEXT: &str = "unpublished_items";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let (after_job, after_point) = after.map_or(("", Uuid::nil()), |k| (k.job_id.as_str(), k.point_id));
    let stmt = client.prepare_cached(UNPUBLISHED).await.ctx(CONTEXT)?;
    let rows = client.query(&stmt, &[&created_before, &after_job, &after_point, &limit]).await.ctx(CONTEXT)?;
    rows.iter().map(requeue_item).collect()
}

pub(super) async fn mark_published(client: &deadpool_postgres::Client, job_ids: &[String]) -> Result<(), JobStoreError> {
    const CONTEXT: &str = "mark_published";
    let stmt = client
        .prepare_cached("UPDATE jobs SET published_at = now() WHERE job_id = ANY($1) AND published_at IS NULL")
        .await
        .ctx(CONTEXT)?;
    client.execute(&stmt, &[&job_ids]).await.ctx(CONTEXT)?;
    Ok(())
}

fn requeue_item(row: &Row) -> Result<RequeueItem, JobStoreError> {
    const CONTEXT: &str = "requeue_stale_items: reading an item";
    let priority: &str = row.try_get("priority").ctx(CONTEXT)?;
    let size: Option<i64> = row.try_get("size").ctx(CONTEXT)?;
    let mtime_ns: Option<i64> = row.try_get("mtime_ns").ctx(CONTEXT)?;
    let point_id: Uuid = row.try_get("point_id").ctx(CONTEXT)?;
    Ok(RequeueItem {
        job_id: row.try_get("job_id").ctx(CONTEXT)?,
        priority: Priority::parse(priority)
            .ok_or_else(|| JobStoreError::Other(format!("unknown job priority {priority:?} in the job store")))?,
        item: NewItem { point_id, path: row.try_get("path").ctx(CONTEXT)?, stamp: stamp(size, mtime_ns)? },
        collection: row.try_get("collection").ctx(CONTEXT)?,
    })
}
