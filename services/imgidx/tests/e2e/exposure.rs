//! A server others can reach: keys through the CLI, a hostile path list's memory
//! cost, and a stop that ends however a client behaves.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::server::{imgidx, Serve};

fn kill(pid: u32, signal: &str) {
    assert!(std::process::Command::new("kill").arg(signal).arg(pid.to_string()).status().unwrap().success());
}

/// Peak resident memory of a process, in bytes (VmHWM).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_the_cli_guard_the_api() {
    let data = tempfile::tempdir().unwrap();
    let made = imgidx(&["keys", "new", "--name", "night reader", "--scope", "read"]).await;
    assert_eq!(made.code, 0, "{made:?}");
    let lines: Vec<&str> = made.stdout.lines().collect();
    let (key, line) = (lines[0], lines[1]);
    assert!(key.starts_with("imgidx_") && line.starts_with("sha256:") && line.ends_with(" read night reader"), "{made:?}");
    let keys = data.path().join("keys");
    std::fs::write(&keys, format!("{line}\n")).unwrap();
    let serve = Serve::start(data.path(), &[("IMGIDX__API__API_KEYS_FILE", keys.to_str().unwrap())]).await;
    let server = serve.url.clone();

    let denied = imgidx(&["stats", "--server", &server]).await;
    assert_ne!(denied.code, 0);
    assert!(denied.stderr.contains("401") && denied.stderr.contains("--api-key"), "{denied:?}");
    let ok = imgidx(&["stats", "--server", &server, "--api-key", key]).await;
    assert_eq!(ok.code, 0, "{ok:?}");
    let by_env = tokio::process::Command::new(crate::server::bin())
        .args(["stats", "--server", &server, "--json"])
        .env("IMGIDX_API_KEY", key)
        .output()
        .await
        .unwrap();
    assert!(by_env.status.success(), "{by_env:?}");
    // A read key cannot index.
    let images = tempfile::tempdir().unwrap();
    crate::server::copy_images(images.path(), 1);
    let index = imgidx(&[
        "index",
        images.path().to_str().unwrap(),
        "--server",
        &server,
        "--api-key",
        key,
    ])
    .await;
    assert_ne!(index.code, 0);
    assert!(index.stderr.contains("403") && index.stderr.contains("read access"), "{index:?}");
    // A read key may search, but not have result files written on the server.
    let query = |body: serde_json::Value| {
        reqwest::Client::new().post(format!("{server}/api/v1/query")).header("x-api-key", key).json(&body).send()
    };
    let r = query(serde_json::json!({"text": "a cat"})).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = query(serde_json::json!({"text": "a cat", "copy_results": true})).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("write access"), "{body}");
    assert!(!data.path().join("results").exists(), "nothing written");
    // The key never reaches the log.
    assert!(!serve.log_text().contains(key));
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_path_list_is_refused_with_bounded_memory() {
    let serve = Serve::fresh().await;
    // Just under the 16 MiB body limit: about 4 M paths "/", 400 times the path limit.
    let mut body = String::from(r#"{"image_paths":["#);
    while body.len() < 16 * 1024 * 1024 - 16 {
        body.push_str(r#""/","#);
    }
    body.push_str(r#""/"]}"#);
    let body = body.into_bytes();
    let before = peak_rss(serve.pid());
    let sends = (0..4).map(|_| serve.post_raw("/api/v1/index/add-images", "application/json", body.clone()));
    for (code, answer) in futures::future::join_all(sends).await {
        assert_eq!(code, 422, "{answer}");
        assert!(answer["message"].as_str().unwrap().contains("at most 10000"), "{answer}");
    }
    let grown = peak_rss(serve.pid()).saturating_sub(before);
    // The four bodies themselves are 64 MiB; parsing them into JSON values cost ~10x that.
    assert!(grown < 200 << 20, "peak RSS grew by {} MiB", grown >> 20);
    serve.stop().await;
}

const STALLED_POST: &[u8] =
    b"POST /api/v1/index/add-images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";

/// A client that sends half a request and waits.
async fn stall(url: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(url.trim_start_matches("http://")).await.unwrap();
    stream.write_all(STALLED_POST).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_has_a_deadline_and_a_second_signal_ends_it() {
    let data = tempfile::tempdir().unwrap();
    let slow = [("IMGIDX__API__REQUEST_TIMEOUT_SECS", "120"), ("IMGIDX__SHUTDOWN_TIMEOUT_SECS", "2")];
    let serve = Serve::start(data.path(), &slow).await;
    let _client = stall(&serve.url).await;
    let started = Instant::now();
    kill(serve.pid(), "-TERM");
    let status = serve.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(1), "past the deadline the exit says so");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

    let data = tempfile::tempdir().unwrap();
    let patient = [("IMGIDX__API__REQUEST_TIMEOUT_SECS", "120"), ("IMGIDX__SHUTDOWN_TIMEOUT_SECS", "120")];
    let serve = Serve::start(data.path(), &patient).await;
    let _client = stall(&serve.url).await;
    let pid = serve.pid();
    kill(pid, "-TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    kill(pid, "-TERM");
    let status = serve.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(130));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}
