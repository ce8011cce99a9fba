//! Content-hash reuse against a real `imgidx serve`: copies and renames of indexed images
//! are indexed without decode or inference, and a cache clear makes the next one embed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::serve::wait_done;
use crate::server::{copy_images, Serve};

/// Decoded images and inference runs so far, from the worker's stage histograms.
async fn work_done(s: &Serve) -> (u64, u64) {
    let (code, metrics) = s.get("/metrics").await;
    assert_eq!(code, 200);
    let text = metrics.as_str().unwrap_or_default();
    let count = |stage: &str| {
        let key = format!("imgidx_worker_stage_seconds_count{{stage=\"{stage}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&key)).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    };
    (count("decode"), count("inference"))
}

async fn index(s: &Serve, paths: &[&Path]) -> Value {
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let (code, job) = s.post_json("/api/v1/index/add-images", &json!({ "image_paths": paths })).await;
    assert_eq!(code, 202, "{job}");
    let done = wait_done(s, job["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");
    done
}

#[tokio::test]
async fn copies_and_renames_reuse_the_vector_and_a_cache_clear_embeds_again() {
    let s = Serve::fresh().await;
    let imgs = tempfile::tempdir().unwrap();
    let images: Vec<PathBuf> = copy_images(imgs.path(), 1).into_iter().take(3).collect();
    let first = index(&s, &images.iter().map(PathBuf::as_path).collect::<Vec<_>>()).await;
    assert_eq!(first["progress"]["from_cache"], 0, "{first}");
    let before = work_done(&s).await;
    assert!(before.0 >= 3 && before.1 >= 1, "{before:?}");

    // A copy and a rename: new paths, known bytes.
    let copy = imgs.path().join("copy-of-first.jpg");
    std::fs::copy(&images[0], &copy).unwrap();
    std::fs::create_dir(imgs.path().join("moved")).unwrap();
    let renamed = imgs.path().join("moved").join("renamed");
    std::fs::rename(&images[1], &renamed).unwrap();
    let second = index(&s, &[&copy, &renamed]).await;
    assert_eq!((second["progress"]["processed_images"].as_u64(), second["progress"]["from_cache"].as_u64()), (Some(2), Some(2)), "{second}");
    assert_eq!(work_done(&s).await, before, "nothing decoded, no inference");
    // Seed 003's report names where each vector came from.
    let (code, report) = s.get(&format!("/api/v1/ingest/status/{}", second["job_id"].as_str().unwrap())).await;
    assert_eq!(code, 200, "{report}");
    let result = &report["result"];
    assert_eq!((result["total_processed"].as_u64(), result["total_from_cache"].as_u64()), (Some(2), Some(2)), "{report}");
    let sources: Vec<&str> = result["processed_files"].as_array().unwrap().iter().map(|f| f["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["cache", "cache"], "{report}");

    // The copy has its own point, with the original's vector.
    let (code, r) = s.post_json("/api/v1/query", &json!({ "image_path": copy, "top_k": 2 })).await;
    assert_eq!(code, 200, "{r}");
    let top: Vec<&str> = r["results"].as_array().unwrap().iter().map(|h| h["image_path"].as_str().unwrap()).collect();
    assert!(top.contains(&copy.to_str().unwrap()) && top.contains(&images[0].to_str().unwrap()), "{r}");
    assert!(r["results"].as_array().unwrap().iter().all(|h| (h["score"].as_f64().unwrap() - 1.0).abs() < 1e-3), "{r}");
    let copied = r["results"].as_array().unwrap().iter().find(|h| h["image_path"] == copy.to_str().unwrap()).unwrap();
    assert_eq!(copied["payload"]["file_name"], "copy-of-first.jpg", "its own payload: {copied}");
    assert_eq!(copied["payload"]["sha256"].as_str().map(str::len), Some(64), "{copied}");

    // Seed 003's call: no body, no Content-Type.
    let url = format!("{}/api/v1/collections/cache/clear", s.url);
    let r = reqwest::Client::new().post(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cleared: Value = r.json().await.unwrap();
    assert_eq!(cleared["collection_name"], "images", "{cleared}");
    let (code, missing) = s.post_json("/api/v1/collections/cache/clear", &json!({ "collection_name": "nope" })).await;
    assert_eq!((code, missing["error"].as_str()), (404, Some("collection_not_found")));

    let another = imgs.path().join("copy-of-third.jpg");
    std::fs::copy(&images[2], &another).unwrap();
    let third = index(&s, &[&another]).await;
    assert_eq!(third["progress"]["from_cache"], 0, "cleared: embedded again: {third}");
    let after = work_done(&s).await;
    assert_eq!((after.0, after.1 > before.1), (before.0 + 1, true), "{before:?} -> {after:?}");

    // Seed 003's scan: a known image (its hash recorded again just now) and a broken one.
    let dir = imgs.path().join("scan");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&images[2], dir.join("again.jpg")).unwrap();
    std::fs::write(dir.join("broken.jpg"), [0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0, 1]).unwrap();
    let (code, scan) = s.post_json("/api/v1/ingest/scan", &json!({ "directory_path": dir })).await;
    assert_eq!(code, 202, "{scan}");
    let job_id = scan["job_id"].as_str().unwrap();
    let done = wait_done(&s, job_id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, report) = s.get(&format!("/api/v1/ingest/status/{job_id}")).await;
    let result = &report["result"];
    assert_eq!(
        (result["total_processed"].as_u64(), result["total_failed"].as_u64(), result["total_from_cache"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(result["processed_files"][0]["details"]["full_path"], dir.join("again.jpg").display().to_string(), "{report}");
    let broken = &result["failed_files"][0];
    assert_eq!(broken["file"], dir.join("broken.jpg").display().to_string(), "{report}");
    assert!(broken["error"].as_str().is_some_and(|e| !e.is_empty() && e != "unknown") && broken["details"] != "", "{report}");
    assert_eq!(s.get("/api/v1/ingest/status/no-such-job").await.0, 404);
    s.stop().await;
}
