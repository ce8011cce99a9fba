//! `imgidx serve` end to end over HTTP, on embedded defaults only (in-process queue,
//! SQLite, Qdrant Edge) with the fixture model: index, search by image and text,
//! errors, and a kill -9 in the middle of a job followed by a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::server::{copy_images, repo_root, Serve};

const DECODABLE: usize = 16;

pub(crate) async fn submit(s: &Serve, paths: &[PathBuf]) -> Value {
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let r = s.post_json("/api/v1/index/add-images", &json!({ "image_paths": paths })).await;
    assert!(r.0 == 202 || r.0 == 200, "add-images: {r:?}");
    r.1
}

pub(crate) async fn wait_done(s: &Serve, job_id: &str, limit: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (code, body) = s.get(&format!("/api/v1/index/status/{job_id}")).await;
        assert_eq!(code, 200, "{body}");
        if body["status"] == "completed" || body["status"] == "failed" {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "job {job_id} not done in {limit:?}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn query(s: &Serve, body: Value) -> (u16, Value) {
    s.post_json("/api/v1/query", &body).await
}

#[tokio::test]
async fn serve_indexes_then_searches_by_image_text_and_upload() {
    let data = tempfile::tempdir().unwrap();
    let imgs = tempfile::tempdir().unwrap();
    let images = copy_images(imgs.path(), 1);
    let s = Serve::start(data.path(), &[("IMGIDX__SERVE__WORKERS", "2")]).await;

    let mut paths = images.clone();
    paths.push(repo_root().join("tests/fixtures/images/multipage_rgb.tif"));
    paths.push(imgs.path().join("missing.jpg"));
    let job = submit(&s, &paths).await;
    assert_eq!(job["images_count"], DECODABLE + 2);
    assert_eq!(job["new_images_count"], DECODABLE + 2);
    let done = wait_done(&s, job["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"]["processed_images"], DECODABLE, "{done}");
    assert_eq!(done["progress"]["failed_images"], 2, "{done}");
    let (_, stats) = s.get("/api/v1/index/stats").await;
    assert_eq!(stats["total_images"], DECODABLE, "{stats}");

    // Each image's nearest neighbour is itself.
    for image in images.iter().take(5) {
        let (code, r) = query(&s, json!({ "image_path": image, "top_k": 3 })).await;
        assert_eq!(code, 200, "{r}");
        assert_eq!(r["query_type"], "image");
        assert_eq!(r["results"][0]["image_path"], image.display().to_string(), "{r}");
        assert!(r["results"][0]["score"].as_f64().unwrap() > 0.999, "{r}");
        assert_eq!(r["results"][0]["rank"], 1);
        assert_eq!(r["results"][0]["payload"]["file_name"], image.file_name().unwrap().to_str().unwrap());
        assert_eq!(r["index_stats"]["total_images"], DECODABLE);
    }

    // Text: top_k results, best first.
    let (code, r) = query(&s, json!({ "text": "a photo of a cat", "top_k": 5 })).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["query"], "a photo of a cat");
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 5, "{r}");
    let scores: Vec<f64> = results.iter().map(|x| x["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "scores not descending: {scores:?}");
    let ranks: Vec<u64> = results.iter().map(|x| x["rank"].as_u64().unwrap()).collect();
    assert_eq!(ranks, vec![1, 2, 3, 4, 5]);
    assert!(r["query_time_seconds"].as_f64().unwrap() >= 0.0);

    // Filters: a directory prefix (everything under it, nothing else), and a minimum score.
    let chelsea = imgs.path().join("chelsea.png");
    let (_, r) = query(&s, json!({ "text": "cat", "top_k": 100, "path_prefix": imgs.path() })).await;
    assert_eq!(r["results"].as_array().unwrap().len(), DECODABLE, "{r}");
    let elsewhere = data.path().display().to_string();
    let (_, r) = query(&s, json!({ "text": "cat", "top_k": 100, "path_prefix": elsewhere })).await;
    assert_eq!(r["results"].as_array().unwrap().len(), 0, "{r}");
    let (_, r) = query(&s, json!({ "image_path": chelsea, "top_k": 10, "min_score": 0.999 })).await;
    assert_eq!(r["results"].as_array().unwrap().len(), 1, "{r}");

    // Upload: a file that is not indexed anywhere still finds its twin.
    let bytes = std::fs::read(&chelsea).unwrap();
    let (code, r) = s.post_upload("/api/v1/query", "kitty.png", bytes, &[("top_k", "2")]).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["query_type"], "upload");
    assert_eq!(r["query"], "kitty.png");
    assert_eq!(r["results"][0]["image_path"], chelsea.display().to_string(), "{r}");

    // copy_results (seed 002): the result files, hard-linked under <data_dir>/results/<query id>/.
    let (code, r) = query(&s, json!({ "text": "a photo of a cat", "top_k": 3, "copy_results": true })).await;
    assert_eq!(code, 200, "{r}");
    let folder = PathBuf::from(r["results_folder"].as_str().unwrap());
    assert!(folder.starts_with(data.path().join("results")), "{r}");
    for (i, hit) in r["results"].as_array().unwrap().iter().enumerate() {
        let source = PathBuf::from(hit["image_path"].as_str().unwrap());
        let copy = folder.join(format!("{:03}_{}", i + 1, source.file_name().unwrap().to_str().unwrap()));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&copy).unwrap().ino(), std::fs::metadata(&source).unwrap().ino(), "a hard link");
    }
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 3);
    assert!(r.get("results_not_copied").is_none(), "{r}");

    // Bad queries: clear codes, nothing crashes.
    for (body, status, code) in [
        (json!({}), 422, "validation_error"),
        (json!({ "text": "  " }), 422, "validation_error"),
        (json!({ "text": "x", "image_path": "/a.png" }), 422, "validation_error"),
        (json!({ "text": "x", "top_k": 0 }), 422, "validation_error"),
        (json!({ "text": "x", "top_k": 100000 }), 422, "validation_error"),
        (json!({ "text": "x", "min_score": 3.0 }), 422, "validation_error"),
        (json!({ "text": "x", "copy_results": true, "top_k": 101 }), 422, "validation_error"),
        (json!({ "text": "x", "bogus": 1 }), 422, "validation_error"),
        (json!({ "image_path": "relative.png" }), 422, "validation_error"),
        (json!({ "image_path": imgs.path().join("nope.png") }), 404, "image_not_found"),
        // No allowed roots here: a path that is not indexed is never read, so an existing
        // file answers as a missing one does.
        (json!({ "image_path": repo_root().join("README.md") }), 404, "image_not_found"),
    ] {
        let (got, r) = query(&s, body.clone()).await;
        assert_eq!((got, r["error"].as_str().unwrap_or("")), (status, code), "{body} -> {r}");
        assert!(!r["message"].as_str().unwrap_or("").is_empty(), "{r}");
    }
    let (got, r) = s.post_raw("/api/v1/query", "application/json", b"{not json".to_vec()).await;
    assert_eq!((got, r["error"].as_str().unwrap()), (400, "malformed_json"), "{r}");
    let (got, r) = s.post_raw("/api/v1/query", "multipart/form-data; boundary=zz", b"--zz\r\ngarbage".to_vec()).await;
    assert_eq!((got, r["error"].as_str().unwrap()), (400, "malformed_multipart"), "{r}");
    let (got, r) = s.post_upload("/api/v1/query", "x.png", vec![1, 2, 3], &[("top_k", "many")]).await;
    assert_eq!((got, r["error"].as_str().unwrap()), (422, "validation_error"), "{r}");
    let (got, r) = s.post_upload("/api/v1/query", "x.png", b"not an image".to_vec(), &[]).await;
    assert_eq!((got, r["error"].as_str().unwrap()), (422, "not_an_image"), "{r}");

    // A second serve on the same data directory is refused, not corrupting the first.
    let second = Serve::try_start(data.path(), &[]).await;
    assert!(second.contains("already using the data directory"), "{second}");

    s.stop().await;
}

/// Names every copy of the sample images distinctly, so one job holds many points.
fn many_images(dir: &Path, copies: usize) -> Vec<PathBuf> {
    copy_images(dir, copies)
}

#[tokio::test]
async fn serve_killed_mid_job_finishes_after_restart_with_exact_counts() {
    let data = tempfile::tempdir().unwrap();
    let imgs = tempfile::tempdir().unwrap();
    let images = many_images(imgs.path(), 40);
    let total = images.len();
    // Small batches on one pipeline, so the job is still running when it is killed.
    let slow = [("IMGIDX__WORKER__BATCH_SIZE", "2"), ("IMGIDX__WORKER__DECODE_THREADS", "1")];
    let mut s = Serve::start(data.path(), &slow).await;
    let job = submit(&s, &images).await;
    let job_id = job["job_id"].as_str().unwrap().to_string();
    assert_eq!(job["new_images_count"], total);

    // Kill -9 once some, but not all, images are done.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, st) = s.get(&format!("/api/v1/index/status/{job_id}")).await;
        let done = st["progress"]["processed_images"].as_u64().unwrap() + st["progress"]["failed_images"].as_u64().unwrap();
        if done > 0 {
            assert!(done < total as u64, "the job finished before the kill; make it bigger: {st}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no progress: {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.kill().await;

    // Restart on the same data directory: the job is still there and finishes.
    s = Serve::start(data.path(), &[]).await;
    let done = wait_done(&s, &job_id, Duration::from_secs(300)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"]["total_images"], total, "{done}");
    assert_eq!(done["progress"]["processed_images"], total, "every image exactly once: {done}");
    assert_eq!(done["progress"]["failed_images"], 0, "{done}");
    assert_eq!(done["progress"]["percent_complete"], 100.0);
    let (_, stats) = s.get("/api/v1/index/stats").await;
    assert_eq!(stats["total_images"], total, "{stats}");

    // Everything is indexed now: resubmitting queues nothing.
    let again = submit(&s, &images).await;
    assert_eq!(again["job_id"], "none", "{again}");
    assert_eq!(again["already_indexed_count"], total);
    s.stop().await;
}

#[tokio::test]
async fn json_logs_follow_one_request_from_the_api_to_the_worker() {
    let data = tempfile::tempdir().unwrap();
    let imgs = tempfile::tempdir().unwrap();
    let images = copy_images(imgs.path(), 1);
    let env = [("IMGIDX__LOG__FORMAT", "json"), ("RUST_LOG", "info,imgidx_worker=debug,lapin=warn")];
    let s = Serve::start(data.path(), &env).await;
    let paths: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/index/add-images", s.url))
        .header("x-request-id", "trace-me-42")
        .json(&json!({ "image_paths": paths }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    let job: Value = r.json().await.unwrap();
    let done = wait_done(&s, job["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");

    let log = s.log_text();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let queued = lines.iter().find(|l| l["fields"]["message"] == "job queued").expect("the API logged the job");
    assert_eq!(queued["span"]["request_id"], "trace-me-42", "{queued}");
    let finished: Vec<&Value> = lines.iter().filter(|l| l["fields"]["message"] == "image finished").collect();
    assert_eq!(finished.len(), images.len(), "{log}");
    assert!(finished.iter().all(|l| l["fields"]["request_id"] == "trace-me-42"), "{finished:?}");
    s.stop().await;
}
