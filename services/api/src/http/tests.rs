//! The HTTP layers against a real server on loopback (embedded backends, no model):
//! keys and scopes, rate limit, Content-Type, Host, CORS, JSON errors, load
//! shedding, timeouts and the drain deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use imgidx_shared::broker::MemoryBroker;
use imgidx_shared::config::ApiSettings;
use imgidx_shared::health::HealthBoard;
use imgidx_shared::jobs::SqliteJobStore;
use imgidx_shared::service::ServiceError;
use imgidx_shared::shutdown::Shutdown;


use crate::keys::{new_key, Scope};
use crate::ApiDeps;

struct TestServer {
    addr: std::net::SocketAddr,
    base: String,
    http: reqwest::Client,
    shutdown: Shutdown,
    handle: JoinHandle<Result<(), ServiceError>>,
    dir: tempfile::TempDir,
    /// What the server's `/health` reports of other parts of the process.
    health: HealthBoard,
    /// Where add-images publishes.
    broker: Arc<MemoryBroker>,
}

async fn start(configure: impl FnOnce(&mut ApiSettings, &std::path::Path)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = ApiSettings::default();
    configure(&mut settings, dir.path());
    let all = imgidx_shared::config::Settings { data_dir: dir.path().to_path_buf(), ..Default::default() };
    let jobs: Arc<dyn imgidx_shared::jobs::JobStore> = Arc::new(SqliteJobStore::open(&dir.path().join("jobs.sqlite3")).unwrap());
    let collections = crate::open_collections(&all, jobs.as_ref(), "test", 8).await.unwrap();
    let broker = Arc::new(MemoryBroker::new(1000, 8, 8, 3));
    let deps = ApiDeps {
        jobs,
        collections,
        initial_collection: all.vectors.collection.clone(),
        broker: broker.clone(),
        model_name: "test".into(),
        embedding_dim: 8,
        queries: None,
        health: HealthBoard::default(),
        metrics: Default::default(),
        uploads: crate::Uploads::from_settings(&all).unwrap(),
    };
    let health = deps.health.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let s = shutdown.clone();
    let handle = tokio::spawn(async move { crate::serve(&settings, deps, listener, s).await });
    TestServer { addr, base: format!("http://{addr}"), http: reqwest::Client::new(), shutdown, handle, dir, health, broker }
}

impl TestServer {
    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = req.send().await.unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON (HTTP {status}): {text:?}"));
        (status, headers, body)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    fn add_images(&self, key: Option<&str>) -> reqwest::RequestBuilder {
        let image = self.dir.path().join("a.png");
        std::fs::write(&image, b"not really a png").unwrap();
        let req = self.http.post(format!("{}/api/v1/index/add-images", self.base)).json(&json!({"image_paths": [image]}));
        match key {
            Some(k) => req.header("x-api-key", k),
            None => req,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

/// Raw bytes to the server; what came back before it closed or `wait` passed.
async fn raw(addr: std::net::SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A server whose keys file holds a read key and a write key (returned in that order).
async fn with_keys(configure: impl FnOnce(&mut ApiSettings) + Send + 'static) -> (TestServer, crate::keys::NewKey, crate::keys::NewKey) {
    let reader = new_key("dashboard", Scope::Read).unwrap();
    let writer = new_key("indexer", Scope::Write).unwrap();
    let (r_line, w_line) = (reader.line.clone(), writer.line.clone());
    let server = start(move |s, dir| {
        let file = dir.join("keys");
        std::fs::write(&file, format!("{r_line}\n{w_line}\n")).unwrap();
        s.api_keys_file = Some(file);
        configure(s);
    })
    .await;
    (server, reader, writer)
}

#[tokio::test]
async fn keys_decide_who_may_read_and_write() {
    let (server, reader, writer) = with_keys(|s| s.api_keys = vec!["plain-config-key-0123".into()]).await;

    // /health stays open for load balancers.
    let (code, _, _) = server.send(server.get("/health")).await;
    assert_eq!(code, 200);
    for req in [
        server.get("/api/v1/index/stats"),
        server.get("/api/v1/index/stats").header("x-api-key", "wrong"),
        server.get("/api/v1/index/stats").bearer_auth(format!("{}x", reader.key)),
        server.add_images(None),
    ] {
        let (code, headers, body) = server.send(req).await;
        assert_eq!((code, body["error"].as_str()), (401, Some("unauthorized")), "{body}");
        assert_eq!(headers["www-authenticate"], "Bearer");
    }
    let (code, _, body) = server.send(server.get("/api/v1/index/stats").header("x-api-key", &reader.key)).await;
    assert_eq!(code, 200, "{body}");
    let (code, _, _) = server.send(server.get("/api/v1/index/stats").bearer_auth(&writer.key)).await;
    assert_eq!(code, 200);
    let (code, _, body) = server.send(server.add_images(Some(&reader.key))).await;
    assert_eq!((code, body["error"].as_str()), (403, Some("forbidden")), "{body}");
    assert!(!body.to_string().contains(&reader.key), "{body}");
    let (code, _, body) = server.send(server.add_images(Some(&writer.key))).await;
    assert_eq!(code, 202, "{body}");
    let (code, _, body) = server.send(server.add_images(Some("plain-config-key-0123"))).await;
    assert!(code == 200 || code == 202, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_per_client() {
    let key = new_key("busy", Scope::Read).unwrap();
    let line = key.line.clone();
    let server = start(move |s, dir| {
        let file = dir.join("keys");
        std::fs::write(&file, line).unwrap();
        s.api_keys_file = Some(file);
        s.rate_limit_per_minute = 3;
    })
    .await;
    let stats = || server.get("/api/v1/index/stats").header("x-api-key", &key.key);
    for _ in 0..3 {
        assert_eq!(server.send(stats()).await.0, 200);
    }
    let (code, headers, body) = server.send(stats()).await;
    assert_eq!((code, body["error"].as_str()), (429, Some("rate_limited")), "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    // Unauthenticated guesses are limited by address, separately from the key's budget.
    for _ in 0..3 {
        assert_eq!(server.send(server.get("/api/v1/index/stats")).await.0, 401);
    }
    assert_eq!(server.send(server.get("/api/v1/index/stats")).await.0, 429);
    server.stop().await;
}

#[tokio::test]
async fn browsers_cannot_forge_requests() {
    let server = start(|_, _| {}).await;
    let add = format!("{}/api/v1/index/add-images", server.base);
    let body = r#"{"image_paths": ["/tmp/a.png"]}"#;
    for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data; boundary=x"), None] {
        let mut req = server.http.post(&add).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let (code, _, resp) = server.send(req).await;
        assert_eq!((code, resp["error"].as_str()), (415, Some("unsupported_media_type")), "{ct:?}: {resp}");
    }
    let (code, _, resp) = server.send(server.http.post(&add).header("content-type", "Application/JSON; charset=utf-8").body("{")).await;
    assert_eq!((code, resp["error"].as_str()), (400, Some("malformed_json")), "{resp}");

    // DNS rebinding: the page's own host name in Host is refused on a loopback listener.
    let (code, _, resp) = server.send(server.get("/api/v1/index/stats").header("host", "evil.example:8000")).await;
    assert_eq!((code, resp["error"].as_str()), (421, Some("host_not_allowed")), "{resp}");
    let (code, _, _) = server.send(server.get("/api/v1/index/stats").header("host", "localhost:8000")).await;
    assert_eq!(code, 200);

    // No CORS unless configured: a preflight gets no allow-origin.
    let preflight = server
        .http
        .request(reqwest::Method::OPTIONS, &add)
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(preflight.headers().get("access-control-allow-origin").is_none());
    server.stop().await;
}

#[tokio::test]
async fn allowed_hosts_and_cors_origins_widen_the_defaults() {
    let server = start(|s, _| {
        s.allowed_hosts = vec!["imgidx.lan".into()];
        s.cors_origins = vec!["http://dashboard.lan".into()];
    })
    .await;
    let (code, _, _) = server.send(server.get("/api/v1/index/stats").header("host", "imgidx.lan:8000")).await;
    assert_eq!(code, 200);
    let (code, _, _) = server.send(server.get("/api/v1/index/stats").header("host", "other.lan")).await;
    assert_eq!(code, 421);
    let ok = server
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/api/v1/query", server.base))
        .header("origin", "http://dashboard.lan")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "http://dashboard.lan");
    server.stop().await;
}

#[tokio::test]
async fn framework_errors_are_json() {
    let server = start(|s, _| s.max_body_bytes = 1024).await;
    let (code, _, body) = server.send(server.get("/api/v1/nope")).await;
    assert_eq!((code, body["error"].as_str()), (404, Some("not_found")));
    let (code, headers, body) = server.send(server.get("/api/v1/index/add-images")).await;
    assert_eq!((code, body["error"].as_str()), (405, Some("method_not_allowed")), "{body}");
    assert!(headers.contains_key("allow"));
    let big = json!({"image_paths": ["/x".repeat(2000)]});
    let (code, _, body) = server.send(server.http.post(format!("{}/api/v1/index/add-images", server.base)).json(&big)).await;
    assert_eq!((code, body["error"].as_str()), (413, Some("payload_too_large")), "{body}");
    server.stop().await;
}

const STALLED_POST: &[u8] =
    b"POST /api/v1/index/add-images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"image_";

#[tokio::test]
async fn slow_clients_are_cut_off_and_bursts_shed() {
    let server = start(|s, _| {
        s.request_timeout_secs = 1;
        s.header_read_timeout_secs = 1;
        s.idle_timeout_secs = 1;
        s.max_concurrent_requests = 1;
    })
    .await;
    // A body that never arrives: 408 once the request timeout passes.
    let started = Instant::now();
    let answer = raw(server.addr, STALLED_POST, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Headers that never end: the connection is closed after the header timeout.
    let started = Instant::now();
    let answer = raw(server.addr, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n", Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(3), "{answer}");

    // A connection that never sends anything is closed once idle too long.
    let started = Instant::now();
    let answer = raw(server.addr, b"", Duration::from_secs(5)).await;
    assert!(answer.is_empty() && started.elapsed() < Duration::from_secs(3), "{answer:?} {:?}", started.elapsed());

    // While one request is in flight, the next is refused at once.
    let held = tokio::spawn(raw(server.addr, STALLED_POST, Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, _, body) = server.send(server.get("/api/v1/index/stats")).await;
    assert_eq!((code, body["error"].as_str()), (503, Some("overloaded")), "{body}");
    held.await.unwrap();
    assert_eq!(server.send(server.get("/api/v1/index/stats")).await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_stop_drains_requests_in_flight_within_the_request_timeout() {
    let server = start(|s, _| s.request_timeout_secs = 2).await;
    let addr = server.addr;
    let stalled = tokio::spawn(async move { raw(addr, STALLED_POST, Duration::from_secs(30)).await });
    // An idle keep-alive connection does not hold the stop up.
    let idle = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    server.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server.handle).await.unwrap().unwrap().unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The request in flight was answered, not dropped.
    let answer = stalled.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    drop(idle);
}

#[tokio::test]
async fn health_lists_the_troubles_of_the_process() {
    let server = start(|_, _| {}).await;
    let (code, _, body) = server.send(server.get("/health")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["troubles"], json!([]), "{body}");

    server.health.report("host.worker-1-0", "upsert into the vector store failing, retrying: down".into());
    let (code, _, body) = server.send(server.get("/health")).await;
    assert_eq!(code, 200, "the backends themselves answer: {body}");
    assert_eq!(body["troubles"][0]["part"], "host.worker-1-0", "{body}");
    assert!(body["troubles"][0]["message"].as_str().unwrap().contains("vector store"), "{body}");
    assert!(body["troubles"][0]["since"].as_str().unwrap().ends_with('Z'), "{body}");

    server.health.clear("host.worker-1-0");
    let (_, _, body) = server.send(server.get("/health")).await;
    assert_eq!(body["troubles"], json!([]), "{body}");
}

#[tokio::test]
async fn jobs_are_listed_and_cancelled_with_the_right_scopes() {
    let (server, reader, writer) = with_keys(|_| {}).await;
    let (code, _, job) = server.send(server.add_images(Some(&writer.key))).await;
    assert_eq!(code, 202, "{job}");
    let job_id = job["job_id"].as_str().unwrap().to_string();
    let cancel = |key: &str| {
        server.http.post(format!("{}/api/v1/index/jobs/{job_id}/cancel", server.base)).header("x-api-key", key.to_string())
    };

    let (code, _, list) = server.send(server.get("/api/v1/index/jobs").header("x-api-key", &reader.key)).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!((list["total"].as_u64(), list["jobs"][0]["job_id"].as_str()), (Some(1), Some(job_id.as_str())), "{list}");
    assert_eq!(list["jobs"][0]["status"], "queued");
    assert!(list["next_cursor"].is_null());

    let (code, _, body) = server.send(cancel(&reader.key).json(&json!({}))).await;
    assert_eq!((code, body["error"].as_str()), (403, Some("forbidden")), "a read key cannot cancel: {body}");
    let (code, _, body) = server.send(cancel(&writer.key)).await;
    assert_eq!((code, body["error"].as_str()), (415, Some("unsupported_media_type")), "{body}");
    let (code, _, body) = server.send(cancel(&writer.key).json(&json!({}))).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("cancelled")), "{body}");
    assert!(body["completed_at"].is_string() && body["message"].as_str().unwrap().contains("1 images"), "{body}");
    let (code, _, body) = server.send(cancel(&writer.key).json(&json!({}))).await;
    assert_eq!((code, body["error"].as_str()), (409, Some("job_finished")), "{body}");
    let unknown = server.http.post(format!("{}/api/v1/index/jobs/idx_nope/cancel", server.base)).header("x-api-key", &writer.key);
    let (code, _, body) = server.send(unknown.json(&json!({}))).await;
    assert_eq!((code, body["error"].as_str()), (404, Some("job_not_found")), "{body}");

    let (code, _, list) =
        server.send(server.get("/api/v1/index/jobs?status=cancelled&priority=normal").header("x-api-key", &reader.key)).await;
    assert_eq!((code, list["total"].as_u64()), (200, Some(1)), "{list}");
    let (code, _, list) = server.send(server.get("/api/v1/index/jobs?status=queued").header("x-api-key", &reader.key)).await;
    assert_eq!((code, list["total"].as_u64()), (200, Some(0)), "{list}");
    for bad in ["status=done", "priority=urgent", "limit=0", "cursor=nope"] {
        let (code, _, body) = server.send(server.get(&format!("/api/v1/index/jobs?{bad}")).header("x-api-key", &reader.key)).await;
        assert_eq!((code, body["error"].as_str()), (422, Some("validation_error")), "{bad}: {body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn every_response_has_a_request_id_and_tasks_carry_it() {
    use futures::StreamExt;
    use imgidx_shared::broker::Broker;

    let server = start(|_, _| {}).await;
    for req in [server.get("/health"), server.get("/api/v1/nope"), server.get("/health").header("x-request-id", "bad id!")] {
        let (_, headers, _) = server.send(req).await;
        let id = headers["x-request-id"].to_str().unwrap();
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "made up: {id}");
    }
    let (code, headers, body) = server.send(server.add_images(None).header("x-request-id", "trace-me.1")).await;
    assert_eq!((code, headers["x-request-id"].to_str().unwrap()), (202, "trace-me.1"), "{body}");
    let mut streams = server.broker.consume_tasks("test").await.unwrap();
    let (_, stream) = streams.streams.iter_mut().find(|(p, _)| p.as_str() == "normal").unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(delivery.message.request_id.as_deref(), Some("trace-me.1"));
    server.stop().await;
}
