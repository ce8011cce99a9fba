//! `POST /api/v1/batch` (seed 004): up to 100 images, each a URL to fetch or base64
//! bytes. The bytes go to the object store at once; URLs are fetched by the workers
//! (`imgidx_shared::fetch`), so a slow or failing server fails its image, never the
//! request. Every image of the request is an item of the batch's job, in request order.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use base64::Engine;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use imgidx_shared::fetch::check_url;
use imgidx_shared::ids::new_job_id;
use imgidx_shared::jobs::{BatchImage, NewItem};
use imgidx_shared::messages::{FileStamp, ImageTask, Priority};
use imgidx_shared::sources::{clean_name, object_path};
use imgidx_shared::time::rfc3339;

use super::enqueue::publish_job;
use crate::error::ApiError;
use crate::http::request_id::RequestId;
use crate::state::AppState;
use crate::target::Target;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to `ingest.max_files` (100) images.
    images: Option<Vec<BatchSource>>,
    /// Collection to index into; the selected one when absent.
    collection: Option<String>,
    #[schema(value_type = Option<Priority>)]
    priority: Option<Priority>,
}

/// One image: exactly one of `url` and `base64`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSource {
    /// An http(s) URL the workers fetch (public addresses only unless `ingest.allow_private_urls`).
    url: Option<String>,
    /// The image's bytes, base64, optionally as a data URL (`data:image/jpeg;base64,…`).
    base64: Option<String>,
    /// Its file name; else the URL's last segment, or `image-<n>`.
    name: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchCreated {
    job_id: String,
    /// Always `pending`.
    #[schema(value_type = String, example = "pending")]
    status: &'static str,
    created_at: String,
    message: String,
}

/// Where one image of the request comes from, once checked.
enum Source {
    Url(String),
    Bytes(Vec<u8>),
}

/// Submit a batch of images by URL or base64 (seed 004).
#[utoipa::path(
    post,
    path = "/api/v1/batch",
    tag = "batch",
    request_body = BatchRequest,
    responses(
        (status = 201, description = "The job and its tasks are durable", body = BatchCreated),
        (status = 400, description = "`invalid_batch`: no images, too many, neither or both of url and base64, a bad URL or bad base64; `malformed_json`", body = super::batch_status::BatchError),
        (status = 404, description = "`collection_not_found`", body = super::batch_status::BatchError),
        (status = 409, description = "`collection_model_mismatch`, `collection_switching`", body = super::batch_status::BatchError),
        (status = 413, description = "`file_too_large`: an image over `ingest.max_image_bytes` (10 MB)", body = super::batch_status::BatchError),
    )
)]
pub async fn create_batch(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<BatchCreated>), ApiError> {
    let limits = &state.deps.uploads.limits;
    let body = body.map_err(|_| ApiError::PayloadTooLarge(limits.max_batch_request_bytes()))?;
    let request: BatchRequest = serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::BadBatch(format!("Invalid request: {e}")),
        _ => ApiError::MalformedJson(format!("request body is not valid JSON: {e}")),
    })?;
    let images = request.images.unwrap_or_default();
    if images.is_empty() {
        return Err(ApiError::BadBatch("No images provided".into()));
    }
    if images.len() > limits.max_files {
        return Err(ApiError::BadBatch(format!("Too many images: {} (at most {})", images.len(), limits.max_files)));
    }
    let checked = images.iter().enumerate().map(|(i, s)| check(i, s, limits.max_image_bytes)).collect::<Result<Vec<_>, _>>()?;
    let target = Target::resolve(&state.deps, request.collection.as_deref()).await?;

    let mut items = Vec::with_capacity(checked.len());
    let mut named = Vec::with_capacity(checked.len());
    for (i, (source, given)) in checked.into_iter().zip(images.iter().map(|s| s.name.as_deref())).enumerate() {
        let (path, name, stamp) = match source {
            Source::Url(url) => {
                let last = url.split(['?', '#']).next().and_then(|u| u.rsplit('/').next()).filter(|s| !s.is_empty());
                let name = clean_name(given.or(last), &format!("image-{}", i + 1));
                (url, name, None)
            }
            Source::Bytes(bytes) => {
                let name = clean_name(given, &format!("image-{}", i + 1));
                let size = bytes.len() as u64;
                let key = state.deps.uploads.store(bytes).await?;
                (object_path(&key, &name), name, Some(FileStamp { size, mtime_ns: 0 }))
            }
        };
        let point_id = target.point_id(&path);
        named.push(BatchImage { index: u32::try_from(i).unwrap_or(u32::MAX), name, point_id });
        items.push(NewItem { point_id, path, stamp });
    }
    let request_id = request_id.map(|Extension(RequestId(id))| id);
    let (priority, collection) = (request.priority.unwrap_or(Priority::Normal), target.physical);
    let count = named.len();
    let state = state.clone();
    // A task of its own: a client going away must not stop it between commit and publish.
    let job_id = tokio::spawn(
        async move {
            let job_id = new_job_id(Utc::now());
            state.deps.jobs.create_batch_job(&job_id, priority, Some(&collection), &items, &named).await?;
            let mut seen = std::collections::HashSet::new();
            let tasks: Vec<ImageTask> = items
                .iter()
                .filter(|i| seen.insert(i.point_id))
                .map(|i| i.task(&job_id, Some(&collection), request_id.as_deref()))
                .collect();
            publish_job(&state, &job_id, priority, &tasks).await?;
            tracing::info!(job_id, images = count, tasks = tasks.len(), "batch queued");
            Ok::<_, ApiError>(job_id)
        }
        .instrument(tracing::Span::current()),
    )
    .await
    .map_err(|e| ApiError::Internal(format!("queueing task: {e}")))??;
    let created = BatchCreated {
        job_id,
        status: "pending",
        created_at: rfc3339(Utc::now()),
        message: format!("Batch job created with {count} images"),
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// Seed 004's rules for one image; `index` counts from 0 as its status does.
fn check(index: usize, source: &BatchSource, max_bytes: u64) -> Result<Source, ApiError> {
    match (&source.url, &source.base64) {
        (Some(_), Some(_)) => Err(ApiError::BadBatch(format!("Image {index} has both url and base64; give one"))),
        (None, None) => Err(ApiError::BadBatch(format!("Invalid image source at index {index}: give url or base64"))),
        (Some(url), None) => check_url(url)
            .map(|u| Source::Url(u.to_string()))
            .map_err(|e| ApiError::BadBatch(format!("Image {index}: {e}"))),
        (None, Some(text)) => decode(index, text, max_bytes).map(Source::Bytes),
    }
}

/// Base64 (standard alphabet, padding optional), bare or as a data URL.
fn decode(index: usize, text: &str, max_bytes: u64) -> Result<Vec<u8>, ApiError> {
    let data = match text.strip_prefix("data:") {
        Some(rest) => rest.split_once(";base64,").map(|(_, d)| d).ok_or_else(|| {
            ApiError::BadBatch(format!("Image {index}: a data URL must be data:<type>;base64,<data>"))
        })?,
        None => text,
    };
    let data: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let too_large = || ApiError::FileTooLarge { name: format!("image {index}"), limit: max_bytes };
    if data.len() as u64 / 4 * 3 > max_bytes + 2 {
        return Err(too_large());
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine.decode(data.as_bytes()).map_err(|e| ApiError::BadBatch(format!("Image {index}: invalid base64 ({e})")))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large());
    }
    if bytes.is_empty() {
        return Err(ApiError::BadBatch(format!("Image {index}: no bytes")));
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_comes_bare_or_as_a_data_url_within_the_limit() {
        assert_eq!(decode(0, "aGVsbG8=", 10).unwrap(), b"hello");
        assert_eq!(decode(0, "aGVsbG8", 10).unwrap(), b"hello");
        assert_eq!(decode(0, "data:image/png;base64,aGVs\nbG8=", 10).unwrap(), b"hello");
        assert!(matches!(decode(1, "data:image/png,aGVsbG8=", 10), Err(ApiError::BadBatch(m)) if m.contains("Image 1")));
        assert!(matches!(decode(0, "not base64!", 10), Err(ApiError::BadBatch(_))));
        assert!(matches!(decode(0, "aGVsbG8=", 4), Err(ApiError::FileTooLarge { .. })));
        assert!(matches!(decode(0, &"A".repeat(4000), 10), Err(ApiError::FileTooLarge { .. })));
    }

    #[test]
    fn each_image_names_exactly_one_source() {
        let s = |url: Option<&str>, b: Option<&str>| BatchSource { url: url.map(Into::into), base64: b.map(Into::into), name: None };
        assert!(matches!(check(0, &s(Some("https://a/b.jpg"), Some("aGk=")), 9), Err(ApiError::BadBatch(m)) if m.contains("both")));
        assert!(matches!(check(2, &s(None, None), 9), Err(ApiError::BadBatch(m)) if m.contains("index 2")));
        assert!(matches!(check(0, &s(Some("file:///etc/passwd"), None), 9), Err(ApiError::BadBatch(_))));
        assert!(matches!(check(0, &s(Some("https://a/b.jpg"), None), 9), Ok(Source::Url(u)) if u == "https://a/b.jpg"));
    }
}
