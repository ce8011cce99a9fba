//! `GET /api/v1/index/jobs/{job_id}/webhooks`: the job's webhook deliveries and how
//! each went, so an operator can see why a receiver heard nothing.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;

use imgidx_shared::jobs::WebhookDelivery;
use imgidx_shared::time::rfc3339;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::webhooks::redacted;

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhooksBody {
    job_id: String,
    deliveries: Vec<DeliveryBody>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WebhookDelivery)]
pub struct DeliveryBody {
    /// The `webhook-id` header of every attempt (receivers deduplicate on it).
    webhook_id: String,
    /// Without user name, password or query, which may hold secrets.
    url: String,
    /// waiting (the job runs), pending (to be sent, again), delivered, or failed (given up).
    #[schema(value_type = String, example = "delivered")]
    state: &'static str,
    /// job.completed, job.failed or job.cancelled, once first attempted.
    event_type: Option<String>,
    attempts: u32,
    created_at: String,
    first_attempt_at: Option<String>,
    last_attempt_at: Option<String>,
    next_attempt_at: Option<String>,
    /// The receiver's HTTP status at the last attempt; null when it did not answer.
    last_status: Option<u16>,
    last_error: Option<String>,
    /// When it was delivered or given up.
    finished_at: Option<String>,
}

impl From<WebhookDelivery> for DeliveryBody {
    fn from(d: WebhookDelivery) -> Self {
        Self {
            webhook_id: d.delivery_id,
            url: redacted(&d.url),
            state: d.state.as_str(),
            event_type: d.event_type,
            attempts: d.attempts,
            created_at: rfc3339(d.created_at),
            first_attempt_at: d.first_attempt_at.map(rfc3339),
            last_attempt_at: d.last_attempt_at.map(rfc3339),
            next_attempt_at: d.next_attempt_at.filter(|_| d.finished_at.is_none()).map(rfc3339),
            last_status: d.last_status,
            last_error: d.last_error,
            finished_at: d.finished_at.map(rfc3339),
        }
    }
}

/// A job's webhook deliveries.
#[utoipa::path(
    get,
    path = "/api/v1/index/jobs/{job_id}/webhooks",
    tag = "jobs",
    params(("job_id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job's webhook deliveries, oldest first", body = WebhooksBody),
        (status = 404, description = "`job_not_found`", body = ErrorBody),
    )
)]
pub async fn job_webhooks(State(state): State<AppState>, Path(job_id): Path<String>) -> Result<Json<WebhooksBody>, ApiError> {
    let (job, deliveries) = tokio::try_join!(state.deps.jobs.job(&job_id), state.deps.jobs.job_webhooks(&job_id))?;
    if job.is_none() {
        return Err(ApiError::JobNotFound(job_id));
    }
    Ok(Json(WebhooksBody { job_id, deliveries: deliveries.into_iter().map(DeliveryBody::from).collect() }))
}
