//! Webhook deliveries, for every backend (run from `conformance.rs`).

use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};

use super::harness::Harness;
use super::{indexed, items};
use crate::jobs::{AttemptNext, CancelOutcome, WebhookAttempt, WebhookState};
use crate::messages::Priority;

const HOUR: StdDuration = StdDuration::from_secs(3600);

fn urls(n: usize) -> (Vec<String>, Vec<String>) {
    ((0..n).map(|i| format!("https://hooks.example/{i}")).collect(), (0..n).map(|i| format!("msg_{i}")).collect())
}

fn attempt(payload: &str, status: Option<u16>, next: AttemptNext) -> WebhookAttempt {
    WebhookAttempt {
        event_type: "job.completed".into(),
        payload: payload.into(),
        status,
        error: status.filter(|s| *s >= 300).map(|s| format!("answered {s}")),
        next,
    }
}

pub(super) async fn webhooks_wait_for_their_job_then_are_sent_until_delivered(h: &Harness) {
    let s = h.store();
    let (u, ids) = urls(2);
    // Written before the job exists: nothing is due, for a job not there or not finished.
    s.add_webhooks("j", &u, &ids).await.unwrap();
    assert!(s.claim_webhooks(HOUR, 10).await.unwrap().is_empty());
    s.create_job("j", Priority::Normal, &items(0..2)).await.unwrap();
    s.add_webhooks("j", &u[..1], &["msg_again".to_string()]).await.unwrap();
    assert!(s.claim_webhooks(HOUR, 10).await.unwrap().is_empty(), "the job runs");
    let listed = s.job_webhooks("j").await.unwrap();
    assert_eq!(listed.iter().map(|d| (d.delivery_id.as_str(), d.state)).collect::<Vec<_>>(), vec![
        ("msg_0", WebhookState::Waiting),
        ("msg_1", WebhookState::Waiting)
    ]);

    s.apply_events(&[indexed("j", 0), indexed("j", 1)]).await.unwrap();
    let claimed = s.claim_webhooks(HOUR, 1).await.unwrap();
    assert_eq!(claimed.len(), 1, "the limit holds");
    assert_eq!((claimed[0].state, claimed[0].attempts, claimed[0].payload.as_deref()), (WebhookState::Pending, 0, None));
    assert!(claimed[0].next_attempt_at.is_some());
    let second = s.claim_webhooks(HOUR, 10).await.unwrap();
    assert_eq!(second.len(), 1, "the first is leased: only the other one");
    assert_ne!(second[0].delivery_id, claimed[0].delivery_id);
    assert!(s.claim_webhooks(HOUR, 10).await.unwrap().is_empty());

    // A failed attempt: due again at once here; the first payload is kept from now on.
    let first = &claimed[0].delivery_id;
    s.record_webhook_attempt(first, &attempt("{\"v\":1}", Some(503), AttemptNext::RetryAt(Utc::now() - Duration::seconds(1))))
        .await
        .unwrap();
    let again = s.claim_webhooks(HOUR, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((&again[0].delivery_id, again[0].attempts, again[0].payload.as_deref()), (first, 1, Some("{\"v\":1}")));
    assert_eq!((again[0].last_status, again[0].last_error.as_deref()), (Some(503), Some("answered 503")));
    s.record_webhook_attempt(first, &attempt("{\"v\":2}", Some(204), AttemptNext::Delivered)).await.unwrap();
    s.record_webhook_attempt(&second[0].delivery_id, &attempt("{}", None, AttemptNext::GiveUp)).await.unwrap();

    let done = s.job_webhooks("j").await.unwrap();
    let delivered = done.iter().find(|d| &d.delivery_id == first).unwrap();
    assert_eq!((delivered.state, delivered.attempts, delivered.payload.as_deref()), (WebhookState::Delivered, 2, Some("{\"v\":1}")));
    assert_eq!(delivered.event_type.as_deref(), Some("job.completed"));
    assert!(delivered.finished_at.is_some() && delivered.first_attempt_at <= delivered.last_attempt_at);
    assert!(delivered.next_attempt_at.is_none());
    let failed = done.iter().find(|d| d.delivery_id == second[0].delivery_id).unwrap();
    assert_eq!((failed.state, failed.last_status), (WebhookState::Failed, None));
    assert!(s.claim_webhooks(HOUR, 10).await.unwrap().is_empty(), "nothing left to send");
    assert!(s.job_webhooks("nope").await.unwrap().is_empty());
}

pub(super) async fn an_expired_lease_is_claimed_again_and_cancelled_jobs_announce(h: &Harness) {
    let s = h.store();
    let (u, ids) = urls(6);
    s.add_webhooks("c", &u, &ids).await.unwrap();
    s.create_job("c", Priority::Normal, &items(0..3)).await.unwrap();
    assert!(matches!(s.cancel_job("c").await.unwrap(), CancelOutcome::Cancelled(_)));
    // Two dispatchers at once share the due deliveries out, never the same one twice.
    let claim = |store: std::sync::Arc<dyn crate::jobs::JobStore>| tokio::spawn(async move { store.claim_webhooks(HOUR, 4).await });
    let (a, b) = tokio::join!(claim(h.shared()), claim(h.shared()));
    let mut taken: Vec<String> = a.unwrap().unwrap().into_iter().chain(b.unwrap().unwrap()).map(|d| d.delivery_id).collect();
    taken.sort();
    assert_eq!(taken, ids);
    // A dispatcher that died holding a lease: its deliveries come back once it expires.
    s.add_webhooks("d", &u[..1], &["msg_d".to_string()]).await.unwrap();
    s.create_job("d", Priority::Normal, &items(10..11)).await.unwrap();
    s.cancel_job("d").await.unwrap();
    assert_eq!(s.claim_webhooks(StdDuration::ZERO, 10).await.unwrap().len(), 1);
    tokio::time::sleep(StdDuration::from_millis(5)).await;
    let back = s.claim_webhooks(HOUR, 10).await.unwrap();
    assert_eq!(back.iter().map(|d| d.delivery_id.as_str()).collect::<Vec<_>>(), vec!["msg_d"]);
}
