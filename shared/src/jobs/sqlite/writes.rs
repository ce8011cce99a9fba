//! The SQLite store's writes: create, fail and progress jobs. Each is one `IMMEDIATE`
//! transaction, so it holds the write lock from its first statement and never meets a
//! concurrent writer halfway (SQLite would abort one of two deferred writers).

use std::collections::{HashMap, HashSet};

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use uuid::Uuid;

use super::reads::{job_from_row, JOB_COLUMNS};
use super::{point_bytes, SqlResultExt};
use crate::jobs::batch::{
    failure, outcome_state, stamp_columns, stored_reason, unique_by_point, unique_events,
};
use crate::jobs::progress::{self, FailureGroup, Finished, JobUpdate};
use crate::jobs::{Applied, JobRecord, JobStatus, JobStoreError, NewItem};
use crate::messages::{CompletionEvent, Priority};

pub(super) fn begin<'c>(conn: &'c mut Connection, context: &str) -> Result<Transaction<'c>, JobStoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx(context)
}

pub(super) fn create_job(
    conn: &mut Connection,
    now: i64,
    job_id: &str,
    priority: Priority,
    collection: Option<&str>,
    candidates: &[NewItem],
) -> Result<Vec<NewItem>, JobStoreError> {
    let unique = unique_by_point(candidates);
    if unique.is_empty() {
        return Ok(Vec::new());
    }
    let tx = begin(conn, "create_job: begin")?;
    // The job row goes first because claims reference it; its total is set once known.
    tx.execute(
        "INSERT INTO jobs (job_id, status, priority, total, created_at, collection) VALUES (?1, 'queued', ?2, 0, ?3, ?4)",
        params![job_id, priority.as_str(), now, collection],
    )
    .ctx("create_job: insert job")?;
    let claimed = claim_points(&tx, job_id, &unique)?;
    if claimed.is_empty() {
        tx.rollback().ctx("create_job: rollback")?;
        return Ok(Vec::new());
    }
    let items: Vec<&NewItem> = unique.into_iter().filter(|i| claimed.contains(&i.point_id)).collect();
    insert_items(&tx, now, job_id, &items)?;
    let total = i64::try_from(items.len())
        .map_err(|_| JobStoreError::Other("job size does not fit the job store's counters".into()))?;
    tx.execute("UPDATE jobs SET total = ?2 WHERE job_id = ?1", params![job_id, total]).ctx("create_job: set total")?;
    tx.commit().ctx("create_job: commit")?;
    Ok(items.into_iter().cloned().collect())
}

/// Claims the points no active job holds yet; returns those claimed.
pub(super) fn claim_points(tx: &Transaction<'_>, job_id: &str, items: &[&NewItem]) -> Result<HashSet<Uuid>, JobStoreError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO pending_points (point_id, job_id) VALUES (?1, ?2) ON CONFLICT (point_id) DO NOTHING",
        )
        .ctx("create_job: claim")?;
    let mut claimed = HashSet::with_capacity(items.len());
    for item in items {
        if stmt.execute(params![point_bytes(&item.point_id), job_id]).ctx("create_job: claim")? == 1 {
            claimed.insert(item.point_id);
        }
    }
    Ok(claimed)
}

pub(super) fn insert_items(tx: &Transaction<'_>, now: i64, job_id: &str, items: &[&NewItem]) -> Result<(), JobStoreError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO job_items (job_id, point_id, path, size, mtime_ns, queued_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .ctx("create_job: insert items")?;
    for item in items {
        let (size, mtime_ns) = stamp_columns(item.stamp)?;
        stmt.execute(params![job_id, point_bytes(&item.point_id), item.path, size, mtime_ns, now])
            .ctx("create_job: insert items")?;
    }
    Ok(())
}

pub(super) fn fail_job(conn: &mut Connection, now: i64, job_id: &str, message: &str) -> Result<(), JobStoreError> {
    let tx = begin(conn, "fail_job: begin")?;
    let updated = tx
        .execute(
            "UPDATE jobs SET status = 'failed', completed_at = ?3, error_message = ?2
             WHERE job_id = ?1 AND status IN ('queued', 'running')",
            params![job_id, message, now],
        )
        .ctx("fail_job: update job")?;
    if updated == 0 {
        tracing::warn!(job_id, "fail_job: job unknown or already finished; left as it is");
    }
    tx.execute("DELETE FROM pending_points WHERE job_id = ?1", params![job_id]).ctx("fail_job: release claims")?;
    tx.commit().ctx("fail_job: commit")
}

pub(super) fn apply_events(
    conn: &mut Connection,
    now: i64,
    events: &[CompletionEvent],
) -> Result<Applied, JobStoreError> {
    let events = unique_events(events);
    if events.is_empty() {
        return Ok(Applied::default());
    }
    let tx = begin(conn, "apply_events: begin")?;
    let jobs = read_jobs(&tx, &events)?;
    let finished = finish_items(&tx, now, &events)?;
    release_claims(&tx, &finished)?;
    record_outcomes(&tx, now, &finished)?;
    record_workers(&tx, now, &progress::worker_tallies(&finished))?;
    let mut updates = progress::plan_updates(&jobs, &finished);
    add_failure_messages(&tx, &mut updates)?;
    let records = write_jobs(&tx, now, &updates)?;
    tx.commit().ctx("apply_events: commit")?;
    Ok(Applied { jobs: records, finished: progress::finished_keys(&finished) })
}

/// Adds what each worker finished to its row of the job's workers.
fn record_workers(tx: &Transaction<'_>, now: i64, tallies: &[progress::WorkerTally]) -> Result<(), JobStoreError> {
    const CONTEXT: &str = "apply_events: record workers";
    let mut upsert = tx
        .prepare_cached(
            "INSERT INTO job_workers (job_id, worker_id, images_processed, images_failed, last_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (job_id, worker_id) DO UPDATE SET
                 images_processed = images_processed + excluded.images_processed,
                 images_failed = images_failed + excluded.images_failed,
                 last_seen_at = excluded.last_seen_at",
        )
        .ctx(CONTEXT)?;
    for t in tallies {
        let (indexed, failed) = (i64::try_from(t.indexed).unwrap_or(i64::MAX), i64::try_from(t.failed).unwrap_or(i64::MAX));
        upsert.execute(params![t.job_id, t.worker, indexed, failed, now]).ctx(CONTEXT)?;
    }
    Ok(())
}

/// The events' jobs as they were before this batch, by id (unknown jobs are absent).
fn read_jobs(tx: &Transaction<'_>, events: &[&CompletionEvent]) -> Result<HashMap<String, JobRecord>, JobStoreError> {
    let ids: HashSet<&str> = events.iter().map(|e| e.job_id.as_str()).collect();
    let mut stmt =
        tx.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?1")).ctx("apply_events: read jobs")?;
    let mut jobs = HashMap::with_capacity(ids.len());
    for id in ids {
        let row = stmt.query_row(params![id], |row| Ok(job_from_row(row))).optional().ctx("apply_events: read jobs")?;
        if let Some(job) = row.transpose()? {
            jobs.insert(job.job_id.clone(), job);
        }
    }
    Ok(jobs)
}

/// Marks still-pending items finished; returns those that changed and logs the rest.
fn finish_items(tx: &Transaction<'_>, now: i64, events: &[&CompletionEvent]) -> Result<Vec<Finished>, JobStoreError> {
    const CONTEXT: &str = "apply_events: finish items";
    let mut finish = tx
        .prepare_cached(
            "UPDATE job_items SET state = ?3, failure_kind = ?4, reason = ?5, finished_at = ?6, from_cache = ?7,
                 object_key = ?8
             WHERE job_id = ?1 AND point_id = ?2 AND state = 'pending'",
        )
        .ctx(CONTEXT)?;
    let mut known =
        tx.prepare_cached("SELECT 1 FROM job_items WHERE job_id = ?1 AND point_id = ?2").ctx(CONTEXT)?;
    let mut finished = Vec::with_capacity(events.len());
    for e in events {
        let state = outcome_state(&e.outcome);
        let kind = failure(&e.outcome).map(|(k, _)| k.as_str());
        let cached = state == "indexed" && e.from_cache;
        let changed = finish
            .execute(params![
                e.job_id,
                point_bytes(&e.point_id),
                state,
                kind,
                stored_reason(&e.outcome),
                now,
                cached,
                e.object_key
            ])
            .ctx(CONTEXT)?;
        let (job_id, point_id) = (e.job_id.as_str(), e.point_id);
        if changed == 1 {
            let indexed = state == "indexed";
            finished.push(Finished { job_id: job_id.to_owned(), point_id, indexed, from_cache: cached, worker: e.worker.clone() });
        } else if known.exists(params![e.job_id, point_bytes(&e.point_id)]).ctx(CONTEXT)? {
            tracing::debug!(job_id, %point_id, "duplicate completion event ignored");
        } else {
            tracing::warn!(job_id, %point_id, "completion event for an unknown job or item ignored");
        }
    }
    Ok(finished)
}

/// Releases the claims of finished items, only where the claim is still this job's.
fn release_claims(tx: &Transaction<'_>, finished: &[Finished]) -> Result<(), JobStoreError> {
    let mut stmt = tx
        .prepare_cached("DELETE FROM pending_points WHERE point_id = ?1 AND job_id = ?2")
        .ctx("apply_events: release claims")?;
    for f in finished {
        stmt.execute(params![point_bytes(&f.point_id), f.job_id]).ctx("apply_events: release claims")?;
    }
    Ok(())
}

/// Records each finished point's outcome as its latest attempt.
fn record_outcomes(tx: &Transaction<'_>, now: i64, finished: &[Finished]) -> Result<(), JobStoreError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO point_outcomes (point_id, state, finished_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (point_id) DO UPDATE SET state = excluded.state, finished_at = excluded.finished_at
             WHERE point_outcomes.finished_at <= excluded.finished_at",
        )
        .ctx("apply_events: record outcomes")?;
    for (point_id, indexed) in progress::latest_outcomes(finished) {
        let state = if indexed { "indexed" } else { "failed" };
        stmt.execute(params![point_bytes(&point_id), state, now]).ctx("apply_events: record outcomes")?;
    }
    Ok(())
}

/// Fills in the error message of jobs this batch finishes with nothing indexed.
pub(super) fn add_failure_messages(tx: &Transaction<'_>, updates: &mut [JobUpdate]) -> Result<(), JobStoreError> {
    const CONTEXT: &str = "apply_events: failure summary";
    // Per kind: how many, and the first failure (by finish time, then path) as the example.
    let mut stmt = tx
        .prepare_cached(
            "SELECT kind, n, path, reason FROM (
                 SELECT coalesce(failure_kind, 'unknown') AS kind, path, coalesce(reason, '') AS reason,
                        count(*) OVER (PARTITION BY coalesce(failure_kind, 'unknown')) AS n,
                        row_number() OVER (PARTITION BY coalesce(failure_kind, 'unknown')
                                           ORDER BY finished_at, path) AS rank
                 FROM job_items WHERE job_id = ?1 AND state = 'failed'
             ) WHERE rank = 1",
        )
        .ctx(CONTEXT)?;
    for update in updates.iter_mut().filter(|u| u.advance.status == JobStatus::Failed) {
        let groups = stmt
            .query_map(params![update.job_id], |row| {
                Ok(FailureGroup {
                    kind: row.get(0)?,
                    count: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                    example_path: row.get(2)?,
                    example_reason: row.get(3)?,
                })
            })
            .ctx(CONTEXT)?
            .collect::<Result<Vec<_>, _>>()
            .ctx(CONTEXT)?;
        let total = update.advance.processed + update.advance.failed;
        update.error_message = Some(progress::all_failed_message(total, &groups));
    }
    Ok(())
}

/// Writes the new counters and status; returns the jobs after the change, by `job_id`.
fn write_jobs(tx: &Transaction<'_>, now: i64, updates: &[JobUpdate]) -> Result<Vec<JobRecord>, JobStoreError> {
    const CONTEXT: &str = "apply_events: update jobs";
    let mut stmt = tx
        .prepare_cached(&format!(
            "UPDATE jobs SET
                 processed = ?2, failed = ?3, status = ?4,
                 started_at = coalesce(started_at, ?6),
                 completed_at = CASE WHEN ?5 THEN ?6 ELSE completed_at END,
                 error_message = coalesce(?7, error_message),
                 from_cache = from_cache + ?8
             WHERE job_id = ?1
             RETURNING {JOB_COLUMNS}"
        ))
        .ctx(CONTEXT)?;
    let mut records = Vec::with_capacity(updates.len());
    for u in updates {
        let counter = |n: u64| {
            i64::try_from(n).map_err(|_| JobStoreError::Other("progress does not fit the job store's counters".into()))
        };
        let record = stmt
            .query_row(
                params![
                    u.job_id,
                    counter(u.advance.processed)?,
                    counter(u.advance.failed)?,
                    u.advance.status.as_str(),
                    u.advance.finished,
                    now,
                    u.error_message,
                    counter(u.from_cache)?
                ],
                |row| Ok(job_from_row(row)),
            )
            .ctx(CONTEXT)??;
        records.push(record);
    }
    Ok(records)
}
