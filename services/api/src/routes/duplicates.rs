//! Duplicates (seed 003): `POST /api/v1/duplicates/find-similar` starts an analysis in
//! the background; `GET /api/v1/duplicates/report/{task_id}` shows its progress, then
//! its groups; `POST /api/v1/duplicates/archive-exact` moves all but one image of each
//! exact group into `_duplicates/` under its root; `POST /api/v1/duplicates/restore`
//! undoes an archive (this one's or a curation selection's).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use imgidx_shared::collections::name_of;
use imgidx_shared::jobs::{AnalysisState, DuplicateAnalysis};
use imgidx_shared::time::rfc3339;
use imgidx_shared::vectors::Point;

use super::json_body;
use crate::curation::archive::{self, ArchiveRequest};
use crate::curation::manifest::{ArchiveKind, ArchiveView};
use crate::curation::moves::DUPLICATES_FOLDER;
use crate::curation::report::DuplicateReport;
use crate::curation::keeping_order;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::target::Target;

/// Points read from the vector store per request when archive-exact reads its groups again.
const READ_CHUNK: usize = 1000;
/// Similarity near duplicates reach when the request names none.
const DEFAULT_THRESHOLD: f32 = 0.95;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FindSimilarRequest {
    /// Cosine similarity at or above which two images are near duplicates, in (0, 1];
    /// 0.95 when absent.
    threshold: Option<f32>,
    /// The collection; the selected one when absent (`collection_name` works too).
    #[serde(alias = "collection_name")]
    collection: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FindSimilarResponse {
    task_id: String,
    status: &'static str,
    collection: String,
    threshold: f32,
    message: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AnalysisProgress {
    /// Points read so far.
    scanned: u64,
    /// Points in the collection when the analysis started.
    total: u64,
    /// 0–100.
    percent: f64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReportResponse {
    task_id: String,
    /// `running`, `completed` or `failed`.
    status: &'static str,
    collection: String,
    threshold: f32,
    progress: AnalysisProgress,
    /// RFC 3339.
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<DuplicateReport>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveExactRequest {
    /// A completed analysis.
    task_id: String,
    /// Only say what would move (the default); `false` moves the files.
    #[serde(default = "yes")]
    dry_run: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    archive_id: String,
}

/// Start a duplicate analysis of a collection (in the background).
#[utoipa::path(
    post,
    path = "/api/v1/duplicates/find-similar",
    tag = "duplicates",
    request_body = FindSimilarRequest,
    responses(
        (status = 202, description = "Started: follow it at `/api/v1/duplicates/report/{task_id}`", body = FindSimilarResponse),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
        (status = 422, description = "`validation_error`: a threshold outside (0, 1], an unknown field", body = ErrorBody),
    )
)]
pub async fn find_similar(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<FindSimilarResponse>), ApiError> {
    let body = body.map_err(|_| ApiError::PayloadTooLarge(state.settings.max_body_bytes))?;
    let request: FindSimilarRequest = json_body::parse(&body)?;
    let threshold = request.threshold.unwrap_or(DEFAULT_THRESHOLD);
    if !(threshold > 0.0 && threshold <= 1.0) {
        return Err(ApiError::Validation(format!("threshold must be in (0, 1], not {threshold}")));
    }
    let target = Target::open(&state.deps, request.collection.as_deref()).await?;
    let task_id = state.analyses.start(&target, threshold).await?;
    let message = format!("Duplicate analysis started; its report is at /api/v1/duplicates/report/{task_id}");
    let body = FindSimilarResponse { task_id, status: "running", collection: target.record.name, threshold, message };
    Ok((StatusCode::ACCEPTED, Json(body)))
}

/// A duplicate analysis: its progress, then its groups.
#[utoipa::path(
    get,
    path = "/api/v1/duplicates/report/{task_id}",
    tag = "duplicates",
    params(("task_id" = String, Path, description = "From find-similar")),
    responses(
        (status = 200, description = "Where it stands; `report` once completed", body = ReportResponse),
        (status = 404, description = "`task_not_found`", body = ErrorBody),
    )
)]
pub async fn report(State(state): State<AppState>, Path(task_id): Path<String>) -> Result<Json<ReportResponse>, ApiError> {
    let analysis = analysis(&state, &task_id).await?;
    let report = stored_report(&analysis)?;
    let percent = match (analysis.state, analysis.total) {
        (AnalysisState::Completed, _) => 100.0,
        (_, 0) => 0.0,
        (_, total) => ((analysis.scanned.min(total) as f64 / total as f64) * 1000.0).round() / 10.0,
    };
    Ok(Json(ReportResponse {
        task_id: analysis.task_id,
        status: analysis.state.as_str(),
        collection: name_of(&analysis.spec.collection).to_owned(),
        threshold: analysis.spec.threshold,
        progress: AnalysisProgress { scanned: analysis.scanned, total: analysis.total, percent },
        created_at: rfc3339(analysis.created_at),
        finished_at: analysis.finished_at.map(rfc3339),
        error: analysis.error,
        report,
    }))
}

/// Move all but one image of each exact group into `_duplicates/` under its root.
#[utoipa::path(
    post,
    path = "/api/v1/duplicates/archive-exact",
    tag = "duplicates",
    request_body = ArchiveExactRequest,
    responses(
        (status = 200, description = "What moved (or, on a dry run, what would)", body = ArchiveView),
        (status = 404, description = "`task_not_found`, `collection_not_found`", body = ErrorBody),
        (status = 409, description = "`task_not_completed`", body = ErrorBody),
        (status = 422, description = "`validation_error`: a missing `task_id`, an unknown field", body = ErrorBody),
    )
)]
pub async fn archive_exact(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ArchiveView>, ApiError> {
    let body = body.map_err(|_| ApiError::PayloadTooLarge(state.settings.max_body_bytes))?;
    let request: ArchiveExactRequest = json_body::parse(&body)?;
    let analysis = analysis(&state, &request.task_id).await?;
    if analysis.state != AnalysisState::Completed {
        return Err(ApiError::TaskNotCompleted { task_id: request.task_id, state: analysis.state.as_str() });
    }
    let report = stored_report(&analysis)?.unwrap_or_default();
    let target = Target::of_job(&state.deps, Some(&analysis.spec.collection)).await?;
    // Read again, in chunks rather than a request per group: the index may have changed
    // since the analysis.
    let ids: Vec<Uuid> = report.exact_groups.iter().flat_map(|g| g.images.iter().map(|i| i.point_id)).collect();
    let mut current: HashMap<Uuid, Point> = HashMap::new();
    for chunk in ids.chunks(READ_CHUNK) {
        current.extend(target.store.points(chunk).await?.into_iter().map(|p| (p.id, p)));
    }
    let mut extras = Vec::new();
    for group in &report.exact_groups {
        let mut points: Vec<Point> = group
            .images
            .iter()
            .filter_map(|i| current.remove(&i.point_id))
            .filter(|p| p.payload.sha256 == group.sha256)
            .collect();
        keeping_order(&mut points);
        extras.extend(points.into_iter().skip(1));
    }
    let request = ArchiveRequest {
        kind: ArchiveKind::Exact,
        folder: DUPLICATES_FOLDER.into(),
        task_id: Some(analysis.task_id),
        points: extras,
        dry_run: request.dry_run,
        roots: &state.roots,
    };
    Ok(Json(archive::archive(&state.deps, &target, request).await?))
}

/// Put an archive's files back where they were, and their points back in the index.
#[utoipa::path(
    post,
    path = "/api/v1/duplicates/restore",
    tag = "duplicates",
    request_body = RestoreRequest,
    responses(
        (status = 200, description = "Restored; entries a restore could not put back say why", body = ArchiveView),
        (status = 404, description = "`archive_not_found`, `collection_not_found`", body = ErrorBody),
        (status = 409, description = "`archive_restored`", body = ErrorBody),
        (status = 422, description = "`validation_error`: a missing `archive_id`, an unknown field", body = ErrorBody),
    )
)]
pub async fn restore(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Json<ArchiveView>, ApiError> {
    let body = body.map_err(|_| ApiError::PayloadTooLarge(state.settings.max_body_bytes))?;
    let request: RestoreRequest = json_body::parse(&body)?;
    Ok(Json(archive::restore(&state.deps, &state.roots, &request.archive_id).await?))
}

/// An archive: what it moved, and whether it was restored.
#[utoipa::path(
    get,
    path = "/api/v1/duplicates/archives/{archive_id}",
    tag = "duplicates",
    params(("archive_id" = String, Path, description = "From archive-exact or archive-selection")),
    responses(
        (status = 200, description = "The archive's entries", body = ArchiveView),
        (status = 404, description = "`archive_not_found`", body = ErrorBody),
    )
)]
pub async fn archive_details(State(state): State<AppState>, Path(archive_id): Path<String>) -> Result<Json<ArchiveView>, ApiError> {
    Ok(Json(archive::view(&state.deps, &archive_id).await?))
}

async fn analysis(state: &AppState, task_id: &str) -> Result<DuplicateAnalysis, ApiError> {
    state.deps.jobs.analysis(task_id).await?.ok_or_else(|| ApiError::TaskNotFound(task_id.to_owned()))
}

fn stored_report(analysis: &DuplicateAnalysis) -> Result<Option<DuplicateReport>, ApiError> {
    analysis
        .report
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| ApiError::Internal(format!("analysis {}: the stored report does not parse: {e}", analysis.task_id)))
}
