//! [`JobStore::count_attempts`](crate::jobs::JobStore::count_attempts) for SQLite: one
//! `IMMEDIATE` transaction, so the read of each count and its raise are atomic.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{point_bytes, SqlResultExt};
use crate::jobs::attempts::decide;
use crate::jobs::{AttemptCount, ItemKey, JobStoreError};

pub(super) fn count(conn: &mut Connection, items: &[ItemKey], first_only: bool) -> Result<Vec<AttemptCount>, JobStoreError> {
    const CONTEXT: &str = "count_attempts";
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx(CONTEXT)?;
    let mut out = Vec::with_capacity(items.len());
    {
        let mut read = tx
            .prepare_cached("SELECT attempts FROM job_items WHERE job_id = ?1 AND point_id = ?2 AND state = 'pending'")
            .ctx(CONTEXT)?;
        let mut raise = tx
            .prepare_cached("UPDATE job_items SET attempts = attempts + 1 WHERE job_id = ?1 AND point_id = ?2")
            .ctx(CONTEXT)?;
        let mut seen = std::collections::HashMap::new();
        for key in items {
            // A key listed twice is counted once; both answers say the same.
            if let Some(answer) = seen.get(key) {
                out.push(*answer);
                continue;
            }
            let point = point_bytes(&key.point_id);
            let before: Option<i64> =
                read.query_row(params![key.job_id, point], |row| row.get(0)).optional().ctx(CONTEXT)?;
            let (answer, counted) = decide(before.map(|n| u32::try_from(n).unwrap_or(0)), first_only);
            if counted {
                raise.execute(params![key.job_id, point]).ctx(CONTEXT)?;
            }
            seen.insert(key.clone(), answer);
            out.push(answer);
        }
    }
    tx.commit().ctx(CONTEXT)?;
    Ok(out)
}
