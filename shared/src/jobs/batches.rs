//! Seed 004's batch jobs: a job whose images came in one request, listed in request order
//! with a name each. Every image of a batch is an item of its job, also one that another
//! active job holds already (its task is queued for the batch too; the point is upserted
//! twice at worst), so a batch reports every image it was sent.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{ItemState, JobStoreError, NewItem};
use crate::messages::Priority;

/// One image of a batch request, as created.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchImage {
    /// Its place in the request, from 0.
    pub index: u32,
    /// The name it was sent with (or made up for it).
    pub name: String,
    /// The item it is.
    pub point_id: Uuid,
}

/// One image of a batch and where its item stands.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchImageRecord {
    pub index: u32,
    pub name: String,
    pub point_id: Uuid,
    /// The item's path: `object:<sha256>/<name>` for bytes sent, else what was fetched.
    pub path: String,
    pub state: ItemState,
    pub attempts: u32,
    pub failure_kind: Option<String>,
    pub reason: Option<String>,
    /// When a worker first started on it.
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Where its bytes are in the object store, once a worker has read them.
    pub object_key: Option<String>,
}

#[async_trait]
pub trait BatchJobs: Send + Sync {
    /// Creates a job (status `queued`) in the physical collection `collection` whose items
    /// are all of `items` (claiming those no other active job holds), with `images` naming
    /// them in request order; one transaction.
    async fn create_batch_job(
        &self,
        job_id: &str,
        priority: Priority,
        collection: Option<&str>,
        items: &[NewItem],
        images: &[BatchImage],
    ) -> Result<(), JobStoreError>;

    /// The images of a batch job in request order; None when the job is no batch (or unknown).
    async fn batch_images(&self, job_id: &str) -> Result<Option<Vec<BatchImageRecord>>, JobStoreError>;

    /// The newest `limit` batch jobs' ids, newest first.
    async fn batch_jobs(&self, limit: usize) -> Result<Vec<String>, JobStoreError>;

    /// Deletes at most `limit` finished batch jobs (completed, failed, cancelled) that
    /// finished before `finished_before`, oldest first, with their items and images;
    /// returns how many. Other jobs are left to `purge_finished`.
    async fn purge_batches(&self, finished_before: DateTime<Utc>, limit: usize) -> Result<u64, JobStoreError>;
}
