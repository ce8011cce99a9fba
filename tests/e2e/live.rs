//! Live progress on RabbitMQ and PostgreSQL: a WebSocket and an SSE watcher connected
//! before the job runs each see one `image_complete` for every image (the failed one
//! with its reason) and one `job_complete` with the final counts, last; a watcher that
//! connects after the end gets the job's state at once; an unknown job is 404.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use imgidx_tests::{cluster_settings, sample_images, services, Cluster};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(120);

async fn ws_messages(url: String) -> Vec<Value> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut out = Vec::new();
    let collect = async {
        while let Some(frame) = socket.next().await {
            match frame.unwrap() {
                Message::Text(text) => out.push(serde_json::from_str::<Value>(&text).unwrap()),
                Message::Ping(p) => socket.send(Message::Pong(p)).await.unwrap(),
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(WAIT, collect).await.expect("the socket ends after job_complete");
    out
}

/// `event: <type>` / `data: <json>` blocks, until the server ends the stream.
async fn sse_messages(http: reqwest::Client, url: String) -> Vec<Value> {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    };
    tokio::time::timeout(WAIT, read).await.expect("the stream ends after job_complete");
    let mut out = Vec::new();
    for block in text.split("\n\n").filter(|b| b.contains("data:")) {
        let kind = block.lines().find_map(|l| l.strip_prefix("event: ")).unwrap().to_string();
        let data = block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        let message: Value = serde_json::from_str(data).unwrap();
        assert_eq!(message["type"], kind.as_str(), "the SSE event name is the message type");
        out.push(message);
    }
    out
}

fn check(messages: &[Value], paths: &BTreeSet<String>, indexed: u64, what: &str) {
    assert_eq!(messages[0]["type"], "progress", "{what}: the current state first: {:?}", messages[0]);
    let images: Vec<&Value> = messages.iter().filter(|m| m["type"] == "image_complete").collect();
    let seen: BTreeSet<String> = images.iter().map(|m| m["image"]["path"].as_str().unwrap().to_string()).collect();
    assert_eq!((images.len(), &seen), (paths.len(), paths), "{what}: one image_complete per image");
    let failed: Vec<&&Value> = images.iter().filter(|m| m["image"]["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{what}");
    assert_eq!(failed[0]["image"]["reason"], "not_found", "{what}: {}", failed[0]);
    let ends: Vec<&Value> = messages.iter().filter(|m| m["type"] == "job_complete").collect();
    assert_eq!(ends.len(), 1, "{what}: one job_complete");
    let last = messages.last().unwrap();
    assert_eq!(last["type"], "job_complete", "{what}: job_complete comes last");
    assert_eq!((last["status"].as_str(), last["completed"].as_u64(), last["failed"].as_u64()), (Some("completed"), Some(indexed), Some(1)));
    assert_eq!(last["progress"], 100.0, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_every_image_complete_and_one_job_complete() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut images = sample_images(dir.path());
    let indexed = images.len() as u64;
    images.push(dir.path().join("vanished.jpg")); // fails not_found
    let mut cluster = Cluster::start(cluster_settings(&svc, dir.path()), 0).await;
    let (code, body) = cluster.add_images(&images, "normal").await;
    assert_eq!(code, 202, "{body}");
    let job_id = body["job_id"].as_str().unwrap().to_string();
    let paths: BTreeSet<String> = images.iter().map(|p| p.to_string_lossy().into_owned()).collect();

    let ws_url = format!("{}/api/v1/index/status/{job_id}/ws", cluster.base_url.replacen("http", "ws", 1));
    let sse_url = format!("{}/api/v1/index/status/{job_id}/events", cluster.base_url);
    let ws = tokio::spawn(ws_messages(ws_url.clone()));
    let sse = tokio::spawn(sse_messages(cluster.http.clone(), sse_url.clone()));
    // Both are connected (their first message is sent) before any image is done.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let worker = cluster.spawn_worker("test-host.w0", cluster.settings.worker.clone()).await;
    cluster.add_worker(worker);

    check(&ws.await.unwrap(), &paths, indexed, "websocket");
    check(&sse.await.unwrap(), &paths, indexed, "sse");

    // Late: the state at once, which is the end.
    let late = ws_messages(ws_url).await;
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!((late[0]["type"].as_str(), late[0]["completed"].as_u64()), (Some("job_complete"), Some(indexed)));
    let late = sse_messages(cluster.http.clone(), sse_url).await;
    assert_eq!((late.len(), late[0]["type"].as_str()), (1, Some("job_complete")), "{late:?}");

    let (code, body) = cluster.get("/api/v1/index/status/idx_nope/events").await;
    assert_eq!((code, body["error"].as_str()), (404, Some("job_not_found")), "{body}");
    let refused = tokio_tungstenite::connect_async(format!(
        "{}/api/v1/index/status/idx_nope/ws",
        cluster.base_url.replacen("http", "ws", 1)
    ))
    .await;
    assert!(matches!(refused, Err(tokio_tungstenite::tungstenite::Error::Http(ref r)) if r.status() == 404), "{refused:?}");
    cluster.stop().await;
}
