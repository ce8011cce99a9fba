//! The main path: submit the sample images plus a missing path, a non-image and an
//! undecodable TIFF,
//! two workers, exact counts, dedup on resubmit, re-embedding after a change.

use std::time::Duration;

use imgidx_shared::embed::Preprocessor;
use imgidx_shared::vectors::SearchFilter;
use imgidx_tests::{
    cluster_settings, repo_root, sample_images, services, wait_for_consumer_tags, Cluster, UNDECODABLE_SAMPLE,
};

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn index_sample_images_end_to_end() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images_dir = dir.path().join("images");
    std::fs::create_dir_all(&images_dir).unwrap();
    let images = sample_images(&images_dir);
    let n = images.len();
    assert!(n >= 15, "sample images missing");
    let missing = images_dir.join("missing.png");
    let not_image = images_dir.join("notes.txt");
    std::fs::write(&not_image, "this is not an image").unwrap();
    let undecodable = images_dir.join(UNDECODABLE_SAMPLE);
    std::fs::copy(repo_root().join("tests/fixtures/images").join(UNDECODABLE_SAMPLE), &undecodable).unwrap();

    let settings = cluster_settings(&svc, dir.path());
    let cluster = Cluster::start(settings, 2).await;

    // Submit everything, one path twice: it counts once.
    let mut submitted = images.clone();
    submitted.push(missing.clone());
    submitted.push(not_image.clone());
    submitted.push(undecodable.clone());
    submitted.push(images[0].clone());
    let (code, body) = cluster.add_images(&submitted, "normal").await;
    assert_eq!(code, 202, "{body}");
    assert!(body["job_id"].as_str().unwrap().starts_with("idx_"), "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["images_count"], n + 3);
    assert_eq!(body["new_images_count"], n + 3);
    assert_eq!(body["already_indexed_count"], 0);
    let job_id = body["job_id"].as_str().unwrap().to_string();

    // Consumers are visible in the management console under their tags (its
    // statistics refresh every few seconds, hence the polling).
    if let Some(mgmt) = &svc.mgmt_url {
        wait_for_consumer_tags(mgmt, &cluster.settings.broker.queue_prefix, |tags| {
            ["test-host.w0", "test-host.w1"].iter().all(|w| tags.iter().any(|t| t.starts_with(w)))
        })
        .await;
    }

    let done = cluster.wait_job(&job_id, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    let p = &done["progress"];
    assert_eq!(p["total_images"], n + 3, "{done}");
    assert_eq!(p["processed_images"], n, "{done}");
    assert_eq!(p["failed_images"], 3, "{done}");
    assert_eq!(p["percent_complete"], 100.0);
    assert!(done["started_at"].is_string() && done["completed_at"].is_string(), "{done}");

    let (_, stats) = cluster.get("/api/v1/index/stats").await;
    assert_eq!(stats["total_images"], n, "{stats}");
    assert_eq!(stats["num_failed"], 3, "{stats}");
    assert!(stats["index_size_mb"].as_f64().unwrap() > 0.0, "{stats}");
    assert!(stats["last_updated"].is_string());

    // Every image's nearest neighbour is itself.
    let m = cluster.encoder.manifest().clone();
    let pre = Preprocessor::new(m.image_size, m.mean, m.std, u64::MAX, u64::MAX);
    for path in &images {
        let img = pre.load_path(path).unwrap();
        let v = cluster.encoder.embed(&img.tensor, 1).unwrap().remove(0);
        let hits = cluster.vectors.search(&v, 3, &SearchFilter::default()).await.unwrap();
        assert_eq!(hits[0].payload.path, path.canonicalize().unwrap().to_str().unwrap(), "nearest of {path:?}");
        assert!(hits[0].score > 0.999, "{}", hits[0].score);
        assert_eq!(hits[0].payload.job_id, job_id);
        assert_eq!(hits[0].payload.model, "tiny-clip");
        assert!(hits[0].payload.width > 0 && hits[0].payload.height > 0);
    }

    // Resubmitting the indexed images creates no job.
    let (code, body) = cluster.add_images(&images, "normal").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["job_id"], "none");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["already_indexed_count"], n);
    assert_eq!(body["new_images_count"], 0);

    // A changed file is re-embedded (counted new) and its point replaced.
    let changed = &images[1];
    std::fs::copy(&images[2], changed).unwrap();
    let (code, body) = cluster.add_images(&images, "high").await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["new_images_count"], 1, "{body}");
    assert_eq!(body["already_indexed_count"], n - 1, "{body}");
    let done = cluster.wait_job(body["job_id"].as_str().unwrap(), WAIT).await;
    assert_eq!(done["progress"]["processed_images"], 1, "{done}");
    let (_, stats) = cluster.get("/api/v1/index/stats").await;
    assert_eq!(stats["total_images"], n, "replaced, not added: {stats}");
    let id = imgidx_shared::ids::point_id(changed.canonicalize().unwrap().to_str().unwrap());
    let stamp = cluster.vectors.stamps(&[id]).await.unwrap()[&id];
    assert_eq!(stamp.size, std::fs::metadata(changed).unwrap().len());

    let (_, overall) = cluster.get("/api/v1/index/status").await;
    assert_eq!(overall["active_jobs"], 0, "{overall}");
    assert_eq!(overall["recent_jobs"].as_array().unwrap().len(), 2, "{overall}");
    assert_eq!(overall["total_indexed_images"], n);

    // Both workers took part.
    let reports = cluster.stop().await;
    for (tag, report) in &reports {
        assert!(report.indexed + report.failed > 0, "worker {tag} consumed nothing: {reports:?}");
    }
    let total: u64 = reports.iter().map(|(_, r)| r.indexed).sum();
    assert_eq!(total, n as u64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_queued_in_an_active_job_is_not_queued_twice() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = sample_images(dir.path());
    // No workers: the first job stays active.
    let cluster = Cluster::start(cluster_settings(&svc, dir.path()), 0).await;
    let (code, first) = cluster.add_images(&images[..3], "normal").await;
    assert_eq!(code, 202, "{first}");
    let (code, second) = cluster.add_images(&images[..5], "normal").await;
    assert_eq!(code, 202, "{second}");
    assert_eq!(second["images_count"], 5);
    assert_eq!(second["new_images_count"], 2, "{second}");
    assert_eq!(second["already_queued_count"], 3, "{second}");
    assert_eq!(second["already_indexed_count"], 3, "{second}");
    let (code, third) = cluster.add_images(&images[..5], "normal").await;
    assert_eq!(code, 200, "{third}");
    assert_eq!(third["job_id"], "none");

    let (_, overall) = cluster.get("/api/v1/index/status").await;
    assert_eq!(overall["active_jobs"], 2, "{overall}");

    // Now a worker drains both jobs.
    let w = cluster.spawn_worker("late-worker", cluster.settings.worker.clone()).await;
    for job in [&first, &second] {
        let done = cluster.wait_job(job["job_id"].as_str().unwrap(), WAIT).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    assert_eq!(w.stop().await.indexed, 5);
    cluster.stop().await;
}
