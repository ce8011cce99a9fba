//! Embedded SQLite job store, for `imgidx serve`: the same tables, rules and
//! semantics as the PostgreSQL store (see `postgres.rs`), in one local file.
//!
//! One connection behind a mutex serves every call on the blocking thread pool: the
//! store has one writer at a time anyway, and each call is one short transaction.
//! Writes take the lock up front (`BEGIN IMMEDIATE`), so check-and-claim is atomic
//! even against another process that opened the same file, and they are durable on
//! commit (WAL with `synchronous=FULL`).
//!
//! Times are stored as microseconds since the Unix epoch, UTC, taken from the store's
//! clock once per transaction (like PostgreSQL's `now()`); that clock never repeats
//! or goes back within one open store, so "newest first" orderings are never ties.

mod attempts;
mod batches;
mod catalog;
mod curation;
mod items;
mod manage;
mod reads;
mod requeue;
mod scan;
mod schema;
#[cfg(test)]
mod tests;
mod webhooks;
mod writes;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode};
use uuid::Uuid;

use super::batches::{BatchImage, BatchImageRecord, BatchJobs};
use super::curation::{AnalysisOutcome, AnalysisSpec, ArchiveRecord, Curation, DuplicateAnalysis};
use super::{
    AddCollection, BeginSwitch, CollectionCatalog, ForgetPrevious, RemoveCollection, SwitchCompleted,
    Applied, AttemptCount, CancelOutcome, ItemKey, ItemPage, ItemState, JobPage, JobQuery, JobRecord, JobStore, JobStoreError,
    JobWorker, NewItem, RequeueItem, RetryCandidates, ScanChunk, ScanCounts, ScanLease, ScanOpened, ScanRecord,
    ScanSpec, WebhookAttempt, WebhookDelivery,
};
use crate::collections::{CollectionRecord, NextGeneration};
use crate::messages::{CompletionEvent, Priority};

/// Bound on [`JobStore::healthy`], so a health probe never hangs behind a long write.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct SqliteJobStore {
    db: Arc<Mutex<Db>>,
}

/// The connection and the clock its transactions read.
struct Db {
    conn: Connection,
    clock: Clock,
}

/// Microseconds since the Unix epoch, strictly increasing across calls.
#[derive(Default)]
struct Clock {
    last: i64,
}

impl Clock {
    fn now(&mut self) -> i64 {
        self.last = Utc::now().timestamp_micros().max(self.last.saturating_add(1));
        self.last
    }
}

impl SqliteJobStore {
    /// Opens the store at `path`, creating its directory and file when missing, and
    /// brings the schema up to date.
    pub fn open(path: &Path) -> Result<Self, JobStoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                JobStoreError::Unavailable(format!("creating the job store directory {}: {e}", dir.display()))
            })?;
        }
        let mut conn =
            Connection::open(path).map_err(|e| db_error(&format!("opening the job store {}", path.display()), &e))?;
        schema::configure(&conn).map_err(|e| in_file(e, path))?;
        schema::migrate(&mut conn).map_err(|e| in_file(e, path))?;
        Ok(Self { db: Arc::new(Mutex::new(Db { conn, clock: Clock::default() })) })
    }

    /// Runs `f` on the connection, on the blocking pool.
    async fn run<T, F>(&self, context: &'static str, f: F) -> Result<T, JobStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, JobStoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&mut lock(&db)))
            .await
            .map_err(|e| JobStoreError::Other(format!("{context}: the job store task stopped: {e}")))?
    }
}

fn lock(db: &Mutex<Db>) -> MutexGuard<'_, Db> {
    // A panic while the lock was held unwound through any open transaction, whose drop
    // rolled it back: the connection is still consistent, so carry on with it.
    db.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl JobStore for SqliteJobStore {
    async fn create_job_in(
        &self,
        job_id: &str,
        priority: Priority,
        collection: Option<&str>,
        candidates: &[NewItem],
    ) -> Result<Vec<NewItem>, JobStoreError> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let (job_id, collection) = (job_id.to_owned(), collection.map(str::to_owned));
        let candidates = candidates.to_vec();
        self.run("create_job", move |db| {
            let now = db.clock.now();
            writes::create_job(&mut db.conn, now, &job_id, priority, collection.as_deref(), &candidates)
        })
        .await
    }

    async fn fail_job(&self, job_id: &str, message: &str) -> Result<(), JobStoreError> {
        let (job_id, message) = (job_id.to_owned(), message.to_owned());
        self.run("fail_job", move |db| {
            let now = db.clock.now();
            writes::fail_job(&mut db.conn, now, &job_id, &message)
        })
        .await
    }

    async fn apply_events(&self, events: &[CompletionEvent]) -> Result<Applied, JobStoreError> {
        if events.is_empty() {
            return Ok(Applied::default());
        }
        let events = events.to_vec();
        self.run("apply_events", move |db| {
            let now = db.clock.now();
            writes::apply_events(&mut db.conn, now, &events)
        })
        .await
    }

    async fn job(&self, job_id: &str) -> Result<Option<JobRecord>, JobStoreError> {
        let job_id = job_id.to_owned();
        self.run("job", move |db| reads::job(&db.conn, &job_id)).await
    }

    async fn active_jobs(&self) -> Result<Vec<JobRecord>, JobStoreError> {
        self.run("active_jobs", |db| reads::active_jobs(&db.conn)).await
    }

    async fn recent_jobs(&self, limit: usize) -> Result<Vec<JobRecord>, JobStoreError> {
        self.run("recent_jobs", move |db| reads::recent_jobs(&db.conn, limit)).await
    }

    async fn failed_image_count(&self) -> Result<u64, JobStoreError> {
        self.run("failed_image_count", |db| reads::failed_image_count(&db.conn)).await
    }

    async fn last_update(&self) -> Result<Option<DateTime<Utc>>, JobStoreError> {
        self.run("last_update", |db| reads::last_update(&db.conn)).await
    }

    async fn finished_since(&self, since: DateTime<Utc>) -> Result<u64, JobStoreError> {
        self.run("finished_since", move |db| reads::finished_since(&db.conn, since)).await
    }

    async fn requeue_stale_items(
        &self,
        queued_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<RequeueItem>, JobStoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.run("requeue_stale_items", move |db| {
            let now = db.clock.now();
            requeue::take_stale(&mut db.conn, now, queued_before, limit)
        })
        .await
    }

    async fn mark_published(&self, job_ids: &[String]) -> Result<(), JobStoreError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        let job_ids = job_ids.to_vec();
        self.run("mark_published", move |db| {
            let now = db.clock.now();
            requeue::mark_published(&mut db.conn, now, &job_ids)
        })
        .await
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
        let after = after.cloned();
        self.run("unpublished_items", move |db| requeue::unpublished(&db.conn, created_before, after.as_ref(), limit)).await
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
        let job_id = job_id.to_owned();
        self.run("job_items", move |db| items::page(&db.conn, &job_id, state, after, limit)).await
    }

    async fn failures_by_reason(&self, job_id: &str) -> Result<BTreeMap<String, u64>, JobStoreError> {
        let job_id = job_id.to_owned();
        self.run("failures_by_reason", move |db| items::failures_by_reason(&db.conn, &job_id)).await
    }

    async fn retry_candidates(&self, job_id: &str) -> Result<RetryCandidates, JobStoreError> {
        let job_id = job_id.to_owned();
        self.run("retry_candidates", move |db| items::retry_candidates(&db.conn, &job_id)).await
    }

    async fn count_attempts(&self, items: &[ItemKey], first_only: bool) -> Result<Vec<AttemptCount>, JobStoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let items = items.to_vec();
        self.run("count_attempts", move |db| {
            let now = db.clock.now();
            attempts::count(&mut db.conn, now, &items, first_only)
        })
        .await
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<JobPage, JobStoreError> {
        let query = query.clone();
        self.run("list_jobs", move |db| manage::list(&db.conn, &query)).await
    }

    async fn job_workers(&self, job_id: &str) -> Result<Vec<JobWorker>, JobStoreError> {
        let job_id = job_id.to_owned();
        self.run("job_workers", move |db| manage::workers(&db.conn, &job_id)).await
    }

    async fn cancel_job(&self, job_id: &str) -> Result<CancelOutcome, JobStoreError> {
        let job_id = job_id.to_owned();
        self.run("cancel_job", move |db| {
            let now = db.clock.now();
            manage::cancel(&mut db.conn, now, &job_id)
        })
        .await
    }

    async fn purge_finished(&self, finished_before: DateTime<Utc>, limit: usize) -> Result<u64, JobStoreError> {
        if limit == 0 {
            return Ok(0);
        }
        self.run("purge_finished", move |db| manage::purge(&mut db.conn, finished_before, limit)).await
    }

    async fn open_scan(
        &self,
        job_id: &str,
        priority: Priority,
        spec: &ScanSpec,
        owner: &str,
    ) -> Result<ScanOpened, JobStoreError> {
        let (job_id, spec, owner) = (job_id.to_owned(), spec.clone(), owner.to_owned());
        self.run("open_scan", move |db| {
            let now = db.clock.now();
            scan::open(&mut db.conn, now, &job_id, priority, &spec, &owner)
        })
        .await
    }

    async fn add_scan_items(
        &self,
        job_id: &str,
        owner: &str,
        candidates: &[NewItem],
        counts: &ScanCounts,
    ) -> Result<ScanChunk, JobStoreError> {
        let (job_id, owner, candidates, counts) = (job_id.to_owned(), owner.to_owned(), candidates.to_vec(), *counts);
        self.run("add_scan_items", move |db| {
            let now = db.clock.now();
            scan::add_items(&mut db.conn, now, &job_id, &owner, &candidates, &counts)
        })
        .await
    }

    async fn finish_scan(&self, job_id: &str, owner: &str, counts: &ScanCounts) -> Result<Option<JobRecord>, JobStoreError> {
        let (job_id, owner, counts) = (job_id.to_owned(), owner.to_owned(), *counts);
        self.run("finish_scan", move |db| {
            let now = db.clock.now();
            scan::finish(&mut db.conn, now, &job_id, &owner, &counts)
        })
        .await
    }

    async fn release_scan(&self, job_id: &str, owner: &str) -> Result<(), JobStoreError> {
        let (job_id, owner) = (job_id.to_owned(), owner.to_owned());
        self.run("release_scan", move |db| scan::release(&mut db.conn, &job_id, &owner)).await
    }

    async fn claim_stale_scans(&self, lease: Duration, owner: &str, limit: usize) -> Result<Vec<ScanLease>, JobStoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let owner = owner.to_owned();
        self.run("claim_stale_scans", move |db| {
            let now = db.clock.now();
            scan::claim_stale(&mut db.conn, now, lease, &owner, limit)
        })
        .await
    }

    async fn job_scan(&self, job_id: &str) -> Result<Option<ScanRecord>, JobStoreError> {
        let job_id = job_id.to_owned();
        self.run("job_scan", move |db| scan::get(&db.conn, &job_id)).await
    }

    async fn add_webhooks(&self, job_id: &str, urls: &[String], delivery_ids: &[String]) -> Result<(), JobStoreError> {
        let (job_id, urls, ids) = (job_id.to_owned(), urls.to_vec(), delivery_ids.to_vec());
        self.run("add_webhooks", move |db| {
            let now = db.clock.now();
            webhooks::add(&mut db.conn, now, &job_id, &urls, &ids)
        })
        .await
    }

    async fn claim_webhooks(&self, lease: Duration, limit: usize) -> Result<Vec<WebhookDelivery>, JobStoreError> {
        self.run("claim_webhooks", move |db| {
            let now = db.clock.now();
            webhooks::claim(&mut db.conn, now, lease, limit)
        })
        .await
    }

    async fn record_webhook_attempt(&self, delivery_id: &str, attempt: &WebhookAttempt) -> Result<(), JobStoreError> {
        let (id, attempt) = (delivery_id.to_owned(), attempt.clone());
        self.run("record_webhook_attempt", move |db| {
            let now = db.clock.now();
            webhooks::record(&mut db.conn, now, &id, &attempt)
        })
        .await
    }

    async fn job_webhooks(&self, job_id: &str) -> Result<Vec<WebhookDelivery>, JobStoreError> {
        let job_id = job_id.to_owned();
        self.run("job_webhooks", move |db| webhooks::of_job(&db.conn, &job_id)).await
    }

    async fn healthy(&self) -> bool {
        let probe = self.run("healthy", |db| {
            db.conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0)).ctx("health probe")
        });
        matches!(tokio::time::timeout(HEALTH_TIMEOUT, probe).await, Ok(Ok(1)))
    }
}

#[async_trait]
impl BatchJobs for SqliteJobStore {
    async fn create_batch_job(
        &self,
        job_id: &str,
        priority: Priority,
        collection: Option<&str>,
        items: &[NewItem],
        images: &[BatchImage],
    ) -> Result<(), JobStoreError> {
        let (job_id, collection) = (job_id.to_owned(), collection.map(str::to_owned));
        let (items, images) = (items.to_vec(), images.to_vec());
        self.run("create_batch_job", move |db| {
            let now = db.clock.now();
            batches::create(&mut db.conn, now, &job_id, priority, collection.as_deref(), &items, &images)
        })
        .await
    }

    async fn batch_images(&self, job_id: &str) -> Result<Option<Vec<BatchImageRecord>>, JobStoreError> {
        let job_id = job_id.to_owned();
        self.run("batch_images", move |db| batches::images(&db.conn, &job_id)).await
    }

    async fn batch_jobs(&self, limit: usize) -> Result<Vec<String>, JobStoreError> {
        self.run("batch_jobs", move |db| batches::jobs(&db.conn, limit)).await
    }

    async fn purge_batches(&self, finished_before: DateTime<Utc>, limit: usize) -> Result<u64, JobStoreError> {
        self.run("purge_batches", move |db| batches::purge(&mut db.conn, micros(finished_before), limit)).await
    }
}

#[async_trait]
impl Curation for SqliteJobStore {
    async fn create_analysis(&self, task_id: &str, spec: &AnalysisSpec, owner: &str) -> Result<(), JobStoreError> {
        let (task_id, spec, owner) = (task_id.to_owned(), spec.clone(), owner.to_owned());
        self.run("create_analysis", move |db| {
            let now = db.clock.now();
            curation::create(&db.conn, now, &task_id, &spec, &owner)
        })
        .await
    }

    async fn claim_stale_analysis(&self, owner: &str, lease: Duration) -> Result<Option<DuplicateAnalysis>, JobStoreError> {
        let owner = owner.to_owned();
        self.run("claim_stale_analysis", move |db| {
            let now = db.clock.now();
            curation::claim_stale(&mut db.conn, now, &owner, lease)
        })
        .await
    }

    async fn analysis_progress(&self, task_id: &str, owner: &str, scanned: u64, total: u64) -> Result<bool, JobStoreError> {
        let (task_id, owner) = (task_id.to_owned(), owner.to_owned());
        self.run("analysis_progress", move |db| {
            let now = db.clock.now();
            curation::progress(&db.conn, now, &task_id, &owner, scanned, total)
        })
        .await
    }

    async fn finish_analysis(&self, task_id: &str, owner: &str, outcome: &AnalysisOutcome) -> Result<bool, JobStoreError> {
        let (task_id, owner, outcome) = (task_id.to_owned(), owner.to_owned(), outcome.clone());
        self.run("finish_analysis", move |db| {
            let now = db.clock.now();
            curation::finish(&db.conn, now, &task_id, &owner, &outcome)
        })
        .await
    }

    async fn analysis(&self, task_id: &str) -> Result<Option<DuplicateAnalysis>, JobStoreError> {
        let task_id = task_id.to_owned();
        self.run("analysis", move |db| curation::get(&db.conn, &task_id)).await
    }

    async fn save_archive(&self, record: &ArchiveRecord) -> Result<(), JobStoreError> {
        let record = record.clone();
        self.run("save_archive", move |db| curation::save_archive(&db.conn, &record)).await
    }

    async fn archive(&self, archive_id: &str) -> Result<Option<ArchiveRecord>, JobStoreError> {
        let archive_id = archive_id.to_owned();
        self.run("archive", move |db| curation::archive(&db.conn, &archive_id)).await
    }

    async fn mark_restored(&self, archive_id: &str) -> Result<bool, JobStoreError> {
        let archive_id = archive_id.to_owned();
        self.run("mark_restored", move |db| {
            let now = db.clock.now();
            curation::mark_restored(&db.conn, now, &archive_id)
        })
        .await
    }
}

#[async_trait]
impl CollectionCatalog for SqliteJobStore {
    async fn ensure_initial_collection(&self, record: &CollectionRecord) -> Result<CollectionRecord, JobStoreError> {
        let record = record.clone();
        self.run("ensure_initial_collection", move |db| catalog::ensure_initial(&mut db.conn, &record)).await
    }

    async fn add_collection(&self, record: &CollectionRecord, max: usize) -> Result<AddCollection, JobStoreError> {
        let record = record.clone();
        self.run("add_collection", move |db| catalog::add(&mut db.conn, &record, max)).await
    }

    async fn collection(&self, name: &str) -> Result<Option<CollectionRecord>, JobStoreError> {
        let name = name.to_owned();
        self.run("collection", move |db| catalog::get(&db.conn, &name)).await
    }

    async fn collections(&self) -> Result<Vec<CollectionRecord>, JobStoreError> {
        self.run("collections", |db| catalog::all(&db.conn)).await
    }

    async fn remove_collection(&self, name: &str) -> Result<RemoveCollection, JobStoreError> {
        let name = name.to_owned();
        self.run("remove_collection", move |db| catalog::remove(&mut db.conn, &name)).await
    }

    async fn select_collection(&self, name: &str) -> Result<bool, JobStoreError> {
        let name = name.to_owned();
        self.run("select_collection", move |db| catalog::select(&mut db.conn, &name)).await
    }

    async fn selected_collection(&self) -> Result<Option<String>, JobStoreError> {
        self.run("selected_collection", |db| catalog::selected(&db.conn)).await
    }

    async fn begin_switch(&self, name: &str, next: &NextGeneration) -> Result<BeginSwitch, JobStoreError> {
        let (name, next) = (name.to_owned(), next.clone());
        self.run("begin_switch", move |db| catalog::begin_switch(&mut db.conn, &name, &next)).await
    }

    async fn complete_switch(&self, name: &str, job_id: &str) -> Result<Option<SwitchCompleted>, JobStoreError> {
        let (name, job_id) = (name.to_owned(), job_id.to_owned());
        self.run("complete_switch", move |db| catalog::complete_switch(&mut db.conn, &name, &job_id)).await
    }

    async fn abandon_switch(&self, name: &str, job_id: &str) -> Result<Option<String>, JobStoreError> {
        let (name, job_id) = (name.to_owned(), job_id.to_owned());
        self.run("abandon_switch", move |db| catalog::abandon_switch(&mut db.conn, &name, &job_id)).await
    }

    async fn forget_previous(&self, name: &str) -> Result<ForgetPrevious, JobStoreError> {
        let name = name.to_owned();
        self.run("forget_previous", move |db| catalog::forget_previous(&mut db.conn, &name)).await
    }
}

/// Microseconds since the Unix epoch, as stored.
fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(micros: i64) -> Result<DateTime<Utc>, JobStoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| JobStoreError::Other(format!("time {micros} µs out of range in the job store")))
}

fn opt_time(micros: Option<i64>) -> Result<Option<DateTime<Utc>>, JobStoreError> {
    micros.map(time).transpose()
}

/// A point id as stored: its 16 bytes.
fn point_bytes(id: &Uuid) -> &[u8] {
    id.as_bytes()
}

fn point_id(bytes: &[u8]) -> Result<Uuid, JobStoreError> {
    Uuid::from_slice(bytes).map_err(|_| JobStoreError::Other("malformed point id in the job store".into()))
}

fn count(n: i64, what: &str) -> Result<u64, JobStoreError> {
    u64::try_from(n).map_err(|_| JobStoreError::Other(format!("negative {what} in the job store")))
}

/// Attaches what was being done to a driver error and classifies it.
trait SqlResultExt<T> {
    fn ctx(self, context: &str) -> Result<T, JobStoreError>;
}

impl<T> SqlResultExt<T> for rusqlite::Result<T> {
    fn ctx(self, context: &str) -> Result<T, JobStoreError> {
        self.map_err(|e| db_error(context, &e))
    }
}

/// Trouble with the file (locked too long, unreadable, full, read-only) is
/// `Unavailable`: retrying later may succeed. Anything else is `Other`.
fn db_error(context: &str, e: &rusqlite::Error) -> JobStoreError {
    let message = format!("{context}: {e}");
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied,
        ) => JobStoreError::Unavailable(message),
        _ => JobStoreError::Other(message),
    }
}

/// Names the file in an error from opening it.
fn in_file(e: JobStoreError, path: &Path) -> JobStoreError {
    match e {
        JobStoreError::Unavailable(m) => JobStoreError::Unavailable(format!("{m} ({})", path.display())),
        JobStoreError::Other(m) => JobStoreError::Other(format!("{m} ({})", path.display())),
    }
}
