//! Listing, cancelling and purging jobs (see `jobs/manage.rs`) for PostgreSQL.

use chrono::{DateTime, Utc};

use super::{job_from_row, PgResultExt, JOB_COLUMNS};
use crate::jobs::{CancelOutcome, JobPage, JobQuery, JobStoreError, JobWorker};

/// NULL parameters match everything; the keyset compares `(created_at, job_id)`.
const FILTER: &str = "($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR priority = $2)";

pub(super) async fn list(client: &deadpool_postgres::Client, query: &JobQuery) -> Result<JobPage, JobStoreError> {
    const CONTEXT: &str = "list_jobs";
    let status = query.status.map(|s| s.as_str());
    let priority = query.priority.map(|p| p.as_str());
    let (after_time, after_job) = match &query.after {
        Some(c) => (Some(c.created_at), Some(c.job_id.as_str())),
        None => (None, None),
    };
    let fetch = i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs
         WHERE {FILTER} AND ($3::timestamptz IS NULL OR (created_at, job_id) < ($3, $4::text))
         ORDER BY created_at DESC, job_id DESC LIMIT $5"
    );
    let stmt = client.prepare_cached(&sql).await.ctx(CONTEXT)?;
    let rows = client.query(&stmt, &[&status, &priority, &after_time, &after_job, &fetch]).await.ctx(CONTEXT)?;
    let jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>, _>>()?;
    let count = client.prepare_cached(&format!("SELECT count(*) FROM jobs WHERE {FILTER}")).await.ctx(CONTEXT)?;
    let total: i64 = client.query_one(&count, &[&status, &priority]).await.ctx(CONTEXT)?.try_get(0).ctx(CONTEXT)?;
    Ok(JobPage::from_overfetch(jobs, query.limit, total.max(0).unsigned_abs()))
}

pub(super) async fn workers(client: &deadpool_postgres::Client, job_id: &str) -> Result<Vec<JobWorker>, JobStoreError> {
    const CONTEXT: &str = "job_workers";
    let stmt = client
        .prepare_cached(
            "SELECT worker_id, images_processed, images_failed, last_seen_at FROM job_workers
             WHERE job_id = $1 ORDER BY worker_id",
        )
        .await
        .ctx(CONTEXT)?;
    let rows = client.query(&stmt, &[&job_id]).await.ctx(CONTEXT)?;
    rows.iter()
        .map(|row| {
            let (processed, failed): (i32, i32) = (row.try_get(1).ctx(CONTEXT)?, row.try_get(2).ctx(CONTEXT)?);
            Ok(JobWorker {
                worker_id: row.try_get(0).ctx(CONTEXT)?,
                images_processed: u64::from(processed.unsigned_abs()),
                images_failed: u64::from(failed.unsigned_abs()),
                last_seen_at: row.try_get(3).ctx(CONTEXT)?,
            })
        })
        .collect()
}

/// The job row first, then its claims: the lock order of every writer.
pub(super) async fn cancel(client: &mut deadpool_postgres::Client, job_id: &str) -> Result<CancelOutcome, JobStoreError> {
    const CONTEXT: &str = "cancel_job";
    let tx = client.transaction().await.ctx(CONTEXT)?;
    let sql = format!(
        "UPDATE jobs SET status = 'cancelled', scanning = false, completed_at = now()
         WHERE job_id = $1 AND status IN ('queued', 'running') RETURNING {JOB_COLUMNS}"
    );
    let cancelled = tx.query_opt(&sql, &[&job_id]).await.ctx(CONTEXT)?;
    let outcome = match cancelled {
        Some(row) => {
            tx.execute("DELETE FROM pending_points WHERE job_id = $1", &[&job_id]).await.ctx(CONTEXT)?;
            // A walk in progress stops at its next chunk.
            tx.execute("UPDATE job_scans SET done = true WHERE job_id = $1", &[&job_id]).await.ctx(CONTEXT)?;
            CancelOutcome::Cancelled(job_from_row(&row)?)
        }
        None => match tx.query_opt(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = $1"), &[&job_id]).await.ctx(CONTEXT)? {
            Some(row) => CancelOutcome::AlreadyFinished(job_from_row(&row)?),
            None => CancelOutcome::Unknown,
        },
    };
    tx.commit().await.ctx(CONTEXT)?;
    Ok(outcome)
}

/// Items and claims go with their job (`ON DELETE CASCADE`); point outcomes stay, as
/// they describe the image, not the job.
/// Items and claims go with their job (`ON DELETE CASCADE`). Webhook deliveries (no
/// foreign key, see `jobs/webhooks.rs`) go once their job is gone and they are a day
/// old, which also removes those whose job was never created.
pub(super) async fn purge(
    client: &deadpool_postgres::Client,
    finished_before: DateTime<Utc>,
    limit: usize,
) -> Result<u64, JobStoreError> {
    const CONTEXT: &str = "purge_finished";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let stmt = client
        .prepare_cached(
            "DELETE FROM jobs WHERE job_id IN (
                 SELECT job_id FROM jobs
                 WHERE status IN ('completed', 'failed', 'cancelled') AND completed_at < $1
                 ORDER BY completed_at, job_id LIMIT $2)",
        )
        .await
        .ctx(CONTEXT)?;
    let deleted = client.execute(&stmt, &[&finished_before, &limit]).await.ctx(CONTEXT)?;
    let orphans = client
        .prepare_cached(
            "DELETE FROM webhook_deliveries d WHERE d.created_at < now() - interval '1 day'
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = d.job_id)",
        )
        .await
        .ctx(CONTEXT)?;
    client.execute(&orphans, &[]).await.ctx(CONTEXT)?;
    Ok(deleted)
}
