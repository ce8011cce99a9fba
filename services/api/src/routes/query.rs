//! `POST /api/v1/query`: nearest images to a text (seed 002), to an image on this
//! machine (`image_path`), or to an uploaded image (multipart field `image`). Optional
//! filters (`query_filter.rs`, applied by the vector store) and paging (`offset`).
//!
//! An `image_path` is looked up in the index first: an indexed image is searched with its
//! stored vector, and no file is read. Any other path is read only when it lies under
//! `api.allowed_roots` (none set: never), through `imgidx_shared::files`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::Json;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use imgidx_shared::files::ReadLimits;
use imgidx_shared::vectors::ImagePayload;

use super::copy_results::copy_results;
use super::query_combined::{self, combine, describe, Part, QueryPart};
use super::query_filter::{search_filter, Wanted};
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::Granted;
use crate::keys::Scope;
use crate::paths;
use crate::query_engine::{engine_for, QueryEngine};
use crate::state::AppState;
use crate::target::Target;

const DEFAULT_TOP_K: usize = 10;
/// Most results `copy_results` links or copies.
const MAX_COPIED: usize = 100;
/// A result copied (not linked) is read within these bounds.
const COPY_LIMITS: ReadLimits = ReadLimits { max_bytes: 256 << 20, max_time: Duration::from_secs(10) };
/// Longest query text accepted; CLIP reads at most 77 tokens of it anyway.
const MAX_TEXT_BYTES: usize = 4096;

/// A JSON query: exactly one of `text`, `image_path` and `queries`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// Search by text (at most 4096 bytes; needs a model with a text encoder).
    text: Option<String>,
    /// Search by an image: an indexed path (its stored vector), or a file inside `api.allowed_roots`.
    image_path: Option<String>,
    /// Search by several texts and images at once (at most 8): the weighted sum of their
    /// vectors, unit length again; a negative weight steers away from its part.
    queries: Option<Vec<QueryPart>>,
    /// How many results, 1 to `api.max_top_k` (default 10).
    #[schema(minimum = 1)]
    top_k: Option<usize>,
    /// Only images whose path starts with this.
    path_prefix: Option<String>,
    /// Only results scoring at least this (cosine, -1 to 1).
    #[schema(minimum = -1.0, maximum = 1.0)]
    min_score: Option<f32>,
    /// Seed 002: link (or copy) the result files into a folder of their own.
    copy_results: Option<bool>,
    /// Collection to search; the selected one when absent or null.
    collection: Option<String>,
    /// Only images with every one of these tags (at most 20; see README, "Tags").
    tags: Option<Vec<String>>,
    /// Results to skip, best first (paging: `top_k` is the page size), at most 10000.
    #[schema(minimum = 0, maximum = 10000)]
    offset: Option<usize>,
    /// Only images in one of these formats (`jpeg`, `png`, `webp`, `heic`, `dng`, …; `jpg` is `jpeg`).
    formats: Option<Vec<String>>,
    /// Only images at least this many pixels wide (after EXIF orientation).
    min_width: Option<u32>,
    /// Only images at least this many pixels tall.
    min_height: Option<u32>,
    /// Only images whose file was modified at or after this (RFC 3339).
    #[schema(format = DateTime)]
    mtime_from: Option<String>,
    /// Only images whose file was modified at or before this (RFC 3339).
    #[schema(format = DateTime)]
    mtime_to: Option<String>,
    /// Only images indexed at or after this (RFC 3339).
    #[schema(format = DateTime)]
    indexed_from: Option<String>,
    /// Only images indexed at or before this (RFC 3339).
    #[schema(format = DateTime)]
    indexed_to: Option<String>,
}

impl QueryRequest {
    /// The filters and page it asks for, as given.
    fn wanted(&mut self) -> Wanted {
        Wanted {
            path_prefix: self.path_prefix.take(),
            min_score: self.min_score,
            tags: self.tags.take(),
            formats: self.formats.take(),
            min_width: self.min_width,
            min_height: self.min_height,
            mtime_from: self.mtime_from.take(),
            mtime_to: self.mtime_to.take(),
            indexed_from: self.indexed_from.take(),
            indexed_to: self.indexed_to.take(),
            offset: self.offset,
        }
    }
}

/// A query by upload (`multipart/form-data`): the image in field `image`, and the
/// options of a JSON query as text fields.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // described, never built: `read_form` reads the fields
pub struct QueryUpload {
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    top_k: Option<usize>,
    path_prefix: Option<String>,
    min_score: Option<f32>,
    copy_results: Option<bool>,
    collection: Option<String>,
    /// Repeat the field for each tag.
    tags: Option<Vec<String>>,
    offset: Option<usize>,
    /// Repeat the field for each format.
    formats: Option<Vec<String>>,
    min_width: Option<u32>,
    min_height: Option<u32>,
    mtime_from: Option<String>,
    mtime_to: Option<String>,
    indexed_from: Option<String>,
    indexed_to: Option<String>,
}

enum Subject {
    Text(String),
    Path(String),
    Upload { name: String, bytes: Bytes },
    Combined(Vec<(Part, f32)>),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct QueryResponse {
    /// The text, the image path, or the uploaded file's name.
    query: String,
    /// text, image, upload or combined.
    #[schema(value_type = String, example = "text")]
    query_type: &'static str,
    results: Vec<QueryResult>,
    query_time_seconds: f64,
    index_stats: IndexStats,
    /// With `copy_results: true`: the folder holding the result files, `<rank>_<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    results_folder: Option<String>,
    /// Ranks whose file could not be copied (gone, or not a regular file any more).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    results_not_copied: Vec<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct QueryResult {
    rank: usize,
    score: f32,
    image_path: String,
    id: Uuid,
    payload: ImagePayload,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = QueryIndexStats)]
struct IndexStats {
    total_images: u64,
    model: String,
    /// The collection searched.
    collection: String,
}

/// Search by text, by image path or by upload.
#[utoipa::path(
    post,
    path = "/api/v1/query",
    tag = "search",
    request_body(content(
        (QueryRequest = "application/json"),
        (QueryUpload = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "The nearest images, best first", body = QueryResponse),
        (status = 403, description = "`forbidden`: `copy_results` needs a key with write access", body = ErrorBody),
        (status = 404, description = "`image_not_found`: `image_path` is neither indexed nor a file this server may read; `collection_not_found`", body = ErrorBody),
        (status = 409, description = "`collection_model_mismatch`: the collection holds vectors of a model not served here", body = ErrorBody),
        (status = 422, description = "`validation_error` (fields), or the image cannot be used: `not_an_image`, `unreadable_image`, `image_too_large`", body = ErrorBody),
    )
)]
pub async fn query(State(state): State<AppState>, request: Request) -> Result<Json<QueryResponse>, ApiError> {
    let started = Instant::now();
    let granted = request.extensions().get::<Granted>().map(|g| g.0);
    let is_multipart = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (subject, mut req) = if is_multipart {
        let form = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::MalformedMultipart(format!("malformed multipart body: {}", e.body_text())))?;
        read_form(form, state.settings.max_body_bytes).await?
    } else {
        let body = Bytes::from_request(request, &state)
            .await
            .map_err(|_| ApiError::PayloadTooLarge(state.settings.max_body_bytes))?;
        read_json(&body)?
    };
    let top_k = req.top_k.unwrap_or(DEFAULT_TOP_K);
    if top_k == 0 || top_k > state.settings.max_top_k {
        return Err(ApiError::Validation(format!("top_k must be between 1 and {} (got {top_k})", state.settings.max_top_k)));
    }
    let filter = search_filter(req.wanted())?;
    if req.copy_results == Some(true) && granted != Some(Scope::Write) {
        return Err(ApiError::Forbidden("copy_results writes files on the server: it needs a key with write access".into()));
    }
    let copy_to = match (req.copy_results, &state.settings.results_dir) {
        (Some(true), _) if top_k > MAX_COPIED => {
            return Err(ApiError::Validation(format!("copy_results copies at most {MAX_COPIED} results (top_k is {top_k})")))
        }
        (Some(true), Some(dir)) => Some(dir.clone()),
        (Some(true), None) => return Err(ApiError::Validation("copy_results needs api.results_dir to be set".into())),
        _ => None,
    };
    let target = Target::searchable(&state.deps, req.collection.as_deref()).await?;
    // The collection's model, which a model switch changes.
    let engine = engine_for(state.deps.queries.as_ref(), &target.record.model).await?;

    let (query, query_type, vector) = embed(&state, &engine, &target, subject).await?;
    let hits = target.store.search(&vector, top_k, &filter).await?;
    let total_images = target.store.count().await?;
    let results: Vec<QueryResult> = hits
        .into_iter()
        .enumerate()
        .map(|(i, hit)| QueryResult {
            rank: filter.offset + i + 1,
            score: hit.score,
            image_path: hit.payload.path.clone(),
            id: hit.id,
            payload: hit.payload,
        })
        .collect();
    let copied = match copy_to {
        Some(dir) => {
            let paths: Vec<String> = results.iter().map(|r| r.image_path.clone()).collect();
            let roots = state.roots.clone();
            let copied = tokio::task::spawn_blocking(move || copy_results(&dir, &paths, &roots, &COPY_LIMITS))
                .await
                .map_err(|e| ApiError::Internal(format!("copying results: {e}")))??;
            Some(copied)
        }
        None => None,
    };
    let (results_folder, results_not_copied) = match copied {
        Some(c) => (Some(c.folder.to_string_lossy().into_owned()), c.skipped),
        None => (None, Vec::new()),
    };
    Ok(Json(QueryResponse {
        query,
        query_type,
        results,
        query_time_seconds: started.elapsed().as_secs_f64(),
        index_stats: IndexStats { total_images, model: target.record.model, collection: target.record.name },
        results_folder,
        results_not_copied,
    }))
}

async fn embed(
    state: &AppState,
    engine: &Arc<QueryEngine>,
    target: &Target,
    subject: Subject,
) -> Result<(String, &'static str, Vec<f32>), ApiError> {
    Ok(match subject {
        Subject::Text(text) => {
            let vector = engine.embed_text(text.clone()).await?;
            (text, "text", vector)
        }
        Subject::Path(raw) => {
            let vector = vector_of_path(state, engine, target, &raw).await?;
            (raw, "image", vector)
        }
        Subject::Upload { name, bytes } => {
            let vector = engine.embed_bytes(bytes, name.clone()).await?;
            (name, "upload", vector)
        }
        Subject::Combined(parts) => {
            let mut vectors = Vec::with_capacity(parts.len());
            for (part, weight) in &parts {
                let vector = match part {
                    Part::Text(text) => engine.embed_text(text.clone()).await?,
                    Part::Path(raw) => vector_of_path(state, engine, target, raw).await?,
                };
                vectors.push((vector, *weight));
            }
            (describe(&parts), "combined", combine(&vectors)?)
        }
    })
}

/// The stored vector of an indexed image, else the embedding of a file inside the allowed
/// roots. Missing, outside the roots and unreadable all give the same answer.
async fn vector_of_path(
    state: &AppState,
    engine: &Arc<QueryEngine>,
    target: &Target,
    raw: &str,
) -> Result<Vec<f32>, ApiError> {
    let canonical = paths::canonical(raw).map_err(|e| ApiError::Validation(format!("image_path: {e}")))?;
    if let Some(stored) = target.store.vector(target.point_id(&canonical)).await? {
        return Ok(stored);
    }
    // The same rule as indexing (inside the roots once symlinks are followed), and with
    // no roots configured the server reads no file for a client at all.
    if state.roots.is_empty() || !paths::inside(std::path::Path::new(&canonical), &state.roots) {
        return Err(ApiError::ImageNotFound);
    }
    let bytes = engine.read_path(canonical.into()).await?;
    engine.embed_bytes(bytes.into(), raw.to_string()).await
}

/// Malformed JSON is a 400; well-formed JSON that breaks the contract is a 422.
fn read_json(body: &[u8]) -> Result<(Subject, QueryRequest), ApiError> {
    let mut req: QueryRequest = super::json_body::parse(body)?;
    let subject = match (req.text.take(), req.image_path.take(), req.queries.take()) {
        (Some(text), None, None) => Subject::Text(checked_text(text)?),
        (None, Some(path), None) => Subject::Path(path),
        (None, None, Some(given)) => Subject::Combined(query_combined::parts(given, checked_text)?),
        (None, None, None) => {
            return Err(ApiError::Validation(
                "give text, image_path or queries, or upload an image as multipart field \"image\"".into(),
            ))
        }
        _ => return Err(ApiError::Validation("give one of text, image_path and queries".into())),
    };
    Ok((subject, req))
}

/// A query text, trimmed: not empty, and at most `MAX_TEXT_BYTES`.
fn checked_text(text: String) -> Result<String, ApiError> {
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(ApiError::Validation("text must not be empty".into()));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(ApiError::Validation(format!("text is longer than {MAX_TEXT_BYTES} bytes")));
    }
    Ok(text)
}

/// Multipart: the image file in field `image`; `top_k`, `path_prefix`, `min_score` as text fields.
async fn read_form(mut form: Multipart, max_bytes: usize) -> Result<(Subject, QueryRequest), ApiError> {
    let mut req = QueryRequest::default();
    let mut upload = None;
    let malformed = |e: axum::extract::multipart::MultipartError| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(max_bytes)
        } else {
            ApiError::MalformedMultipart(format!("malformed multipart body: {}", e.body_text()))
        }
    };
    while let Some(field) = form.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "image" => {
                let file_name = field.file_name().unwrap_or("upload").to_string();
                let bytes = field.bytes().await.map_err(malformed)?;
                upload = Some(Subject::Upload { name: file_name, bytes });
            }
            "top_k" => req.top_k = Some(parse_field(&name, &field.text().await.map_err(malformed)?)?),
            "min_score" => req.min_score = Some(parse_field(&name, &field.text().await.map_err(malformed)?)?),
            "path_prefix" => req.path_prefix = Some(field.text().await.map_err(malformed)?),
            "copy_results" => req.copy_results = Some(parse_field(&name, &field.text().await.map_err(malformed)?)?),
            "collection" => req.collection = Some(field.text().await.map_err(malformed)?),
            // Repeatable: each field one tag, or one format.
            "tags" => req.tags.get_or_insert_with(Vec::new).push(field.text().await.map_err(malformed)?),
            "formats" => req.formats.get_or_insert_with(Vec::new).push(field.text().await.map_err(malformed)?),
            "offset" => req.offset = Some(parse_field(&name, &field.text().await.map_err(malformed)?)?),
            "min_width" => req.min_width = Some(parse_field(&name, &field.text().await.map_err(malformed)?)?),
            "min_height" => req.min_height = Some(parse_field(&name, &field.text().await.map_err(malformed)?)?),
            "mtime_from" => req.mtime_from = Some(field.text().await.map_err(malformed)?),
            "mtime_to" => req.mtime_to = Some(field.text().await.map_err(malformed)?),
            "indexed_from" => req.indexed_from = Some(field.text().await.map_err(malformed)?),
            "indexed_to" => req.indexed_to = Some(field.text().await.map_err(malformed)?),
            other => {
                return Err(ApiError::Validation(format!(
                    "unknown multipart field {other:?} (expected image, top_k, offset, path_prefix, min_score, copy_results, \
                     collection, tags, formats, min_width, min_height, mtime_from, mtime_to, indexed_from, indexed_to)"
                )))
            }
        }
    }
    let subject = upload.ok_or_else(|| ApiError::Validation("multipart query needs the image in field \"image\"".into()))?;
    Ok((subject, req))
}

fn parse_field<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ApiError> {
    value.trim().parse().map_err(|_| ApiError::Validation(format!("{name} is not a valid number: {value:?}")))
}
