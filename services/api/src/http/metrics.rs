//! Counts every request by its route template (`/api/v1/index/status/{job_id}`, never
//! the id itself, so the label set stays small), method and status, with its latency.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics::ApiMetrics;

/// Requests no route matched share one label.
const UNMATCHED: &str = "unmatched";

pub async fn record(State(metrics): State<ApiMetrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str).to_string();
    let method = request.method().as_str().to_string();
    let response = next.run(request).await;
    metrics.request(&route, &method, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}
