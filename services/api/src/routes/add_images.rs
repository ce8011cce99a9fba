//! `POST /api/v1/index/add-images`: resolve, dedupe, record, queue — and only then answer.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Extension;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use uuid::Uuid;

use imgidx_shared::jobs::NewItem;

use super::add_images_request::{parse_request, AddImagesBody, AddImagesRequest};
use super::enqueue::{create_and_publish, nothing_to_do, Submission};
use crate::error::{ApiError, ErrorBody};
use crate::freshness::{indexed_stamps, is_current};
use crate::http::request_id::RequestId;
use crate::paths::{resolve_many, PathRejection, ResolvedPath};
use crate::state::AppState;
use crate::target::Target;

/// How many bad paths one error message names.
const MAX_PATHS_IN_ERROR: usize = 5;

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct AddImagesResponse {
    /// The new job; `"none"` when nothing was queued.
    pub job_id: String,
    /// `queued`, or `completed` when nothing was queued.
    #[schema(value_type = String, example = "queued")]
    pub status: &'static str,
    /// Distinct paths submitted (a path given twice counts once).
    pub images_count: usize,
    pub new_images_count: usize,
    /// Distinct paths not queued by this request: indexed and unchanged, or already
    /// queued by another active job (`already_queued_count` of them).
    pub already_indexed_count: usize,
    pub already_queued_count: usize,
    pub message: String,
}

/// Queue images for indexing (seed 000).
#[utoipa::path(
    post,
    path = "/api/v1/index/add-images",
    tag = "indexing",
    request_body = AddImagesRequest,
    responses(
        (status = 202, description = "Queued: the job and its tasks are durable", body = AddImagesResponse),
        (status = 200, description = "Nothing to queue: every image is indexed and unchanged, or queued by another active job", body = AddImagesResponse),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
        (status = 409, description = "`collection_model_mismatch`: the collection holds vectors of a model not served here; `collection_switching`: a model switch is filling it", body = ErrorBody),
        (status = 422, description = "`validation_error` (no paths, too many, a relative path, a bad priority or webhook_url), `path_not_allowed` (outside `api.allowed_roots`), or `webhook_url_not_allowed` (not a public address)", body = ErrorBody),
    )
)]
pub async fn add_images(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AddImagesResponse>), ApiError> {
    let body = body.map_err(|_| ApiError::PayloadTooLarge(state.settings.max_body_bytes))?;
    let AddImagesBody { paths, priority, webhook_url, collection } =
        parse_request(&body, state.settings.max_paths_per_request)?;
    let webhooks = state.webhooks.for_request(webhook_url.as_deref()).await?;
    let target = Target::resolve(&state.deps, collection.as_deref()).await?;

    let roots = state.roots.clone();
    let started = std::time::Instant::now();
    let resolved = tokio::task::spawn_blocking(move || resolve_all(&paths, &roots))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let images_count = resolved.len();
    let resolving = started.elapsed();

    let ids: Vec<Uuid> = resolved.iter().map(|r| target.point_id(&r.canonical)).collect();
    let indexed = indexed_stamps(target.store.as_ref(), &ids).await?;
    tracing::debug!(images_count, ?resolving, looking_up = ?(started.elapsed() - resolving), "add-images paths resolved and looked up");
    let candidates: Vec<NewItem> = resolved
        .into_iter()
        .zip(ids)
        .filter(|(r, id)| !is_current(r.stamp, indexed.get(id)))
        .map(|(r, id)| NewItem { point_id: id, path: r.canonical, stamp: r.stamp })
        .collect();
    let unchanged = images_count - candidates.len();
    if candidates.is_empty() {
        return Ok(nothing_to_do(images_count, unchanged, 0));
    }

    let request_id = request_id.map(|Extension(RequestId(id))| id);
    let collection = Some(target.physical);
    create_and_publish(&state, Submission { priority, images_count, unchanged, candidates, request_id, webhooks, collection })
        .await
}

/// Resolve every path, rejecting the request if any is invalid; duplicates (after
/// resolution) collapse into their first occurrence.
fn resolve_all(paths: &[String], roots: &[std::path::PathBuf]) -> Result<Vec<ResolvedPath>, ApiError> {
    let mut seen = HashSet::with_capacity(paths.len());
    let mut out = Vec::with_capacity(paths.len());
    let mut relative = Vec::new();
    let mut outside = Vec::new();
    for resolved in resolve_many(paths, roots) {
        match resolved {
            Ok(r) => {
                if seen.insert(r.canonical.clone()) {
                    out.push(r);
                }
            }
            Err(PathRejection::OutsideRoots(p)) => outside.push(p),
            Err(PathRejection::Relative(p) | PathRejection::Invalid(p)) => relative.push(p),
        }
    }
    if !relative.is_empty() {
        return Err(ApiError::Validation(format!(
            "image paths must be absolute: {} invalid ({})",
            relative.len(),
            name_some(&relative)
        )));
    }
    if !outside.is_empty() {
        return Err(ApiError::PathNotAllowed(format!(
            "{} image paths are outside the allowed roots ({})",
            outside.len(),
            name_some(&outside)
        )));
    }
    Ok(out)
}

fn name_some(paths: &[String]) -> String {
    let mut s = paths.iter().take(MAX_PATHS_IN_ERROR).map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ");
    if paths.len() > MAX_PATHS_IN_ERROR {
        s.push_str(", ...");
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_reject_the_whole_request() {
        let err = resolve_all(&["/tmp".into(), "rel/a.jpg".into()], &[]).unwrap_err();
        assert!(matches!(err, ApiError::Validation(m) if m.contains("rel/a.jpg")));
    }
}
