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
use imgidx_shared::vectors::{ImagePayload, SearchFilter};

use super::copy_results::copy_results;
use super::query_combined::{self, combine, describe, Part, QueryPart};
use super::query_filter::{search_filter, Wanted};
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::Granted;
use crate::keys::Scope;
use crate::paths;
use crate::query_engine::{engine_for, QueryEngine};
use crate::relevance::{self, Background};
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
    /// `auto`: only results that stand out from the query's background over the
    /// collection (a cutoff computed per query, reported as `cutoff`); `all` (default): no cutoff.
    relevance: Option<Relevance>,
}

/// Which results a query keeps besides its filters (see README, "Relevance").
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, Debug, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Relevance {
    /// Every result, best first.
    #[default]
    All,
    /// Results scoring at least the query's own cutoff.
    Auto,
}

impl std::str::FromStr for Relevance {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<Self, ApiError> {
        match s.trim() {
            "all" => Ok(Relevance::All),
            "auto" => Ok(Relevance::Auto),
            other => Err(ApiError::Validation(format!("relevance must be \"all\" or \"auto\" (got {other:?})"))),
        }
    }
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
    /// `all` or `auto`.
    #[schema(value_type = Option<String>)]
    relevance: Option<Relevance>,
}

pub(super) enum Subject {
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
    /// With `relevance: "auto"`: the score results had to reach (absent when the
    /// collection is too small to tell, under 20 images).
    #[serde(skip_serializing_if = "Option::is_none")]
    cutoff: Option<f32>,
    /// With `relevance: "auto"`: the query's scores over the collection's sample, which
    /// `cutoff` was computed from.
    #[serde(skip_serializing_if = "Option::is_none")]
    background: Option<Background>,
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
        let mut req: QueryRequest = super::json_body::parse(&body)?;
        (subject_of(&mut req)?, req)
    };
    let copies = wants_copies(&req);
    let search = Search::checked(subject, &mut req, state.settings.max_top_k)?;
    if copies && granted != Some(Scope::Write) {
        return Err(ApiError::Forbidden("copy_results writes files on the server: it needs a key with write access".into()));
    }
    let copy_to = match (copies, &state.settings.results_dir) {
        (true, _) if search.top_k > MAX_COPIED => {
            return Err(ApiError::Validation(format!("copy_results copies at most {MAX_COPIED} results (top_k is {})", search.top_k)))
        }
        (true, Some(dir)) => Some(dir.clone()),
        (true, None) => return Err(ApiError::Validation("copy_results needs api.results_dir to be set".into())),
        _ => None,
    };
    let (target, engine) = searched(&state, search.collection.as_deref()).await?;
    let mut response = answer(&state, &target, &engine, search, started).await?;
    if let Some(dir) = copy_to {
        let paths: Vec<String> = response.results.iter().map(|r| r.image_path.clone()).collect();
        let roots = state.roots.clone();
        let copied = tokio::task::spawn_blocking(move || copy_results(&dir, &paths, &roots, &COPY_LIMITS))
            .await
            .map_err(|e| ApiError::Internal(format!("copying results: {e}")))??;
        response.results_folder = Some(copied.folder.to_string_lossy().into_owned());
        response.results_not_copied = copied.skipped;
    }
    response.query_time_seconds = started.elapsed().as_secs_f64();
    Ok(Json(response))
}

/// One search, checked: what it looks for, how many, and with which filters.
pub(super) struct Search {
    pub subject: Subject,
    pub top_k: usize,
    pub filter: SearchFilter,
    pub relevance: Relevance,
    pub collection: Option<String>,
}

impl Search {
    /// The search `req` asks for (its filters and page taken out of it); out of bounds is a 422.
    pub fn checked(subject: Subject, req: &mut QueryRequest, max_top_k: usize) -> Result<Self, ApiError> {
        let top_k = req.top_k.unwrap_or(DEFAULT_TOP_K);
        if top_k == 0 || top_k > max_top_k {
            return Err(ApiError::Validation(format!("top_k must be between 1 and {max_top_k} (got {top_k})")));
        }
        let filter = search_filter(req.wanted())?;
        Ok(Self { subject, top_k, filter, relevance: req.relevance.unwrap_or_default(), collection: req.collection.take() })
    }

    /// The texts it embeds (a batch embeds them together first).
    pub fn texts(&self) -> Vec<String> {
        match &self.subject {
            Subject::Text(t) => vec![t.clone()],
            Subject::Combined(parts) => parts
                .iter()
                .filter_map(|(p, _)| match p {
                    Part::Text(t) => Some(t.clone()),
                    Part::Path(_) => None,
                })
                .collect(),
            Subject::Path(_) | Subject::Upload { .. } => Vec::new(),
        }
    }
}

/// The collection a search reads and the engine of its model (which a model switch changes).
pub(super) async fn searched(state: &AppState, collection: Option<&str>) -> Result<(Target, Arc<QueryEngine>), ApiError> {
    let target = Target::searchable(&state.deps, collection).await?;
    let engine = engine_for(state.deps.queries.as_ref(), &target.record.model).await?;
    Ok((target, engine))
}

/// Runs one checked search on `target`.
pub(super) async fn answer(
    state: &AppState,
    target: &Target,
    engine: &Arc<QueryEngine>,
    search: Search,
    started: Instant,
) -> Result<QueryResponse, ApiError> {
    let Search { subject, top_k, mut filter, relevance, .. } = search;
    let (query, query_type, vector) = embed(state, engine, target, subject).await?;
    let total_images = target.store.count().await?;
    let cutoff = match relevance {
        Relevance::All => None,
        Relevance::Auto => {
            let sample = state.backgrounds.sample(&target.physical, target.store.as_ref(), total_images).await?;
            relevance::cutoff(&vector, &sample, state.settings.relevance_sigmas)
        }
    };
    if let Some(c) = &cutoff {
        // The cutoff is one more filter for the store; a stricter `min_score` still holds.
        filter.min_score = Some(filter.min_score.map_or(c.cutoff, |m| m.max(c.cutoff)));
    }
    let hits = target.store.search(&vector, top_k, &filter).await?;
    let results = hits
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
    Ok(QueryResponse {
        query,
        query_type,
        results,
        query_time_seconds: started.elapsed().as_secs_f64(),
        index_stats: IndexStats {
            total_images,
            model: target.record.model.clone(),
            collection: target.record.name.clone(),
        },
        results_folder: None,
        results_not_copied: Vec::new(),
        cutoff: cutoff.map(|c| c.cutoff),
        background: cutoff.map(|c| c.background),
    })
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

/// What a JSON query searches by: exactly one of `text`, `image_path` and `queries`.
pub(super) fn subject_of(req: &mut QueryRequest) -> Result<Subject, ApiError> {
    Ok(match (req.text.take(), req.image_path.take(), req.queries.take()) {
        (Some(text), None, None) => Subject::Text(checked_text(text)?),
        (None, Some(path), None) => Subject::Path(path),
        (None, None, Some(given)) => Subject::Combined(query_combined::parts(given, checked_text)?),
        (None, None, None) => {
            return Err(ApiError::Validation(
                "give text, image_path or queries, or upload an image as multipart field \"image\"".into(),
            ))
        }
        _ => return Err(ApiError::Validation("give one of text, image_path and queries".into())),
    })
}

/// Whether it asks for its results to be copied (a batch cannot).
pub(super) fn wants_copies(req: &QueryRequest) -> bool {
    req.copy_results == Some(true)
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
            "relevance" => req.relevance = Some(field.text().await.map_err(malformed)?.parse()?),
            other => {
                return Err(ApiError::Validation(format!(
                    "unknown multipart field {other:?} (expected image, top_k, offset, path_prefix, min_score, copy_results, \
                     collection, tags, formats, min_width, min_height, mtime_from, mtime_to, indexed_from, indexed_to, relevance)"
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
