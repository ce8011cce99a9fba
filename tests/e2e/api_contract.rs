//! HTTP contract details of seed 000: status codes, error bodies, "none" jobs.

use serde_json::json;

use imgidx_tests::{cluster_settings, services, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_and_status_codes() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cluster_settings(&svc, dir.path());
    settings.api.max_paths_per_request = 3;
    let cluster = Cluster::start(settings, 0).await;
    let add = "/api/v1/index/add-images";

    let (code, body) = cluster.post_raw(add, "{not json").await;
    assert_eq!((code, body["error"].as_str()), (400, Some("malformed_json")), "{body}");

    for (payload, needle) in [
        (json!({"priority": "high"}), "image_paths"),
        (json!({"image_paths": []}), "empty"),
        (json!({"image_paths": ["/a.jpg"], "priority": "urgent"}), "urgent"),
        (json!({"image_paths": ["images/a.jpg"]}), "absolute"),
        (json!({"image_paths": ["/a", "/b", "/c", "/d"]}), "at most 3"),
        (json!({"image_paths": "/a.jpg"}), "invalid"),
    ] {
        let (code, body) = cluster.post(add, payload.clone()).await;
        assert_eq!(code, 422, "{payload} -> {body}");
        assert_eq!(body["error"], "validation_error", "{body}");
        assert!(body["message"].as_str().unwrap().contains(needle), "{payload} -> {body}");
    }

    let (code, body) = cluster.get("/api/v1/index/status/idx_20250101_000000_deadbeef").await;
    assert_eq!((code, body["error"].as_str()), (404, Some("job_not_found")), "{body}");

    let (code, body) = cluster.get("/health").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["index_available"], true);

    let (code, body) = cluster.get("/api/v1/index/stats").await;
    assert_eq!(code, 200);
    assert_eq!(body["model_name"], "tiny-clip");
    assert_eq!(body["embedding_dim"], 64);
    assert_eq!(body["total_images"], 0);
    assert_eq!(body["last_updated"], serde_json::Value::Null);

    let (code, body) = cluster.get("/api/v1/index/status").await;
    assert_eq!(code, 200);
    assert_eq!(body["active_jobs"], 0);
    assert_eq!(body["index_stats"]["total_images"], 0);

    let (code, _) = cluster.get("/api/v1/nope").await;
    assert_eq!(code, 404);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_roots_reject_paths_outside_them() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("photos");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(dir.path().join("secret.png"), b"x").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.png"), root.join("innocent.png")).unwrap();
    let mut settings = cluster_settings(&svc, dir.path());
    settings.api.allowed_roots = vec![root.clone()];
    let cluster = Cluster::start(settings, 0).await;

    let (code, body) = cluster.add_images(&[root.join("innocent.png")], "normal").await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["error"], "path_not_allowed");
    assert!(body["message"].as_str().unwrap().contains("innocent.png"), "{body}");
    assert!(!body.to_string().contains("secret.png"), "names no symlink target: {body}");
    cluster.stop().await;
}
