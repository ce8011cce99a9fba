//! Job store: jobs, their items and progress. Two backends with the same semantics:
//! PostgreSQL (`postgres.rs`, migrations under `shared/migrations/`) for the distributed
//! services, and an embedded SQLite file (`sqlite.rs`, migrations under
//! `shared/migrations/sqlite/`) for `imgidx serve`. `conformance.rs` holds the tests
//! both must pass.

mod attempts;
mod batch;
mod batches;
mod catalog;
#[cfg(test)]
mod conformance;
mod curation;
mod items;
mod manage;
mod postgres;
mod progress;
mod scan;
mod sqlite;
mod webhooks;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

pub use attempts::{AttemptCount, ItemKey};
pub use batches::{BatchImage, BatchImageRecord, BatchJobs};
pub use catalog::{AddCollection, BeginSwitch, CollectionCatalog, ForgetPrevious, RemoveCollection, SwitchCompleted};
pub use curation::{AnalysisOutcome, AnalysisSpec, AnalysisState, ArchiveRecord, Curation, DuplicateAnalysis};
pub use items::{ItemPage, ItemRecord, ItemState, RetryCandidates};
pub use manage::{CancelOutcome, JobCursor, JobPage, JobQuery, JobWorker};
pub use postgres::PostgresJobStore;
pub use scan::{ScanChunk, ScanCounts, ScanLease, ScanOpened, ScanRecord, ScanSpec};
pub use sqlite::SqliteJobStore;
pub use webhooks::{AttemptNext, WebhookAttempt, WebhookDelivery, WebhookState};

use crate::messages::{CompletionEvent, FileStamp, ImageTask, Priority, ProgressEvent};

#[derive(Debug, thiserror::Error)]
pub enum JobStoreError {
    #[error("job store unavailable: {0}")]
    Unavailable(String),
    #[error("job store error: {0}")]
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    Failed,
    /// Stopped on request: its pending items are not embedded.
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(JobStatus::Queued),
            "running" => Some(JobStatus::Running),
            "completed" => Some(JobStatus::Completed),
            "failed" => Some(JobStatus::Failed),
            "cancelled" => Some(JobStatus::Cancelled),
            _ => None,
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running)
    }

    pub const ALL: [JobStatus; 5] =
        [JobStatus::Queued, JobStatus::Running, JobStatus::Completed, JobStatus::Failed, JobStatus::Cancelled];
}

/// An image the API wants to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub point_id: Uuid,
    pub path: String,
    pub stamp: Option<FileStamp>,
}

impl NewItem {
    /// The task that asks a worker to embed this item for `job_id` into the physical
    /// collection `collection` (None: the one the deployment started with).
    pub fn task(&self, job_id: &str, collection: Option<&str>, request_id: Option<&str>) -> ImageTask {
        ImageTask {
            job_id: job_id.to_owned(),
            point_id: self.point_id,
            path: self.path.clone(),
            stamp: self.stamp,
            request_id: request_id.map(str::to_owned),
            collection: collection.map(str::to_owned),
            object_key: None,
        }
    }
}

/// What [`JobStore::apply_events`] changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// The jobs whose progress changed, after the change, by `job_id`.
    pub jobs: Vec<JobRecord>,
    /// The items the events finished, in event order.
    pub finished: Vec<ItemKey>,
}

/// An unfinished item to put back on the task queue.
#[derive(Debug, Clone, PartialEq)]
pub struct RequeueItem {
    pub job_id: String,
    pub priority: Priority,
    pub item: NewItem,
    /// The job's physical collection (None: the one the deployment started with).
    pub collection: Option<String>,
}

impl RequeueItem {
    pub fn task(&self, request_id: Option<&str>) -> ImageTask {
        self.item.task(&self.job_id, self.collection.as_deref(), request_id)
    }
}

/// Full state of one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub job_id: String,
    pub status: JobStatus,
    pub priority: Priority,
    pub total_images: u64,
    /// Images indexed successfully.
    pub processed_images: u64,
    pub failed_images: u64,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub error_message: Option<String>,
    /// A directory scan is still adding items: the job cannot complete yet.
    pub scanning: bool,
    /// The physical collection it writes into (None: the one the deployment started with).
    pub collection: Option<String>,
    /// Of `processed_images`, those indexed with the vector of a point with the same
    /// content (no decode, no inference).
    pub from_cache: u64,
}

impl JobRecord {
    /// Items neither indexed nor failed yet.
    pub fn pending_images(&self) -> u64 {
        self.total_images.saturating_sub(self.processed_images + self.failed_images)
    }

    /// Share of items finished (indexed or failed), 0–100.
    pub fn percent_complete(&self) -> f64 {
        if self.total_images == 0 {
            return 100.0;
        }
        let done = (self.processed_images + self.failed_images).min(self.total_images);
        // Round to one decimal so clients see stable values such as 47.0.
        ((done as f64 / self.total_images as f64) * 1000.0).round() / 10.0
    }

    /// The live update that says where this job stands (no images named).
    pub fn progress_event(&self) -> ProgressEvent {
        ProgressEvent {
            job_id: self.job_id.clone(),
            status: self.status.as_str().to_string(),
            total_images: self.total_images,
            processed_images: self.processed_images,
            failed_images: self.failed_images,
            percent_complete: self.percent_complete(),
            images: Vec::new(),
        }
    }
}

#[async_trait]
pub trait JobStore: CollectionCatalog + BatchJobs + Curation + Send + Sync {
    /// Create a job (status `queued`) writing into the physical collection `collection`
    /// (None: the one the deployment started with), holding those `candidates` that are
    /// not already pending in another active job; the check and the claim are one atomic
    /// step, so two concurrent requests never queue the same point twice. Returns the
    /// claimed items in input order. When none can be claimed, no job is created.
    async fn create_job_in(
        &self,
        job_id: &str,
        priority: Priority,
        collection: Option<&str>,
        candidates: &[NewItem],
    ) -> Result<Vec<NewItem>, JobStoreError>;

    /// [`create_job_in`](Self::create_job_in) the collection the deployment started with.
    async fn create_job(
        &self,
        job_id: &str,
        priority: Priority,
        candidates: &[NewItem],
    ) -> Result<Vec<NewItem>, JobStoreError> {
        self.create_job_in(job_id, priority, None, candidates).await
    }

    /// Mark a job failed with a message and release its pending items (used when its tasks could not be queued).
    async fn fail_job(&self, job_id: &str, message: &str) -> Result<(), JobStoreError>;

    /// Apply completion events in one transaction, idempotently: an event for an item that
    /// is already finished changes nothing. Moves jobs queued → running → completed/failed
    /// (failed when no item succeeded, with an error message), sets started_at/completed_at,
    /// releases finished items. Returns the jobs whose progress changed, after the change,
    /// and the items these events finished (each once; duplicates and late events are not).
    async fn apply_events(&self, events: &[CompletionEvent]) -> Result<Applied, JobStoreError>;

    async fn job(&self, job_id: &str) -> Result<Option<JobRecord>, JobStoreError>;
    /// Queued and running jobs, oldest first.
    async fn active_jobs(&self) -> Result<Vec<JobRecord>, JobStoreError>;
    /// Most recently finished (completed or failed) jobs, newest first.
    async fn recent_jobs(&self, limit: usize) -> Result<Vec<JobRecord>, JobStoreError>;
    /// Distinct images whose latest attempt failed.
    async fn failed_image_count(&self) -> Result<u64, JobStoreError>;
    /// When an item was last finished, if ever.
    async fn last_update(&self) -> Result<Option<DateTime<Utc>>, JobStoreError>;
    /// Distinct images whose latest outcome was recorded at or after `since`: the recent
    /// throughput of the whole system.
    async fn finished_since(&self, since: DateTime<Utc>) -> Result<u64, JobStoreError>;

    /// Takes at most `limit` pending items of active (queued or running) jobs that were last
    /// queued at or before `queued_before`, oldest job first, and stamps them as queued now, so
    /// the next call skips them until they are stale again. `imgidx serve` calls it on start
    /// with `queued_before = now` (its in-process queue starts empty, so every pending item must
    /// be queued again); the distributed reconcile calls it periodically with `now - timeout`, so
    /// no job stays `running` forever when a task was lost.
    ///
    /// The new stamp is always later than `queued_before`, so a caller paging through with one
    /// cutoff gets each item once even when its clock runs ahead of the store's. Concurrent
    /// callers never take the same item. Within a job, items come in `point_id` order.
    async fn requeue_stale_items(
        &self,
        queued_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<RequeueItem>, JobStoreError>;

    /// Records that the tasks of `job_ids` are confirmed published: by the API once the
    /// broker confirmed them, or by the reconcile that published them itself. Jobs
    /// unknown or already marked are left as they are.
    async fn mark_published(&self, job_ids: &[String]) -> Result<(), JobStoreError>;

    /// At most `limit` pending items of active jobs created at or before `created_before`
    /// whose tasks were never confirmed published (see [`mark_published`](Self::mark_published)),
    /// in `(job_id, point_id)` order after `after`: keyset pages for the reconcile, which
    /// publishes them whatever the queue depth. Reads only.
    async fn unpublished_items(
        &self,
        created_before: DateTime<Utc>,
        after: Option<&ItemKey>,
        limit: usize,
    ) -> Result<Vec<RequeueItem>, JobStoreError>;

    /// At most `limit` items of a job (those in `state`, or all), in `point_id` order,
    /// starting after the point `after`: keyset pages, so paging through a job that
    /// changes meanwhile never repeats an item nor skips one that stays in `state`.
    /// An unknown job has no items.
    async fn job_items(
        &self,
        job_id: &str,
        state: Option<ItemState>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<ItemPage, JobStoreError>;

    /// A job's failed items counted by failure kind (`not_found` → 3, …); empty when
    /// none failed. One grouped count over the job's failed items.
    async fn failures_by_reason(&self, job_id: &str) -> Result<BTreeMap<String, u64>, JobStoreError>;

    /// What a retry of a finished job queues again: its items that were not indexed
    /// (failed, or left pending by a job failed before its tasks were queued) and whose
    /// image has not been indexed since, in `point_id` order; and how many were indexed
    /// since. Whether another active job holds one is left to
    /// [`create_job`](Self::create_job)'s claim.
    async fn retry_candidates(&self, job_id: &str) -> Result<RetryCandidates, JobStoreError>;

    /// Counts an attempt at each of `items` that is pending: at every one, or with
    /// `first_only` only at those never attempted before. Answers per item, in input order.
    /// A worker calls it when a batch enters decode; `first_only` lets it count a fresh
    /// batch in one round trip and set the items that were attempted before aside, to be
    /// counted (without `first_only`) when each is tried alone.
    async fn count_attempts(&self, items: &[ItemKey], first_only: bool) -> Result<Vec<AttemptCount>, JobStoreError>;

    /// A page of jobs matching `query`, newest first (`created_at`, then `job_id`,
    /// descending; keyset pages), and how many match in all.
    async fn list_jobs(&self, query: &JobQuery) -> Result<JobPage, JobStoreError>;

    /// The workers whose events finished items of the job, by worker id; empty for an
    /// unknown job.
    async fn job_workers(&self, job_id: &str) -> Result<Vec<JobWorker>, JobStoreError>;

    /// Cancels an active job: status `cancelled`, `completed_at` now, claims released.
    /// Its pending items stay pending and are never embedded: workers that meet their
    /// tasks ack them without work ([`AttemptCount::Withdrawn`]). Outcomes of batches
    /// already past that check still count in its counters; it stays cancelled.
    async fn cancel_job(&self, job_id: &str) -> Result<CancelOutcome, JobStoreError>;

    /// Deletes at most `limit` finished jobs (completed, failed, cancelled) that finished
    /// before `finished_before`, oldest first, with their items; returns how many.
    async fn purge_finished(&self, finished_before: DateTime<Utc>, limit: usize) -> Result<u64, JobStoreError>;

    /// Creates a job (status `queued`, no items yet, `scanning`) that scans `spec.dir`
    /// under the lease `owner`, unless an active job scans the same directory already:
    /// then that job is returned and nothing is created. Check and create are atomic.
    /// The job counts as published: its walk publishes every chunk itself.
    async fn open_scan(
        &self,
        job_id: &str,
        priority: Priority,
        spec: &ScanSpec,
        owner: &str,
    ) -> Result<ScanOpened, JobStoreError>;

    /// Adds a chunk of found images to a scanning job and records the walk's counts,
    /// renewing the lease; as [`create_job`](Self::create_job), a candidate pending in
    /// another active job is not claimed. [`ScanChunk::Stopped`] when the job is no longer
    /// active or `owner` no longer holds the lease (nothing is added then).
    async fn add_scan_items(
        &self,
        job_id: &str,
        owner: &str,
        candidates: &[NewItem],
        counts: &ScanCounts,
    ) -> Result<ScanChunk, JobStoreError>;

    /// Ends a walk held by `owner`: records its counts, marks the scan done and the job
    /// no longer scanning, and completes the job at once when all its items are finished
    /// (failed when none was indexed, completed otherwise, also when it has none).
    /// Returns the job after the change; None when `owner` lost the lease or the job
    /// is not active (a cancelled job's scan is marked done all the same).
    async fn finish_scan(&self, job_id: &str, owner: &str, counts: &ScanCounts) -> Result<Option<JobRecord>, JobStoreError>;

    /// Gives the lease up at once (on shutdown), so the walk resumes without waiting for
    /// the lease to expire. A lease `owner` does not hold is left as it is.
    async fn release_scan(&self, job_id: &str, owner: &str) -> Result<(), JobStoreError>;

    /// Takes over at most `limit` unfinished walks of active jobs whose heartbeat is older
    /// than `lease` by the store's clock (or that were released), renewing them under
    /// `owner`, oldest job first. Two concurrent callers never take the same walk.
    async fn claim_stale_scans(
        &self,
        lease: std::time::Duration,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<ScanLease>, JobStoreError>;

    /// The scan behind a job, if the job came from a trigger.
    async fn job_scan(&self, job_id: &str) -> Result<Option<ScanRecord>, JobStoreError>;

    /// Records that `job_id` is to be announced to each of `urls` once it finishes (see
    /// `jobs/webhooks.rs`): called before the job is created. A URL the job has already
    /// is left as it is; `delivery_ids` (one per URL) name the new rows.
    async fn add_webhooks(&self, job_id: &str, urls: &[String], delivery_ids: &[String]) -> Result<(), JobStoreError>;

    /// Takes at most `limit` deliveries that are due, oldest first, under a lease of
    /// `lease` (by the store's clock): those waiting for a job that has finished since
    /// (now `pending`), and pending ones whose `next_attempt_at` has come. A delivery
    /// under another caller's unexpired lease is skipped, so concurrent callers never take
    /// the same one; one whose caller died is taken again once its lease has expired.
    async fn claim_webhooks(&self, lease: std::time::Duration, limit: usize) -> Result<Vec<WebhookDelivery>, JobStoreError>;

    /// Records an attempt at a claimed delivery and releases its lease; the first attempt
    /// also stores the event type and payload that every later attempt sends.
    async fn record_webhook_attempt(&self, delivery_id: &str, attempt: &WebhookAttempt) -> Result<(), JobStoreError>;

    /// The deliveries of a job, oldest first; empty for an unknown job.
    async fn job_webhooks(&self, job_id: &str) -> Result<Vec<WebhookDelivery>, JobStoreError>;

    async fn healthy(&self) -> bool;
}
