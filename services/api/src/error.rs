//! The one place where errors become HTTP responses: a stable machine code, a
//! human message, and never an internal detail (those go to the log).

use axum::http::StatusCode;
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
    /// The image a query names does not exist.
    #[error("{0}")]
    ImageNotFound(String),
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
    /// The job is still queued or running (retry needs a finished job).
    #[error("job {0} has not finished")]
    JobNotFinished(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
    /// FastAPI-style `detail`, which clients written against the original service print.
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
            ApiError::ImageNotFound(m) => (StatusCode::NOT_FOUND, "image_not_found", m.clone()),
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
            ApiError::Vectors(VectorStoreError::Unavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "index_unavailable",
                "the vector index is unavailable; try again".into(),
            ),
            ApiError::Jobs(_) | ApiError::Vectors(_) | ApiError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal server error".into())
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
        if status.is_server_error() {
            tracing::error!(error = %self, code, "request failed");
        } else {
            tracing::debug!(error = %self, code, "request rejected");
        }
        let body = ErrorBody { error: code, detail: message.clone(), message };
        (status, Json(body)).into_response()
    }
}
