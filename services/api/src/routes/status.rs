use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;
use serde::Serialize;

use imgidx_shared::collections::name_of;
use imgidx_shared::jobs::{JobRecord, ScanRecord};
use imgidx_shared::messages::Priority;
use imgidx_shared::time::rfc3339;

use super::pace::{self, Pace, WorkerBody};
use super::stats::{index_stats, IndexStats};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::target::Target;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Progress {
    total_images: u64,
    processed_images: u64,
    failed_images: u64,
    percent_complete: f64,
    /// Of `processed_images`, those indexed with the vector of an indexed image with the
    /// same bytes (seed 003's `total_from_cache`): no decode, no inference.
    from_cache: u64,
}

/// A job as listings show it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobSummary {
    job_id: String,
    /// queued, running, completed, failed or cancelled.
    #[schema(value_type = String, example = "running")]
    status: &'static str,
    #[schema(value_type = Priority)]
    priority: &'static str,
    /// Images in the job (seed 002's name for `progress.total_images`).
    images_count: u64,
    progress: Progress,
    created_at: String,
    started_at: Option<String>,
    completed_at: Option<String>,
    error_message: Option<String>,
    /// The collection it indexes into (absent for jobs from before collections, which
    /// went into the initial collection).
    #[serde(skip_serializing_if = "Option::is_none")]
    collection: Option<String>,
}

impl From<JobRecord> for JobSummary {
    fn from(j: JobRecord) -> Self {
        Self {
            progress: Progress {
                total_images: j.total_images,
                processed_images: j.processed_images,
                failed_images: j.failed_images,
                percent_complete: j.percent_complete(),
                from_cache: j.from_cache,
            },
            status: j.status.as_str(),
            priority: j.priority.as_str(),
            images_count: j.total_images,
            created_at: rfc3339(j.created_at),
            started_at: j.started_at.map(rfc3339),
            completed_at: j.completed_at.map(rfc3339),
            error_message: j.error_message,
            collection: j.collection.as_deref().map(|c| name_of(c).to_owned()),
            job_id: j.job_id,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = JobStatus)]
pub struct JobStatusBody {
    #[serde(flatten)]
    job: JobSummary,
    #[serde(flatten)]
    pace: Pace,
    /// The workers that worked on the job (seed 002).
    workers: Vec<WorkerBody>,
    /// For a directory trigger: how far its walk got (absent for other jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    scan: Option<ScanBody>,
    /// For a directory trigger with `prune_missing`: points deleted because their file is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    removed: Option<u64>,
    /// Failed images by failure code, e.g. `{"not_found": 3}`; `{}` when none failed.
    /// The images themselves: `GET …/status/{job_id}/items?state=failed`.
    failures_by_reason: BTreeMap<String, u64>,
}

/// A walk's progress, as a trigger's job status shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Scan)]
pub struct ScanBody {
    image_dir: String,
    recursive: bool,
    force_reindex: bool,
    prune_missing: bool,
    /// Files met so far (images or not).
    files_seen: u64,
    /// Of those, files whose content is an image format the workers decode.
    images_found: u64,
    /// Files skipped because they are not such images.
    not_images: u64,
    /// Directories and files skipped because they could not be read.
    unreadable: u64,
    /// The walk (and the prune) is over; the job completes once its images are done.
    done: bool,
}

impl From<ScanRecord> for ScanBody {
    fn from(s: ScanRecord) -> Self {
        Self {
            image_dir: s.spec.dir,
            recursive: s.spec.recursive,
            force_reindex: s.spec.force_reindex,
            prune_missing: s.spec.prune_missing,
            files_seen: s.counts.files_seen,
            images_found: s.counts.images_found,
            not_images: s.counts.not_images,
            unreadable: s.counts.unreadable,
            done: s.done,
        }
    }
}

/// A job's progress.
#[utoipa::path(
    get,
    path = "/api/v1/index/status/{job_id}",
    tag = "jobs",
    params(("job_id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job's progress, pace and workers", body = JobStatusBody),
        (status = 404, description = "`job_not_found`", body = ErrorBody),
    )
)]
pub async fn job_status(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<JobStatusBody>, ApiError> {
    let Some(job) = state.deps.jobs.job(&job_id).await? else {
        return Err(ApiError::JobNotFound(job_id));
    };
    // Most polls are of jobs with nothing failed: only those with failures pay for the count.
    let failures = if job.failed_images > 0 { state.deps.jobs.failures_by_reason(&job_id).await? } else { BTreeMap::new() };
    let now = Utc::now();
    let (job_workers, scan) = tokio::try_join!(state.deps.jobs.job_workers(&job_id), state.deps.jobs.job_scan(&job_id))?;
    let workers = pace::workers(&job, job_workers, now);
    let removed = scan.as_ref().filter(|s| s.spec.prune_missing).map(|s| s.counts.removed);
    Ok(Json(JobStatusBody {
        pace: pace::pace(&job, now),
        workers,
        job: JobSummary::from(job),
        scan: scan.map(ScanBody::from),
        removed,
        failures_by_reason: failures,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ActiveJob {
    job_id: String,
    #[schema(value_type = String, example = "running")]
    status: &'static str,
    created_at: String,
    images: u64,
    percent_complete: f64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RecentJob {
    job_id: String,
    #[schema(value_type = String, example = "completed")]
    status: &'static str,
    created_at: String,
    completed_at: Option<String>,
    images: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OverallStatus {
    total_indexed_images: u64,
    active_jobs: usize,
    active_job_details: Vec<ActiveJob>,
    recent_jobs: Vec<RecentJob>,
    index_stats: IndexStats,
}

/// Active and recent jobs.
#[utoipa::path(
    get,
    path = "/api/v1/index/status",
    tag = "jobs",
    responses((status = 200, description = "Active and recent jobs, and the index", body = OverallStatus))
)]
pub async fn overall_status(State(state): State<AppState>) -> Result<Json<OverallStatus>, ApiError> {
    let jobs = &state.deps.jobs;
    let (active, recent, index_stats) = tokio::try_join!(
        async { jobs.active_jobs().await.map_err(ApiError::from) },
        async { jobs.recent_jobs(state.settings.recent_jobs).await.map_err(ApiError::from) },
        async { index_stats(&state, &Target::open(&state.deps, None).await?).await },
    )?;
    Ok(Json(OverallStatus {
        total_indexed_images: index_stats.total_images,
        active_jobs: active.len(),
        active_job_details: active
            .into_iter()
            .map(|j| ActiveJob {
                percent_complete: j.percent_complete(),
                job_id: j.job_id,
                status: j.status.as_str(),
                created_at: rfc3339(j.created_at),
                images: j.total_images,
            })
            .collect(),
        recent_jobs: recent
            .into_iter()
            .map(|j| RecentJob {
                job_id: j.job_id,
                status: j.status.as_str(),
                created_at: rfc3339(j.created_at),
                completed_at: j.completed_at.map(rfc3339),
                images: j.total_images,
            })
            .collect(),
        index_stats,
    }))
}
