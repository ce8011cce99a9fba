//! The distributed reconcile: a job committed to the job store whose tasks never
//! reached RabbitMQ (an API that crashed between the two) still completes, with
//! exact counts, once its items are stale and the task queues are empty.

use std::sync::Arc;
use std::time::Duration;

use imgidx_shared::broker::{Broker, RabbitBroker};
use imgidx_shared::ids::point_id;
use imgidx_shared::jobs::NewItem;
use imgidx_shared::messages::{FileStamp, Priority};
use imgidx_shared::reconcile;
use imgidx_shared::shutdown::Shutdown;
use imgidx_tests::{cluster_settings, sample_images, services, Cluster};

#[tokio::test]
async fn lost_tasks_are_queued_again_and_the_job_completes() {
    let Some(svc) = services() else { return };
    let data = tempfile::tempdir().unwrap();
    let images_dir = tempfile::tempdir().unwrap();
    let images = sample_images(images_dir.path());
    let cluster = Cluster::start(cluster_settings(&svc, data.path()), 1).await;

    // What the API commits before it publishes; nothing is published.
    let items: Vec<NewItem> = images
        .iter()
        .map(|p| {
            let path = p.to_str().unwrap().to_string();
            let stamp = FileStamp::from_metadata(&std::fs::metadata(p).unwrap());
            NewItem { point_id: point_id(&path), path, stamp: Some(stamp) }
        })
        .collect();
    let job_id = "idx_20261123_000000_lost0001";
    let claimed = cluster.jobs.create_job(job_id, Priority::High, &items).await.unwrap();
    assert_eq!(claimed.len(), images.len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, st) = cluster.get(&format!("/api/v1/index/status/{job_id}")).await;
    assert_eq!(st["status"], "queued", "nothing was published, so nothing moved: {st}");

    let broker: Arc<dyn Broker> = Arc::new(RabbitBroker::connect(&cluster.settings.broker, "test-reconcile").await.unwrap());
    assert_eq!(broker.waiting_tasks().await.unwrap(), 0);
    let shutdown = Shutdown::new();
    let reconciler = tokio::spawn(reconcile::run_periodic(
        cluster.jobs.clone(),
        broker.clone(),
        Duration::from_millis(200),
        Duration::from_millis(200),
        shutdown.clone(),
    ));

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
