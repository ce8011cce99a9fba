//! The dispatcher every API process runs: claims due deliveries from the job store
//! (under a lease, so processes sharing a store never send the same attempt), sends
//! them, and records each answer with the time of the next attempt. A process that
//! dies mid-attempt leaves a lease that expires; the delivery is then sent again, so
//! every delivery is made at least once (receivers deduplicate on `webhook-id`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use imgidx_shared::jobs::{AttemptNext, JobStore, WebhookAttempt, WebhookDelivery};
use imgidx_shared::shutdown::Shutdown;

use super::payload::payload;
use super::Webhooks;

/// How often the store is asked for due deliveries (a job's end is announced within it).
const POLL: Duration = Duration::from_secs(1);
/// Deliveries sent at once.
const BATCH: usize = 16;
/// Waits after the 1st, 2nd, … failed attempt (the last one repeats), as Svix retries;
/// the last attempt is made when `api.webhook_retry_hours` are up.
const WAITS: [Duration; 6] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
];

pub async fn run(jobs: Arc<dyn JobStore>, webhooks: Arc<Webhooks>, shutdown: Shutdown) {
    let Some(sender) = webhooks.sender.as_ref() else { return };
    // Longer than any attempt, so a live dispatcher never loses its lease mid-send.
    let lease = sender.timeout * 2 + Duration::from_secs(30);
    loop {
        let claimed = match jobs.claim_webhooks(lease, BATCH).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: could not read due deliveries");
                Vec::new()
            }
        };
        let full = claimed.len() == BATCH;
        futures::future::join_all(claimed.into_iter().map(|d| attempt(jobs.as_ref(), &webhooks, d))).await;
        if !full {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        } else if shutdown.is_cancelled() {
            return;
        }
    }
}

async fn attempt(jobs: &dyn JobStore, webhooks: &Webhooks, d: WebhookDelivery) {
    let Some(sender) = webhooks.sender.as_ref() else { return };
    let (event_type, body) = match (d.event_type.clone(), d.payload.clone()) {
        (Some(t), Some(p)) => (t, p),
        _ => match jobs.job(&d.job_id).await {
            Ok(Some(job)) => payload(job),
            Ok(None) => {
                let gone = WebhookAttempt {
                    event_type: String::new(),
                    payload: String::new(),
                    status: None,
                    error: Some("the job no longer exists".into()),
                    next: AttemptNext::GiveUp,
                };
                record(jobs, &d, &gone).await;
                return;
            }
            // The lease expires and the delivery is claimed again.
            Err(e) => return tracing::warn!(job_id = d.job_id, error = %e, "webhooks: could not read the job"),
        },
    };
    let answer = sender.send(&d.url, &d.delivery_id, &body).await;
    let now = Utc::now();
    let next = match answer.status {
        Some(s) if (200..300).contains(&s) => AttemptNext::Delivered,
        // The receiver asks to be left alone (Standard Webhooks): no more attempts.
        Some(410) => AttemptNext::GiveUp,
        _ => next_attempt(d.attempts + 1, d.first_attempt_at.unwrap_or(now), now, webhooks.retry_window),
    };
    let url = super::redacted(&d.url);
    match (&next, &answer.error) {
        (AttemptNext::Delivered, _) => tracing::info!(job_id = d.job_id, url, delivery = d.delivery_id, "webhook delivered"),
        (_, error) => tracing::warn!(job_id = d.job_id, url, delivery = d.delivery_id, attempt = d.attempts + 1, error = error.as_deref().unwrap_or("-"), next = ?next, "webhook not delivered"),
    }
    let attempt = WebhookAttempt { event_type, payload: body, status: answer.status, error: answer.error, next };
    record(jobs, &d, &attempt).await;
}

async fn record(jobs: &dyn JobStore, d: &WebhookDelivery, attempt: &WebhookAttempt) {
    // Unrecorded, the attempt is made again once the lease expires: at least once.
    if let Err(e) = jobs.record_webhook_attempt(&d.delivery_id, attempt).await {
        tracing::warn!(delivery = d.delivery_id, error = %e, "webhooks: could not record an attempt");
    }
}

/// When to try again after the `attempts`-th failure, or give up once `window` has
/// passed since the first attempt (the last try falls at its end).
fn next_attempt(attempts: u32, first: DateTime<Utc>, now: DateTime<Utc>, window: Duration) -> AttemptNext {
    let deadline = first + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    if now >= deadline {
        return AttemptNext::GiveUp;
    }
    let i = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX).min(WAITS.len() - 1);
    let wait = chrono::Duration::from_std(WAITS[i]).unwrap_or(chrono::Duration::MAX);
    AttemptNext::RetryAt((now + wait).min(deadline))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_for_the_window_then_stop() {
        let t0 = DateTime::from_timestamp(1_764_640_000, 0).unwrap();
        let day = Duration::from_secs(24 * 3600);
        let secs = |s: i64| chrono::Duration::seconds(s);
        assert_eq!(next_attempt(1, t0, t0, day), AttemptNext::RetryAt(t0 + secs(5)));
        assert_eq!(next_attempt(2, t0, t0 + secs(5), day), AttemptNext::RetryAt(t0 + secs(305)));
        let late = t0 + secs(17 * 3600);
        assert_eq!(next_attempt(7, t0, late, day), AttemptNext::RetryAt(t0 + secs(24 * 3600)), "the last try at the end");
        assert_eq!(next_attempt(8, t0, t0 + secs(24 * 3600), day), AttemptNext::GiveUp);
        // Attempts at 0, 5 s, ~5 min, ~35 min, ~2.6 h, ~7.6 h, ~17.6 h and 24 h: eight in a day.
        let (mut now, mut n) = (t0, 0);
        while let AttemptNext::RetryAt(at) = next_attempt(n + 1, t0, now, day) {
            (now, n) = (at, n + 1);
        }
        assert_eq!(n + 1, 8);
    }
}
