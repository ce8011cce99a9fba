//! Directory scans (see `jobs/scan.rs`) for PostgreSQL. Writers lock the job row first,
//! then its scan, then claims: the order `apply_events` and `cancel_job` use. Opening a
//! scan holds a transaction-scoped advisory lock on the directory, so two triggers of
//! one directory cannot both find no running scan and both create one.

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::{Row, Transaction};
use uuid::Uuid;

use super::{add_failure_messages, claim_points, item_columns, job_from_row, to_i32, PgResultExt, JOB_COLUMNS};
use crate::jobs::batch::unique_by_point;
use crate::jobs::progress;
use crate::jobs::{
    JobRecord, JobStoreError, NewItem, ScanChunk, ScanCounts, ScanLease, ScanOpened, ScanRecord, ScanSpec,
};
use crate::messages::Priority;

const SCAN_COLUMNS: &str = "s.job_id, s.dir, s.recursive, s.force_reindex, s.prune_missing, s.files_seen, \
     s.images_found, s.not_images, s.unreadable, s.removed, s.done, s.heartbeat_at, j.collection";

/// Namespace of the advisory locks taken on directories (the migration lock uses another key).
const DIR_LOCK_SEED: i64 = 0x0069_6d67_7363_616e;

pub(super) async fn open(
    client: &mut deadpool_postgres::Client,
    job_id: &str,
    priority: Priority,
    spec: &ScanSpec,
    owner: &str,
) -> Result<ScanOpened, JobStoreError> {
    const CONTEXT: &str = "open_scan";
    let tx = client.transaction().await.ctx(CONTEXT)?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))", &[&spec.dir, &DIR_LOCK_SEED])
        .await
        .ctx(CONTEXT)?;
    let running = tx
        .query_opt(
            "SELECT s.job_id FROM job_scans s JOIN jobs j ON j.job_id = s.job_id
             WHERE s.dir = $1 AND j.collection IS NOT DISTINCT FROM $2 AND j.status IN ('queued', 'running')
             ORDER BY j.created_at LIMIT 1",
            &[&spec.dir, &spec.collection],
        )
        .await
        .ctx(CONTEXT)?;
    if let Some(row) = running {
        let job_id: String = row.try_get(0).ctx(CONTEXT)?;
        tx.commit().await.ctx(CONTEXT)?;
        return Ok(ScanOpened::Running { job_id });
    }
    tx.execute(
        "INSERT INTO jobs (job_id, status, priority, total, published_at, scanning, collection)
         VALUES ($1, 'queued', $2, 0, now(), true, $3)",
        &[&job_id, &priority.as_str(), &spec.collection],
    )
    .await
    .ctx(CONTEXT)?;
    tx.execute(
        "INSERT INTO job_scans (job_id, dir, recursive, force_reindex, prune_missing, owner, heartbeat_at)
         VALUES ($1, $2, $3, $4, $5, $6, now())",
        &[&job_id, &spec.dir, &spec.recursive, &spec.force_reindex, &spec.prune_missing, &owner],
    )
    .await
    .ctx(CONTEXT)?;
    tx.commit().await.ctx(CONTEXT)?;
    Ok(ScanOpened::Created)
}

/// Locks the job, then its scan; whether `owner` holds the walk of an active job.
async fn lock_lease(tx: &Transaction<'_>, job_id: &str, owner: &str, context: &str) -> Result<bool, JobStoreError> {
    let row = tx
        .query_opt(
            "SELECT j.status IN ('queued', 'running') AND s.owner = $2 AND NOT s.done
             FROM jobs j JOIN job_scans s ON s.job_id = j.job_id WHERE j.job_id = $1 FOR UPDATE OF j, s",
            &[&job_id, &owner],
        )
        .await
        .ctx(context)?;
    match row {
        Some(row) => Ok(row.try_get::<_, Option<bool>>(0).ctx(context)?.unwrap_or(false)),
        None => Ok(false),
    }
}

async fn write_counts(tx: &Transaction<'_>, job_id: &str, counts: &ScanCounts, done: bool) -> Result<(), JobStoreError> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    tx.execute(
        "UPDATE job_scans SET files_seen = $2, images_found = $3, not_images = $4, unreadable = $5, removed = $6,
             done = $7, heartbeat_at = now()
         WHERE job_id = $1",
        &[
            &job_id,
            &n(counts.files_seen),
            &n(counts.images_found),
            &n(counts.not_images),
            &n(counts.unreadable),
            &n(counts.removed),
            &done,
        ],
    )
    .await
    .ctx("scan: record counts")?;
    Ok(())
}

pub(super) async fn add_items(
    client: &mut deadpool_postgres::Client,
    job_id: &str,
    owner: &str,
    candidates: &[NewItem],
    counts: &ScanCounts,
) -> Result<ScanChunk, JobStoreError> {
    const CONTEXT: &str = "add_scan_items";
    let tx = client.transaction().await.ctx(CONTEXT)?;
    if !lock_lease(&tx, job_id, owner, CONTEXT).await? {
        return Ok(ScanChunk::Stopped);
    }
    let unique = unique_by_point(candidates);
    let claimed = claim_points(&tx, job_id, &unique).await?;
    let unclaimed: Vec<Uuid> = unique.iter().map(|i| i.point_id).filter(|id| !claimed.contains(id)).collect();
    let mine: HashSet<Uuid> = if unclaimed.is_empty() {
        HashSet::new()
    } else {
        let rows = tx
            .query("SELECT point_id FROM pending_points WHERE job_id = $1 AND point_id = ANY($2)", &[&job_id, &unclaimed])
            .await
            .ctx(CONTEXT)?;
        rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>().ctx(CONTEXT)?
    };
    let fresh: Vec<&NewItem> = unique.iter().copied().filter(|i| claimed.contains(&i.point_id)).collect();
    let inserted = insert_new_items(&tx, job_id, &fresh).await?;
    // Claimed but already in the job: finished by an earlier walk, not done twice.
    let done_before: Vec<Uuid> = fresh.iter().map(|i| i.point_id).filter(|id| !inserted.contains(id)).collect();
    if !done_before.is_empty() {
        tx.execute("DELETE FROM pending_points WHERE job_id = $1 AND point_id = ANY($2)", &[&job_id, &done_before])
            .await
            .ctx(CONTEXT)?;
    }
    let new = inserted.len();
    tx.execute("UPDATE jobs SET total = total + $2 WHERE job_id = $1", &[&job_id, &to_i32(new, "job size")?])
        .await
        .ctx(CONTEXT)?;
    write_counts(&tx, job_id, counts, false).await?;
    tx.commit().await.ctx(CONTEXT)?;
    let already_queued = unclaimed.len() - mine.len();
    let publish = unique
        .into_iter()
        .filter(|i| inserted.contains(&i.point_id) || mine.contains(&i.point_id))
        .cloned()
        .collect();
    Ok(ScanChunk::Added { publish, new, already_queued })
}

/// Inserts the items the job does not hold yet; returns those inserted.
async fn insert_new_items(tx: &Transaction<'_>, job_id: &str, items: &[&NewItem]) -> Result<HashSet<Uuid>, JobStoreError> {
    const CONTEXT: &str = "add_scan_items: insert items";
    if items.is_empty() {
        return Ok(HashSet::new());
    }
    let (ids, paths, sizes, mtimes) = item_columns(items, CONTEXT)?;
    let rows = tx
        .query(
            "INSERT INTO job_items (job_id, point_id, path, size, mtime_ns)
             SELECT $1::text, u.point_id, u.path, u.size, u.mtime_ns
             FROM unnest($2::uuid[], $3::text[], $4::int8[], $5::int8[]) AS u(point_id, path, size, mtime_ns)
             ON CONFLICT (job_id, point_id) DO NOTHING
             RETURNING point_id",
            &[&job_id, &ids, &paths, &sizes, &mtimes],
        )
        .await
        .ctx(CONTEXT)?;
    rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>().ctx(CONTEXT)
}

pub(super) async fn finish(
    client: &mut deadpool_postgres::Client,
    job_id: &str,
    owner: &str,
    counts: &ScanCounts,
) -> Result<Option<JobRecord>, JobStoreError> {
    const CONTEXT: &str = "finish_scan";
    let tx = client.transaction().await.ctx(CONTEXT)?;
    let held = tx
        .query_opt(
            "SELECT 1 FROM jobs j JOIN job_scans s ON s.job_id = j.job_id
             WHERE j.job_id = $1 AND s.owner = $2 AND NOT s.done FOR UPDATE OF j, s",
            &[&job_id, &owner],
        )
        .await
        .ctx(CONTEXT)?
        .is_some();
    if !held {
        return Ok(None);
    }
    write_counts(&tx, job_id, counts, true).await?;
    let row = tx
        .query_one(&format!("UPDATE jobs SET scanning = false WHERE job_id = $1 RETURNING {JOB_COLUMNS}"), &[&job_id])
        .await
        .ctx(CONTEXT)?;
    let job = job_from_row(&row)?;
    if !job.status.is_active() {
        tx.commit().await.ctx(CONTEXT)?;
        return Ok(None);
    }
    let Some(mut update) = progress::completion(&job) else {
        tx.commit().await.ctx(CONTEXT)?;
        return Ok(Some(job));
    };
    add_failure_messages(&tx, std::slice::from_mut(&mut update)).await?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE jobs SET status = $2, started_at = coalesce(started_at, now()), completed_at = now(),
                     error_message = coalesce($3, error_message)
                 WHERE job_id = $1 RETURNING {JOB_COLUMNS}"
            ),
            &[&job_id, &update.advance.status.as_str(), &update.error_message],
        )
        .await
        .ctx(CONTEXT)?;
    tx.commit().await.ctx(CONTEXT)?;
    job_from_row(&row).map(Some)
}

pub(super) async fn release(client: &deadpool_postgres::Client, job_id: &str, owner: &str) -> Result<(), JobStoreError> {
    client
        .execute(
            "UPDATE job_scans SET heartbeat_at = NULL WHERE job_id = $1 AND owner = $2 AND NOT done",
            &[&job_id, &owner],
        )
        .await
        .ctx("release_scan")?;
    Ok(())
}

/// One statement: `SKIP LOCKED` lets concurrent callers pass over each other's picks.
pub(super) async fn claim_stale(
    client: &deadpool_postgres::Client,
    lease: Duration,
    owner: &str,
    limit: usize,
) -> Result<Vec<ScanLease>, JobStoreError> {
    const CONTEXT: &str = "claim_stale_scans";
    let lease_us = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = format!(
        "WITH picked AS (
             SELECT s.job_id FROM job_scans s JOIN jobs j ON j.job_id = s.job_id
             WHERE NOT s.done AND j.status IN ('queued', 'running')
               AND (s.heartbeat_at IS NULL OR s.heartbeat_at < now() - $1::int8 * interval '1 microsecond')
             ORDER BY j.created_at, s.job_id LIMIT $2
             FOR UPDATE OF s SKIP LOCKED
         )
         UPDATE job_scans s SET owner = $3, heartbeat_at = now()
         FROM picked, jobs j WHERE s.job_id = picked.job_id AND j.job_id = s.job_id
         RETURNING {SCAN_COLUMNS}, j.priority, j.created_at"
    );
    let rows = client.query(&sql, &[&lease_us, &limit, &owner]).await.ctx(CONTEXT)?;
    let mut leases = rows
        .iter()
        .map(|row| {
            let scan = scan_from_row(row)?;
            let priority: &str = row.try_get(13).ctx(CONTEXT)?;
            let priority = Priority::parse(priority)
                .ok_or_else(|| JobStoreError::Other(format!("unknown job priority {priority:?}")))?;
            let created: chrono::DateTime<chrono::Utc> = row.try_get(14).ctx(CONTEXT)?;
            Ok((created, ScanLease { job_id: scan.job_id, priority, spec: scan.spec }))
        })
        .collect::<Result<Vec<_>, JobStoreError>>()?;
    // RETURNING keeps no order: oldest job first, as documented.
    leases.sort_by(|a, b| (a.0, &a.1.job_id).cmp(&(b.0, &b.1.job_id)));
    Ok(leases.into_iter().map(|(_, lease)| lease).collect())
}

pub(super) async fn get(client: &deadpool_postgres::Client, job_id: &str) -> Result<Option<ScanRecord>, JobStoreError> {
    let stmt =
        client.prepare_cached(&format!("SELECT {SCAN_COLUMNS} FROM job_scans s JOIN jobs j ON j.job_id = s.job_id WHERE s.job_id = $1")).await.ctx("job_scan")?;
    client.query_opt(&stmt, &[&job_id]).await.ctx("job_scan")?.as_ref().map(scan_from_row).transpose()
}

fn scan_from_row(row: &Row) -> Result<ScanRecord, JobStoreError> {
    const CONTEXT: &str = "reading a scan";
    let n = |i: usize| -> Result<u64, JobStoreError> {
        let v: i64 = row.try_get(i).ctx(CONTEXT)?;
        Ok(v.max(0).unsigned_abs())
    };
    Ok(ScanRecord {
        job_id: row.try_get(0).ctx(CONTEXT)?,
        spec: ScanSpec {
            dir: row.try_get(1).ctx(CONTEXT)?,
            recursive: row.try_get(2).ctx(CONTEXT)?,
            force_reindex: row.try_get(3).ctx(CONTEXT)?,
            prune_missing: row.try_get(4).ctx(CONTEXT)?,
            collection: row.try_get(12).ctx(CONTEXT)?,
        },
        counts: ScanCounts {
            files_seen: n(5)?,
            images_found: n(6)?,
            not_images: n(7)?,
            unreadable: n(8)?,
            removed: n(9)?,
        },
        done: row.try_get(10).ctx(CONTEXT)?,
        heartbeat_at: row.try_get(11).ctx(CONTEXT)?,
    })
}
