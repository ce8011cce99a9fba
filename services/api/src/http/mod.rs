//! Cross-cutting HTTP concerns, as layers around the routes rather than code in
//! each handler: who may call (keys, rate limit, Host), what they may send
//! (Content-Type, size), how much they may cost (concurrency, time), and that every
//! error is JSON.

pub mod auth;
pub mod content_type;
mod error_json;
mod host_check;
mod idle;
mod metrics;
mod overload;
pub mod rate_limit;
pub mod request_id;
pub mod seed004;
pub mod server;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, map_response};
use axum::Router;
use tokio::sync::Semaphore;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use imgidx_shared::config::ApiSettings;

use crate::metrics::ApiMetrics;

pub use host_check::HostPolicy;

/// Wraps the routes in every layer; `host` is None when no Host check applies.
pub fn layered(
    routes: Router,
    settings: &ApiSettings,
    host: Option<HostPolicy>,
    metrics: ApiMetrics,
) -> Result<Router, String> {
    let mut app = routes
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(settings.request_timeout_secs),
        ))
        .layer(from_fn_with_state(Arc::new(Semaphore::new(settings.max_concurrent_requests)), overload::shed))
        // Outside the limits, so refusals (408, 503) are counted; inside routing, so the
        // route template is known.
        .layer(from_fn_with_state(metrics, metrics::record));
    if let Some(cors) = cors(&settings.cors_origins)? {
        app = app.layer(cors);
    }
    if let Some(policy) = host {
        app = app.layer(from_fn_with_state(policy, host_check::check));
    }
    Ok(app
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            // The path only: a query string is the client's business, not the log's.
            let id = request.extensions().get::<request_id::RequestId>().map_or("-", |r| r.0.as_str());
            tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path(), key = tracing::field::Empty)
        }))
        .layer(map_response(error_json::ensure))
        .layer(from_fn(seed004::errors))
        // Outermost, so even framework errors carry the id.
        .layer(from_fn(request_id::assign)))
}

/// CORS only for the origins listed; none listed, no CORS headers at all.
fn cors(origins: &[String]) -> Result<Option<CorsLayer>, String> {
    if origins.is_empty() {
        return Ok(None);
    }
    let values = origins
        .iter()
        .map(|o| HeaderValue::from_str(o.trim()).map_err(|_| format!("api.cors_origins: invalid origin {o:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(values))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, HeaderName::from_static("x-api-key")])
            .max_age(Duration::from_secs(600)),
    ))
}
