//! The server's answers, as far as the tables need them. Lenient: a field the
//! server leaves out reads as its default, and unknown fields are ignored
//! (`--json` prints the answer verbatim, so nothing is lost there).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct AddImagesResponse {
    pub job_id: String,
    pub status: String,
    pub images_count: u64,
    pub new_images_count: u64,
    pub already_indexed_count: u64,
    pub already_queued_count: u64,
    pub message: String,
}

impl AddImagesResponse {
    /// `"none"`: nothing was queued, there is no job to follow.
    pub fn has_job(&self) -> bool {
        !self.job_id.is_empty() && self.job_id != "none"
    }
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct Progress {
    pub total_images: u64,
    pub processed_images: u64,
    pub failed_images: u64,
    pub percent_complete: f64,
    /// Of those processed, indexed with the vector of an indexed copy (absent from older servers).
    pub from_cache: Option<u64>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct JobStatus {
    pub job_id: String,
    pub status: String,
    pub priority: Option<String>,
    pub progress: Progress,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub error_message: Option<String>,
    /// Failed images by failure code (absent from servers before it existed).
    pub failures_by_reason: BTreeMap<String, u64>,
    /// Images per second since the job started (absent from older servers).
    pub throughput_images_per_sec: Option<f64>,
    pub estimated_completion: Option<String>,
    pub workers: Vec<JobWorker>,
    /// The collection it indexes into (absent from servers before collections).
    pub collection: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct JobWorker {
    pub worker_id: String,
    pub status: String,
    pub images_processed: u64,
    pub images_failed: u64,
}

impl JobStatus {
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct IndexStats {
    pub model_name: String,
    pub embedding_dim: u64,
    pub total_images: u64,
    pub num_failed: u64,
    pub last_updated: Option<String>,
    pub index_size_mb: f64,
    /// The collection these figures are of (absent from servers before collections).
    pub collection: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct ActiveJob {
    pub job_id: String,
    pub status: String,
    pub created_at: Option<String>,
    pub images: u64,
    pub percent_complete: f64,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct RecentJob {
    pub job_id: String,
    pub status: String,
    pub created_at: Option<String>,
    pub completed_at: Option<String>,
    pub images: u64,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct OverallStatus {
    pub total_indexed_images: u64,
    pub active_jobs: u64,
    pub active_job_details: Vec<ActiveJob>,
    pub recent_jobs: Vec<RecentJob>,
    pub index_stats: IndexStats,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct QueryHit {
    pub rank: u64,
    pub score: f64,
    pub image_path: String,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct QueryIndexStats {
    pub total_images: u64,
    pub model: String,
    /// The collection searched (absent from servers before collections).
    pub collection: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct QueryResponse {
    pub query: String,
    pub query_type: String,
    pub results: Vec<QueryHit>,
    pub query_time_seconds: f64,
    pub index_stats: QueryIndexStats,
    /// With `relevance: "auto"`: the score results had to reach.
    #[serde(default)]
    pub cutoff: Option<f64>,
}

/// One image of a job and its outcome (`GET …/status/{job}/items`).
#[derive(Deserialize, Serialize, Debug, Default, Clone, PartialEq)]
#[serde(default)]
pub struct JobItem {
    pub path: String,
    pub state: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub attempts: u32,
    pub finished_at: Option<String>,
    /// Indexed with the vector of an indexed copy (absent from servers before reuse).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_cache: Option<bool>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub struct JobItemsPage {
    pub items: Vec<JobItem>,
    pub next_cursor: Option<String>,
}
