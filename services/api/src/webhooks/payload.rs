//! What a delivery says: a Standard Webhooks payload (`type`, `timestamp`, `data`) whose
//! `data` is the finished job as `GET /api/v1/index/jobs` lists it.

use chrono::Utc;
use serde::Serialize;

use imgidx_shared::jobs::JobRecord;
use imgidx_shared::time::rfc3339;

use crate::routes::JobSummary;

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookPayload {
    /// `job.completed`, `job.failed` or `job.cancelled`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "job.completed")]
    pub kind: String,
    /// When the delivery was first attempted (RFC 3339).
    pub timestamp: String,
    pub data: JobSummary,
}

/// The event type and the JSON body for a finished job.
pub fn payload(job: JobRecord) -> (String, String) {
    let kind = format!("job.{}", job.status.as_str());
    let body = WebhookPayload { kind: kind.clone(), timestamp: rfc3339(Utc::now()), data: JobSummary::from(job) };
    // A struct of strings and numbers always serializes.
    (kind, serde_json::to_string(&body).unwrap_or_default())
}
