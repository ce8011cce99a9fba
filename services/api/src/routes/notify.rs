//! `POST /api/v1/index/notify`: seed 002's name for add-images, with the same body
//! and answer plus `estimated_time_seconds`: how long until the images just queued are
//! done, from the whole system's throughput over the last minutes and the images
//! queued ahead of and with them.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::Utc;
use serde::Serialize;

use imgidx_shared::jobs::JobRecord;

use super::add_images::{add_images, AddImagesResponse};
use super::add_images_request::AddImagesRequest;
use crate::error::{ApiError, ErrorBody};
use crate::http::request_id::RequestId;
use crate::state::AppState;

/// The window the throughput is measured over.
const WINDOW_SECS: i64 = 300;

#[derive(Serialize, utoipa::ToSchema)]
pub struct NotifyResponse {
    #[serde(flatten)]
    queued: AddImagesResponse,
    /// Seconds until every image pending in the system (these included) is processed at
    /// the recent pace; 0 when nothing is pending, null while nothing finished recently.
    estimated_time_seconds: Option<f64>,
}

/// Queue images, with an estimate of when they are done (seed 002).
#[utoipa::path(
    post,
    path = "/api/v1/index/notify",
    tag = "indexing",
    request_body = AddImagesRequest,
    responses(
        (status = 202, description = "Queued, with an estimate of when the queue is done", body = NotifyResponse),
        (status = 200, description = "Nothing to queue", body = NotifyResponse),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
        (status = 409, description = "`collection_model_mismatch`: the collection holds vectors of a model not served here; `collection_switching`: a model switch is filling it", body = ErrorBody),
        (status = 422, description = "`validation_error`, `path_not_allowed` or `webhook_url_not_allowed`, as for add-images", body = ErrorBody),
    )
)]
pub async fn notify(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<NotifyResponse>), ApiError> {
    let (code, Json(queued)) = add_images(State(state.clone()), request_id, body).await?;
    let estimated_time_seconds = estimate(&state).await?;
    Ok((code, Json(NotifyResponse { queued, estimated_time_seconds })))
}

async fn estimate(state: &AppState) -> Result<Option<f64>, ApiError> {
    let jobs = &state.deps.jobs;
    let since = Utc::now() - chrono::Duration::seconds(WINDOW_SECS);
    let (active, recent) = tokio::try_join!(jobs.active_jobs(), jobs.finished_since(since))?;
    let pending: u64 = active.iter().map(JobRecord::pending_images).sum();
    Ok(seconds_left(pending, recent, WINDOW_SECS))
}

fn seconds_left(pending: u64, finished_in_window: u64, window_secs: i64) -> Option<f64> {
    if pending == 0 {
        return Some(0.0);
    }
    if finished_in_window == 0 {
        return None;
    }
    let per_sec = finished_in_window as f64 / window_secs as f64;
    Some((pending as f64 / per_sec).round())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_what_is_pending_at_the_recent_pace() {
        assert_eq!(seconds_left(600, 300, 300), Some(600.0));
        assert_eq!(seconds_left(0, 0, 300), Some(0.0));
        assert_eq!(seconds_left(10, 0, 300), None, "no recent pace: no guess");
    }
}
