//! `POST /api/v1/curation/archive-selection` (seed 003): move chosen images into
//! `_archive/<archive_name>/` under their root, keeping their relative paths, with a
//! snapshot of their points in the archive's manifest; `POST /api/v1/duplicates/restore`
//! undoes it.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use uuid::Uuid;

use super::json_body;
use crate::curation::archive::{self, ArchiveRequest};
use crate::curation::manifest::{ArchiveKind, ArchiveView};
use crate::curation::moves::ARCHIVE_FOLDER;
use crate::error::{ApiError, ErrorBody};
use crate::paths::{self, PathRejection};
use crate::state::AppState;
use crate::target::Target;

/// Images one selection may hold.
const MAX_SELECTION: usize = 10_000;
/// Longest archive name, in bytes.
const MAX_ARCHIVE_NAME: usize = 64;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSelectionRequest {
    /// Indexed images by path (as indexed, or a path that resolves to it).
    #[serde(default)]
    paths: Vec<String>,
    /// Indexed images by point id.
    #[serde(default)]
    point_ids: Vec<Uuid>,
    /// The folder under `_archive/`: 1–64 characters of letters, digits, `.`, `_` and
    /// `-`, not starting with `.`.
    archive_name: String,
    /// The collection; the selected one when absent (`collection_name` works too).
    #[serde(default, alias = "collection_name")]
    collection: Option<String>,
    /// Only say what would move.
    #[serde(default)]
    dry_run: bool,
}

/// Move a selection of images into `_archive/<archive_name>/` under their root.
#[utoipa::path(
    post,
    path = "/api/v1/curation/archive-selection",
    tag = "duplicates",
    request_body = ArchiveSelectionRequest,
    responses(
        (status = 200, description = "What moved (or, on a dry run, what would); `not_indexed` names what was not found", body = ArchiveView),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
        (status = 422, description = "`validation_error` (no images, too many, a bad name), `path_not_allowed`", body = ErrorBody),
    )
)]
pub async fn archive_selection(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ArchiveView>, ApiError> {
    let body = body.map_err(|_| ApiError::PayloadTooLarge(state.settings.max_body_bytes))?;
    let request: ArchiveSelectionRequest = json_body::parse(&body)?;
    check_archive_name(&request.archive_name)?;
    let asked = request.paths.len() + request.point_ids.len();
    if asked == 0 || asked > MAX_SELECTION {
        return Err(ApiError::Validation(format!("a selection names 1 to {MAX_SELECTION} images by paths or point_ids, not {asked}")));
    }
    let target = Target::resolve(&state.deps, request.collection.as_deref()).await?;
    // Each asked-for image under the name it was asked by, so what is missing can be named.
    let mut asked: Vec<(Uuid, String)> = request.point_ids.iter().map(|id| (*id, id.to_string())).collect();
    for raw in request.paths {
        let indexed_as = match raw.starts_with('/') {
            true => paths::resolve(&raw, &state.roots).map_err(path_error)?.canonical,
            false => raw.clone(),
        };
        asked.push((target.point_id(&indexed_as), raw));
    }
    let mut seen = HashSet::new();
    asked.retain(|(id, _)| seen.insert(*id));
    let ids: Vec<Uuid> = asked.iter().map(|(id, _)| *id).collect();
    let points = target.store.points(&ids).await?;
    let found: HashSet<Uuid> = points.iter().map(|p| p.id).collect();
    let not_indexed: Vec<String> = asked.into_iter().filter(|(id, _)| !found.contains(id)).map(|(_, name)| name).collect();
    let request = ArchiveRequest {
        kind: ArchiveKind::Selection,
        folder: std::path::Path::new(ARCHIVE_FOLDER).join(&request.archive_name),
        task_id: None,
        points,
        dry_run: request.dry_run,
        roots: &state.roots,
    };
    let view = archive::archive(&state.deps, &target, request).await?;
    Ok(Json(ArchiveView { not_indexed, ..view }))
}

fn check_archive_name(name: &str) -> Result<(), ApiError> {
    let fine = !name.is_empty()
        && name.len() <= MAX_ARCHIVE_NAME
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    match fine {
        true => Ok(()),
        false => Err(ApiError::Validation(format!(
            "archive_name must be 1 to {MAX_ARCHIVE_NAME} characters of letters, digits, '.', '_' and '-', not starting with '.'"
        ))),
    }
}

fn path_error(e: PathRejection) -> ApiError {
    match e {
        PathRejection::OutsideRoots(p) => ApiError::PathNotAllowed(format!("path {p:?} is outside the allowed roots")),
        PathRejection::Relative(p) | PathRejection::Invalid(p) => {
            ApiError::Validation(format!("path {p:?} is not an absolute path, an upload or a URL"))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_are_plain_folder_names() {
        for good in ["trip-2024", "a", "best_of.v2"] {
            assert!(check_archive_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "..", "a/b", "../x", "x y", &"n".repeat(65)] {
            assert!(check_archive_name(bad).is_err(), "{bad:?}");
        }
    }
}
