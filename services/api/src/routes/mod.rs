//! HTTP routes: seed 000's contract, job management (seed 002) and search. Each route sits in the group of the
//! access it needs (read or write); `/health` is open to load balancers.

pub(crate) mod add_images;
mod add_images_request;
mod copy_results;
mod enqueue;
mod health;
mod items;
mod jobs;
mod json_body;
mod live;
mod metrics;
mod notify;
mod pace;
mod paging;
mod query;
mod retry;
mod stats;
mod status;
mod trigger;

use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::http::auth::{self, Guard, Required};
use crate::http::content_type;
use crate::keys::Scope;
use crate::state::AppState;

pub fn router(state: AppState, guard: Guard) -> Router {
    let read = Router::new()
        .route("/api/v1/index/status/{job_id}", get(status::job_status))
        .route("/api/v1/index/status/{job_id}/items", get(items::job_items))
        .route("/api/v1/index/status/{job_id}/ws", get(live::job_ws))
        .route("/api/v1/index/status/{job_id}/events", get(live::job_events))
        .route("/api/v1/index/status", get(status::overall_status))
        .route("/api/v1/index/stats", get(stats::stats))
        .route("/api/v1/index/jobs", get(jobs::list_jobs))
        .route("/api/v1/query", post(query::query).route_layer(from_fn(content_type::json_or_multipart)));
    let write = Router::new()
        .route("/api/v1/index/add-images", post(add_images::add_images).route_layer(from_fn(content_type::json)))
        .route("/api/v1/index/notify", post(notify::notify).route_layer(from_fn(content_type::json)))
        .route("/api/v1/index/trigger", post(trigger::trigger).route_layer(from_fn(content_type::json)))
        .route("/api/v1/index/status/{job_id}/retry", post(retry::retry_job).route_layer(from_fn(content_type::json)))
        .route("/api/v1/index/jobs/{job_id}/cancel", post(jobs::cancel_job).route_layer(from_fn(content_type::json)));
    let needs = |scope| from_fn_with_state(Required { guard: guard.clone(), scope }, auth::require);
    Router::new()
        .merge(read.route_layer(needs(Scope::Read)))
        .merge(write.route_layer(needs(Scope::Write)))
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .fallback(|| async { ApiError::NoRoute })
        .with_state(state)
}
