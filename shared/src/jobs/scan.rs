//! Directory scans (`POST /api/v1/index/trigger`): a job that grows while an API process
//! walks a directory and adds what it finds in chunks. The walk holds a lease (an owner
//! token and a heartbeat): each chunk renews it, and a walk whose heartbeat is older
//! than the lease is taken over by another API process (or this one after a restart),
//! which walks the directory again. Walking again is safe: unchanged files are skipped,
//! items already in the job are handed back to be published again, and the job
//! completes only once a walk has finished.

use chrono::{DateTime, Utc};

use super::NewItem;
use crate::messages::Priority;

/// What to scan, as the trigger asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSpec {
    /// Canonical directory path.
    pub dir: String,
    pub recursive: bool,
    /// Queue every image found, indexed and unchanged or not.
    pub force_reindex: bool,
    /// Delete the points under `dir` whose file is gone, once the walk is done.
    pub prune_missing: bool,
    /// Physical collection the job writes into (None: the one the deployment started with).
    /// A second trigger of `dir` joins a running scan only for the same collection.
    pub collection: Option<String>,
}

/// How a scan's `dir` names a collection instead: `collection:<physical name>`. Directory
/// paths are absolute, so the two never meet.
const COLLECTION_SOURCE: &str = "collection:";

impl ScanSpec {
    /// A scan that reads the points of the physical collection `source` and queues them
    /// into `target` (a model switch's re-embed), instead of walking a directory.
    pub fn of_collection(source: &str, target: &str) -> Self {
        Self {
            dir: format!("{COLLECTION_SOURCE}{source}"),
            recursive: true,
            force_reindex: false,
            prune_missing: false,
            collection: Some(target.to_owned()),
        }
    }

    /// The physical collection this scan reads, when it reads one rather than a directory.
    pub fn source_collection(&self) -> Option<&str> {
        self.dir.strip_prefix(COLLECTION_SOURCE)
    }
}

/// How far a walk got. Counted from zero by each walk, so a resumed walk starts over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanCounts {
    /// Regular files met (images or not).
    pub files_seen: u64,
    /// Files whose first bytes are an image format we decode.
    pub images_found: u64,
    /// Files skipped because their content is not such an image.
    pub not_images: u64,
    /// Directories and files that could not be read (skipped, the walk goes on).
    pub unreadable: u64,
    /// Points deleted because their file is gone (`prune_missing`).
    pub removed: u64,
}

/// A scan as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanRecord {
    pub job_id: String,
    pub spec: ScanSpec,
    pub counts: ScanCounts,
    /// The walk (and the prune) finished.
    pub done: bool,
    pub heartbeat_at: Option<DateTime<Utc>>,
}

/// What [`open_scan`](super::JobStore::open_scan) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanOpened {
    /// A new job now scans the directory; the caller holds its lease.
    Created,
    /// An active job scans (or scanned) the same directory already: that job answers.
    Running { job_id: String },
}

/// What [`add_scan_items`](super::JobStore::add_scan_items) did with a chunk.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanChunk {
    Added {
        /// Items to publish: those claimed now, and those the job held pending already
        /// (a resumed walk publishes them again, in case the first walk died before it did).
        publish: Vec<NewItem>,
        /// Of `publish`, how many are new to the job.
        new: usize,
        /// Candidates held pending by another active job.
        already_queued: usize,
    },
    /// The job is no longer active (cancelled) or another process took the lease over:
    /// stop walking.
    Stopped,
}

/// A walk to resume, taken over by [`claim_stale_scans`](super::JobStore::claim_stale_scans).
#[derive(Debug, Clone, PartialEq)]
pub struct ScanLease {
    pub job_id: String,
    pub priority: Priority,
    pub spec: ScanSpec,
}
