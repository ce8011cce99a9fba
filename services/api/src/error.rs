//! The one place where errors become HTTP responses: a stable machine code, a
//! human message, and never an internal detail (those go to the log).

use std::time::Duration;

use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use imgidx_shared::broker::BrokerError;
use imgidx_shared::jobs::JobStoreError;
use imgidx_shared::vectors::VectorStoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    MalformedMultipart(String),
    #[error("{0}")]
    Validation(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("no such endpoint")]
    NoRoute,
    #[error("{0}")]
    PathNotAllowed(String),
    #[error("job {0} not found")]
    JobNotFound(String),
    /// A trigger's `image_dir` is missing, not a directory, or cannot be listed.
    #[error("{0}")]
    NotADirectory(String),
    /// A query's `image_path` is neither indexed nor a file this server may read: missing,
    /// outside the allowed roots (or none are set), or not a readable regular file. One
    /// answer for all, so a client cannot probe what exists where.
    #[error("image_path: no image this server may read at this path")]
    ImageNotFound,
    /// The image a query gives cannot be used (`code`: not_an_image, unreadable_image, image_too_large).
    #[error("{message}")]
    QueryImage { code: &'static str, message: String },
    /// This server cannot answer this kind of query (e.g. its model has no text encoder).
    #[error("{0}")]
    SearchUnavailable(String),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Jobs(#[from] JobStoreError),
    #[error(transparent)]
    Vectors(#[from] VectorStoreError),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("a valid API key is required (X-API-Key or Authorization: Bearer)")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// Over `api.rate_limit_per_minute`; the next request is allowed after this long.
    #[error("too many requests; retry after {} s", retry_after_secs(.0))]
    RateLimited(Duration),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("this server does not answer for that host name (Host header); see api.allowed_hosts")]
    HostNotAllowed,
    #[error("the server is handling too many requests; try again")]
    Overloaded,
    /// An error response made by the framework or a layer, not by a handler.
    #[error("{}", status_message(*.0))]
    Status(StatusCode),
    /// The job is still queued or running (retry needs a finished job).
    #[error("job {0} has not finished")]
    JobNotFinished(String),
    /// A `webhook_url` this server will not call (a non-public address, or no address).
    #[error("{0}")]
    WebhookNotAllowed(String),
    /// The job has finished already (cancel needs an active job).
    #[error("job {job_id} has finished already ({status})")]
    JobFinished { job_id: String, status: &'static str },
    #[error("collection {0} not found")]
    CollectionNotFound(String),
    #[error("collection {0} exists already")]
    CollectionExists(String),
    /// The collection holds vectors of a model this server does not serve.
    #[error(
        "collection {collection} holds vectors of model {bound}, which this server does not serve (it embeds with \
         {served}, and {bound} is not installed in model.models_dir)"
    )]
    CollectionModelMismatch { collection: String, bound: String, served: String },
    /// A model switch is filling the collection's next generation.
    #[error("collection {collection} is switching to model {model} (job {job_id})")]
    CollectionSwitching { collection: String, model: String, job_id: String },
    /// `DELETE /collections/{name}/previous` with no previous generation.
    #[error("collection {0} has no previous generation (only a completed model switch leaves one)")]
    NoPreviousGeneration(String),
    /// Deleting it would pull it from under the selection or active jobs.
    #[error("{0}")]
    CollectionInUse(String),
    #[error("the server holds its most collections ({0}, vectors.max_collections); delete one first")]
    CollectionLimit(usize),
    /// One uploaded file passed `ingest.max_image_bytes`.
    #[error("file {name:?} is larger than {limit} bytes (ingest.max_image_bytes)")]
    FileTooLarge { name: String, limit: u64 },
    /// A batch request that breaks seed 004's rules (no images, too many, a bad source).
    #[error("{0}")]
    BadBatch(String),
    /// The object store did not take (or give) an upload's bytes.
    #[error("the object store is unavailable: {0}")]
    Objects(String),
    #[error("duplicate analysis {0} not found")]
    TaskNotFound(String),
    /// The analysis has not completed (archive-exact needs its report).
    #[error("duplicate analysis {task_id} is {state}; archive-exact needs a completed one")]
    TaskNotCompleted { task_id: String, state: &'static str },
    #[error("archive {0} not found")]
    ArchiveNotFound(String),
    #[error("archive {0} has been restored already")]
    ArchiveRestored(String),
    /// One search of a batch failed: its own status and code, the message naming it.
    #[error("searches[{index}]: {source}")]
    InSearch { index: usize, source: Box<ApiError> },
}

impl ApiError {
    /// This error as that of search `index` of a batch.
    pub fn in_search(self, index: usize) -> Self {
        ApiError::InSearch { index, source: Box::new(self) }
    }
}

fn retry_after_secs(d: &Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Codes and messages for the statuses the framework and the layers produce.
fn status_code_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "validation_error",
        429 => "rate_limited",
        503 => "unavailable",
        s if s >= 500 => "internal_error",
        _ => "bad_request",
    }
}

fn status_message(status: StatusCode) -> String {
    match status.as_u16() {
        405 => "method not allowed for this endpoint".into(),
        408 => "the request took longer than the server allows (api.request_timeout_secs)".into(),
        413 => "request body is too large".into(),
        s if s >= 500 => "internal server error".into(),
        _ => status.canonical_reason().unwrap_or("request failed").to_ascii_lowercase(),
    }
}

/// Every code an error body's `error` may hold; the OpenAPI document lists them as its
/// enum, so a client (and schemathesis) can tell a new code from a typo.
pub const ERROR_CODES: &[&str] = &[
    "bad_request",
    "malformed_json",
    "malformed_multipart",
    "validation_error",
    "path_not_allowed",
    "not_a_directory",
    "webhook_url_not_allowed",
    "not_an_image",
    "unreadable_image",
    "image_too_large",
    "unauthorized",
    "forbidden",
    "not_found",
    "job_not_found",
    "image_not_found",
    "method_not_allowed",
    "request_timeout",
    "job_finished",
    "job_not_finished",
    "collection_not_found",
    "collection_exists",
    "collection_model_mismatch",
    "collection_switching",
    "previous_not_found",
    "collection_in_use",
    "collection_limit",
    "payload_too_large",
    "file_too_large",
    "invalid_batch",
    "object_store_unavailable",
    "task_not_found",
    "task_not_completed",
    "archive_not_found",
    "archive_restored",
    "unsupported_media_type",
    "host_not_allowed",
    "rate_limited",
    "internal_error",
    "unavailable",
    "overloaded",
    "search_unavailable",
    "queue_unavailable",
    "job_store_unavailable",
    "index_unavailable",
];

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody {
    /// Stable machine-readable code (one of the listed values).
    #[schema(value_type = String, example = "validation_error")]
    error: &'static str,
    /// What went wrong, for people.
    message: String,
    /// The same as `message` (FastAPI's name, which clients of the original service print).
    detail: String,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::MalformedJson(m) => (StatusCode::BAD_REQUEST, "malformed_json", m.clone()),
            ApiError::MalformedMultipart(m) => (StatusCode::BAD_REQUEST, "malformed_multipart", m.clone()),
            ApiError::Validation(m) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_error", m.clone()),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", self.to_string()),
            ApiError::NoRoute => (StatusCode::NOT_FOUND, "not_found", self.to_string()),
            ApiError::PathNotAllowed(m) => (StatusCode::UNPROCESSABLE_ENTITY, "path_not_allowed", m.clone()),
            ApiError::JobNotFound(id) => (StatusCode::NOT_FOUND, "job_not_found", format!("job {id} not found")),
            ApiError::NotADirectory(m) => (StatusCode::UNPROCESSABLE_ENTITY, "not_a_directory", m.clone()),
            ApiError::WebhookNotAllowed(m) => (StatusCode::UNPROCESSABLE_ENTITY, "webhook_url_not_allowed", m.clone()),
            ApiError::ImageNotFound => (StatusCode::NOT_FOUND, "image_not_found", self.to_string()),
            ApiError::QueryImage { code, message } => (StatusCode::UNPROCESSABLE_ENTITY, code, message.clone()),
            ApiError::SearchUnavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "search_unavailable", m.clone()),
            ApiError::Broker(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_unavailable",
                "the task queue is unavailable; nothing was queued, try again".into(),
            ),
            ApiError::Jobs(JobStoreError::Unavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "job_store_unavailable",
                "the job store is unavailable; try again".into(),
            ),
            ApiError::CollectionNotFound(_) => (StatusCode::NOT_FOUND, "collection_not_found", self.to_string()),
            ApiError::Vectors(VectorStoreError::NotFound(_)) => (
                StatusCode::NOT_FOUND,
                "collection_not_found",
                "the collection's index is gone from the vector store".into(),
            ),
            ApiError::CollectionExists(_) => (StatusCode::CONFLICT, "collection_exists", self.to_string()),
            ApiError::CollectionModelMismatch { .. } => (
                StatusCode::CONFLICT,
                "collection_model_mismatch",
                format!("{self}: index into or search another collection, or serve this one's model"),
            ),
            ApiError::CollectionSwitching { .. } => (
                StatusCode::CONFLICT,
                "collection_switching",
                format!("{self}: index into it once the switch completes, or cancel that job to abandon the switch"),
            ),
            ApiError::NoPreviousGeneration(_) => (StatusCode::NOT_FOUND, "previous_not_found", self.to_string()),
            ApiError::CollectionInUse(m) => (StatusCode::CONFLICT, "collection_in_use", m.clone()),
            ApiError::CollectionLimit(_) => (StatusCode::CONFLICT, "collection_limit", self.to_string()),
            ApiError::BadBatch(m) => (StatusCode::BAD_REQUEST, "invalid_batch", m.clone()),
            ApiError::FileTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "file_too_large", self.to_string()),
            ApiError::Objects(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "object_store_unavailable",
                "the object store is unavailable; nothing was queued, try again".into(),
            ),
            ApiError::Vectors(VectorStoreError::Unavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "index_unavailable",
                "the vector index is unavailable; try again".into(),
            ),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", self.to_string()),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", self.to_string()),
            ApiError::UnsupportedMediaType(m) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", m.clone()),
            ApiError::HostNotAllowed => (StatusCode::MISDIRECTED_REQUEST, "host_not_allowed", self.to_string()),
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded", self.to_string()),
            ApiError::Status(status) => (*status, status_code_name(*status), self.to_string()),
            ApiError::Jobs(_) | ApiError::Vectors(_) | ApiError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal server error".into())
            }
            ApiError::JobFinished { job_id, status } => (
                StatusCode::CONFLICT,
                "job_finished",
                format!("job {job_id} has finished already ({status}); only a queued or running job can be cancelled"),
            ),
            ApiError::TaskNotFound(_) => (StatusCode::NOT_FOUND, "task_not_found", self.to_string()),
            ApiError::TaskNotCompleted { .. } => (StatusCode::CONFLICT, "task_not_completed", self.to_string()),
            ApiError::ArchiveNotFound(_) => (StatusCode::NOT_FOUND, "archive_not_found", self.to_string()),
            ApiError::ArchiveRestored(_) => (StatusCode::CONFLICT, "archive_restored", self.to_string()),
            ApiError::InSearch { index, source } => {
                let (status, code, message) = source.parts();
                (status, code, format!("searches[{index}]: {message}"))
            }
            ApiError::JobNotFinished(id) => (
                StatusCode::CONFLICT,
                "job_not_finished",
                format!("job {id} is still queued or running; retry it once it has finished"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if status.is_server_error() && !matches!(self, ApiError::Overloaded | ApiError::Status(_)) {
            tracing::error!(error = %self, code, "request failed");
        } else {
            tracing::debug!(error = %self, code, "request rejected");
        }
        let body = ErrorBody { error: code, detail: message.clone(), message };
        let mut response = (status, Json(body)).into_response();
        match &self {
            ApiError::RateLimited(wait) => {
                response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
            }
            ApiError::Unauthorized => {
                response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_an_error_can_carry_is_listed() {
        let mut errors = vec![
            ApiError::MalformedJson(String::new()),
            ApiError::MalformedMultipart(String::new()),
            ApiError::Validation(String::new()),
            ApiError::PayloadTooLarge(1),
            ApiError::NoRoute,
            ApiError::PathNotAllowed(String::new()),
            ApiError::JobNotFound(String::new()),
            ApiError::NotADirectory(String::new()),
            ApiError::ImageNotFound,
            ApiError::SearchUnavailable(String::new()),
            ApiError::Broker(BrokerError::Unavailable(String::new())),
            ApiError::Jobs(JobStoreError::Unavailable(String::new())),
            ApiError::Jobs(JobStoreError::Other(String::new())),
            ApiError::Vectors(VectorStoreError::Unavailable(String::new())),
            ApiError::Internal(String::new()),
            ApiError::Unauthorized,
            ApiError::Forbidden(String::new()),
            ApiError::RateLimited(Duration::from_secs(1)),
            ApiError::UnsupportedMediaType(String::new()),
            ApiError::HostNotAllowed,
            ApiError::Overloaded,
            ApiError::JobNotFinished(String::new()),
            ApiError::JobFinished { job_id: String::new(), status: "completed" },
            ApiError::WebhookNotAllowed(String::new()),
            ApiError::CollectionNotFound(String::new()),
            ApiError::Vectors(VectorStoreError::NotFound(String::new())),
            ApiError::CollectionExists(String::new()),
            ApiError::CollectionModelMismatch { collection: String::new(), bound: String::new(), served: String::new() },
            ApiError::CollectionSwitching { collection: String::new(), model: String::new(), job_id: String::new() },
            ApiError::NoPreviousGeneration(String::new()),
            ApiError::CollectionInUse(String::new()),
            ApiError::CollectionLimit(1),
            ApiError::FileTooLarge { name: String::new(), limit: 1 },
            ApiError::Objects(String::new()),
            ApiError::BadBatch(String::new()),
            ApiError::TaskNotFound(String::new()),
            ApiError::TaskNotCompleted { task_id: String::new(), state: "running" },
            ApiError::ArchiveNotFound(String::new()),
            ApiError::ArchiveRestored(String::new()),
            ApiError::ImageNotFound.in_search(3),
        ];
        for code in ["image_too_large", "not_an_image", "unreadable_image"] {
            errors.push(ApiError::QueryImage { code, message: String::new() });
        }
        for status in 400..600 {
            if let Ok(s) = StatusCode::from_u16(status) {
                errors.push(ApiError::Status(s));
            }
        }
        for e in errors {
            let (_, code, _) = e.parts();
            assert!(ERROR_CODES.contains(&code), "{code} ({e:?}) is not in ERROR_CODES");
        }
    }
}
