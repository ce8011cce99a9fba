//! `GET /api/v1/batch/{job_id}` and `GET /api/v1/batch` (seed 004): a batch job with
//! each of its images, in request order, as seed 004 names them.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;

use imgidx_shared::jobs::{BatchImageRecord, ItemState, JobRecord, JobStatus};
use imgidx_shared::sources::ImageSource;
use imgidx_shared::time::rfc3339;

use crate::error::ApiError;
use crate::state::AppState;

/// Batch jobs a listing shows, newest first.
const LISTED: usize = 100;

/// Seed 004's error body, on the batch endpoints (`http/seed004.rs` writes it).
#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchError {
    /// What went wrong, for people (seed 004's field).
    error: String,
    /// The HTTP status, again.
    status: u16,
    /// Stable machine-readable code, as `Error.error` elsewhere.
    code: String,
    detail: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchJob {
    job_id: String,
    /// `pending`, `processing`, `completed`, `failed` (no image indexed) or `cancelled`.
    #[schema(value_type = String, example = "processing")]
    status: &'static str,
    total_images: usize,
    completed: usize,
    failed: usize,
    /// Share of images finished, 0–100, two decimals.
    progress: f64,
    images: Vec<BatchImageBody>,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema, Clone)]
#[schema(as = BatchImage)]
pub struct BatchImageBody {
    index: u32,
    original_filename: String,
    /// `pending`, `processing`, `completed` or `failed`.
    #[schema(value_type = String, example = "completed")]
    pub(super) status: &'static str,
    /// Follows this image through the logs and the index: its point id.
    trace_id: String,
    /// Where its bytes are in the object store, for images sent as bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    processed_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) end_time: Option<String>,
    /// Why it failed: `<code>: <reason>`, e.g. `download_failed: status 404`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchList {
    /// The newest 100 batch jobs, newest first.
    jobs: Vec<BatchJob>,
    total: usize,
}

/// One batch job and its images (seed 004).
#[utoipa::path(
    get,
    path = "/api/v1/batch/{job_id}",
    tag = "batch",
    params(("job_id" = String, Path)),
    responses(
        (status = 200, body = BatchJob),
        (status = 404, description = "`job_not_found`: no batch job has this id", body = BatchError),
    )
)]
pub async fn batch_status(State(state): State<AppState>, Path(job_id): Path<String>) -> Result<Json<BatchJob>, ApiError> {
    batch_job(&state, &job_id).await?.map(Json).ok_or(ApiError::JobNotFound(job_id))
}

/// The batch jobs, newest first (seed 004).
#[utoipa::path(get, path = "/api/v1/batch", tag = "batch", responses((status = 200, body = BatchList)))]
pub async fn list_batches(State(state): State<AppState>) -> Result<Json<BatchList>, ApiError> {
    let mut jobs = Vec::new();
    for job_id in state.deps.jobs.batch_jobs(LISTED).await? {
        // One purged meanwhile is left out.
        if let Some(job) = batch_job(&state, &job_id).await? {
            jobs.push(job);
        }
    }
    Ok(Json(BatchList { total: jobs.len(), jobs }))
}

/// Seed 004's word for a job's status.
pub(super) fn batch_status_word(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Queued => "pending",
        JobStatus::Running => "processing",
        JobStatus::Completed => "completed",
        JobStatus::Failed => "failed",
        JobStatus::Cancelled => "cancelled",
    }
}

/// Images finished, failed, and the share done (0–100, two decimals), as seed 004 counts.
pub(super) fn tally(images: &[BatchImageBody]) -> (usize, usize, f64) {
    let count = |s: &str| images.iter().filter(|i| i.status == s).count();
    let (completed, failed, total) = (count("completed"), count("failed"), images.len());
    let progress = if total == 0 { 100.0 } else { ((completed + failed) as f64 * 10_000.0 / total as f64).round() / 100.0 };
    (completed, failed, progress)
}

async fn batch_job(state: &AppState, job_id: &str) -> Result<Option<BatchJob>, ApiError> {
    // The job first: its items finish no later than it does, so a job read as ended
    // comes with its images' final states (the other order could show it ended with
    // images still pending).
    let Some(job) = state.deps.jobs.job(job_id).await? else { return Ok(None) };
    let Some(images) = state.deps.jobs.batch_images(job_id).await? else { return Ok(None) };
    Ok(Some(BatchJob::of(job, &images)))
}

impl BatchJob {
    fn of(job: JobRecord, images: &[BatchImageRecord]) -> Self {
        let images: Vec<BatchImageBody> = images.iter().map(BatchImageBody::of).collect();
        let (completed, failed, progress) = tally(&images);
        let total = images.len();
        let last_change = images.iter().filter_map(|i| i.end_time.clone().or_else(|| i.start_time.clone())).max();
        let created_at = rfc3339(job.created_at);
        Self {
            status: batch_status_word(job.status),
            job_id: job.job_id,
            total_images: total,
            completed,
            failed,
            progress,
            images,
            updated_at: job.completed_at.map(rfc3339).or(last_change).unwrap_or_else(|| created_at.clone()),
            completed_at: job.completed_at.map(rfc3339),
            created_at,
        }
    }
}

impl BatchImageBody {
    pub(super) fn of(r: &BatchImageRecord) -> Self {
        let status = match r.state {
            ItemState::Indexed => "completed",
            ItemState::Failed => "failed",
            ItemState::Pending if r.attempts > 0 => "processing",
            ItemState::Pending => "pending",
        };
        // Bytes sent are stored before the job exists; a URL's once a worker fetched it.
        let processed_path = match ImageSource::parse(&r.path) {
            Some(ImageSource::Object { key, .. }) => Some(key.to_string()),
            _ => r.object_key.clone(),
        };
        let error = (r.state == ItemState::Failed).then(|| match (&r.failure_kind, &r.reason) {
            (Some(kind), Some(reason)) => format!("{kind}: {reason}"),
            (Some(kind), None) => kind.clone(),
            (None, reason) => reason.clone().unwrap_or_else(|| "failed".into()),
        });
        Self {
            index: r.index,
            original_filename: r.name.clone(),
            status,
            trace_id: r.point_id.to_string(),
            processed_path,
            start_time: r.started_at.map(rfc3339),
            end_time: r.finished_at.map(rfc3339),
            error,
        }
    }
}
