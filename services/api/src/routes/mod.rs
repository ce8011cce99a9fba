//! HTTP routes of seed 000's contract.

pub(crate) mod add_images;
mod enqueue;
mod health;
mod items;
mod query;
mod retry;
mod stats;
mod status;

use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/index/add-images", post(add_images::add_images))
        .route("/api/v1/index/status/{job_id}", get(status::job_status))
        .route("/api/v1/index/status/{job_id}/items", get(items::job_items))
        .route("/api/v1/index/status/{job_id}/retry", post(retry::retry_job))
        .route("/api/v1/index/status", get(status::overall_status))
        .route("/api/v1/index/stats", get(stats::stats))
        .route("/api/v1/query", post(query::query))
        .route("/health", get(health::health))
        .fallback(|| async { ApiError::NoRoute })
        .with_state(state)
}
