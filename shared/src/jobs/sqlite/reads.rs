//! The SQLite store's reads: jobs and the status counters.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Params, Row};

use super::{count, opt_time, time, SqlResultExt};
use crate::jobs::{JobRecord, JobStatus, JobStoreError};
use crate::messages::Priority;

pub(super) const JOB_COLUMNS: &str =
    "job_id, status, priority, total, processed, failed, created_at, started_at, completed_at, error_message, scanning, collection, from_cache";

pub(super) fn job(conn: &Connection, job_id: &str) -> Result<Option<JobRecord>, JobStoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?1")).ctx("job")?;
    stmt.query_row(params![job_id], |row| Ok(job_from_row(row))).optional().ctx("job")?.transpose()
}

pub(super) fn active_jobs(conn: &Connection) -> Result<Vec<JobRecord>, JobStoreError> {
    query_jobs(
        conn,
        "active_jobs",
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at, job_id"),
        [],
    )
}

pub(super) fn recent_jobs(conn: &Connection, limit: usize) -> Result<Vec<JobRecord>, JobStoreError> {
    query_jobs(
        conn,
        "recent_jobs",
        &format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE status IN ('completed', 'failed', 'cancelled')
             ORDER BY completed_at DESC, job_id DESC LIMIT ?1"
        ),
        params![i64::try_from(limit).unwrap_or(i64::MAX)],
    )
}

fn query_jobs(
    conn: &Connection,
    context: &str,
    sql: &str,
    params: impl Params,
) -> Result<Vec<JobRecord>, JobStoreError> {
    let mut stmt = conn.prepare_cached(sql).ctx(context)?;
    let rows = stmt.query_map(params, |row| Ok(job_from_row(row))).ctx(context)?;
    rows.collect::<Result<Vec<_>, _>>().ctx(context)?.into_iter().collect()
}

pub(super) fn failed_image_count(conn: &Connection) -> Result<u64, JobStoreError> {
    let n: i64 = conn
        .query_row("SELECT count(*) FROM point_outcomes WHERE state = 'failed'", [], |row| row.get(0))
        .ctx("failed_image_count")?;
    count(n, "failed image count")
}

pub(super) fn last_update(conn: &Connection) -> Result<Option<DateTime<Utc>>, JobStoreError> {
    // point_outcomes keeps each point's latest finish, so its maximum is the overall one.
    let latest: Option<i64> =
        conn.query_row("SELECT max(finished_at) FROM point_outcomes", [], |row| row.get(0)).ctx("last_update")?;
    opt_time(latest)
}

pub(super) fn finished_since(conn: &Connection, since: DateTime<Utc>) -> Result<u64, JobStoreError> {
    let n: i64 = conn
        .query_row("SELECT count(*) FROM point_outcomes WHERE finished_at >= ?1", params![since.timestamp_micros()], |row| {
            row.get(0)
        })
        .ctx("finished_since")?;
    count(n, "finished image count")
}

pub(super) fn job_from_row(row: &Row<'_>) -> Result<JobRecord, JobStoreError> {
    const CONTEXT: &str = "reading a job";
    let status: String = row.get("status").ctx(CONTEXT)?;
    let priority: String = row.get("priority").ctx(CONTEXT)?;
    Ok(JobRecord {
        job_id: row.get("job_id").ctx(CONTEXT)?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| JobStoreError::Other(format!("unknown job status {status:?} in the job store")))?,
        priority: Priority::parse(&priority)
            .ok_or_else(|| JobStoreError::Other(format!("unknown job priority {priority:?} in the job store")))?,
        total_images: count(row.get("total").ctx(CONTEXT)?, "total")?,
        processed_images: count(row.get("processed").ctx(CONTEXT)?, "processed")?,
        failed_images: count(row.get("failed").ctx(CONTEXT)?, "failed")?,
        created_at: time(row.get("created_at").ctx(CONTEXT)?)?,
        started_at: opt_time(row.get("started_at").ctx(CONTEXT)?)?,
        completed_at: opt_time(row.get("completed_at").ctx(CONTEXT)?)?,
        error_message: row.get("error_message").ctx(CONTEXT)?,
        scanning: row.get("scanning").ctx(CONTEXT)?,
        collection: row.get("collection").ctx(CONTEXT)?,
        from_cache: count(row.get("from_cache").ctx(CONTEXT)?, "from_cache")?,
    })
}
