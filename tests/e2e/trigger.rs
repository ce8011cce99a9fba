//! Directory triggers on RabbitMQ and PostgreSQL: a tree walked by content (nested
//! directories, a symlink loop, a non-image with an image extension, an image without
//! one), a second trigger answered with the running job, re-triggers that pick up one
//! changed file and prune one deleted file, and a walk whose API process died (its
//! lease left behind) taken over and finished.

use std::path::{Path, PathBuf};
use std::time::Duration;

use imgidx_shared::ids::point_id;
use imgidx_shared::jobs::{NewItem, ScanCounts, ScanOpened, ScanSpec};
use imgidx_shared::messages::{FileStamp, Priority};
use imgidx_tests::{cluster_settings, sample_images, services, Cluster};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(120);

/// root/top/{samples}, root/top/sub/deep/{some samples}, an image without an extension,
/// a `.jpg` that is text, and top/sub/loop → top. Returns (root, images expected).
fn tree(base: &Path) -> (PathBuf, Vec<PathBuf>) {
    let root = std::fs::canonicalize(base).unwrap().join("library");
    let top = root.join("top");
    let deep = top.join("sub/deep");
    std::fs::create_dir_all(&deep).unwrap();
    let mut images = sample_images(&top);
    for src in images.clone().iter().take(3) {
        let dest = deep.join(format!("deep-{}", src.file_name().unwrap().to_string_lossy()));
        std::fs::copy(src, &dest).unwrap();
        images.push(dest);
    }
    let noext = deep.join("scan0001");
    std::fs::copy(&images[0], &noext).unwrap();
    images.push(noext);
    std::fs::write(top.join("notes.jpg"), "not an image, whatever its name says").unwrap();
    std::os::unix::fs::symlink(&top, top.join("sub/loop")).unwrap();
    images.sort();
    (root, images)
}

async fn trigger(cluster: &Cluster, body: Value) -> (u16, Value) {
    cluster.post("/api/v1/index/trigger", body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_triggered_tree_is_indexed_by_content_and_kept_in_step_with_the_disk() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (root, images) = tree(dir.path());
    let n = images.len() as u64;
    let mut settings = cluster_settings(&svc, dir.path());
    settings.api.allowed_roots = vec![root.clone()];
    // No worker yet: the job stays active while the second trigger comes.
    let mut cluster = Cluster::start(settings, 0).await;

    let (code, first) = trigger(&cluster, json!({ "image_dir": root, "priority": "high" })).await;
    assert_eq!((code, first["status"].as_str()), (202, Some("queued")), "{first}");
    assert_eq!(first["image_dir"], root.to_string_lossy().as_ref(), "{first}");
    let job_id = first["job_id"].as_str().unwrap().to_string();
    let (code, second) = trigger(&cluster, json!({ "image_dir": format!("{}/top/..", root.display()) })).await;
    assert_eq!((code, second["job_id"].as_str()), (200, Some(job_id.as_str())), "the running job answers: {second}");

    let worker = cluster.spawn_worker("test-host.w0", cluster.settings.worker.clone()).await;
    cluster.add_worker(worker);
    let done = cluster.wait_all_indexed(&job_id, n, WAIT).await;
    assert_eq!(done["priority"], "high", "{done}");
    let scan = &done["scan"];
    assert_eq!(scan["done"], true, "{done}");
    assert_eq!(scan["images_found"], n, "the image without an extension is found: {done}");
    assert_eq!((scan["files_seen"].as_u64(), scan["not_images"].as_u64()), (Some(n + 1), Some(1)), "{done}");
    assert!(done.get("removed").is_none(), "no prune asked: {done}");
    let (_, items) = cluster.get(&format!("/api/v1/index/status/{job_id}/items?limit=1000")).await;
    let mut indexed: Vec<String> =
        items["items"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap().to_string()).collect();
    indexed.sort();
    let expected: Vec<String> = images.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    assert_eq!(indexed, expected, "each image once, though the loop leads back to it");

    // One file changes, one is deleted: the next walk queues the first, prunes the second.
    let (changed, deleted) = (&images[1], &images[2]);
    std::fs::copy(&images[3], changed).unwrap();
    std::fs::remove_file(deleted).unwrap();
    let (code, again) = trigger(&cluster, json!({ "image_dir": root, "prune_missing": true })).await;
    assert_eq!(code, 202, "{again}");
    let again_id = again["job_id"].as_str().unwrap();
    let done = cluster.wait_job(again_id, WAIT).await;
    assert_eq!((done["status"].as_str(), done["progress"]["total_images"].as_u64()), (Some("completed"), Some(1)), "{done}");
    assert_eq!(done["removed"], 1, "{done}");
    let (_, items) = cluster.get(&format!("/api/v1/index/status/{again_id}/items")).await;
    assert_eq!(items["items"][0]["path"], changed.to_string_lossy().as_ref(), "{items}");
    assert_eq!(cluster.vectors.count().await.unwrap(), n - 1);
    let gone = cluster.vectors.stamps(&[point_id(&deleted.to_string_lossy())]).await.unwrap();
    assert!(gone.is_empty(), "the deleted file's point is gone");

    // Nothing changed: a job with nothing to do completes at once; force re-embeds all.
    let (_, same) = trigger(&cluster, json!({ "image_dir": root })).await;
    let done = cluster.wait_job(same["job_id"].as_str().unwrap(), WAIT).await;
    assert_eq!((done["status"].as_str(), done["progress"]["total_images"].as_u64()), (Some("completed"), Some(0)), "{done}");
    let (_, forced) = trigger(&cluster, json!({ "image_dir": root.join("top/sub"), "force_reindex": true, "recursive": false })).await;
    let done = cluster.wait_job(forced["job_id"].as_str().unwrap(), WAIT).await;
    assert_eq!(done["progress"]["total_images"], 0, "sub itself holds no file, and recursive is off: {done}");
    let (_, forced) = trigger(&cluster, json!({ "image_dir": root.join("top/sub/deep"), "force_reindex": true })).await;
    let done = cluster.wait_job(forced["job_id"].as_str().unwrap(), WAIT).await;
    assert_eq!(done["progress"]["processed_images"], 4, "re-embedded although unchanged: {done}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_refuses_what_it_cannot_walk() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (root, images) = tree(dir.path());
    let mut settings = cluster_settings(&svc, dir.path());
    settings.api.allowed_roots = vec![root.clone()];
    let cluster = Cluster::start(settings, 0).await;
    let cases: [(Value, u16, &str); 6] = [
        (json!({ "image_dir": "relative/dir" }), 422, "validation_error"),
        (json!({ "image_dir": root.join("nope") }), 422, "not_a_directory"),
        (json!({ "image_dir": images[0] }), 422, "not_a_directory"),
        (json!({ "image_dir": "/etc" }), 422, "path_not_allowed"),
        (json!({ "image_dir": root, "priority": "urgent" }), 422, "validation_error"),
        (json!({ "recursive": true }), 422, "validation_error"),
    ];
    for (body, status, code) in cases {
        let (got, answer) = trigger(&cluster, body.clone()).await;
        assert_eq!((got, answer["error"].as_str()), (status, Some(code)), "{body}: {answer}");
    }
    let (got, answer) = cluster.post_raw("/api/v1/index/trigger", "{not json").await;
    assert_eq!((got, answer["error"].as_str()), (400, Some("malformed_json")), "{answer}");
    let (_, jobs) = cluster.get("/api/v1/index/jobs").await;
    assert_eq!(jobs["total"], 0, "nothing refused left a job behind: {jobs}");
    cluster.stop().await;
}

/// An API process opened a scan, added a chunk without publishing it, and died: its
/// lease expires, this API takes the walk over, publishes the orphaned chunk again and
/// finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_whose_api_process_died_is_taken_over_and_finished() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (root, images) = tree(dir.path());
    let mut settings = cluster_settings(&svc, dir.path());
    settings.api.scan_lease_secs = 1;
    let cluster = Cluster::start(settings, 1).await;

    let spec = ScanSpec { dir: root.to_string_lossy().into_owned(), recursive: true, force_reindex: false, prune_missing: false, collection: None };
    let opened = cluster.jobs.open_scan("idx_orphan", Priority::Normal, &spec, "api-dead").await.unwrap();
    assert_eq!(opened, ScanOpened::Created);
    let orphaned: Vec<NewItem> = images[..2]
        .iter()
        .map(|p| {
            let path = p.to_string_lossy().into_owned();
            let stamp = FileStamp::from_metadata(&std::fs::metadata(p).unwrap());
            NewItem { point_id: point_id(&path), path, stamp: Some(stamp) }
        })
        .collect();
    let counts = ScanCounts { files_seen: 2, images_found: 2, ..ScanCounts::default() };
    cluster.jobs.add_scan_items("idx_orphan", "api-dead", &orphaned, &counts).await.unwrap();

    let done = cluster.wait_all_indexed("idx_orphan", images.len() as u64, WAIT).await;
    assert_eq!(done["scan"]["images_found"], images.len(), "the walk started over: {done}");
    cluster.stop().await;
}
