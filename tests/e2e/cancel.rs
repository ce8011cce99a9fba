//! Cancelling a job mid-run on RabbitMQ and PostgreSQL: the worker acks the tasks it
//! meets afterwards without work, so nothing but the batches it had started is
//! embedded after the cancel is acknowledged, the counts add up (every embedded image
//! counted, the rest pending), the claims are released, and the job is listed as
//! cancelled.

use std::sync::Arc;
use std::time::Duration;

use imgidx_tests::{cluster_settings, many_images, services, Cluster};

use crate::redelivery::{Fault, FaultyStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_embeds_nothing_more_and_its_counts_add_up() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = many_images(dir.path(), 12);
    let total = images.len() as u64;
    let mut cluster = Cluster::start(cluster_settings(&svc, dir.path()), 0).await;
    let batch = cluster.settings.worker.batch_size as u64;
    // About 16 images/s: the job is far from done when it is cancelled.
    let slow = Arc::new(FaultyStore::new(cluster.vectors.clone(), Fault::Slow(Duration::from_millis(250))));
    let worker = cluster.spawn_worker_with("test-host.slow", cluster.settings.worker.clone(), slow).await;
    cluster.add_worker(worker);
    let (code, body) = cluster.add_images(&images, "normal").await;
    assert_eq!(code, 202, "{body}");
    let job_id = body["job_id"].as_str().unwrap().to_string();
    let status_path = format!("/api/v1/index/status/{job_id}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while cluster.get(&status_path).await.1["progress"]["processed_images"].as_u64().unwrap() < 8 {
        assert!(tokio::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (code, cancelled) = cluster.post(&format!("/api/v1/index/jobs/{job_id}/cancel"), serde_json::json!({})).await;
    assert_eq!((code, cancelled["status"].as_str()), (200, Some("cancelled")), "{cancelled}");
    let at_cancel = cluster.vectors.count().await.unwrap();
    // The batches the worker had started (one in inference, one decoded) may finish…
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = cluster.vectors.count().await.unwrap();
    assert!(settled <= at_cancel + 2 * batch, "embedding went on after the cancel: {at_cancel} → {settled}");
    // …and then nothing more, although most of the job's tasks are still queued.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cluster.vectors.count().await.unwrap(), settled, "embedding went on after the cancel");
    assert!(settled < total / 2, "the job was nearly done before the cancel: {settled} of {total}");

    let (_, done) = cluster.get(&status_path).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let (processed, failed) =
        (done["progress"]["processed_images"].as_u64().unwrap(), done["progress"]["failed_images"].as_u64().unwrap());
    assert_eq!((processed, failed), (settled, 0), "every embedded image is counted: {done}");
    let (_, pending) = cluster.get(&format!("/api/v1/index/status/{job_id}/items?state=pending&limit=1000")).await;
    assert_eq!(pending["items"].as_array().unwrap().len() as u64, total - processed, "the rest stay pending");

    let (code, again) = cluster.post(&format!("/api/v1/index/jobs/{job_id}/cancel"), serde_json::json!({})).await;
    assert_eq!((code, again["error"].as_str()), (409, Some("job_finished")), "{again}");
    let (_, listed) = cluster.get("/api/v1/index/jobs?status=cancelled").await;
    assert_eq!(listed["jobs"][0]["job_id"], job_id.as_str(), "{listed}");
    // The claims are released: the same images can be queued again, minus those embedded.
    let (code, again) = cluster.add_images(&images, "normal").await;
    assert_eq!((code, again["new_images_count"].as_u64()), (202, Some(total - processed)), "{again}");
    cluster.stop().await;
}
