//! `POST /api/v1/index/trigger` (seed 002): index a whole directory. Answers 202 with a
//! job at once; the walk runs in the background (`crate::scan`), adding what it finds
//! to the job in chunks, so the first images are embedded while it goes on. A trigger
//! of a directory an active job scans already gets that job (200).

use std::path::Path;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use imgidx_shared::ids::new_job_id;
use imgidx_shared::jobs::{ScanOpened, ScanSpec};
use imgidx_shared::messages::Priority;

use super::add_images_request::parse_priority;
use super::json_body;
use crate::error::{ApiError, ErrorBody};
use crate::http::request_id::RequestId;
use crate::paths::{self, PathRejection};
use crate::scan::{Scanner, Walk};
use crate::state::AppState;
use crate::target::Target;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct TriggerRequest {
    /// Absolute path of a directory inside `api.allowed_roots` (seed 003's `directory_path`
    /// is the same field).
    #[serde(alias = "directory_path")]
    image_dir: String,
    /// Walk subdirectories too.
    #[serde(default = "yes")]
    #[schema(default = true)]
    recursive: bool,
    /// Embed every image again, changed or not.
    #[serde(default)]
    force_reindex: bool,
    /// Delete the points under `image_dir` whose file is gone (counted as `removed`).
    #[serde(default)]
    prune_missing: bool,
    /// Queue priority; `normal` when absent or null.
    #[serde(default)]
    #[schema(value_type = Option<Priority>)]
    priority: Option<String>,
    /// Told when the job finishes, as for add-images.
    #[serde(default)]
    webhook_url: Option<String>,
    /// Collection to index into; the selected one when absent or null.
    #[serde(default)]
    collection: Option<String>,
    // Seed 002 also names `index_prefix` (where its index files went); the index lives
    // in the vector store here, so it is accepted and ignored like any unknown field.
}

fn yes() -> bool {
    true
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TriggerResponse {
    job_id: String,
    /// `queued` for a new job, `running` for the job already scanning this directory.
    #[schema(value_type = String, example = "queued")]
    status: &'static str,
    /// The directory as it is walked (symlinks resolved).
    image_dir: String,
    message: String,
}

/// Index a directory on the server (seed 002).
#[utoipa::path(
    post,
    path = "/api/v1/index/trigger",
    tag = "indexing",
    request_body = TriggerRequest,
    responses(
        (status = 202, description = "A new job; the walk goes on in the background (see the job's `scan`)", body = TriggerResponse),
        (status = 200, description = "An active job scans this directory already: that job", body = TriggerResponse),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
        (status = 409, description = "`collection_model_mismatch`: the collection holds vectors of a model not served here; `collection_switching`: a model switch is filling it", body = ErrorBody),
        (status = 422, description = "`validation_error` (not absolute, a bad field), `path_not_allowed`, `not_a_directory` (missing, not a directory, unreadable), or `webhook_url_not_allowed`", body = ErrorBody),
    )
)]
pub async fn trigger(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<TriggerResponse>), ApiError> {
    let body = body.map_err(|_| ApiError::PayloadTooLarge(state.settings.max_body_bytes))?;
    let request: TriggerRequest = json_body::parse(&body)?;
    let priority = match request.priority.as_deref() {
        None => Priority::Normal,
        Some(p) => parse_priority(p)?,
    };
    let webhooks = state.webhooks.for_request(request.webhook_url.as_deref()).await?;
    let target = Target::resolve(&state.deps, request.collection.as_deref()).await?;
    let roots = state.roots.clone();
    let raw = request.image_dir.clone();
    let dir = tokio::task::spawn_blocking(move || checked_dir(&raw, &roots))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let spec = ScanSpec {
        dir: dir.clone(),
        recursive: request.recursive,
        force_reindex: request.force_reindex,
        prune_missing: request.prune_missing,
        collection: Some(target.physical),
    };
    let job_id = new_job_id(Utc::now());
    let owner = Scanner::new_owner();
    // Before the job, as add-images does; a running job is told about this caller too.
    state.webhooks.register(state.deps.jobs.as_ref(), &job_id, &webhooks).await?;
    match state.deps.jobs.open_scan(&job_id, priority, &spec, &owner).await? {
        ScanOpened::Running { job_id } => {
            state.webhooks.register(state.deps.jobs.as_ref(), &job_id, &webhooks).await?;
            Ok((
                StatusCode::OK,
                Json(TriggerResponse {
                    message: format!("Job {job_id} is indexing this directory already"),
                    job_id,
                    status: "running",
                    image_dir: dir,
                }),
            ))
        }
        ScanOpened::Created => {
            let request_id = request_id.map(|Extension(RequestId(id))| id);
            tracing::info!(job_id, dir, priority = priority.as_str(), "directory scan queued");
            let walk = Walk { job_id: job_id.clone(), priority, spec, owner, request_id };
            state.scanner.start_or_defer(walk).await;
            Ok((
                StatusCode::ACCEPTED,
                Json(TriggerResponse {
                    job_id,
                    status: "queued",
                    image_dir: dir,
                    message: "Indexing job queued for processing".into(),
                }),
            ))
        }
    }
}

/// The canonical directory, if it is absolute, inside the allowed roots, and a directory
/// this server can list.
fn checked_dir(raw: &str, roots: &[std::path::PathBuf]) -> Result<String, ApiError> {
    let resolved = paths::resolve(raw, roots).map_err(|e| match e {
        PathRejection::OutsideRoots(p) => ApiError::PathNotAllowed(format!("image_dir {p:?} is outside the allowed roots")),
        PathRejection::Relative(p) | PathRejection::Invalid(p) => {
            ApiError::Validation(format!("image_dir must be an absolute path (got {p:?})"))
        }
    })?;
    let path = Path::new(&resolved.canonical);
    match std::fs::read_dir(path) {
        Ok(_) => Ok(resolved.canonical),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(ApiError::NotADirectory(format!("image_dir {raw:?} does not exist")))
        }
        Err(_) if !path.is_dir() => Err(ApiError::NotADirectory(format!("image_dir {raw:?} is not a directory"))),
        Err(e) => Err(ApiError::NotADirectory(format!("image_dir {raw:?} cannot be read: {}", e.kind()))),
    }
}
