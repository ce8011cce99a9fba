//! A lost broker connection costs a reconnect, not the service: after every
//! connection of the cluster is force-closed, the API queues again, the worker and
//! the aggregator subscribe again, and a job completes with exact counts.

use std::time::Duration;

use imgidx_tests::{
    cluster_settings, management_close_connections, or_skip, sample_images, services, wait_for_consumer_tags, Cluster,
};

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_survives_its_broker_connection_being_closed() {
    let Some(svc) = services() else { return };
    let Some(mgmt) = or_skip(svc.mgmt_url.clone(), "IMGIDX_TEST_RABBIT_MGMT_URL") else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = sample_images(dir.path());
    let (before, after) = images.split_at(2);
    let cluster = Cluster::start(cluster_settings(&svc, dir.path()), 1).await;
    let prefix = cluster.settings.broker.queue_prefix.clone();

    let (code, body) = cluster.add_images(before, "normal").await;
    assert_eq!(code, 202, "{body}");
    let first = cluster.wait_job(body["job_id"].as_str().unwrap(), WAIT).await;
    assert_eq!(first["status"], "completed", "{first}");

    // API, aggregator and worker connections.
    management_close_connections(&mgmt, &prefix, 3).await;

    // The API reconnects on its next publish (no 503: the request itself recovers).
    let (code, body) = cluster.add_images(after, "normal").await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["new_images_count"], after.len(), "{body}");
    let done = cluster.wait_job(body["job_id"].as_str().unwrap(), WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"]["processed_images"], after.len(), "{done}");
    assert_eq!(done["progress"]["failed_images"], 0, "{done}");
    assert_eq!(cluster.vectors.count().await.unwrap(), images.len() as u64);

    // The worker's consumers are back under their tags (the management API lags a little).
    let wanted: Vec<String> = ["high", "normal", "low"].iter().map(|p| format!("test-host.w0.{p}")).collect();
    wait_for_consumer_tags(&mgmt, &prefix, |tags| wanted.iter().all(|w| tags.contains(w))).await;
    let (code, health) = cluster.get("/health").await;
    assert_eq!(code, 200, "{health}");

    let reports = cluster.stop().await;
    assert_eq!(reports[0].1.indexed, images.len() as u64, "{reports:?}");
}
