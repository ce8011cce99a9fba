//! [`JobStore::count_attempts`](crate::jobs::JobStore::count_attempts) for SQLite: one
//! `IMMEDIATE` transaction, so the read of each count and its raise are atomic.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{point_bytes, SqlResultExt};
use crate::jobs::attempts::{decide, Pending};
use crate::jobs::{AttemptCount, ItemKey, JobStoreError};

pub(super) fn count(
    conn: &mut Connection,
    now: i64,
    items: &[ItemKey],
    first_only: bool,
) -> Result<Vec<AttemptCount>, JobStoreError> {
    const CONTEXT: &str = "count_attempts";
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx(CONTEXT)?;
    let mut out = Vec::with_capacity(items.len());
    {
        let mut read = tx
            .prepare_cached(
                "SELECT i.attempts, j.status IN ('queued', 'running')
                 FROM job_items i JOIN jobs j ON j.job_id = i.job_id
                 WHERE i.job_id = ?1 AND i.point_id = ?2 AND i.state = 'pending'",
            )
            .ctx(CONTEXT)?;
        let mut raise = tx
            .prepare_cached(
                "UPDATE job_items SET attempts = attempts + 1, started_at = coalesce(started_at, ?3)
                 WHERE job_id = ?1 AND point_id = ?2",
            )
            .ctx(CONTEXT)?;
        let mut seen = std::collections::HashMap::new();
        for key in items {
            // A key listed twice is counted once; both answers say the same.
            if let Some(answer) = seen.get(key) {
                out.push(*answer);
                continue;
            }
            let point = point_bytes(&key.point_id);
            let before: Option<(i64, bool)> =
                read.query_row(params![key.job_id, point], |row| Ok((row.get(0)?, row.get(1)?))).optional().ctx(CONTEXT)?;
            let before = before.map(|(n, job_active)| Pending { attempts: u32::try_from(n).unwrap_or(0), job_active });
            let (answer, counted) = decide(before, first_only);
            if counted {
                raise.execute(params![key.job_id, point, now]).ctx(CONTEXT)?;
            }
            seen.insert(key.clone(), answer);
            out.push(answer);
        }
    }
    tx.commit().ctx(CONTEXT)?;
    Ok(out)
}
