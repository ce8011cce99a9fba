//! Webhook deliveries: one row per (job, URL), kept in the job store so a delivery
//! survives restarts and is made at least once by whichever API process claims it.
//!
//! A row is written *before* its job exists (`add_webhooks`, then `create_job` or
//! `open_scan`), so every job that exists has its deliveries, even after a crash between
//! the two; a row whose job never appeared is removed by `purge_finished` a day later.
//! It stays `waiting` until its job has finished (completed, failed or cancelled, by
//! any path), then `claim_webhooks` takes it under a lease; each attempt is recorded
//! (`record_webhook_attempt`) with what the receiver answered, until it is `delivered`
//! or the retries are `failed`. The first attempt freezes the payload, so every retry
//! sends the same body under the same `webhook-id`.

use chrono::{DateTime, Utc};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookState {
    /// Its job has not finished yet.
    Waiting,
    /// Due to be sent (again) at `next_attempt_at`.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Given up: retries exhausted, or the receiver answered 410 Gone.
    Failed,
}

impl WebhookState {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookState::Waiting => "waiting",
            WebhookState::Pending => "pending",
            WebhookState::Delivered => "delivered",
            WebhookState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Waiting, Self::Pending, Self::Delivered, Self::Failed].into_iter().find(|w| w.as_str() == s)
    }
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    /// The `webhook-id` every attempt carries (receivers deduplicate on it).
    pub delivery_id: String,
    pub job_id: String,
    pub url: String,
    pub state: WebhookState,
    /// `job.completed`, `job.failed` or `job.cancelled`; set by the first attempt.
    pub event_type: Option<String>,
    /// The JSON body; set by the first attempt, then sent unchanged.
    pub payload: Option<String>,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last answer; None when there was none (refused, timed out).
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// When it was delivered or given up.
    pub finished_at: Option<DateTime<Utc>>,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookAttempt {
    /// The body sent (kept by the first attempt, ignored by later ones).
    pub event_type: String,
    pub payload: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub next: AttemptNext,
}

/// After an attempt: done, or when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptNext {
    Delivered,
    RetryAt(DateTime<Utc>),
    GiveUp,
}
