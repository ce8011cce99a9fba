//! Batch jobs (see `jobs/batches.rs`) for SQLite.

use rusqlite::{params, Connection, Row};

use super::writes::{begin, claim_points, insert_items};
use super::{point_bytes, point_id, time, SqlResultExt};
use crate::jobs::batch::unique_by_point;
use crate::jobs::batches::{BatchImage, BatchImageRecord};
use crate::jobs::{ItemState, JobStoreError, NewItem};
use crate::messages::Priority;

pub(super) fn create(
    conn: &mut Connection,
    now: i64,
    job_id: &str,
    priority: Priority,
    collection: Option<&str>,
    items: &[NewItem],
    images: &[BatchImage],
) -> Result<(), JobStoreError> {
    const CONTEXT: &str = "create_batch_job";
    let unique = unique_by_point(items);
    let total = i64::try_from(unique.len()).map_err(|_| JobStoreError::Other(format!("{CONTEXT}: too many items")))?;
    let tx = begin(conn, CONTEXT)?;
    tx.execute(
        "INSERT INTO jobs (job_id, status, priority, total, created_at, collection) VALUES (?1, 'queued', ?2, ?3, ?4, ?5)",
        params![job_id, priority.as_str(), total, now, collection],
    )
    .ctx(CONTEXT)?;
    claim_points(&tx, job_id, &unique)?;
    insert_items(&tx, now, job_id, &unique)?;
    {
        let mut insert = tx
            .prepare_cached("INSERT INTO batch_images (job_id, idx, name, point_id) VALUES (?1, ?2, ?3, ?4)")
            .ctx(CONTEXT)?;
        for image in images {
            insert.execute(params![job_id, image.index, image.name, point_bytes(&image.point_id)]).ctx(CONTEXT)?;
        }
    }
    tx.commit().ctx(CONTEXT)
}

pub(super) fn images(conn: &Connection, job_id: &str) -> Result<Option<Vec<BatchImageRecord>>, JobStoreError> {
    const CONTEXT: &str = "batch_images";
    let mut stmt = conn
        .prepare_cached(
            "SELECT b.idx, b.name, b.point_id, i.path, i.state, i.attempts, i.failure_kind, i.reason, i.started_at, i.finished_at, i.object_key
             FROM batch_images b JOIN job_items i ON i.job_id = b.job_id AND i.point_id = b.point_id
             WHERE b.job_id = ?1 ORDER BY b.idx",
        )
        .ctx(CONTEXT)?;
    let rows = stmt.query_map(params![job_id], |row| Ok(record(row))).ctx(CONTEXT)?;
    let images = rows.map(|r| r.ctx(CONTEXT)?).collect::<Result<Vec<_>, _>>()?;
    Ok((!images.is_empty()).then_some(images))
}

fn record(row: &Row<'_>) -> Result<BatchImageRecord, JobStoreError> {
    const CONTEXT: &str = "batch_images";
    let state: String = row.get(4).ctx(CONTEXT)?;
    let started: Option<i64> = row.get(8).ctx(CONTEXT)?;
    let finished: Option<i64> = row.get(9).ctx(CONTEXT)?;
    Ok(BatchImageRecord {
        index: row.get(0).ctx(CONTEXT)?,
        name: row.get(1).ctx(CONTEXT)?,
        point_id: point_id(&row.get::<_, Vec<u8>>(2).ctx(CONTEXT)?)?,
        path: row.get(3).ctx(CONTEXT)?,
        state: ItemState::parse(&state).ok_or_else(|| JobStoreError::Other(format!("{CONTEXT}: unknown state {state}")))?,
        attempts: row.get(5).ctx(CONTEXT)?,
        failure_kind: row.get(6).ctx(CONTEXT)?,
        reason: row.get(7).ctx(CONTEXT)?,
        started_at: started.map(time).transpose()?,
        finished_at: finished.map(time).transpose()?,
        object_key: row.get(10).ctx(CONTEXT)?,
    })
}

pub(super) fn purge(conn: &mut Connection, finished_before: i64, limit: usize) -> Result<u64, JobStoreError> {
    const CONTEXT: &str = "purge_batches";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let tx = begin(conn, CONTEXT)?;
    let deleted = tx
        .execute(
            "DELETE FROM jobs WHERE job_id IN (
                 SELECT j.job_id FROM jobs j
                 WHERE j.status IN ('completed', 'failed', 'cancelled') AND j.completed_at < ?1
                   AND EXISTS (SELECT 1 FROM batch_images b WHERE b.job_id = j.job_id)
                 ORDER BY j.completed_at, j.job_id LIMIT ?2)",
            params![finished_before, limit],
        )
        .ctx(CONTEXT)?;
    tx.commit().ctx(CONTEXT)?;
    Ok(deleted as u64)
}

pub(super) fn jobs(conn: &Connection, limit: usize) -> Result<Vec<String>, JobStoreError> {
    const CONTEXT: &str = "batch_jobs";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(
            "SELECT j.job_id FROM jobs j WHERE EXISTS (SELECT 1 FROM batch_images b WHERE b.job_id = j.job_id)
             ORDER BY j.created_at DESC, j.job_id DESC LIMIT ?1",
        )
        .ctx(CONTEXT)?;
    let rows = stmt.query_map(params![limit], |row| row.get(0)).ctx(CONTEXT)?;
    rows.map(|r| r.ctx(CONTEXT)).collect()
}
