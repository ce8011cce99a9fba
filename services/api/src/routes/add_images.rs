//! `POST /api/v1/index/add-images`: resolve, dedupe, record, queue — and only then answer.

use std::collections::{HashMap, HashSet};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use imgidx_shared::ids::point_id;
use imgidx_shared::jobs::NewItem;
use imgidx_shared::messages::{FileStamp, Priority};

use super::enqueue::{create_and_publish, nothing_to_do, Submission};
use crate::error::ApiError;
use crate::paths::{resolve, PathRejection, ResolvedPath};
use crate::state::AppState;

/// Most point ids asked of the vector store in one call.
const STAMP_LOOKUP_CHUNK: usize = 1024;
/// How many bad paths one error message names.
const MAX_PATHS_IN_ERROR: usize = 5;

#[derive(Deserialize)]
struct AddImagesRequest {
    image_paths: Vec<String>,
    #[serde(default)]
    priority: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct AddImagesResponse {
    pub job_id: String,
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

pub async fn add_images(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AddImagesResponse>), ApiError> {
    let body = body.map_err(|_| ApiError::PayloadTooLarge(state.settings.max_body_bytes))?;
    let (paths, priority) = parse_request(&body, state.settings.max_paths_per_request)?;

    let roots = state.roots.clone();
    let resolved = tokio::task::spawn_blocking(move || resolve_all(&paths, &roots))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let images_count = resolved.len();

    let ids: Vec<Uuid> = resolved.iter().map(|r| point_id(&r.canonical)).collect();
    let indexed = indexed_stamps(&state, &ids).await?;
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

    create_and_publish(&state, Submission { priority, images_count, unchanged, candidates }).await
}

/// Malformed JSON is a 400; well-formed JSON that breaks the contract is a 422.
fn parse_request(body: &[u8], max_paths: usize) -> Result<(Vec<String>, Priority), ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(format!("request body is not valid JSON: {e}")))?;
    let request: AddImagesRequest =
        serde_json::from_value(value).map_err(|e| ApiError::Validation(format!("invalid request: {e}")))?;
    let priority = match request.priority.as_deref() {
        None => Priority::Normal,
        Some(p) => Priority::parse(p).ok_or_else(|| {
            ApiError::Validation(format!("priority must be one of \"low\", \"normal\", \"high\" (got {p:?})"))
        })?,
    };
    if request.image_paths.is_empty() {
        return Err(ApiError::Validation("image_paths must not be empty".into()));
    }
    if request.image_paths.len() > max_paths {
        return Err(ApiError::Validation(format!(
            "too many image_paths: {} given, at most {max_paths} per request",
            request.image_paths.len()
        )));
    }
    Ok((request.image_paths, priority))
}

/// Resolve every path, rejecting the request if any is invalid; duplicates (after
/// resolution) collapse into their first occurrence.
fn resolve_all(paths: &[String], roots: &[std::path::PathBuf]) -> Result<Vec<ResolvedPath>, ApiError> {
    let mut seen = HashSet::with_capacity(paths.len());
    let mut out = Vec::with_capacity(paths.len());
    let mut relative = Vec::new();
    let mut outside = Vec::new();
    for raw in paths {
        match resolve(raw, roots) {
            Ok(r) => {
                if seen.insert(r.canonical.clone()) {
                    out.push(r);
                }
            }
            Err(PathRejection::OutsideRoots(p, _)) => outside.push(p),
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

async fn indexed_stamps(state: &AppState, ids: &[Uuid]) -> Result<HashMap<Uuid, FileStamp>, ApiError> {
    let mut all = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(STAMP_LOOKUP_CHUNK) {
        all.extend(state.deps.vectors.stamps(chunk).await?);
    }
    Ok(all)
}

/// Indexed and unchanged since: same size and mtime. A file we cannot stat is never
/// "current" — it is queued so the worker can report why it fails.
fn is_current(on_disk: Option<FileStamp>, indexed: Option<&FileStamp>) -> bool {
    matches!((on_disk, indexed), (Some(a), Some(b)) if a == *b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn malformed_json_is_400_and_contract_breaks_are_422() {
        assert!(matches!(parse_request(b"{not json", 10), Err(ApiError::MalformedJson(_))));
        assert!(matches!(parse_request(br#"{"priority":"high"}"#, 10), Err(ApiError::Validation(_))));
        assert!(matches!(parse_request(br#"{"image_paths":[]}"#, 10), Err(ApiError::Validation(_))));
        assert!(matches!(
            parse_request(br#"{"image_paths":["/a"],"priority":"urgent"}"#, 10),
            Err(ApiError::Validation(m)) if m.contains("urgent")
        ));
        assert!(matches!(parse_request(br#"{"image_paths":["/a","/b"]}"#, 1), Err(ApiError::Validation(_))));
        assert!(matches!(parse_request(br#"{"image_paths":"/a"}"#, 10), Err(ApiError::Validation(_))));
        let (paths, p) = parse_request(br#"{"image_paths":["/a"],"priority":null}"#, 10).unwrap();
        assert_eq!((paths.len(), p), (1, Priority::Normal));
    }

    #[test]
    fn relative_paths_reject_the_whole_request() {
        let err = resolve_all(&["/tmp".into(), "rel/a.jpg".into()], &[]).unwrap_err();
        assert!(matches!(err, ApiError::Validation(m) if m.contains("rel/a.jpg")));
    }

    #[test]
    fn change_detection_needs_both_stamps_equal() {
        let a = FileStamp { size: 1, mtime_ns: 2 };
        assert!(is_current(Some(a), Some(&a)));
        assert!(!is_current(Some(a), Some(&FileStamp { size: 1, mtime_ns: 3 })));
        assert!(!is_current(None, Some(&a)));
        assert!(!is_current(Some(a), None));
    }
}
