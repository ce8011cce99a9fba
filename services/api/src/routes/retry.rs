//! `POST /api/v1/index/status/{job_id}/retry`: queue the failed images of a finished
//! job again, as a new job at the same priority. Images indexed since (by a later job)
//! are left out, and images another active job holds are not queued twice (the claim
//! of `create_job`). Each file is stat'ed afresh: it may have been fixed meanwhile.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

use imgidx_shared::collections::name_of;
use imgidx_shared::jobs::NewItem;

use super::add_images::AddImagesResponse;
use super::enqueue::{create_and_publish, Submission};
use crate::error::{ApiError, ErrorBody};
use crate::http::request_id::RequestId;
use crate::paths::stamp_of;
use crate::state::AppState;
use crate::target::Target;

/// Queue a finished job's failed images again.
#[utoipa::path(
    post,
    path = "/api/v1/index/status/{job_id}/retry",
    tag = "jobs",
    params(("job_id" = String, Path, description = "The job's id")),
    request_body(content = Object, description = "Empty (`{}`); the Content-Type must be application/json"),
    responses(
        (status = 202, description = "The failed images are queued again as a new job", body = AddImagesResponse),
        (status = 200, description = "Nothing to retry: no failed images, or all indexed since", body = AddImagesResponse),
        (status = 404, description = "`job_not_found`", body = ErrorBody),
        (status = 409, description = "`job_not_finished`: the job is still queued or running", body = ErrorBody),
    )
)]
pub async fn retry_job(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    Path(job_id): Path<String>,
) -> Result<(StatusCode, Json<AddImagesResponse>), ApiError> {
    let job = state.deps.jobs.job(&job_id).await?.ok_or_else(|| ApiError::JobNotFound(job_id.clone()))?;
    if job.status.is_active() {
        return Err(ApiError::JobNotFinished(job_id));
    }
    // Into the collection's current generation: a model switch since may have replaced
    // the one the job wrote into (point ids stay across generations).
    let physical = job.collection.as_deref().unwrap_or(&state.deps.initial_collection);
    let target = Target::resolve(&state.deps, Some(name_of(physical))).await?;
    let candidates = state.deps.jobs.retry_candidates(&job_id).await?;
    let unchanged = usize::try_from(candidates.indexed_since).unwrap_or(usize::MAX);
    let images_count = candidates.items.len().saturating_add(unchanged);
    if images_count == 0 {
        return Ok(nothing_failed(&job_id));
    }
    let items = candidates.items;
    let items = tokio::task::spawn_blocking(move || restamp(items))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let request_id = request_id.map(|Extension(RequestId(id))| id);
    let webhooks = state.webhooks.targets(None);
    let submission = Submission {
        priority: job.priority,
        images_count,
        unchanged,
        candidates: items,
        request_id,
        webhooks,
        collection: Some(target.physical),
    };
    let (code, mut answer) = create_and_publish(&state, submission).await?;
    tracing::info!(retried = %job_id, job_id = %answer.job_id, queued = answer.new_images_count, "retry");
    if code == StatusCode::OK && unchanged == images_count {
        answer.message = format!("Every failed image of job {job_id} has been indexed since");
    }
    Ok((code, answer))
}

/// The items with the stamps their files have now (None: still unreadable, the worker says why).
fn restamp(items: Vec<NewItem>) -> Vec<NewItem> {
    items
        .into_iter()
        .map(|i| NewItem { stamp: stamp_of(std::path::Path::new(&i.path)), ..i })
        .collect()
}

fn nothing_failed(job_id: &str) -> (StatusCode, Json<AddImagesResponse>) {
    (
        StatusCode::OK,
        Json(AddImagesResponse {
            job_id: "none".into(),
            status: "completed",
            images_count: 0,
            new_images_count: 0,
            already_indexed_count: 0,
            already_queued_count: 0,
            message: format!("No failed images in job {job_id}: nothing to retry"),
        }),
    )
}
