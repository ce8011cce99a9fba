//! [`JobStore::requeue_stale_items`](crate::jobs::JobStore::requeue_stale_items) for SQLite.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, TransactionBehavior};

use super::{micros, point_id, SqlResultExt};
use crate::jobs::batch::stamp;
use crate::jobs::{JobStoreError, NewItem, RequeueItem};
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
                "SELECT i.job_id, j.priority, i.point_id, i.path, i.size, i.mtime_ns
                 FROM job_items i JOIN jobs j ON j.job_id = i.job_id
                 WHERE i.state = 'pending' AND i.queued_at <= ?1 AND j.status IN ('queued', 'running')
                 ORDER BY j.created_at, j.job_id, i.point_id
                 LIMIT ?2",
            )
            .ctx(CONTEXT)?;
        let rows = pick
            .query_map(params![cutoff, limit], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, Option<i64>>(5)?,
                ))
            })
            .ctx(CONTEXT)?
            .collect::<Result<Vec<_>, _>>()
            .ctx(CONTEXT)?;
        let mut mark = tx
            .prepare_cached("UPDATE job_items SET queued_at = ?3 WHERE job_id = ?1 AND point_id = ?2")
            .ctx(CONTEXT)?;
        let mut items = Vec::with_capacity(rows.len());
        for (job_id, priority, point, path, size, mtime_ns) in rows {
            mark.execute(params![job_id, point, stamp_at]).ctx(CONTEXT)?;
            let priority = Priority::parse(&priority)
                .ok_or_else(|| JobStoreError::Other(format!("unknown job priority {priority:?} in the job store")))?;
            let item = NewItem { point_id: point_id(&point)?, path, stamp: stamp(size, mtime_ns)? };
            items.push(RequeueItem { job_id, priority, item });
        }
        items
    };
    tx.commit().ctx(CONTEXT)?;
    Ok(items)
}
