//! The distributed reconcile: a job committed to the job store whose tasks never
//! reached RabbitMQ (an API that crashed between the two) still completes, with
//! exact counts: once its items are stale and the task queues are empty, and, since
//! the job store records publishes, after a short grace period while the queues are
//! never empty.

use std::sync::Arc;
use std::time::Duration;

use imgidx_shared::broker::{Broker, RabbitBroker};
use imgidx_shared::ids::point_id;
use imgidx_shared::jobs::NewItem;
use imgidx_shared::messages::{FileStamp, Priority};
use imgidx_shared::reconcile::{self, Periodic};
use imgidx_shared::shutdown::Shutdown;
use imgidx_tests::{cluster_settings, many_images, sample_images, services, Cluster};

use crate::redelivery::{Fault, FaultyStore};

/// What the API commits before it publishes.
fn committed_items(images: &[std::path::PathBuf]) -> Vec<NewItem> {
    images
        .iter()
        .map(|p| {
            let path = p.to_str().unwrap().to_string();
            let stamp = FileStamp::from_metadata(&std::fs::metadata(p).unwrap());
            NewItem { point_id: point_id(&path), path, stamp: Some(stamp) }
        })
        .collect()
}

#[tokio::test]
async fn lost_tasks_are_queued_again_and_the_job_completes() {
    let Some(svc) = services() else { return };
    let data = tempfile::tempdir().unwrap();
    let images_dir = tempfile::tempdir().unwrap();
    let images = sample_images(images_dir.path());
    let cluster = Cluster::start(cluster_settings(&svc, data.path()), 1).await;

    // What the API commits before it publishes; nothing is published.
    let items = committed_items(&images);
    let job_id = "idx_20261123_000000_lost0001";
    let claimed = cluster.jobs.create_job(job_id, Priority::High, &items).await.unwrap();
    assert_eq!(claimed.len(), images.len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, st) = cluster.get(&format!("/api/v1/index/status/{job_id}")).await;
    assert_eq!(st["status"], "queued", "nothing was published, so nothing moved: {st}");

    let broker: Arc<dyn Broker> = Arc::new(RabbitBroker::connect(&cluster.settings.broker, "test-reconcile").await.unwrap());
    assert_eq!(broker.waiting_tasks().await.unwrap(), 0);
    let shutdown = Shutdown::new();
    // Only the stale-item path: the publish path is tested below.
    let when = Periodic {
        requeue_after: Duration::from_millis(200),
        publish_grace: Duration::ZERO,
        interval: Duration::from_millis(200),
    };
    let reconciler = tokio::spawn(reconcile::run_periodic(cluster.jobs.clone(), broker.clone(), when, shutdown.clone()));

    let done = cluster.wait_job(job_id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"]["processed_images"], images.len(), "each image counted once: {done}");
    assert_eq!(done["progress"]["failed_images"], 0, "{done}");
    assert_eq!(cluster.vectors.count().await.unwrap(), images.len() as u64);

    shutdown.cancel();
    reconciler.await.unwrap();
    broker.close().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_publish_was_lost_completes_while_the_queues_stay_busy() {
    let Some(svc) = services() else { return };
    let data = tempfile::tempdir().unwrap();
    let images_dir = tempfile::tempdir().unwrap();
    let backlog = many_images(&images_dir.path().join("backlog"), 12);
    let lost_dir = images_dir.path().join("lost");
    std::fs::create_dir_all(&lost_dir).unwrap();
    let lost = sample_images(&lost_dir);
    let mut cluster = Cluster::start(cluster_settings(&svc, data.path()), 0).await;
    // A slow worker (about 16 images/s), so the backlog keeps the task queues busy
    // for the whole test.
    let slow = Arc::new(FaultyStore::new(cluster.vectors.clone(), Fault::Slow(Duration::from_millis(250))));
    let worker = cluster.spawn_worker_with("test-host.slow", cluster.settings.worker.clone(), slow).await;
    cluster.add_worker(worker);
    let (code, body) = cluster.add_images(&backlog, "low").await;
    assert_eq!(code, 202, "{body}");
    let backlog_job = body["job_id"].as_str().unwrap().to_string();
    // The API published and marked that job: the reconcile has nothing to publish for it.
    assert!(cluster.jobs.unpublished_items(chrono::Utc::now(), None, 10).await.unwrap().is_empty());

    // A job committed by an API that died before it published.
    let job_id = "idx_20261202_000000_lost0002";
    let claimed = cluster.jobs.create_job(job_id, Priority::High, &committed_items(&lost)).await.unwrap();
    assert_eq!(claimed.len(), lost.len());

    let broker: Arc<dyn Broker> = Arc::new(RabbitBroker::connect(&cluster.settings.broker, "test-reconcile").await.unwrap());
    let shutdown = Shutdown::new();
    // Stale items would be queued again only after an hour: only the publish path can
    // bring this job back.
    let when = Periodic {
        requeue_after: Duration::from_secs(3600),
        publish_grace: Duration::from_secs(1),
        interval: Duration::from_millis(200),
    };
    let reconciler = tokio::spawn(reconcile::run_periodic(cluster.jobs.clone(), broker.clone(), when, shutdown.clone()));

    let done = cluster.wait_job(job_id, Duration::from_secs(60)).await;
    let waiting = broker.waiting_tasks().await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"]["processed_images"], lost.len(), "each image counted once: {done}");
    assert_eq!(done["progress"]["failed_images"], 0, "{done}");
    assert!(waiting > 0, "the backlog's tasks were still waiting when the lost job completed");
    let (_, backlog_status) = cluster.get(&format!("/api/v1/index/status/{backlog_job}")).await;
    assert_eq!(backlog_status["status"], "running", "{backlog_status}");
    assert!(
        cluster.jobs.unpublished_items(chrono::Utc::now(), None, 10).await.unwrap().is_empty(),
        "the reconcile marked the job it published"
    );

    shutdown.cancel();
    reconciler.await.unwrap();
    broker.close().await;
    cluster.stop().await;
}
