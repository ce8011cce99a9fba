//! What the reconcile puts back on the task queue, for SQLite:
//! [`JobStore::requeue_stale_items`](crate::jobs::JobStore::requeue_stale_items) and the
//! items of jobs never published ([`JobStore::unpublished_items`](crate::jobs::JobStore::unpublished_items)).

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, TransactionBehavior};

use super::{micros, point_bytes, point_id, SqlResultExt};
use crate::jobs::batch::stamp;
use crate::jobs::{ItemKey, JobStoreError, NewItem, RequeueItem};
use crate::messages::Priority;

/// Picks and stamps in one `IMMEDIATE` transaction, so no other writer (another process
/// on the same file) can take the same items in between.
pub(super) fn take_stale(
    conn: &mut Connection,
    now: i64,
    queued_before: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<RequeueItem>, JobStoreError> {
    const CONTEXT: &str = "requeue_stale_items";
    let cutoff = micros(queued_before);
    // Later than the cutoff even when the caller's clock runs ahead of ours.
    let stamp_at = now.max(cutoff.saturating_add(1));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx(CONTEXT)?;
    let items = {
        let mut pick = tx
            .prepare_cached(
                "SELECT i.job_id, j.priority, i.point_id, i.path, i.size, i.mtime_ns, j.collection
                 FROM job_items i JOIN jobs j ON j.job_id = i.job_id
                 WHERE i.state = 'pending' AND i.queued_at <= ?1 AND j.status IN ('queued', 'running')
                 ORDER BY j.created_at, j.job_id, i.point_id
                 LIMIT ?2",
            )
            .ctx(CONTEXT)?;
        let rows = pick
            .query_map(params![cutoff, limit], pending_row)
            .ctx(CONTEXT)?
            .collect::<Result<Vec<_>, _>>()
            .ctx(CONTEXT)?;
        let mut mark = tx
            .prepare_cached("UPDATE job_items SET queued_at = ?3 WHERE job_id = ?1 AND point_id = ?2")
            .ctx(CONTEXT)?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            mark.execute(params![row.0, row.2, stamp_at]).ctx(CONTEXT)?;
            items.push(item(row)?);
        }
        items
    };
    tx.commit().ctx(CONTEXT)?;
    Ok(items)
}

/// Keyset over `(job_id, point_id)`; `('', x'')` sorts before every real item (a BLOB
/// compares bytewise, and the empty one first).
pub(super) fn unpublished(
    conn: &Connection,
    created_before: DateTime<Utc>,
    after: Option<&ItemKey>,
    limit: usize,
) -> Result<Vec<RequeueItem>, JobStoreError> {
    const CONTEXT: &str = "unpublished_items";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let (after_job, after_point): (&str, &[u8]) = after.map_or(("", &[]), |k| (k.job_id.as_str(), point_bytes(&k.point_id)));
    let mut stmt = conn
        .prepare_cached(
            "SELECT i.job_id, j.priority, i.point_id, i.path, i.size, i.mtime_ns, j.collection
             FROM jobs j JOIN job_items i ON i.job_id = j.job_id
             WHERE j.published_at IS NULL AND j.status IN ('queued', 'running') AND j.created_at <= ?1
               AND i.state = 'pending' AND (i.job_id, i.point_id) > (?2, ?3)
             ORDER BY i.job_id, i.point_id
             LIMIT ?4",
        )
        .ctx(CONTEXT)?;
    let rows = stmt
        .query_map(params![micros(created_before), after_job, after_point, limit], pending_row)
        .ctx(CONTEXT)?
        .collect::<Result<Vec<_>, _>>()
        .ctx(CONTEXT)?;
    rows.into_iter().map(item).collect()
}

pub(super) fn mark_published(conn: &mut Connection, now: i64, job_ids: &[String]) -> Result<(), JobStoreError> {
    const CONTEXT: &str = "mark_published";
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx(CONTEXT)?;
    {
        let mut mark = tx
            .prepare_cached("UPDATE jobs SET published_at = ?2 WHERE job_id = ?1 AND published_at IS NULL")
            .ctx(CONTEXT)?;
        for job_id in job_ids {
            mark.execute(params![job_id, now]).ctx(CONTEXT)?;
        }
    }
    tx.commit().ctx(CONTEXT)
}

/// `job_id, priority, point_id, path, size, mtime_ns, collection` of a pending item, as
/// both picks select them.
type PendingRow = (String, String, Vec<u8>, String, Option<i64>, Option<i64>, Option<String>);

fn pending_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PendingRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?))
}

fn item((job_id, priority, point, path, size, mtime_ns, collection): PendingRow) -> Result<RequeueItem, JobStoreError> {
    let priority = Priority::parse(&priority)
        .ok_or_else(|| JobStoreError::Other(format!("unknown job priority {priority:?} in the job store")))?;
    let item = NewItem { point_id: point_id(&point)?, path, stamp: stamp(size, mtime_ns)? };
    Ok(RequeueItem { job_id, priority, item, collection })
}
