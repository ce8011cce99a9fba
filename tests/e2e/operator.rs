//! What an operator reads of a job (seed 002): the workers that worked on it, its
//! throughput and estimated completion, the notify endpoint's estimate, and the index
//! size in bytes.

use std::time::Duration;

use imgidx_tests::{cluster_settings, many_images, services, Cluster};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_status_names_its_workers_and_its_pace() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let first = many_images(&dir.path().join("first"), 3);
    let second = many_images(&dir.path().join("second"), 1);
    let cluster = Cluster::start(cluster_settings(&svc, dir.path()), 2).await;
    let paths = |images: &[std::path::PathBuf]| images.iter().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>();

    let (code, queued) = cluster.post("/api/v1/index/notify", json!({ "image_paths": paths(&first) })).await;
    assert_eq!(code, 202, "{queued}");
    assert_eq!(queued["new_images_count"], first.len(), "the add-images answer: {queued}");
    assert!(queued["estimated_time_seconds"].is_null(), "nothing finished yet, so no pace to go by: {queued}");
    let job_id = queued["job_id"].as_str().unwrap().to_string();
    let done = cluster.wait_all_indexed(&job_id, first.len() as u64, Duration::from_secs(120)).await;

    let workers = done["workers"].as_array().unwrap();
    assert!(!workers.is_empty(), "{done}");
    let processed: u64 = workers.iter().map(|w| w["images_processed"].as_u64().unwrap()).sum();
    assert_eq!(processed, first.len() as u64, "every image credited to one worker: {done}");
    for w in workers {
        assert!(w["worker_id"].as_str().unwrap().starts_with("test-host.w"), "{w}");
        assert_eq!((w["status"].as_str(), w["images_failed"].as_u64()), (Some("done"), Some(0)), "{w}");
    }
    assert!(done["throughput_images_per_sec"].as_f64().unwrap() > 0.0, "{done}");
    assert_eq!(done["estimated_completion"], done["completed_at"], "{done}");

    // Now the system has a recent pace to estimate by.
    let (code, again) = cluster.post("/api/v1/index/notify", json!({ "image_paths": paths(&second) })).await;
    assert_eq!(code, 202, "{again}");
    let eta = again["estimated_time_seconds"].as_f64().unwrap();
    assert!((0.0..3600.0).contains(&eta), "{again}");
    let second_id = again["job_id"].as_str().unwrap().to_string();
    cluster.wait_job(&second_id, Duration::from_secs(120)).await;

    let (_, stats) = cluster.get("/api/v1/index/stats").await;
    let bytes = stats["index_size_bytes"]["total"].as_u64().unwrap();
    assert_eq!(stats["index_size_bytes"]["vectors"], bytes, "{stats}");
    assert!(bytes > 0, "{stats}");
    let mb = stats["index_size_mb"].as_f64().unwrap();
    assert!((bytes as f64 / 1048576.0 - mb).abs() <= 0.05, "{stats}");
    cluster.stop().await;
}
