//! Job store: jobs, their items and progress. Production: PostgreSQL (`postgres.rs`,
//! migrations under `shared/migrations/`).

mod postgres;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

pub use postgres::PostgresJobStore;


use crate::messages::{CompletionEvent, FileStamp, Priority};

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
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(JobStatus::Queued),
            "running" => Some(JobStatus::Running),
            "completed" => Some(JobStatus::Completed),
            "failed" => Some(JobStatus::Failed),
            _ => None,
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

/// An image the API wants to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub point_id: Uuid,
    pub path: String,
    pub stamp: Option<FileStamp>,
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
}

impl JobRecord {
    /// Share of items finished (indexed or failed), 0–100.
    pub fn percent_complete(&self) -> f64 {
        if self.total_images == 0 {
            return 100.0;
        }
        let done = (self.processed_images + self.failed_images).min(self.total_images);
        // Round to one decimal so clients see stable values such as 47.0.
        ((done as f64 / self.total_images as f64) * 1000.0).round() / 10.0
    }
}

#[async_trait]
pub trait JobStore: Send + Sync {
    /// Create a job (status `queued`) holding those `candidates` that are not already
    /// pending in another active job; the check and the claim are one atomic step, so
    /// two concurrent requests never queue the same point twice. Returns the claimed
    /// items in input order. When none can be claimed, no job is created.
    async fn create_job(
        &self,
        job_id: &str,
        priority: Priority,
        candidates: &[NewItem],
    ) -> Result<Vec<NewItem>, JobStoreError>;

    /// Mark a job failed with a message and release its pending items (used when its tasks could not be queued).
    async fn fail_job(&self, job_id: &str, message: &str) -> Result<(), JobStoreError>;

    /// Apply completion events in one transaction, idempotently: an event for an item that
    /// is already finished changes nothing. Moves jobs queued → running → completed/failed
    /// (failed when no item succeeded, with an error message), sets started_at/completed_at,
    /// releases finished items. Returns the jobs whose progress changed, after the change.
    async fn apply_events(&self, events: &[CompletionEvent]) -> Result<Vec<JobRecord>, JobStoreError>;

    async fn job(&self, job_id: &str) -> Result<Option<JobRecord>, JobStoreError>;
    /// Queued and running jobs, oldest first.
    async fn active_jobs(&self) -> Result<Vec<JobRecord>, JobStoreError>;
    /// Most recently finished (completed or failed) jobs, newest first.
    async fn recent_jobs(&self, limit: usize) -> Result<Vec<JobRecord>, JobStoreError>;
    /// Distinct images whose latest attempt failed.
    async fn failed_image_count(&self) -> Result<u64, JobStoreError>;
    /// When an item was last finished, if ever.
    async fn last_update(&self) -> Result<Option<DateTime<Utc>>, JobStoreError>;
    async fn healthy(&self) -> bool;
}
