//! `GET /metrics`: Prometheus text of this process's registry (in `imgidx serve`, every
//! role's), after reading the gauges that live elsewhere: jobs by state from the job
//! store and the queues from the broker. Open like `/health`, for scrapers.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use imgidx_shared::jobs::{JobQuery, JobStatus};
use imgidx_shared::metrics::CONTENT_TYPE_OPENMETRICS;

use crate::state::AppState;

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses((status = 200, description = "Prometheus / OpenMetrics text (see docs/operations.md)", content_type = "application/openmetrics-text", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    refresh(&state).await;
    ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], state.metrics.registry.encode())
}

/// A store or broker that does not answer leaves its gauges as they were (the scrape
/// still answers; `/health` says what is down).
async fn refresh(state: &AppState) {
    let m = &state.metrics;
    for status in JobStatus::ALL {
        let query = JobQuery { status: Some(status), limit: 0, ..JobQuery::default() };
        match state.deps.jobs.list_jobs(&query).await {
            Ok(page) => {
                m.jobs.get_or_create(&[("status", status.as_str())]).set(i64::try_from(page.total).unwrap_or(i64::MAX));
            }
            Err(e) => {
                tracing::debug!(error = %e, "metrics: jobs not counted");
                break;
            }
        }
    }
    match state.deps.broker.queue_depths().await {
        Ok(depths) => {
            for d in depths {
                m.queue_messages.get_or_create(&[("queue", d.queue)]).set(i64::try_from(d.messages).unwrap_or(i64::MAX));
                if let Some(c) = d.consumers {
                    m.queue_consumers.get_or_create(&[("queue", d.queue)]).set(i64::try_from(c).unwrap_or(i64::MAX));
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "metrics: queues not read"),
    }
}
