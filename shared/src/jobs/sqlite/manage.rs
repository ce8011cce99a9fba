//! Listing, cancelling and purging jobs (see `jobs/manage.rs`) for SQLite.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::reads::{job_from_row, JOB_COLUMNS};
use super::{count, micros, time, SqlResultExt};
use crate::jobs::{CancelOutcome, JobPage, JobQuery, JobStoreError, JobWorker};

/// NULL parameters match everything; the keyset compares `(created_at, job_id)`.
const FILTER: &str = "(?1 IS NULL OR status = ?1) AND (?2 IS NULL OR priority = ?2)";

pub(super) fn list(conn: &Connection, query: &JobQuery) -> Result<JobPage, JobStoreError> {
    const CONTEXT: &str = "list_jobs";
    let status = query.status.map(|s| s.as_str());
    let priority = query.priority.map(|p| p.as_str());
    let (after_time, after_job) = match &query.after {
        Some(c) => (Some(micros(c.created_at)), Some(c.job_id.as_str())),
        None => (None, None),
    };
    let fetch = i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs
             WHERE {FILTER} AND (?3 IS NULL OR (created_at, job_id) < (?3, ?4))
             ORDER BY created_at DESC, job_id DESC LIMIT ?5"
        ))
        .ctx(CONTEXT)?;
    let rows = stmt
        .query_map(params![status, priority, after_time, after_job, fetch], |row| Ok(job_from_row(row)))
        .ctx(CONTEXT)?;
    let jobs = rows.collect::<Result<Vec<_>, _>>().ctx(CONTEXT)?.into_iter().collect::<Result<Vec<_>, _>>()?;
    let total: i64 = conn
        .query_row(&format!("SELECT count(*) FROM jobs WHERE {FILTER}"), params![status, priority], |row| row.get(0))
        .ctx(CONTEXT)?;
    Ok(JobPage::from_overfetch(jobs, query.limit, count(total, "job count")?))
}

pub(super) fn workers(conn: &Connection, job_id: &str) -> Result<Vec<JobWorker>, JobStoreError> {
    const CONTEXT: &str = "job_workers";
    let mut stmt = conn
        .prepare_cached(
            "SELECT worker_id, images_processed, images_failed, last_seen_at FROM job_workers
             WHERE job_id = ?1 ORDER BY worker_id",
        )
        .ctx(CONTEXT)?;
    let rows = stmt
        .query_map(params![job_id], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?, row.get::<_, i64>(3)?)))
        .ctx(CONTEXT)?
        .collect::<Result<Vec<_>, _>>()
        .ctx(CONTEXT)?;
    rows.into_iter()
        .map(|(worker_id, processed, failed, seen)| {
            Ok(JobWorker {
                worker_id,
                images_processed: count(processed, "images processed")?,
                images_failed: count(failed, "images failed")?,
                last_seen_at: time(seen)?,
            })
        })
        .collect()
}

pub(super) fn cancel(conn: &mut Connection, now: i64, job_id: &str) -> Result<CancelOutcome, JobStoreError> {
    const CONTEXT: &str = "cancel_job";
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx(CONTEXT)?;
    let cancelled = tx
        .query_row(
            &format!(
                "UPDATE jobs SET status = 'cancelled', scanning = 0, completed_at = ?2
                 WHERE job_id = ?1 AND status IN ('queued', 'running') RETURNING {JOB_COLUMNS}"
            ),
            params![job_id, now],
            |row| Ok(job_from_row(row)),
        )
        .optional()
        .ctx(CONTEXT)?
        .transpose()?;
    let outcome = match cancelled {
        Some(job) => {
            tx.execute("DELETE FROM pending_points WHERE job_id = ?1", params![job_id]).ctx(CONTEXT)?;
            // A walk in progress stops at its next chunk.
            tx.execute("UPDATE job_scans SET done = 1 WHERE job_id = ?1", params![job_id]).ctx(CONTEXT)?;
            CancelOutcome::Cancelled(job)
        }
        None => match super::reads::job(&tx, job_id)? {
            Some(job) => CancelOutcome::AlreadyFinished(job),
            None => CancelOutcome::Unknown,
        },
    };
    tx.commit().ctx(CONTEXT)?;
    Ok(outcome)
}

/// Items and claims go with their job (`ON DELETE CASCADE`); point outcomes stay.
/// Webhook deliveries (no foreign key, see `jobs/webhooks.rs`) go once their job is gone
/// and they are a day old, which also removes those whose job was never created.
pub(super) fn purge(conn: &mut Connection, finished_before: DateTime<Utc>, limit: usize) -> Result<u64, JobStoreError> {
    const CONTEXT: &str = "purge_finished";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx(CONTEXT)?;
    let deleted = tx
        .execute(
            "DELETE FROM jobs WHERE job_id IN (
                 SELECT job_id FROM jobs
                 WHERE status IN ('completed', 'failed', 'cancelled') AND completed_at < ?1
                 ORDER BY completed_at, job_id LIMIT ?2)",
            params![micros(finished_before), limit],
        )
        .ctx(CONTEXT)?;
    let day_ago = micros(Utc::now() - chrono::Duration::days(1));
    tx.execute(
        "DELETE FROM webhook_deliveries WHERE created_at < ?1
         AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = webhook_deliveries.job_id)",
        params![day_ago],
    )
    .ctx(CONTEXT)?;
    tx.commit().ctx(CONTEXT)?;
    Ok(deleted as u64)
}
