//! The SQLite store's directory scans (see `jobs/scan.rs`). Each call is one `IMMEDIATE`
//! transaction, so "is a scan of this directory running?" and the insert that follows
//! are one atomic step, and a lease check holds until the write it guards commits.

use std::time::Duration;

use rusqlite::{params, OptionalExtension, Row, Transaction};

use super::reads::{job_from_row, JOB_COLUMNS};
use super::writes::{add_failure_messages, begin, claim_points};
use super::{opt_time, point_bytes, SqlResultExt};
use crate::jobs::batch::{stamp_columns, unique_by_point};
use crate::jobs::progress;
use crate::jobs::{
    JobRecord, JobStoreError, NewItem, ScanChunk, ScanCounts, ScanLease, ScanOpened, ScanRecord, ScanSpec,
};
use crate::messages::Priority;

const SCAN_COLUMNS: &str = "s.job_id, s.dir, s.recursive, s.force_reindex, s.prune_missing, s.files_seen, \
     s.images_found, s.not_images, s.unreadable, s.removed, s.done, s.heartbeat_at, j.collection";

pub(super) fn open(
    conn: &mut rusqlite::Connection,
    now: i64,
    job_id: &str,
    priority: Priority,
    spec: &ScanSpec,
    owner: &str,
) -> Result<ScanOpened, JobStoreError> {
    const CONTEXT: &str = "open_scan";
    let tx = begin(conn, CONTEXT)?;
    let running: Option<String> = tx
        .query_row(
            "SELECT s.job_id FROM job_scans s JOIN jobs j ON j.job_id = s.job_id
             WHERE s.dir = ?1 AND j.collection IS ?2 AND j.status IN ('queued', 'running')
             ORDER BY j.created_at LIMIT 1",
            params![spec.dir, spec.collection],
            |row| row.get(0),
        )
        .optional()
        .ctx(CONTEXT)?;
    if let Some(job_id) = running {
        tx.commit().ctx(CONTEXT)?;
        return Ok(ScanOpened::Running { job_id });
    }
    tx.execute(
        "INSERT INTO jobs (job_id, status, priority, total, created_at, published_at, scanning, collection)
         VALUES (?1, 'queued', ?2, 0, ?3, ?3, 1, ?4)",
        params![job_id, priority.as_str(), now, spec.collection],
    )
    .ctx(CONTEXT)?;
    tx.execute(
        "INSERT INTO job_scans (job_id, dir, recursive, force_reindex, prune_missing, owner, heartbeat_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![job_id, spec.dir, spec.recursive, spec.force_reindex, spec.prune_missing, owner, now],
    )
    .ctx(CONTEXT)?;
    tx.commit().ctx(CONTEXT)?;
    Ok(ScanOpened::Created)
}

/// Whether `owner` holds the walk of an active job (read inside the write transaction).
fn holds_lease(tx: &Transaction<'_>, job_id: &str, owner: &str, context: &str) -> Result<bool, JobStoreError> {
    tx.query_row(
        "SELECT 1 FROM job_scans s JOIN jobs j ON j.job_id = s.job_id
         WHERE s.job_id = ?1 AND s.owner = ?2 AND s.done = 0 AND j.status IN ('queued', 'running')",
        params![job_id, owner],
        |_| Ok(()),
    )
    .optional()
    .ctx(context)
    .map(|found| found.is_some())
}

fn write_counts(tx: &Transaction<'_>, now: i64, job_id: &str, counts: &ScanCounts, done: bool) -> Result<(), JobStoreError> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    tx.execute(
        "UPDATE job_scans SET files_seen = ?2, images_found = ?3, not_images = ?4, unreadable = ?5, removed = ?6,
             done = ?7, heartbeat_at = ?8
         WHERE job_id = ?1",
        params![
            job_id,
            n(counts.files_seen),
            n(counts.images_found),
            n(counts.not_images),
            n(counts.unreadable),
            n(counts.removed),
            done,
            now
        ],
    )
    .ctx("scan: record counts")?;
    Ok(())
}

pub(super) fn add_items(
    conn: &mut rusqlite::Connection,
    now: i64,
    job_id: &str,
    owner: &str,
    candidates: &[NewItem],
    counts: &ScanCounts,
) -> Result<ScanChunk, JobStoreError> {
    const CONTEXT: &str = "add_scan_items";
    let tx = begin(conn, CONTEXT)?;
    if !holds_lease(&tx, job_id, owner, CONTEXT)? {
        return Ok(ScanChunk::Stopped);
    }
    let unique = unique_by_point(candidates);
    let claimed = claim_points(&tx, job_id, &unique)?;
    let mut publish = Vec::new();
    let (mut new, mut already_queued) = (0usize, 0usize);
    {
        let mut holder = tx.prepare_cached("SELECT job_id FROM pending_points WHERE point_id = ?1").ctx(CONTEXT)?;
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO job_items (job_id, point_id, path, size, mtime_ns, queued_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (job_id, point_id) DO NOTHING",
            )
            .ctx(CONTEXT)?;
        let mut unclaim =
            tx.prepare_cached("DELETE FROM pending_points WHERE point_id = ?1 AND job_id = ?2").ctx(CONTEXT)?;
        for item in unique {
            let id = point_bytes(&item.point_id);
            if !claimed.contains(&item.point_id) {
                let held_by: Option<String> = holder.query_row(params![id], |row| row.get(0)).optional().ctx(CONTEXT)?;
                if held_by.as_deref() == Some(job_id) {
                    publish.push(item.clone()); // pending here already: an earlier walk's
                } else {
                    already_queued += 1;
                }
                continue;
            }
            let (size, mtime_ns) = stamp_columns(item.stamp)?;
            if insert.execute(params![job_id, id, item.path, size, mtime_ns, now]).ctx(CONTEXT)? == 1 {
                new += 1;
                publish.push(item.clone());
            } else {
                // This job finished the item in an earlier walk: it is not done twice.
                unclaim.execute(params![id, job_id]).ctx(CONTEXT)?;
            }
        }
    }
    tx.execute(
        "UPDATE jobs SET total = total + ?2 WHERE job_id = ?1",
        params![job_id, i64::try_from(new).unwrap_or(i64::MAX)],
    )
    .ctx(CONTEXT)?;
    write_counts(&tx, now, job_id, counts, false)?;
    tx.commit().ctx(CONTEXT)?;
    Ok(ScanChunk::Added { publish, new, already_queued })
}

pub(super) fn finish(
    conn: &mut rusqlite::Connection,
    now: i64,
    job_id: &str,
    owner: &str,
    counts: &ScanCounts,
) -> Result<Option<JobRecord>, JobStoreError> {
    const CONTEXT: &str = "finish_scan";
    let tx = begin(conn, CONTEXT)?;
    let held: bool = tx
        .query_row("SELECT 1 FROM job_scans WHERE job_id = ?1 AND owner = ?2 AND done = 0", params![job_id, owner], |_| {
            Ok(())
        })
        .optional()
        .ctx(CONTEXT)?
        .is_some();
    if !held {
        return Ok(None);
    }
    write_counts(&tx, now, job_id, counts, true)?;
    let job = tx
        .query_row(
            &format!("UPDATE jobs SET scanning = 0 WHERE job_id = ?1 RETURNING {JOB_COLUMNS}"),
            params![job_id],
            |row| Ok(job_from_row(row)),
        )
        .ctx(CONTEXT)??;
    if !job.status.is_active() {
        tx.commit().ctx(CONTEXT)?;
        return Ok(None);
    }
    let Some(mut update) = progress::completion(&job) else {
        tx.commit().ctx(CONTEXT)?;
        return Ok(Some(job));
    };
    add_failure_messages(&tx, std::slice::from_mut(&mut update))?;
    let job = tx
        .query_row(
            &format!(
                "UPDATE jobs SET status = ?2, started_at = coalesce(started_at, ?3), completed_at = ?3,
                     error_message = coalesce(?4, error_message)
                 WHERE job_id = ?1 RETURNING {JOB_COLUMNS}"
            ),
            params![job_id, update.advance.status.as_str(), now, update.error_message],
            |row| Ok(job_from_row(row)),
        )
        .ctx(CONTEXT)??;
    tx.commit().ctx(CONTEXT)?;
    Ok(Some(job))
}

pub(super) fn release(conn: &mut rusqlite::Connection, job_id: &str, owner: &str) -> Result<(), JobStoreError> {
    conn.execute(
        "UPDATE job_scans SET heartbeat_at = NULL WHERE job_id = ?1 AND owner = ?2 AND done = 0",
        params![job_id, owner],
    )
    .ctx("release_scan")?;
    Ok(())
}

pub(super) fn claim_stale(
    conn: &mut rusqlite::Connection,
    now: i64,
    lease: Duration,
    owner: &str,
    limit: usize,
) -> Result<Vec<ScanLease>, JobStoreError> {
    const CONTEXT: &str = "claim_stale_scans";
    let stale_before = now.saturating_sub(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
    let tx = begin(conn, CONTEXT)?;
    let leases = {
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT {SCAN_COLUMNS}, j.priority FROM job_scans s JOIN jobs j ON j.job_id = s.job_id
                 WHERE s.done = 0 AND j.status IN ('queued', 'running')
                   AND (s.heartbeat_at IS NULL OR s.heartbeat_at < ?1)
                 ORDER BY j.created_at, s.job_id LIMIT ?2"
            ))
            .ctx(CONTEXT)?;
        let rows = stmt
            .query_map(params![stale_before, i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                Ok(scan_from_row(row).and_then(|scan| {
                    let priority: String = row.get(13).ctx(CONTEXT)?;
                    let priority = Priority::parse(&priority)
                        .ok_or_else(|| JobStoreError::Other(format!("unknown job priority {priority:?}")))?;
                    Ok(ScanLease { job_id: scan.job_id, priority, spec: scan.spec })
                }))
            })
            .ctx(CONTEXT)?;
        rows.collect::<Result<Vec<_>, _>>().ctx(CONTEXT)?.into_iter().collect::<Result<Vec<_>, _>>()?
    };
    {
        let mut take =
            tx.prepare_cached("UPDATE job_scans SET owner = ?2, heartbeat_at = ?3 WHERE job_id = ?1").ctx(CONTEXT)?;
        for lease in &leases {
            take.execute(params![lease.job_id, owner, now]).ctx(CONTEXT)?;
        }
    }
    tx.commit().ctx(CONTEXT)?;
    Ok(leases)
}

pub(super) fn get(conn: &rusqlite::Connection, job_id: &str) -> Result<Option<ScanRecord>, JobStoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {SCAN_COLUMNS} FROM job_scans s JOIN jobs j ON j.job_id = s.job_id WHERE s.job_id = ?1")).ctx("job_scan")?;
    stmt.query_row(params![job_id], |row| Ok(scan_from_row(row))).optional().ctx("job_scan")?.transpose()
}

fn scan_from_row(row: &Row<'_>) -> Result<ScanRecord, JobStoreError> {
    const CONTEXT: &str = "reading a scan";
    let n = |i: usize| -> Result<u64, JobStoreError> { super::count(row.get(i).ctx(CONTEXT)?, "scan counter") };
    Ok(ScanRecord {
        job_id: row.get(0).ctx(CONTEXT)?,
        spec: ScanSpec {
            dir: row.get(1).ctx(CONTEXT)?,
            recursive: row.get(2).ctx(CONTEXT)?,
            force_reindex: row.get(3).ctx(CONTEXT)?,
            prune_missing: row.get(4).ctx(CONTEXT)?,
            collection: row.get(12).ctx(CONTEXT)?,
        },
        counts: ScanCounts {
            files_seen: n(5)?,
            images_found: n(6)?,
            not_images: n(7)?,
            unreadable: n(8)?,
            removed: n(9)?,
        },
        done: row.get(10).ctx(CONTEXT)?,
        heartbeat_at: opt_time(row.get(11).ctx(CONTEXT)?)?,
    })
}
