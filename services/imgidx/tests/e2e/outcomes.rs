//! An outcome for every image, through a real `imgidx serve`: which images of a job
//! failed and why (items endpoint, `failures_by_reason`, `status --failed`), and
//! retrying exactly those (`POST …/retry`, `imgidx retry`) once a file is fixed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::server::{copy_images, fixture_images, imgidx, Serve};

/// Fails to decode in every pipeline: reported `unreadable`.
const UNDECODABLE: &str = "multipage_rgb.tif";

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

async fn submit(server: &Serve, paths: &[PathBuf]) -> (u16, Value) {
    let paths: Vec<String> = paths.iter().map(|p| s(p)).collect();
    server.post_json("/api/v1/index/add-images", &json!({ "image_paths": paths })).await
}

async fn wait_done(server: &Serve, job_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (code, body) = server.get(&format!("/api/v1/index/status/{job_id}")).await;
        assert_eq!(code, 200, "{body}");
        if body["status"] == "completed" || body["status"] == "failed" {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "job {job_id} not done: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn items(server: &Serve, job_id: &str, query: &str) -> (u16, Value) {
    server.get(&format!("/api/v1/index/status/{job_id}/items{query}")).await
}

/// path → (state, reason) of every item in a listing.
fn outcomes(list: &Value) -> BTreeMap<String, (String, Option<String>)> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let reason = i["reason"].as_str().map(String::from);
            (i["path"].as_str().unwrap().to_string(), (i["state"].as_str().unwrap().to_string(), reason))
        })
        .collect()
}

fn failed(reason: &str) -> (String, Option<String>) {
    ("failed".to_string(), Some(reason.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_images_are_listed_with_their_reasons_and_retried_once_fixed() {
    let server = Serve::fresh().await;
    let url = server.url.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let samples = fixture_images();
    let good: Vec<PathBuf> = ["chelsea.png", "astronaut.png"]
        .iter()
        .map(|name| {
            std::fs::copy(samples.join(name), root.join(name)).unwrap();
            root.join(name)
        })
        .collect();
    let missing = root.join("later.png");
    let text = root.join("notes.txt");
    std::fs::write(&text, "shopping list: milk, eggs\n").unwrap();
    let tif = root.join("scan.tif");
    std::fs::copy(samples.join(UNDECODABLE), &tif).unwrap();
    let mut paths = good.clone();
    paths.extend([missing.clone(), text.clone(), tif.clone()]);

    let (code, job) = submit(&server, &paths).await;
    assert_eq!((code, job["new_images_count"].as_u64()), (202, Some(5)), "{job}");
    let job_id = job["job_id"].as_str().unwrap().to_string();
    let done = wait_done(&server, &job_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!((done["progress"]["processed_images"].as_u64(), done["progress"]["failed_images"].as_u64()), (Some(2), Some(3)));
    assert_eq!(done["failures_by_reason"], json!({"not_found": 1, "not_an_image": 1, "unreadable": 1}), "{done}");
    assert_eq!(done["error_message"], Value::Null, "something was indexed: the job completed");

    // Each failure, with its reason and the worker's message.
    let (code, list) = items(&server, &job_id, "?state=failed").await;
    assert_eq!(code, 200, "{list}");
    assert_eq!((list["job_id"].as_str(), &list["next_cursor"]), (Some(job_id.as_str()), &Value::Null), "{list}");
    let want: BTreeMap<String, (String, Option<String>)> =
        [(s(&missing), failed("not_found")), (s(&text), failed("not_an_image")), (s(&tif), failed("unreadable"))]
            .into_iter()
            .collect();
    assert_eq!(outcomes(&list), want, "{list}");
    for item in list["items"].as_array().unwrap() {
        assert!(!item["message"].as_str().unwrap().is_empty(), "{item}");
        assert!(item["finished_at"].as_str().unwrap().ends_with('Z'), "{item}");
    }
    let (_, indexed) = items(&server, &job_id, "?state=indexed").await;
    let ok: Vec<(&str, &Value, &Value)> =
        indexed["items"].as_array().unwrap().iter().map(|i| (i["state"].as_str().unwrap(), &i["reason"], &i["message"])).collect();
    assert_eq!(ok, vec![("indexed", &Value::Null, &Value::Null); 2], "{indexed}");
    let (_, pending) = items(&server, &job_id, "?state=pending").await;
    assert_eq!(pending["items"], json!([]), "{pending}");

    // Pages of two: every item once, then no cursor.
    let (mut seen, mut cursor, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let query = if cursor.is_empty() { "?limit=2".to_string() } else { format!("?limit=2&cursor={cursor}") };
        let (code, page) = items(&server, &job_id, &query).await;
        assert_eq!(code, 200, "{page}");
        pages += 1;
        seen.extend(page["items"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    let mut all: Vec<String> = paths.iter().map(|p| s(p)).collect();
    all.sort();
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!((sorted, seen.len(), pages), (all, 5, 3));

    // Bad queries and unknown jobs.
    for query in ["?state=done", "?limit=0", "?limit=1001", "?limit=many", "?cursor=not-a-cursor"] {
        let (code, body) = items(&server, &job_id, query).await;
        assert_eq!((code, body["error"].as_str()), (422, Some("validation_error")), "{query}: {body}");
    }
    let (code, body) = items(&server, "idx_nope", "").await;
    assert_eq!((code, body["error"].as_str()), (404, Some("job_not_found")), "{body}");
    let (code, body) = server.post_json("/api/v1/index/status/idx_nope/retry", &json!({})).await;
    assert_eq!((code, body["error"].as_str()), (404, Some("job_not_found")), "{body}");

    // The CLI lists the same failures: as JSON, and as a table.
    let run = imgidx(&["status", &job_id, "--failed", "--json", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.json(), json!({"job_id": job_id, "items": list["items"]}));
    let run = imgidx(&["status", &job_id, "--failed", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.starts_with("PATH "), "{}", run.stdout);
    for (path, (_, reason)) in &want {
        let line = run.stdout.lines().find(|l| l.starts_with(path.as_str())).unwrap_or_else(|| panic!("{path}: {}", run.stdout));
        assert!(line.contains(reason.as_deref().unwrap()), "{line}");
    }

    // The missing file appears; retry queues exactly the three failed images, and it is indexed.
    std::fs::copy(samples.join("coffee.png"), &missing).unwrap();
    let run = imgidx(&["retry", &job_id, "--wait", "--json", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}\n{}", server.log_text());
    let out = run.json();
    let retry = &out["jobs"][0];
    assert_eq!((retry["status"].as_str(), retry["images_count"].as_u64(), retry["new_images_count"].as_u64()), (Some("queued"), Some(3), Some(3)), "{out}");
    let retry_id = retry["job_id"].as_str().unwrap().to_string();
    assert_ne!(retry_id, job_id);
    assert_eq!((out["result"]["indexed"].as_u64(), out["result"]["failed"].as_u64()), (Some(1), Some(2)), "{out}");
    assert_eq!(out["result"]["failures"]["by_reason"], json!({"not_an_image": 1, "unreadable": 1}), "{out}");
    let (_, list) = items(&server, &retry_id, "").await;
    let mut want_retry = want.clone();
    want_retry.insert(s(&missing), ("indexed".to_string(), None));
    assert_eq!(outcomes(&list), want_retry, "{list}");
    let (_, stats) = server.get("/api/v1/index/stats").await;
    assert_eq!(stats["total_images"], 3, "{stats}");

    // The first job still tells what happened to it; a second retry of it leaves out the
    // image indexed since.
    let (_, first) = items(&server, &job_id, "?state=failed").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3, "{first}");
    let (code, again) = server.post_json(&format!("/api/v1/index/status/{job_id}/retry"), &json!({})).await;
    assert_eq!(code, 202, "{again}");
    assert_eq!((again["images_count"].as_u64(), again["new_images_count"].as_u64(), again["already_indexed_count"].as_u64()), (Some(3), Some(2), Some(1)), "{again}");
    let again_done = wait_done(&server, again["job_id"].as_str().unwrap()).await;
    assert_eq!(again_done["status"], "failed", "nothing of it could be indexed: {again_done}");
    assert_eq!(again_done["failures_by_reason"], json!({"not_an_image": 1, "unreadable": 1}), "{again_done}");
    let message = again_done["error_message"].as_str().unwrap();
    assert!(message.starts_with("all 2 images failed: 1 not_an_image, 1 unreadable (e.g. "), "{message}");

    // A job with nothing failed has nothing to retry.
    let brick = root.join("brick.png");
    std::fs::copy(samples.join("brick.png"), &brick).unwrap();
    let (_, clean) = submit(&server, std::slice::from_ref(&brick)).await;
    let clean_id = clean["job_id"].as_str().unwrap().to_string();
    let clean_done = wait_done(&server, &clean_id).await;
    assert_eq!(clean_done["failures_by_reason"], json!({}), "{clean_done}");
    let (code, none) = server.post_json(&format!("/api/v1/index/status/{clean_id}/retry"), &json!({})).await;
    assert_eq!((code, none["job_id"].as_str(), none["images_count"].as_u64()), (200, Some("none"), Some(0)), "{none}");
    let run = imgidx(&["retry", &clean_id, "--server", url]).await;
    assert_eq!((run.code, run.stdout.starts_with("Nothing to retry: ")), (0, true), "{run:#?}");

    // index --wait ends with the failures by reason and the failed paths.
    let tif3 = root.join("third.tif");
    std::fs::copy(samples.join(UNDECODABLE), &tif3).unwrap();
    let run = imgidx(&["index", &s(&tif3), &s(&brick), "--wait", "--server", url]).await;
    assert_eq!(run.code, 3, "its only new image failed: {run:#?}");
    assert!(run.stdout.contains("\nFailures by reason: 1 unreadable\nPATH "), "{}", run.stdout);
    let line = run.stdout.lines().find(|l| l.starts_with(&s(&tif3))).unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(line.contains("unreadable"), "{line}");

    // A job still running cannot be retried.
    let many = tempfile::tempdir().unwrap();
    let (code, big) = submit(&server, &copy_images(many.path(), 15)).await;
    assert_eq!(code, 202, "{big}");
    let big_id = big["job_id"].as_str().unwrap();
    let (code, body) = server.post_json(&format!("/api/v1/index/status/{big_id}/retry"), &json!({})).await;
    assert_eq!((code, body["error"].as_str()), (409, Some("job_not_finished")), "{body}");
    let run = imgidx(&["retry", big_id, "--server", url]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("(HTTP 409, job_not_finished)"), "{}", run.stderr);
}
