//! Seed 003's names for what exists: `POST /api/v1/ingest/scan` is the directory trigger,
//! and `GET /api/v1/ingest/status/{job_id}` a job with seed 003's `result` report.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;

use imgidx_shared::jobs::{ItemRecord, ItemState};

use super::status::JobSummary;
use super::trigger::{self, TriggerRequest, TriggerResponse};
use crate::error::{ApiError, ErrorBody};
use crate::http::request_id::RequestId;
use crate::state::AppState;

/// Files each list of a report names at most; the rest are in `…/items`.
const REPORT_FILES: usize = 1000;

/// Index a directory on the server (seed 003's name for the trigger).
#[utoipa::path(
    post,
    path = "/api/v1/ingest/scan",
    tag = "indexing",
    request_body(content = TriggerRequest, description = "As for the trigger; seed 003 names the directory `directory_path`"),
    responses(
        (status = 202, description = "A new job; the walk goes on in the background", body = TriggerResponse),
        (status = 200, description = "An active job scans this directory already: that job", body = TriggerResponse),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
        (status = 409, description = "`collection_model_mismatch`, `collection_switching`", body = ErrorBody),
        (status = 422, description = "`validation_error`, `path_not_allowed`, `not_a_directory` or `webhook_url_not_allowed`, as for the trigger", body = ErrorBody),
    )
)]
pub async fn ingest_scan(
    state: State<AppState>,
    request_id: Option<Extension<RequestId>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<TriggerResponse>), ApiError> {
    trigger::trigger(state, request_id, body).await
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = IngestStatus)]
pub struct IngestStatusBody {
    #[serde(flatten)]
    job: JobSummary,
    /// Seed 003's report, once the job has finished (null before).
    result: Option<IngestReport>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IngestReport {
    total_processed: u64,
    total_failed: u64,
    /// Indexed with the vector of an image with the same bytes (no inference).
    total_from_cache: u64,
    /// At most 1000; `truncated` says when there are more (all in `…/status/{job_id}/items`).
    processed_files: Vec<ProcessedFile>,
    failed_files: Vec<FailedFile>,
    truncated: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProcessedFile {
    file: String,
    /// `embedded` (this model ran on it) or `cache` (the vector of an image with the same bytes).
    #[schema(value_type = String, example = "embedded")]
    source: &'static str,
    details: ProcessedDetails,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProcessedDetails {
    full_path: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FailedFile {
    file: String,
    /// The stable failure code (`not_found`, `not_an_image`, …).
    error: String,
    /// What went wrong, for people.
    details: String,
}

/// A job, with seed 003's report once it has finished.
#[utoipa::path(
    get,
    path = "/api/v1/ingest/status/{job_id}",
    tag = "jobs",
    params(("job_id" = String, Path, description = "The job")),
    responses(
        (status = 200, description = "The job, and its report once finished", body = IngestStatusBody),
        (status = 404, description = "`job_not_found`", body = ErrorBody),
    )
)]
pub async fn ingest_status(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<IngestStatusBody>, ApiError> {
    let jobs = &state.deps.jobs;
    let job = jobs.job(&job_id).await?.ok_or_else(|| ApiError::JobNotFound(job_id.clone()))?;
    let result = if job.status.is_active() {
        None
    } else {
        let (indexed, failed) = tokio::try_join!(
            async { jobs.job_items(&job_id, Some(ItemState::Indexed), None, REPORT_FILES).await.map_err(ApiError::from) },
            async { jobs.job_items(&job_id, Some(ItemState::Failed), None, REPORT_FILES).await.map_err(ApiError::from) },
        )?;
        Some(IngestReport {
            total_processed: job.processed_images,
            total_failed: job.failed_images,
            total_from_cache: job.from_cache,
            truncated: indexed.next_after.is_some() || failed.next_after.is_some(),
            processed_files: indexed.items.into_iter().map(processed).collect(),
            failed_files: failed.items.into_iter().map(failed_file).collect(),
        })
    };
    Ok(Json(IngestStatusBody { job: JobSummary::from(job), result }))
}

fn processed(item: ItemRecord) -> ProcessedFile {
    ProcessedFile {
        source: if item.from_cache { "cache" } else { "embedded" },
        details: ProcessedDetails { full_path: item.path.clone() },
        file: item.path,
    }
}

fn failed_file(item: ItemRecord) -> FailedFile {
    FailedFile {
        file: item.path,
        error: item.failure_kind.unwrap_or_else(|| "unknown".into()),
        details: item.reason.unwrap_or_default(),
    }
}
