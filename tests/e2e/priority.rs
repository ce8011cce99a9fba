//! Queued high work is taken before normal, normal before low.

use std::sync::Arc;
use std::time::Duration;

use crate::redelivery::{Fault, FaultyStore};
use imgidx_tests::{cluster_settings, sample_images, services, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_before_normal_before_low() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = sample_images(dir.path());
    let mut settings = cluster_settings(&svc, dir.path());
    settings.worker.batch_size = 2;
    // No workers yet: all three jobs are queued before anyone consumes.
    let cluster = Cluster::start(settings, 0).await;
    let mut ids = Vec::new();
    for (priority, chunk) in ["low", "normal", "high"].iter().zip(images.chunks(6)) {
        let (code, body) = cluster.add_images(chunk, priority).await;
        assert_eq!(code, 202, "{body}");
        ids.push(body["job_id"].as_str().unwrap().to_string());
    }
    // Each batch's writes take a while, so its events reach the aggregator apart from the
    // next batch's: a job's completion time then tells when its last batch was done.
    let slow = Arc::new(FaultyStore::new(cluster.vectors.clone(), Fault::Slow(Duration::from_millis(100))));
    let w = cluster.spawn_worker_with("prio-worker", cluster.settings.worker.clone(), slow).await;
    for id in &ids {
        cluster.wait_job(id, Duration::from_secs(120)).await;
    }
    let mut finished = Vec::new();
    for id in &ids {
        finished.push(cluster.jobs.job(id).await.unwrap().unwrap().completed_at.unwrap());
    }
    let (low, normal, high) = (finished[0], finished[1], finished[2]);
    assert!(high < normal && normal < low, "completion order high={high} normal={normal} low={low}");
    w.stop().await;
    cluster.stop().await;
}
