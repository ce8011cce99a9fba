//! HTTP routes: seed 000's contract, job management (seed 002) and search. Each route sits in the group of the
//! access it needs (read or write); `/health` is open to load balancers.

pub(crate) mod add_images;
mod add_images_request;
mod batch;
pub(crate) mod batch_live;
mod batch_status;
mod cache;
mod collections;
mod copy_results;
mod curation;
mod duplicates;
mod enqueue;
mod health;
mod ingest;
mod items;
mod jobs;
mod json_body;
mod live;
mod metrics;
mod notify;
mod pace;
mod paging;
mod query;
mod query_batch;
mod query_combined;
mod query_filter;
mod reembed;
mod retry;
mod stats;
mod status;
mod trigger;
mod upload;
mod webhooks;

pub(crate) use status::JobSummary;

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::Router;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::http::auth::{self, Guard, Required};
use crate::http::content_type;
use crate::keys::Scope;
use crate::openapi;
use crate::state::AppState;

/// The routes, and the OpenAPI document describing exactly them (each handler's
/// `#[utoipa::path]` gives the path it is served at).
pub fn router(state: AppState, guard: Guard) -> Router {
    let ingest = &state.deps.uploads.limits;
    let limits = BodyLimits { upload: ingest.max_upload_request_bytes(), batch: ingest.max_batch_request_bytes() };
    let (app, document) = described(guard, limits).split_for_parts();
    app.merge(openapi::routes(openapi::finish(document))).fallback(|| async { ApiError::NoRoute }).with_state(state)
}

/// The OpenAPI document alone, as `/openapi.json` serves it.
pub fn document() -> serde_json::Value {
    let guard = Guard { keys: Default::default(), limiter: None };
    let (_, document) = described(guard, BodyLimits { upload: 0, batch: 0 }).split_for_parts();
    openapi::finish(document)
}

/// The body limits of the routes that carry many images (instead of `api.max_body_bytes`).
struct BodyLimits {
    upload: usize,
    batch: usize,
}

fn described(guard: Guard, limits: BodyLimits) -> OpenApiRouter<AppState> {
    let json = || from_fn(content_type::json);
    let read = OpenApiRouter::new()
        .routes(routes!(status::job_status))
        .routes(routes!(items::job_items))
        .routes(routes!(live::job_ws))
        .routes(routes!(live::job_events))
        .routes(routes!(status::overall_status))
        .routes(routes!(stats::stats))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(webhooks::job_webhooks))
        .routes(routes!(collections::list_collections))
        .routes(routes!(ingest::ingest_status))
        .routes(routes!(batch_status::batch_status))
        .routes(routes!(batch_status::list_batches))
        .routes(routes!(batch_live::batch_ws))
        .routes(routes!(duplicates::report))
        .routes(routes!(duplicates::archive_details))
        .routes(routes!(query::query).map(|r| r.route_layer(from_fn(content_type::json_or_multipart))))
        .routes(routes!(query_batch::query_batch).map(|r| r.route_layer(json())));
    let write = OpenApiRouter::new()
        .routes(routes!(add_images::add_images).map(|r| r.route_layer(json())))
        .routes(routes!(notify::notify).map(|r| r.route_layer(json())))
        .routes(routes!(trigger::trigger).map(|r| r.route_layer(json())))
        .routes(routes!(ingest::ingest_scan).map(|r| r.route_layer(json())))
        .routes(routes!(upload::upload).map(|r| {
            r.route_layer(from_fn(content_type::multipart)).route_layer(DefaultBodyLimit::max(limits.upload))
        }))
        .routes(routes!(batch::create_batch).map(|r| r.route_layer(json()).route_layer(DefaultBodyLimit::max(limits.batch))))
        .routes(routes!(retry::retry_job).map(|r| r.route_layer(json())))
        .routes(routes!(jobs::cancel_job).map(|r| r.route_layer(json())))
        .routes(routes!(collections::create_collection).map(|r| r.route_layer(json())))
        .routes(routes!(collections::delete_collection))
        .routes(routes!(collections::select_collection).map(|r| r.route_layer(json())))
        .routes(routes!(reembed::reembed_collection).map(|r| r.route_layer(json())))
        .routes(routes!(reembed::delete_previous))
        .routes(routes!(duplicates::find_similar).map(|r| r.route_layer(json())))
        .routes(routes!(duplicates::archive_exact).map(|r| r.route_layer(json())))
        .routes(routes!(duplicates::restore).map(|r| r.route_layer(json())))
        .routes(routes!(curation::archive_selection).map(|r| r.route_layer(json())))
        // No JSON layer: seed 003 posts it with no body and no Content-Type.
        .routes(routes!(cache::clear_cache));
    let needs = |scope| from_fn_with_state(Required { guard: guard.clone(), scope }, auth::require);
    OpenApiRouter::with_openapi(openapi::skeleton())
        .merge(read.route_layer(needs(Scope::Read)))
        .merge(write.route_layer(needs(Scope::Write)))
        .routes(routes!(health::health))
        .routes(routes!(metrics::metrics))
}
