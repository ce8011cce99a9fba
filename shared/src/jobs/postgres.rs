//! PostgreSQL job store (`deadpool-postgres` pool, migrations in `shared/migrations/`).
//!
//! Tables: `jobs` (status and counters), `job_items` (one row per queued image,
//! `pending` until its completion event), `pending_points` (the claim: a point is
//! queued in at most one active job; the primary key makes check-and-claim atomic)
//! and `point_outcomes` (latest finished attempt per point, for the failed-image count).
//!
//! Claims are released when an item finishes and when [`JobStore::fail_job`] fails a
//! job. A failed job's unfinished items stay `pending`: nothing will count them, and a
//! late event for one is still recorded on the item (the image's latest attempt) but
//! leaves the finished job's counters and status alone.
//!
//! `job_items.queued_at` (migration 0002) is when an item was last put on the task
//! queue; `requeue_stale_items` (`requeue.rs`) finds stale pending items by it.
//! Single items' outcomes (pages, counts by failure kind, retry candidates) are read
//! in `items.rs`.
//!
//! Lock order, to keep concurrent writers deadlock-free: job rows (by `job_id`), then
//! their items and claims; claims and outcomes are inserted in `point_id` order.

mod attempts;
mod batches;
mod catalog;
mod curation;
mod items;
mod manage;
mod requeue;
mod scan;
mod schema;
mod tls;
mod webhooks;
#[cfg(test)]
pub(super) mod test_db;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, Transaction};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use self::tls::Tls;
use super::curation::{AnalysisOutcome, AnalysisSpec, ArchiveRecord, Curation, DuplicateAnalysis};
use super::batch::{failure, outcome_state, stored_reason, unique_by_point, unique_events};
use super::progress::{self, FailureGroup, Finished, JobUpdate};
use super::batches::{BatchImage, BatchImageRecord, BatchJobs};
use super::{
    AddCollection, BeginSwitch, CollectionCatalog, ForgetPrevious, RemoveCollection, SwitchCompleted,
    Applied, AttemptCount, CancelOutcome, ItemKey, ItemPage, ItemState, JobPage, JobQuery, JobRecord, JobStatus, JobStore,
    JobStoreError, JobWorker, NewItem, RequeueItem, RetryCandidates, ScanChunk, ScanCounts, ScanLease, ScanOpened,
    ScanRecord, ScanSpec, WebhookAttempt, WebhookDelivery,
};
use crate::collections::{CollectionRecord, NextGeneration};
use crate::messages::{CompletionEvent, Priority};

/// How long a caller waits for a free pooled connection before the store counts as unavailable.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// Bound on [`JobStore::healthy`], so a health probe never hangs.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

const JOB_COLUMNS: &str =
    "job_id, status, priority, total, processed, failed, created_at, started_at, completed_at, error_message, scanning, collection, from_cache";

#[derive(Clone)]
pub struct PostgresJobStore {
    pool: Pool,
}

impl PostgresJobStore {
    /// Connects to `url`, creating its database when missing, with at most `pool_size`
    /// connections, and brings the schema up to date.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, JobStoreError> {
        Self::connect_with_ca(url, pool_size, None).await
    }

    /// As [`connect`](Self::connect); `ca_file` (PEM) makes TLS required and adds to the
    /// roots the server certificate is verified against (see `tls.rs`).
    pub async fn connect_with_ca(url: &str, pool_size: usize, ca_file: Option<&Path>) -> Result<Self, JobStoreError> {
        let mut config = schema::parse_url(url)?;
        let tls = tls::connector(&mut config, ca_file)?;
        schema::ensure_database(&config, &tls).await?;
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match tls {
            Tls::Plain => Manager::from_config(config, NoTls, manager_config),
            Tls::Verified(make) => Manager::from_config(config, make, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| JobStoreError::Other(format!("building the job store pool: {e}")))?;
        let store = Self { pool };
        let mut client = store.client().await?;
        schema::migrate(&mut client).await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, JobStoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn query_jobs(
        &self,
        context: &'static str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<JobRecord>, JobStoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.ctx(context)?;
        client.query(&stmt, params).await.ctx(context)?.iter().map(job_from_row).collect()
    }
}

#[async_trait]
impl JobStore for PostgresJobStore {
    async fn create_job_in(
        &self,
        job_id: &str,
        priority: Priority,
        collection: Option<&str>,
        candidates: &[NewItem],
    ) -> Result<Vec<NewItem>, JobStoreError> {
        let unique = unique_by_point(candidates);
        if unique.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.ctx("create_job: begin")?;
        // The job row goes first because claims reference it; its total is set once known.
        tx.execute(
            "INSERT INTO jobs (job_id, status, priority, total, collection) VALUES ($1, 'queued', $2, 0, $3)",
            &[&job_id, &priority.as_str(), &collection],
        )
        .await
        .ctx("create_job: insert job")?;
        let claimed = claim_points(&tx, job_id, &unique).await?;
        if claimed.is_empty() {
            tx.rollback().await.ctx("create_job: rollback")?;
            return Ok(Vec::new());
        }
        let items: Vec<&NewItem> = unique.into_iter().filter(|i| claimed.contains(&i.point_id)).collect();
        insert_items(&tx, job_id, &items).await?;
        let total = to_i32(items.len(), "job size")?;
        tx.execute("UPDATE jobs SET total = $2 WHERE job_id = $1", &[&job_id, &total])
            .await
            .ctx("create_job: set total")?;
        tx.commit().await.ctx("create_job: commit")?;
        Ok(items.into_iter().cloned().collect())
    }

    async fn fail_job(&self, job_id: &str, message: &str) -> Result<(), JobStoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.ctx("fail_job: begin")?;
        let updated = tx
            .execute(
                "UPDATE jobs SET status = 'failed', completed_at = now(), error_message = $2
                 WHERE job_id = $1 AND status IN ('queued', 'running')",
                &[&job_id, &message],
            )
            .await
            .ctx("fail_job: update job")?;
        if updated == 0 {
            tracing::warn!(job_id, "fail_job: job unknown or already finished; left as it is");
        }
        tx.execute("DELETE FROM pending_points WHERE job_id = $1", &[&job_id]).await.ctx("fail_job: release claims")?;
        tx.commit().await.ctx("fail_job: commit")
    }

    async fn apply_events(&self, events: &[CompletionEvent]) -> Result<Applied, JobStoreError> {
        let events = unique_events(events);
        if events.is_empty() {
            return Ok(Applied::default());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.ctx("apply_events: begin")?;
        let jobs = lock_jobs(&tx, &events).await?;
        let finished = finish_items(&tx, &events).await?;
        release_claims(&tx, &finished).await?;
        record_outcomes(&tx, &finished).await?;
        record_workers(&tx, &progress::worker_tallies(&finished)).await?;
        let mut updates = progress::plan_updates(&jobs, &finished);
        add_failure_messages(&tx, &mut updates).await?;
        let mut records = write_jobs(&tx, &updates).await?;
        tx.commit().await.ctx("apply_events: commit")?;
        records.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        Ok(Applied { jobs: records, finished: progress::finished_keys(&finished) })
    }

    async fn job(&self, job_id: &str) -> Result<Option<JobRecord>, JobStoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = $1");
        Ok(self.query_jobs("job", &sql, &[&job_id]).await?.into_iter().next())
    }

    async fn active_jobs(&self) -> Result<Vec<JobRecord>, JobStoreError> {
        let sql =
            format!("SELECT {JOB_COLUMNS} FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at, job_id");
        self.query_jobs("active_jobs", &sql, &[]).await
    }

    async fn recent_jobs(&self, limit: usize) -> Result<Vec<JobRecord>, JobStoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE status IN ('completed', 'failed', 'cancelled')
             ORDER BY completed_at DESC, job_id DESC LIMIT $1"
        );
        self.query_jobs("recent_jobs", &sql, &[&limit]).await
    }

    async fn failed_image_count(&self) -> Result<u64, JobStoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT count(*) FROM point_outcomes WHERE state = 'failed'", &[])
            .await
            .ctx("failed_image_count")?;
        let count: i64 = row.try_get(0).ctx("failed_image_count")?;
        Ok(count.max(0).unsigned_abs())
    }

    async fn last_update(&self) -> Result<Option<DateTime<Utc>>, JobStoreError> {
        // point_outcomes keeps each point's latest finish, so its maximum is the overall one.
        let client = self.client().await?;
        let row = client.query_one("SELECT max(finished_at) FROM point_outcomes", &[]).await.ctx("last_update")?;
        row.try_get(0).ctx("last_update")
    }

    async fn finished_since(&self, since: DateTime<Utc>) -> Result<u64, JobStoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT count(*) FROM point_outcomes WHERE finished_at >= $1")
            .await
            .ctx("finished_since")?;
        let n: i64 = client.query_one(&stmt, &[&since]).await.ctx("finished_since")?.try_get(0).ctx("finished_since")?;
        Ok(n.max(0).unsigned_abs())
    }

    async fn requeue_stale_items(
        &self,
        queued_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<RequeueItem>, JobStoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        requeue::take_stale(&client, queued_before, limit).await
    }

    async fn mark_published(&self, job_ids: &[String]) -> Result<(), JobStoreError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        requeue::mark_published(&client, job_ids).await
    }

    async fn unpublished_items(
        &self,
        created_before: DateTime<Utc>,
        after: Option<&ItemKey>,
        limit: usize,
    ) -> Result<Vec<RequeueItem>, JobStoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        requeue::unpublished(&client, created_before, after, limit).await
    }

    async fn job_items(
        &self,
        job_id: &str,
        state: Option<ItemState>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<ItemPage, JobStoreError> {
        if limit == 0 {
            return Ok(ItemPage { items: Vec::new(), next_after: None });
        }
        let client = self.client().await?;
        items::page(&client, job_id, state, after, limit).await
    }

    async fn failures_by_reason(&self, job_id: &str) -> Result<BTreeMap<String, u64>, JobStoreError> {
        let client = self.client().await?;
        items::failures_by_reason(&client, job_id).await
    }

    async fn retry_candidates(&self, job_id: &str) -> Result<RetryCandidates, JobStoreError> {
        let client = self.client().await?;
        items::retry_candidates(&client, job_id).await
    }

    async fn count_attempts(&self, items: &[ItemKey], first_only: bool) -> Result<Vec<AttemptCount>, JobStoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        attempts::count(&client, items, first_only).await
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<JobPage, JobStoreError> {
        let client = self.client().await?;
        manage::list(&client, query).await
    }

    async fn job_workers(&self, job_id: &str) -> Result<Vec<JobWorker>, JobStoreError> {
        let client = self.client().await?;
        manage::workers(&client, job_id).await
    }

    async fn cancel_job(&self, job_id: &str) -> Result<CancelOutcome, JobStoreError> {
        let mut client = self.client().await?;
        manage::cancel(&mut client, job_id).await
    }

    async fn purge_finished(&self, finished_before: DateTime<Utc>, limit: usize) -> Result<u64, JobStoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let client = self.client().await?;
        manage::purge(&client, finished_before, limit).await
    }

    async fn open_scan(
        &self,
        job_id: &str,
        priority: Priority,
        spec: &ScanSpec,
        owner: &str,
    ) -> Result<ScanOpened, JobStoreError> {
        scan::open(&mut self.client().await?, job_id, priority, spec, owner).await
    }

    async fn add_scan_items(
        &self,
        job_id: &str,
        owner: &str,
        candidates: &[NewItem],
        counts: &ScanCounts,
    ) -> Result<ScanChunk, JobStoreError> {
        scan::add_items(&mut self.client().await?, job_id, owner, candidates, counts).await
    }

    async fn finish_scan(&self, job_id: &str, owner: &str, counts: &ScanCounts) -> Result<Option<JobRecord>, JobStoreError> {
        scan::finish(&mut self.client().await?, job_id, owner, counts).await
    }

    async fn release_scan(&self, job_id: &str, owner: &str) -> Result<(), JobStoreError> {
        scan::release(&self.client().await?, job_id, owner).await
    }

    async fn claim_stale_scans(
        &self,
        lease: std::time::Duration,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<ScanLease>, JobStoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        scan::claim_stale(&self.client().await?, lease, owner, limit).await
    }

    async fn job_scan(&self, job_id: &str) -> Result<Option<ScanRecord>, JobStoreError> {
        scan::get(&self.client().await?, job_id).await
    }

    async fn add_webhooks(&self, job_id: &str, urls: &[String], delivery_ids: &[String]) -> Result<(), JobStoreError> {
        webhooks::add(&self.client().await?, job_id, urls, delivery_ids).await
    }

    async fn claim_webhooks(&self, lease: Duration, limit: usize) -> Result<Vec<WebhookDelivery>, JobStoreError> {
        webhooks::claim(&self.client().await?, lease, limit).await
    }

    async fn record_webhook_attempt(&self, delivery_id: &str, attempt: &WebhookAttempt) -> Result<(), JobStoreError> {
        webhooks::record(&self.client().await?, delivery_id, attempt).await
    }

    async fn job_webhooks(&self, job_id: &str) -> Result<Vec<WebhookDelivery>, JobStoreError> {
        webhooks::of_job(&self.client().await?, job_id).await
    }

    async fn healthy(&self) -> bool {
        let probe = async {
            let client = self.client().await.ok()?;
            client.query_one("SELECT 1", &[]).await.ok()
        };
        matches!(tokio::time::timeout(HEALTH_TIMEOUT, probe).await, Ok(Some(_)))
    }
}

#[async_trait]
impl BatchJobs for PostgresJobStore {
    async fn create_batch_job(
        &self,
        job_id: &str,
        priority: Priority,
        collection: Option<&str>,
        items: &[NewItem],
        images: &[BatchImage],
    ) -> Result<(), JobStoreError> {
        batches::create(&mut self.client().await?, job_id, priority, collection, items, images).await
    }

    async fn batch_images(&self, job_id: &str) -> Result<Option<Vec<BatchImageRecord>>, JobStoreError> {
        batches::images(&self.client().await?, job_id).await
    }

    async fn batch_jobs(&self, limit: usize) -> Result<Vec<String>, JobStoreError> {
        batches::jobs(&self.client().await?, limit).await
    }

    async fn purge_batches(&self, finished_before: DateTime<Utc>, limit: usize) -> Result<u64, JobStoreError> {
        batches::purge(&self.client().await?, finished_before, limit).await
    }
}

#[async_trait]
impl Curation for PostgresJobStore {
    async fn create_analysis(&self, task_id: &str, spec: &AnalysisSpec, owner: &str) -> Result<(), JobStoreError> {
        curation::create(&self.client().await?, task_id, spec, owner).await
    }

    async fn claim_stale_analysis(&self, owner: &str, lease: Duration) -> Result<Option<DuplicateAnalysis>, JobStoreError> {
        curation::claim_stale(&self.client().await?, owner, lease).await
    }

    async fn analysis_progress(&self, task_id: &str, owner: &str, scanned: u64, total: u64) -> Result<bool, JobStoreError> {
        curation::progress(&self.client().await?, task_id, owner, scanned, total).await
    }

    async fn finish_analysis(&self, task_id: &str, owner: &str, outcome: &AnalysisOutcome) -> Result<bool, JobStoreError> {
        curation::finish(&self.client().await?, task_id, owner, outcome).await
    }

    async fn analysis(&self, task_id: &str) -> Result<Option<DuplicateAnalysis>, JobStoreError> {
        curation::get(&self.client().await?, task_id).await
    }

    async fn save_archive(&self, record: &ArchiveRecord) -> Result<(), JobStoreError> {
        curation::save_archive(&self.client().await?, record).await
    }

    async fn archive(&self, archive_id: &str) -> Result<Option<ArchiveRecord>, JobStoreError> {
        curation::archive(&self.client().await?, archive_id).await
    }

    async fn mark_restored(&self, archive_id: &str) -> Result<bool, JobStoreError> {
        curation::mark_restored(&self.client().await?, archive_id).await
    }
}

#[async_trait]
impl CollectionCatalog for PostgresJobStore {
    async fn ensure_initial_collection(&self, record: &CollectionRecord) -> Result<CollectionRecord, JobStoreError> {
        catalog::ensure_initial(&mut self.client().await?, record).await
    }

    async fn add_collection(&self, record: &CollectionRecord, max: usize) -> Result<AddCollection, JobStoreError> {
        catalog::add(&mut self.client().await?, record, max).await
    }

    async fn collection(&self, name: &str) -> Result<Option<CollectionRecord>, JobStoreError> {
        catalog::get(&self.client().await?, name).await
    }

    async fn collections(&self) -> Result<Vec<CollectionRecord>, JobStoreError> {
        catalog::all(&self.client().await?).await
    }

    async fn remove_collection(&self, name: &str) -> Result<RemoveCollection, JobStoreError> {
        catalog::remove(&mut self.client().await?, name).await
    }

    async fn select_collection(&self, name: &str) -> Result<bool, JobStoreError> {
        catalog::select(&mut self.client().await?, name).await
    }

    async fn selected_collection(&self) -> Result<Option<String>, JobStoreError> {
        catalog::selected(&self.client().await?).await
    }

    async fn begin_switch(&self, name: &str, next: &NextGeneration) -> Result<BeginSwitch, JobStoreError> {
        catalog::begin_switch(&mut self.client().await?, name, next).await
    }

    async fn complete_switch(&self, name: &str, job_id: &str) -> Result<Option<SwitchCompleted>, JobStoreError> {
        catalog::complete_switch(&mut self.client().await?, name, job_id).await
    }

    async fn abandon_switch(&self, name: &str, job_id: &str) -> Result<Option<String>, JobStoreError> {
        catalog::abandon_switch(&mut self.client().await?, name, job_id).await
    }

    async fn forget_previous(&self, name: &str) -> Result<ForgetPrevious, JobStoreError> {
        catalog::forget_previous(&mut self.client().await?, name).await
    }
}

/// Claims the points no active job holds yet; returns those claimed.
pub(super) async fn claim_points(tx: &Transaction<'_>, job_id: &str, items: &[&NewItem]) -> Result<HashSet<Uuid>, JobStoreError> {
    // Sorted, so two requests with overlapping points wait on each other instead of deadlocking.
    let mut ids: Vec<Uuid> = items.iter().map(|i| i.point_id).collect();
    ids.sort_unstable();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO pending_points (point_id, job_id)
             SELECT p, $1::text FROM unnest($2::uuid[]) AS p ORDER BY p
             ON CONFLICT (point_id) DO NOTHING
             RETURNING point_id",
        )
        .await
        .ctx("create_job: claim")?;
    let rows = tx.query(&stmt, &[&job_id, &ids]).await.ctx("create_job: claim")?;
    rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>().ctx("create_job: claim")
}

/// Items as the column arrays `unnest` takes: point ids, paths, sizes, mtimes.
type ItemColumns<'a> = (Vec<Uuid>, Vec<&'a str>, Vec<Option<i64>>, Vec<Option<i64>>);

fn item_columns<'a>(items: &[&'a NewItem], context: &str) -> Result<ItemColumns<'a>, JobStoreError> {
    let ids = items.iter().map(|i| i.point_id).collect();
    let paths = items.iter().map(|i| i.path.as_str()).collect();
    let sizes = items
        .iter()
        .map(|i| i.stamp.map(|s| i64::try_from(s.size)).transpose())
        .collect::<Result<_, _>>()
        .map_err(|_| JobStoreError::Other(format!("{context}: file size out of range")))?;
    let mtimes = items.iter().map(|i| i.stamp.map(|s| s.mtime_ns)).collect();
    Ok((ids, paths, sizes, mtimes))
}

pub(super) async fn insert_items(tx: &Transaction<'_>, job_id: &str, items: &[&NewItem]) -> Result<(), JobStoreError> {
    let (ids, paths, sizes, mtimes) = item_columns(items, "create_job")?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO job_items (job_id, point_id, path, size, mtime_ns)
             SELECT $1::text, u.point_id, u.path, u.size, u.mtime_ns
             FROM unnest($2::uuid[], $3::text[], $4::int8[], $5::int8[]) AS u(point_id, path, size, mtime_ns)",
        )
        .await
        .ctx("create_job: insert items")?;
    tx.execute(&stmt, &[&job_id, &ids, &paths, &sizes, &mtimes]).await.ctx("create_job: insert items")?;
    Ok(())
}

/// Locks the events' jobs in `job_id` order and returns them by id (unknown jobs are absent).
async fn lock_jobs(
    tx: &Transaction<'_>,
    events: &[&CompletionEvent],
) -> Result<HashMap<String, JobRecord>, JobStoreError> {
    let mut ids: Vec<&str> = events.iter().map(|e| e.job_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ANY($1) ORDER BY job_id FOR UPDATE");
    let stmt = tx.prepare_cached(&sql).await.ctx("apply_events: lock jobs")?;
    let rows = tx.query(&stmt, &[&ids]).await.ctx("apply_events: lock jobs")?;
    rows.iter().map(|r| job_from_row(r).map(|j| (j.job_id.clone(), j))).collect()
}

/// Marks still-pending items finished; returns those that changed and logs the rest.
async fn finish_items(tx: &Transaction<'_>, events: &[&CompletionEvent]) -> Result<Vec<Finished>, JobStoreError> {
    let job_ids: Vec<&str> = events.iter().map(|e| e.job_id.as_str()).collect();
    let point_ids: Vec<Uuid> = events.iter().map(|e| e.point_id).collect();
    let states: Vec<&str> = events.iter().map(|e| outcome_state(&e.outcome)).collect();
    let kinds: Vec<Option<&str>> = events.iter().map(|e| failure(&e.outcome).map(|(k, _)| k.as_str())).collect();
    let reasons: Vec<Option<String>> = events.iter().map(|e| stored_reason(&e.outcome)).collect();
    let workers: Vec<&str> = events.iter().map(|e| e.worker.as_str()).collect();
    let cached: Vec<bool> = events.iter().map(|e| e.from_cache).collect();
    let keys: Vec<Option<&str>> = events.iter().map(|e| e.object_key.as_deref()).collect();
    // The final SELECT sees the items as they were before the UPDATE, which tells a
    // duplicate event (item known, not updated) from one for an unknown item.
    let stmt = tx
        .prepare_cached(
            "WITH e AS (
                 SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[], $8::text[])
                     AS e(job_id, point_id, state, failure_kind, reason, worker, from_cache, object_key)
             ), done AS (
                 UPDATE job_items i
                 SET state = e.state, failure_kind = e.failure_kind, reason = e.reason, finished_at = now(),
                     from_cache = e.from_cache AND e.state = 'indexed', object_key = e.object_key
                 FROM e
                 WHERE i.job_id = e.job_id AND i.point_id = e.point_id AND i.state = 'pending'
                 RETURNING i.job_id, i.point_id
             )
             SELECT e.job_id, e.point_id, e.state, done.point_id IS NOT NULL, known.point_id IS NOT NULL, e.worker, e.from_cache
             FROM e
             LEFT JOIN done ON done.job_id = e.job_id AND done.point_id = e.point_id
             LEFT JOIN job_items known ON known.job_id = e.job_id AND known.point_id = e.point_id",
        )
        .await
        .ctx("apply_events: finish items")?;
    let rows =
        tx.query(&stmt, &[&job_ids, &point_ids, &states, &kinds, &reasons, &workers, &cached, &keys])
            .await
            .ctx("apply_events: finish items")?;
    let mut finished = Vec::with_capacity(rows.len());
    for row in &rows {
        let job_id: String = row.try_get(0).ctx("apply_events: finish items")?;
        let point_id: Uuid = row.try_get(1).ctx("apply_events: finish items")?;
        let state: &str = row.try_get(2).ctx("apply_events: finish items")?;
        let applied: bool = row.try_get(3).ctx("apply_events: finish items")?;
        let known: bool = row.try_get(4).ctx("apply_events: finish items")?;
        match (applied, known) {
            (true, _) => {
                let worker: String = row.try_get(5).ctx("apply_events: finish items")?;
                let indexed = state == "indexed";
                let from_cache = indexed && row.try_get::<_, bool>(6).ctx("apply_events: finish items")?;
                finished.push(Finished { job_id, point_id, indexed, from_cache, worker });
            }
            (false, true) => tracing::debug!(job_id, %point_id, "duplicate completion event ignored"),
            (false, false) => tracing::warn!(job_id, %point_id, "completion event for an unknown job or item ignored"),
        }
    }
    Ok(finished)
}

/// Releases the claims of finished items, only where the claim is still this job's.
async fn release_claims(tx: &Transaction<'_>, finished: &[Finished]) -> Result<(), JobStoreError> {
    if finished.is_empty() {
        return Ok(());
    }
    let job_ids: Vec<&str> = finished.iter().map(|f| f.job_id.as_str()).collect();
    let point_ids: Vec<Uuid> = finished.iter().map(|f| f.point_id).collect();
    let stmt = tx
        .prepare_cached(
            "DELETE FROM pending_points p
             USING unnest($1::text[], $2::uuid[]) AS f(job_id, point_id)
             WHERE p.point_id = f.point_id AND p.job_id = f.job_id",
        )
        .await
        .ctx("apply_events: release claims")?;
    tx.execute(&stmt, &[&job_ids, &point_ids]).await.ctx("apply_events: release claims")?;
    Ok(())
}

/// Records each finished point's outcome as its latest attempt.
async fn record_outcomes(tx: &Transaction<'_>, finished: &[Finished]) -> Result<(), JobStoreError> {
    // One row per point: an upsert may not touch a row twice.
    let outcomes = progress::latest_outcomes(finished);
    if outcomes.is_empty() {
        return Ok(());
    }
    let point_ids: Vec<Uuid> = outcomes.iter().map(|o| o.0).collect();
    let states: Vec<&str> = outcomes.iter().map(|o| if o.1 { "indexed" } else { "failed" }).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO point_outcomes (point_id, state, finished_at)
             SELECT u.point_id, u.state, now()
             FROM unnest($1::uuid[], $2::text[]) AS u(point_id, state) ORDER BY u.point_id
             ON CONFLICT (point_id) DO UPDATE SET state = EXCLUDED.state, finished_at = EXCLUDED.finished_at
             WHERE point_outcomes.finished_at <= EXCLUDED.finished_at",
        )
        .await
        .ctx("apply_events: record outcomes")?;
    tx.execute(&stmt, &[&point_ids, &states]).await.ctx("apply_events: record outcomes")?;
    Ok(())
}

/// Adds what each worker finished to its row of the job's workers (rows in key order,
/// under the job locks `apply_events` holds).
async fn record_workers(tx: &Transaction<'_>, tallies: &[progress::WorkerTally]) -> Result<(), JobStoreError> {
    const CONTEXT: &str = "apply_events: record workers";
    if tallies.is_empty() {
        return Ok(());
    }
    let job_ids: Vec<&str> = tallies.iter().map(|t| t.job_id.as_str()).collect();
    let workers: Vec<&str> = tallies.iter().map(|t| t.worker.as_str()).collect();
    let indexed: Vec<i32> = tallies.iter().map(|t| to_i32(t.indexed, "images processed")).collect::<Result<_, _>>()?;
    let failed: Vec<i32> = tallies.iter().map(|t| to_i32(t.failed, "images failed")).collect::<Result<_, _>>()?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO job_workers (job_id, worker_id, images_processed, images_failed, last_seen_at)
             SELECT u.job_id, u.worker, u.indexed, u.failed, now()
             FROM unnest($1::text[], $2::text[], $3::int4[], $4::int4[]) AS u(job_id, worker, indexed, failed)
             ON CONFLICT (job_id, worker_id) DO UPDATE SET
                 images_processed = job_workers.images_processed + EXCLUDED.images_processed,
                 images_failed = job_workers.images_failed + EXCLUDED.images_failed,
                 last_seen_at = EXCLUDED.last_seen_at",
        )
        .await
        .ctx(CONTEXT)?;
    tx.execute(&stmt, &[&job_ids, &workers, &indexed, &failed]).await.ctx(CONTEXT)?;
    Ok(())
}

/// Fills in the error message of jobs this batch finishes with nothing indexed.
async fn add_failure_messages(tx: &Transaction<'_>, updates: &mut [JobUpdate]) -> Result<(), JobStoreError> {
    let failing: Vec<&str> =
        updates.iter().filter(|u| u.advance.status == JobStatus::Failed).map(|u| u.job_id.as_str()).collect();
    if failing.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "SELECT job_id, coalesce(failure_kind, 'unknown') AS kind, count(*),
                    (array_agg(path ORDER BY finished_at, path))[1],
                    (array_agg(coalesce(reason, '') ORDER BY finished_at, path))[1]
             FROM job_items WHERE job_id = ANY($1) AND state = 'failed'
             GROUP BY job_id, kind",
        )
        .await
        .ctx("apply_events: failure summary")?;
    let rows = tx.query(&stmt, &[&failing]).await.ctx("apply_events: failure summary")?;
    let mut groups: HashMap<String, Vec<FailureGroup>> = HashMap::new();
    for row in &rows {
        let job_id: String = row.try_get(0).ctx("apply_events: failure summary")?;
        let count: i64 = row.try_get(2).ctx("apply_events: failure summary")?;
        groups.entry(job_id).or_default().push(FailureGroup {
            kind: row.try_get(1).ctx("apply_events: failure summary")?,
            count: count.max(0).unsigned_abs(),
            example_path: row.try_get(3).ctx("apply_events: failure summary")?,
            example_reason: row.try_get(4).ctx("apply_events: failure summary")?,
        });
    }
    for update in updates.iter_mut().filter(|u| u.advance.status == JobStatus::Failed) {
        let total = update.advance.processed + update.advance.failed;
        let job_groups = groups.get(&update.job_id).map(Vec::as_slice).unwrap_or_default();
        update.error_message = Some(progress::all_failed_message(total, job_groups));
    }
    Ok(())
}

/// Writes the new counters and status; times come from the database clock, like `created_at`.
async fn write_jobs(tx: &Transaction<'_>, updates: &[JobUpdate]) -> Result<Vec<JobRecord>, JobStoreError> {
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    let job_ids: Vec<&str> = updates.iter().map(|u| u.job_id.as_str()).collect();
    let processed: Vec<i32> =
        updates.iter().map(|u| to_i32(u.advance.processed, "processed")).collect::<Result<_, _>>()?;
    let failed: Vec<i32> = updates.iter().map(|u| to_i32(u.advance.failed, "failed")).collect::<Result<_, _>>()?;
    let statuses: Vec<&str> = updates.iter().map(|u| u.advance.status.as_str()).collect();
    let finished: Vec<bool> = updates.iter().map(|u| u.advance.finished).collect();
    let messages: Vec<Option<&str>> = updates.iter().map(|u| u.error_message.as_deref()).collect();
    let cached: Vec<i32> = updates.iter().map(|u| to_i32(u.from_cache, "from_cache")).collect::<Result<_, _>>()?;
    let sql = format!(
        "UPDATE jobs j SET
             processed = u.processed, failed = u.failed, status = u.status,
             started_at = coalesce(j.started_at, now()),
             completed_at = CASE WHEN u.finished THEN now() ELSE j.completed_at END,
             error_message = coalesce(u.error_message, j.error_message),
             from_cache = j.from_cache + u.from_cache
         FROM unnest($1::text[], $2::int4[], $3::int4[], $4::text[], $5::bool[], $6::text[], $7::int4[])
             AS u(job_id, processed, failed, status, finished, error_message, from_cache)
         WHERE j.job_id = u.job_id
         RETURNING {}",
        JOB_COLUMNS.split(", ").map(|c| format!("j.{c}")).collect::<Vec<_>>().join(", ")
    );
    let stmt = tx.prepare_cached(&sql).await.ctx("apply_events: update jobs")?;
    let rows = tx
        .query(&stmt, &[&job_ids, &processed, &failed, &statuses, &finished, &messages, &cached])
        .await
        .ctx("apply_events: update jobs")?;
    rows.iter().map(job_from_row).collect()
}

pub(super) fn to_i32<T: TryInto<i32>>(n: T, what: &str) -> Result<i32, JobStoreError> {
    n.try_into().map_err(|_| JobStoreError::Other(format!("{what} does not fit the job store's counters")))
}

fn to_u64(n: i32, what: &str) -> Result<u64, JobStoreError> {
    u64::try_from(n).map_err(|_| JobStoreError::Other(format!("negative {what} in the job store")))
}

fn job_from_row(row: &Row) -> Result<JobRecord, JobStoreError> {
    const CONTEXT: &str = "reading a job";
    let status: &str = row.try_get("status").ctx(CONTEXT)?;
    let priority: &str = row.try_get("priority").ctx(CONTEXT)?;
    Ok(JobRecord {
        job_id: row.try_get("job_id").ctx(CONTEXT)?,
        status: JobStatus::parse(status)
            .ok_or_else(|| JobStoreError::Other(format!("unknown job status {status:?} in the job store")))?,
        priority: Priority::parse(priority)
            .ok_or_else(|| JobStoreError::Other(format!("unknown job priority {priority:?} in the job store")))?,
        total_images: to_u64(row.try_get("total").ctx(CONTEXT)?, "total")?,
        processed_images: to_u64(row.try_get("processed").ctx(CONTEXT)?, "processed")?,
        failed_images: to_u64(row.try_get("failed").ctx(CONTEXT)?, "failed")?,
        created_at: row.try_get("created_at").ctx(CONTEXT)?,
        started_at: row.try_get("started_at").ctx(CONTEXT)?,
        completed_at: row.try_get("completed_at").ctx(CONTEXT)?,
        error_message: row.try_get("error_message").ctx(CONTEXT)?,
        scanning: row.try_get("scanning").ctx(CONTEXT)?,
        collection: row.try_get("collection").ctx(CONTEXT)?,
        from_cache: to_u64(row.try_get("from_cache").ctx(CONTEXT)?, "from_cache")?,
    })
}

/// Attaches what was being done to a driver error and classifies it.
trait PgResultExt<T> {
    fn ctx(self, context: &str) -> Result<T, JobStoreError>;
}

impl<T> PgResultExt<T> for Result<T, tokio_postgres::Error> {
    fn ctx(self, context: &str) -> Result<T, JobStoreError> {
        self.map_err(|e| db_error(context, &e))
    }
}

/// Connection trouble is `Unavailable` (retry later); anything else is `Other`. The
/// message carries the server's error text and SQLSTATE, never the statement.
fn db_error(context: &str, e: &tokio_postgres::Error) -> JobStoreError {
    let message = match e.as_db_error() {
        Some(db) => format!("{context}: {} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{context}: {e}: {cause}"),
            None => format!("{context}: {e}"),
        },
    };
    if is_connection_problem(e) {
        JobStoreError::Unavailable(message)
    } else {
        JobStoreError::Other(message)
    }
}

fn is_connection_problem(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Connection exceptions, operator intervention (shutdown, crash recovery), too many connections.
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || code.starts_with("57P") || code == SqlState::TOO_MANY_CONNECTIONS.code()
        }
        // No server error: the link failed (I/O), or a value did not convert (our bug).
        None => std::error::Error::source(e).is_some_and(|cause| cause.is::<std::io::Error>()),
    }
}

fn pool_error(e: PoolError) -> JobStoreError {
    match e {
        PoolError::Backend(pg) => {
            let err = db_error("connecting to the job store", &pg);
            // Whatever the server said, a connection that cannot be opened means unavailable.
            JobStoreError::Unavailable(err.to_string())
        }
        other => JobStoreError::Unavailable(format!("job store connection pool: {other}")),
    }
}
