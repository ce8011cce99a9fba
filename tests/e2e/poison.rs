//! No poison loop: an event the job store refuses every time (a reason holding a NUL
//! byte, which PostgreSQL text cannot store) is set aside on `<prefix>.events.dead`
//! with its error, and every other event, the same job's included, goes on.

use std::time::Duration;

use imgidx_shared::broker::{Broker, RabbitBroker};
use imgidx_shared::ids::point_id;
use imgidx_shared::messages::{CompletionEvent, FailureKind, Outcome};
use imgidx_tests::{cluster_settings, management_poll, or_skip, sample_images, services, Cluster};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_set_aside_and_the_jobs_complete() {
    let Some(svc) = services() else { return };
    let Some(mgmt) = or_skip(svc.mgmt_url.clone(), "IMGIDX_TEST_RABBIT_MGMT_URL") else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = sample_images(dir.path());
    let (first, rest) = images.split_at(1);
    // No worker yet: the poison event reaches the aggregator while its item is pending.
    let mut cluster = Cluster::start(cluster_settings(&svc, dir.path()), 0).await;
    let (code, body) = cluster.add_images(first, "normal").await;
    assert_eq!(code, 202, "{body}");
    let poisoned_job = body["job_id"].as_str().unwrap().to_string();

    let path = std::fs::canonicalize(&first[0]).unwrap().to_string_lossy().into_owned();
    let poison = CompletionEvent {
        job_id: poisoned_job.clone(),
        point_id: point_id(&path),
        path,
        outcome: Outcome::Failed { kind: FailureKind::NotAnImage, reason: "bad\0bytes".into() },
        worker: "poisoner".into(),
        request_id: None,
        finished_at_ms: None,
        from_cache: false,
        object_key: None,
    };
    let broker = RabbitBroker::connect(&cluster.settings.broker, "test-poisoner").await.unwrap();
    broker.publish_events(&[poison]).await.unwrap();

    let queue = format!("queues/%2f/{}.events.dead", cluster.settings.broker.queue_prefix);
    management_poll(&mgmt, &queue, |q| match q["messages"].as_u64() {
        Some(1) => Ok(()),
        _ => Err(format!("the poison event was not set aside: {q}")),
    })
    .await;
    let dead = peek(&mgmt, &queue).await;
    assert_eq!(dead["type"], "dead_event", "{dead}");
    assert_eq!(dead["event"]["job_id"], poisoned_job.as_str(), "{dead}");
    assert_eq!(dead["attempts"], 3, "{dead}");
    assert!(!dead["error"].as_str().unwrap().is_empty(), "{dead}");

    // Everything behind it goes on: the same item's real event, and another job.
    let w = cluster.spawn_worker("w", cluster.settings.worker.clone()).await;
    cluster.add_worker(w);
    let (code, body) = cluster.add_images(rest, "normal").await;
    assert_eq!(code, 202, "{body}");
    let other = cluster.wait_job(body["job_id"].as_str().unwrap(), WAIT).await;
    assert_eq!(other["status"], "completed", "{other}");
    assert_eq!(other["progress"]["processed_images"], rest.len(), "{other}");
    let poisoned = cluster.wait_job(&poisoned_job, WAIT).await;
    assert_eq!(poisoned["status"], "completed", "{poisoned}");
    assert_eq!(poisoned["progress"]["processed_images"], 1, "{poisoned}");
    broker.close().await;
    cluster.stop().await;
}

/// The first message of a queue, left in place.
async fn peek(mgmt: &str, queue: &str) -> Value {
    let got: Value = reqwest::Client::new()
        .post(format!("{mgmt}/api/{queue}/get"))
        .basic_auth("guest", Some("guest"))
        .json(&json!({"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    serde_json::from_str(got[0]["payload"].as_str().unwrap()).unwrap()
}
