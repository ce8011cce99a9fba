//! Outages and crashes fail no good image: a vector store down for longer than the
//! whole delivery-limit backoff, a worker crashed twenty times mid-job, a worker that
//! crashes on one planted image (only that image fails), and a share unmounted mid-job.

use std::sync::Arc;
use std::time::Duration;

use imgidx_shared::config::BrokerSettings;
use imgidx_tests::{cluster_settings, many_images, sample_images, services, Cluster};
use serde_json::Value;

use crate::redelivery::{Fault, FaultyStore};

const WAIT: Duration = Duration::from_secs(180);

async fn submit(cluster: &Cluster, images: &[std::path::PathBuf]) -> String {
    let (code, body) = cluster.add_images(images, "normal").await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["new_images_count"], images.len(), "{body}");
    body["job_id"].as_str().unwrap().to_string()
}

async fn progress(cluster: &Cluster, job_id: &str) -> Value {
    let (code, body) = cluster.get(&format!("/api/v1/index/status/{job_id}")).await;
    assert_eq!(code, 200, "{body}");
    body
}

fn done_count(status: &Value) -> u64 {
    status["progress"]["processed_images"].as_u64().unwrap() + status["progress"]["failed_images"].as_u64().unwrap()
}

/// How many of a job's images took 1, 2, … attempts.
async fn attempts_by_count(cluster: &Cluster, job_id: &str) -> std::collections::BTreeMap<u64, u64> {
    let mut counts = std::collections::BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let (code, page) = cluster.get(&format!("/api/v1/index/status/{job_id}/items?limit=1000{cursor}")).await;
        assert_eq!(code, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            *counts.entry(item["attempts"].as_u64().unwrap()).or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return counts,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vector_store_outage_longer_than_the_delivery_backoff_fails_no_image() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = many_images(dir.path(), 25);
    let n = images.len();
    assert!(n >= 200, "{n} images");
    // delivery_limit 3 (cluster_settings): handing batches back, as workers used to,
    // would dead-letter every image within about 4 s of failed writes.
    let cluster = Cluster::start(cluster_settings(&svc, dir.path()), 0).await;
    assert_eq!(cluster.settings.broker.delivery_limit, 3);
    let job_id = submit(&cluster, &images).await;

    let outage = Duration::from_secs(10);
    let store = Arc::new(FaultyStore::new(cluster.vectors.clone(), Fault::DownUntil(tokio::time::Instant::now() + outage)));
    let writes = store.writes_begun.clone();
    let w = cluster.spawn_worker_with("patient", cluster.settings.worker.clone(), store).await;
    tokio::time::sleep(outage / 2).await;
    let mid = progress(&cluster, &job_id).await;
    assert_eq!(done_count(&mid), 0, "nothing can finish during the outage: {mid}");
    assert!(writes.load(std::sync::atomic::Ordering::SeqCst) >= 3, "the worker kept trying");

    cluster.wait_all_indexed(&job_id, n as u64, WAIT).await;
    assert_eq!(w.stop().await.indexed, n as u64);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_crashed_twenty_times_mid_job_fails_no_image() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = many_images(dir.path(), 50);
    let n = images.len() as u64;
    let mut settings = cluster_settings(&svc, dir.path());
    // The broker's limit as deployed: a far backstop. Each crash hands the prefetched
    // tasks back with their delivery count raised; none of that may count as an attempt.
    settings.broker.delivery_limit = BrokerSettings::default().delivery_limit;
    let cluster = Cluster::start(settings, 0).await;
    let job_id = submit(&cluster, &images).await;

    let mut crashes = 0;
    let mut last = 0;
    while crashes < 20 {
        let w = cluster.spawn_worker(&format!("doomed-{crashes}"), cluster.settings.worker.clone()).await;
        // Crash at a moment unrelated to the work (as a kill from outside would come),
        // once it has made progress: one to three batches are in flight then.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let now = done_count(&progress(&cluster, &job_id).await);
            // A few batches' worth since the last crash, as kills at random times would allow.
            if now >= last + 12 {
                last = now;
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no progress after {crashes} crashes");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(u64::from(uuid::Uuid::new_v4().as_fields().1) % 150)).await;
        w.crash().await;
        crashes += 1;
        if last >= n {
            break;
        }
    }
    assert!(last < n, "the job finished after {crashes} crashes; make it bigger");

    let w = cluster.spawn_worker("survivor", cluster.settings.worker.clone()).await;
    cluster.wait_all_indexed(&job_id, n, WAIT).await;
    let attempts = attempts_by_count(&cluster, &job_id).await;
    eprintln!("{crashes} crashes; images by attempts: {attempts:?}");
    w.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_crashes_on_one_image_fails_that_image_alone() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut images = sample_images(dir.path());
    let planted = dir.path().join("planted.jpg");
    std::fs::copy(images.iter().find(|p| p.extension().is_some_and(|e| e == "jpg")).unwrap(), &planted).unwrap();
    images.push(planted.clone());
    let mut settings = cluster_settings(&svc, dir.path());
    settings.broker.delivery_limit = BrokerSettings::default().delivery_limit;
    // The planted image shares its batches with every other image.
    settings.worker.batch_size = images.len();
    settings.worker.batch_wait_ms = 200;
    let cluster = Cluster::start(settings, 0).await;
    let job_id = submit(&cluster, &images).await;

    let mut crashes = 0;
    let done = loop {
        let store = Arc::new(FaultyStore::new(cluster.vectors.clone(), Fault::CrashOn("planted.jpg")));
        let w = cluster.spawn_worker_with(&format!("crashy-{crashes}"), cluster.settings.worker.clone(), store).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        let status = loop {
            let status = progress(&cluster, &job_id).await;
            if w.is_finished() || status["status"] == "completed" || status["status"] == "failed" {
                break status;
            }
            assert!(tokio::time::Instant::now() < deadline, "stuck: {status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if w.is_finished() {
            // It crashed: restart it, as a supervisor would.
            w.crash().await;
            crashes += 1;
            assert!(crashes <= 10, "still crash-looping after {crashes} restarts: {status}");
            continue;
        }
        w.stop().await;
        break status;
    };
    let max_attempts = cluster.settings.worker.max_attempts;
    assert_eq!(crashes, max_attempts, "one crash per attempt at the planted image");
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"]["failed_images"], 1, "{done}");
    assert_eq!(done["progress"]["processed_images"], images.len() - 1, "{done}");

    let (code, failed) = cluster.get(&format!("/api/v1/index/status/{job_id}/items?state=failed")).await;
    assert_eq!(code, 200, "{failed}");
    let items = failed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{failed}");
    assert_eq!(items[0]["path"], planted.to_string_lossy().as_ref());
    assert_eq!(items[0]["reason"], "retries_exhausted");
    assert_eq!(items[0]["attempts"], max_attempts);
    // Its neighbours were charged at most for the first crash, and then tried alone.
    let (_, indexed) = cluster.get(&format!("/api/v1/index/status/{job_id}/items?state=indexed")).await;
    for item in indexed["items"].as_array().unwrap() {
        assert!(item["attempts"].as_u64().unwrap() <= 2, "{item}");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_unmounted_mid_job_fails_no_image_and_a_missing_file_fails_at_once() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    let photos = share.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let images = sample_images(&photos);
    let cluster = Cluster::start(cluster_settings(&svc, dir.path()), 0).await;
    assert!(cluster.settings.worker.file_retry_secs >= 30, "the default gives a share time to come back");
    let job_id = submit(&cluster, &images).await;
    // One file is deleted for good; then the share goes away, as an unmount would take it.
    let deleted = images[0].clone();
    std::fs::remove_file(&deleted).unwrap();
    let away = share.join("away");
    std::fs::rename(&photos, &away).unwrap();

    let worker = cluster.spawn_worker("test-host.patient", cluster.settings.worker.clone()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = progress(&cluster, &job_id).await;
    assert_eq!(done_count(&status), 0, "nothing may fail while the share is away: {status}");
    std::fs::rename(&away, &photos).unwrap();

    let done = cluster.wait_job(&job_id, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"]["processed_images"], images.len() - 1, "{done}");
    assert_eq!(done["progress"]["failed_images"], 1, "{done}");
    assert_eq!(done["failures_by_reason"], serde_json::json!({"not_found": 1}), "{done}");
    let (code, failed) = cluster.get(&format!("/api/v1/index/status/{job_id}/items?state=failed")).await;
    assert_eq!(code, 200, "{failed}");
    assert_eq!(failed["items"][0]["path"], deleted.to_string_lossy().as_ref());
    assert_eq!(failed["items"][0]["message"], "file not found", "missing from a directory that exists: {failed}");
    worker.stop().await;
    cluster.stop().await;
}
