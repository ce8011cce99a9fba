//! Seed 004's batch API against a real `imgidx serve`: images by URL (fetched by the
//! workers from a loopback server) and by base64, followed per image in request order,
//! failures per image, and seed 004's error bodies.

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server::{fixture_images, Serve};

/// A loopback HTTP server: `/<fixture>` gives that image (`/slow-<fixture>` after 4 s:
/// long enough for a watcher, even a Python process started on a busy machine, to
/// connect before the batch ends), `/moved` redirects to `/coins.png`, anything else is 404.
async fn image_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let mut path = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
                // Seed 004's examples fetch image1.jpg, image2.jpg, …
                if let Some(n) = path.strip_prefix("image").and_then(|p| p.strip_suffix(".jpg")).and_then(|n| n.parse::<usize>().ok()) {
                    path = ["camera.png", "coins.png", "brick.png"][(n + 2) % 3].to_string();
                }
                if let Some(rest) = path.strip_prefix("slow-") {
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    path = rest.to_string();
                }
                let answer = if path == "moved" {
                    b"HTTP/1.1 302 Found\r\nlocation: /coins.png\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
                } else if let Ok(bytes) = std::fs::read(fixture_images().join(&path)).map_err(|_| ()).and_then(|b| if path.contains('/') { Err(()) } else { Ok(b) }) {
                    let mut head = format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", bytes.len()).into_bytes();
                    head.extend(bytes);
                    head
                } else {
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
                };
                let _ = socket.write_all(&answer).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    base
}

fn data_url(name: &str) -> String {
    let bytes = std::fs::read(fixture_images().join(name)).unwrap();
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

async fn wait_batch(s: &Serve, job_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (code, body) = s.get(&format!("/api/v1/batch/{job_id}")).await;
        assert_eq!(code, 200, "{body}");
        if ["completed", "failed", "cancelled"].contains(&body["status"].as_str().unwrap()) {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "batch {job_id} not done: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_batch_of_urls_and_base64_is_indexed_and_reported_per_image() {
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(data.path(), &[("IMGIDX__INGEST__ALLOW_PRIVATE_URLS", "true")]).await;
    let web = image_server().await;
    let request = json!({ "images": [
        { "url": format!("{web}/camera.png") },
        { "base64": data_url("brick.png"), "name": "wall.png" },
        { "url": format!("{web}/missing.jpg"), "name": "gone.jpg" },
        { "base64": base64::engine::general_purpose::STANDARD.encode(b"no image here"), "name": "notes.txt" },
        { "url": format!("{web}/moved") },
        { "url": format!("{web}/camera.png"), "name": "camera again.png" },
    ]});
    let (code, created) = s.post_json("/api/v1/batch", &request).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!((created["status"].as_str(), created["message"].as_str()), (Some("pending"), Some("Batch job created with 6 images")));
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'), "{created}");
    let job_id = created["job_id"].as_str().unwrap();

    let done = wait_batch(&s, job_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!((done["total_images"].as_u64(), done["completed"].as_u64(), done["failed"].as_u64()), (Some(6), Some(4), Some(2)), "{done}");
    assert_eq!(done["progress"].as_f64(), Some(100.0));
    let images = done["images"].as_array().unwrap();
    let summary: Vec<(u64, &str, &str)> = images
        .iter()
        .map(|i| (i["index"].as_u64().unwrap(), i["original_filename"].as_str().unwrap(), i["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            (0, "camera.png", "completed"),
            (1, "wall.png", "completed"),
            (2, "gone.jpg", "failed"),
            (3, "notes.txt", "failed"),
            (4, "moved", "completed"),
            (5, "camera again.png", "completed"),
        ],
        "{done}"
    );
    assert_eq!(images[2]["error"], "download_failed: status 404", "{done}");
    assert!(images[3]["error"].as_str().unwrap().starts_with("not_an_image"), "{done}");
    assert_eq!(images[1]["processed_path"].as_str().map(str::len), Some(67), "an object key: {done}");
    assert_eq!(images[0]["processed_path"].as_str().map(str::len), Some(67), "a fetched URL's too: {done}");
    assert!(images[2].get("processed_path").is_none(), "{done}");
    assert!(images[0]["start_time"].is_string() && images[0]["end_time"].is_string(), "{done}");
    assert_eq!(images[0]["trace_id"], images[5]["trace_id"], "the same URL is one image: {done}");

    // Searchable; a fetched image's bytes are kept in the object store.
    let (code, r) = s.post_json("/api/v1/query", &json!({ "text": "a photo", "top_k": 10 })).await;
    assert_eq!(code, 200, "{r}");
    let hit = r["results"].as_array().unwrap().iter().find(|h| h["image_path"] == format!("{web}/camera.png")).unwrap_or_else(|| panic!("{r}"));
    assert_eq!(hit["payload"]["object_key"].as_str().map(str::len), Some(67), "{hit}");

    let (code, list) = s.get("/api/v1/batch").await;
    assert_eq!((code, list["total"].as_u64()), (200, Some(1)), "{list}");
    assert_eq!(list["jobs"][0]["job_id"], job_id);
    // A batch job is a job like any other.
    let (code, job) = s.get(&format!("/api/v1/index/status/{job_id}")).await;
    assert_eq!((code, job["progress"]["total_images"].as_u64()), (200, Some(5)), "{job}");
    s.stop().await;
}

#[tokio::test]
async fn bad_batches_are_refused_as_seed_004_says_and_private_urls_fail_their_image() {
    let s = Serve::fresh().await;
    let refused = |body: &Value, status: u16, code: &str| {
        assert_eq!((body["status"].as_u64(), body["code"].as_str()), (Some(u64::from(status)), Some(code)), "{body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    };
    let (code, body) = s.post_json("/api/v1/batch", &json!({ "images": [] })).await;
    assert_eq!((code, body["error"].as_str()), (400, Some("No images provided")), "{body}");
    refused(&body, 400, "invalid_batch");
    let (code, body) = s.post_json("/api/v1/batch", &json!({})).await;
    assert_eq!(code, 400, "{body}");
    let many: Vec<Value> = (0..101).map(|i| json!({ "url": format!("https://example.com/{i}.jpg") })).collect();
    let (code, body) = s.post_json("/api/v1/batch", &json!({ "images": many })).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("Too many images"), "{body}");
    let (code, body) = s.post_json("/api/v1/batch", &json!({ "images": [{ "url": "https://a/b.jpg", "base64": "aGk=" }] })).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = s.post_json("/api/v1/batch", &json!({ "images": [{ "name": "x.jpg" }] })).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = s.post_json("/api/v1/batch", &json!({ "images": [{ "url": "file:///etc/passwd" }] })).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = s.post_json("/api/v1/batch", &json!({ "images": [{ "base64": "%%%" }] })).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = s.post_raw("/api/v1/batch", "application/json", b"{nope".to_vec()).await;
    assert_eq!(code, 400, "{body}");
    refused(&body, 400, "malformed_json");
    let (code, body) = s.get("/api/v1/batch/idx_nope").await;
    assert_eq!(code, 404, "{body}");
    refused(&body, 404, "job_not_found");
    let (code, body) = s.get("/api/v1/index/status/idx_nope").await;
    assert_eq!((code, body["error"].as_str()), (404, Some("job_not_found")), "elsewhere the code stays in `error`: {body}");
    let (code, list) = s.get("/api/v1/batch").await;
    assert_eq!((code, list["total"].as_u64()), (200, Some(0)), "nothing was created: {list}");

    // Without ingest.allow_private_urls, a loopback URL fails its image and only it.
    let web = image_server().await;
    let (code, created) = s
        .post_json("/api/v1/batch", &json!({ "images": [{ "url": format!("{web}/coins.png") }, { "base64": data_url("coins.png") }] }))
        .await;
    assert_eq!(code, 201, "{created}");
    let done = wait_batch(&s, created["job_id"].as_str().unwrap()).await;
    assert_eq!((done["completed"].as_u64(), done["failed"].as_u64()), (Some(1), Some(1)), "{done}");
    let error = done["images"][0]["error"].as_str().unwrap();
    assert!(error.starts_with("download_failed: ") && error.contains("non-public"), "{error}");
    s.stop().await;
}

#[tokio::test]
async fn the_batch_websocket_tells_each_image_by_index_then_the_end() {
    use futures::StreamExt;
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(data.path(), &[("IMGIDX__INGEST__ALLOW_PRIVATE_URLS", "true")]).await;
    let web = image_server().await;
    let images = json!({ "images": [
        { "url": format!("{web}/slow-camera.png"), "name": "one.png" },
        { "url": format!("{web}/slow-missing.png") },
        { "url": format!("{web}/slow-camera.png"), "name": "one again.png" },
    ]});
    let (code, created) = s.post_json("/api/v1/batch", &images).await;
    assert_eq!(code, 201, "{created}");
    let job_id = created["job_id"].as_str().unwrap();
    let url = format!("{}/api/v1/batch/{job_id}/ws", s.url.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut messages = Vec::new();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(60), socket.next()).await.expect("the socket went quiet") {
        let frame = frame.unwrap();
        if frame.is_text() {
            messages.push(serde_json::from_str::<Value>(frame.to_text().unwrap()).unwrap());
        }
        if frame.is_close() {
            break;
        }
    }
    let first = &messages[0];
    assert_eq!(first["type"], "progress", "{messages:?}");
    assert!(["pending", "processing"].contains(&first["status"].as_str().unwrap()), "{first}");
    assert_eq!((first["total_images"].as_u64(), first["completed"].as_u64()), (Some(3), Some(0)), "{first}");
    let mut told: Vec<(u64, String)> = messages
        .iter()
        .filter(|m| m["type"] == "image_complete")
        .map(|m| (m["image"]["index"].as_u64().unwrap(), m["image"]["status"].as_str().unwrap().to_string()))
        .collect();
    told.sort();
    assert_eq!(told, [(0, "completed".into()), (1, "failed".into()), (2, "completed".into())], "{messages:?}");
    let failed = messages.iter().find(|m| m["image"]["index"] == 1).unwrap();
    assert_eq!(failed["image"]["error"], "download_failed: status 404", "{failed}");
    let last = messages.last().unwrap();
    assert_eq!((last["type"].as_str(), last["status"].as_str()), (Some("job_complete"), Some("completed")), "{messages:?}");
    assert_eq!((last["completed"].as_u64(), last["failed"].as_u64(), last["progress"].as_f64()), (Some(2), Some(1), Some(100.0)));

    // Once the batch has ended, the end comes first; an unknown batch is refused before the upgrade.
    let url = format!("{}/api/v1/batch/{job_id}/ws", s.url.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let frame = socket.next().await.unwrap().unwrap();
    assert_eq!(serde_json::from_str::<Value>(frame.to_text().unwrap()).unwrap()["type"], "job_complete");
    let url = format!("{}/api/v1/batch/idx_nope/ws", s.url.replacen("http", "ws", 1));
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
    s.stop().await;
}

/// The Python with `requests` and `websockets` that `tests/run.sh` sets up, to run seed
/// 004's own examples; without it those tests skip (and fail under `IMGIDX_REQUIRE_SERVICES=1`).
fn seed_python() -> Option<String> {
    let python = std::env::var("IMGIDX_SEED_PYTHON").ok();
    if python.is_none() {
        assert_ne!(std::env::var("IMGIDX_REQUIRE_SERVICES").as_deref(), Ok("1"), "IMGIDX_SEED_PYTHON must be set");
        eprintln!("skipping: IMGIDX_SEED_PYTHON is not set (tests/run.sh sets it)");
    }
    python
}

/// A seed 004 example as committed, pointed at this server and these images.
fn example(name: &str, s: &Serve, web: &str) -> String {
    let text = std::fs::read_to_string(crate::server::repo_root().join("tests/fixtures/seed004").join(name)).unwrap();
    text.replace("localhost:8080", s.url.trim_start_matches("http://")).replace("https://example.com", web)
}

async fn run_python(python: &str, code: &str) -> String {
    let run = tokio::process::Command::new(python).arg("-c").arg(code).kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("the example ran for 2 minutes").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test]
async fn seed_004s_python_examples_run_unchanged() {
    let Some(python) = seed_python() else { return };
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(data.path(), &[("IMGIDX__INGEST__ALLOW_PRIVATE_URLS", "true")]).await;
    let web = image_server().await;

    // Example 6: create, poll every 5 s, print each image's processed path.
    let out = run_python(&python, &example("complete_workflow.py", &s, &web)).await;
    assert!(out.contains("Created batch job: idx_") && out.contains("Status: completed"), "{out}");
    assert_eq!(out.matches("  Processed path: ").count(), 3, "{out}");

    // Example 5: a batch still running, watched to its end.
    let slow: Vec<Value> = ["camera.png", "coins.png"].iter().map(|n| json!({ "url": format!("{web}/slow-{n}") })).collect();
    let (code, created) = s.post_json("/api/v1/batch", &json!({ "images": slow })).await;
    assert_eq!(code, 201, "{created}");
    let code = example("watch_batch_progress.py", &s, &web).replace("a1b2c3d4-e5f6-7890-abcd-ef1234567890", created["job_id"].as_str().unwrap());
    let out = run_python(&python, &code).await;
    assert!(out.starts_with("WebSocket connected\n"), "{out}");
    assert_eq!(out.matches(" completed\n").count(), 2, "one line per image: {out}");
    assert!(out.contains("Completed: 2/2") && out.trim_end().ends_with("Batch job completed!"), "{out}");
    s.stop().await;
}

/// Node.js for seed 004's JavaScript example: its `WebSocket` is global from Node 22 and
/// behind `--experimental-websocket` in Node 20 and 21 (the test machines have Node 20).
fn node_websocket_flag() -> Option<Vec<&'static str>> {
    let version = std::process::Command::new("node").arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&version.stdout);
    let major: u32 = version.trim().trim_start_matches('v').split('.').next()?.parse().ok()?;
    Some(if major >= 22 { vec![] } else { vec!["--experimental-websocket"] })
}

#[tokio::test]
async fn seed_004s_javascript_example_runs_unchanged() {
    let Some(flags) = node_websocket_flag() else {
        eprintln!("skipping: no node on PATH (seed 004's JavaScript example needs Node.js 20.10 or later)");
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(data.path(), &[("IMGIDX__INGEST__ALLOW_PRIVATE_URLS", "true")]).await;
    let web = image_server().await;
    let slow: Vec<Value> = ["camera.png", "coins.png"].iter().map(|n| json!({ "url": format!("{web}/slow-{n}") })).collect();
    let (code, created) = s.post_json("/api/v1/batch", &json!({ "images": slow })).await;
    assert_eq!(code, 201, "{created}");
    let script = example("websocket_client.js", &s, &web)
        .replace("a1b2c3d4-e5f6-7890-abcd-ef1234567890", created["job_id"].as_str().unwrap());
    let run = tokio::process::Command::new("node").args(&flags).arg("-e").arg(script).kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("the example ran for 2 minutes").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("WebSocket connected\n"), "{stdout}");
    assert_eq!(stdout.matches(" completed\n").count(), 2, "one line per image: {stdout}");
    assert!(stdout.contains("Completed: 2/2") && stdout.contains("Batch job completed!"), "{stdout}");
    assert!(stdout.trim_end().ends_with("WebSocket disconnected"), "{stdout}");
    s.stop().await;
}

#[tokio::test]
async fn the_batch_command_sends_urls_and_files_and_prints_each_outcome() {
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(data.path(), &[("IMGIDX__INGEST__ALLOW_PRIVATE_URLS", "true")]).await;
    let web = image_server().await;
    let (camera, missing) = (format!("{web}/camera.png"), format!("{web}/missing.png"));
    let coins = fixture_images().join("coins.png").display().to_string();
    let args = ["batch", "--url", &camera, "--url", &missing, "--file", &coins, "--wait", "--json", "--server", &s.url];
    let run = crate::server::imgidx(&args).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let done = run.json();
    let outcomes: Vec<(&str, &str)> =
        done["images"].as_array().unwrap().iter().map(|i| (i["original_filename"].as_str().unwrap(), i["status"].as_str().unwrap())).collect();
    assert_eq!(outcomes, [("camera.png", "completed"), ("missing.png", "failed"), ("coins.png", "completed")], "{done}");

    let run = crate::server::imgidx(&["batch", "--url", &missing, "--wait", "--server", &s.url]).await;
    assert_eq!(run.code, 3, "no image indexed: the batch failed: {run:#?}");
    assert!(run.stdout.contains("download_failed: status 404") && run.stdout.contains("0 of 1 images completed"), "{run:#?}");
    let run = crate::server::imgidx(&["batch", "--server", &s.url]).await;
    assert!(run.code != 0 && run.stderr.contains("nothing to send"), "{run:#?}");
    s.stop().await;
}
