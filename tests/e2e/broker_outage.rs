//! RabbitMQ stopped for a minute mid-job and started again: every role waits it out
//! (workers hold their batch, consumers subscribe again) and the job completes with
//! no image failed and one point per image. The test runs a RabbitMQ node of its own
//! (`scripts/services.sh rabbit-start`), so stopping it touches no other test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use imgidx_tests::{cluster_settings, many_images, repo_root, services, Cluster};

use crate::redelivery::{Fault, FaultyStore};

/// How long the broker stays down; `IMGIDX_TEST_BROKER_OUTAGE_SECS` shortens it locally.
fn outage() -> Duration {
    let secs = std::env::var("IMGIDX_TEST_BROKER_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    Duration::from_secs(secs)
}

/// A private RabbitMQ node under a temporary directory; stopped when dropped.
struct OwnRabbit {
    dir: tempfile::TempDir,
    amqp_url: String,
}

impl OwnRabbit {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        services_sh("rabbit-start", dir.path()).await;
        let state = std::fs::read_to_string(dir.path().join("state.env")).unwrap();
        let port = state.lines().find_map(|l| l.strip_prefix("AMQP_PORT=")).unwrap().to_string();
        Self { dir, amqp_url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f") }
    }

    async fn stop(&self) {
        services_sh("rabbit-stop", self.dir.path()).await;
    }

    async fn start_again(&self) {
        services_sh("rabbit-start", self.dir.path()).await;
    }
}

impl Drop for OwnRabbit {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("rabbit-stop").arg(self.dir.path()).output();
    }
}

fn script() -> PathBuf {
    repo_root().join("scripts/services.sh")
}

async fn services_sh(cmd: &str, dir: &Path) {
    let (cmd, dir) = (cmd.to_string(), dir.to_path_buf());
    let out = tokio::task::spawn_blocking(move || Command::new(script()).arg(&cmd).arg(&dir).output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "services.sh failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_stopped_for_a_minute_mid_job_fails_no_image() {
    let Some(svc) = services() else { return };
    let rabbit = OwnRabbit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let images = many_images(dir.path(), 20);
    let n = images.len();
    let mut settings = cluster_settings(&svc, dir.path());
    settings.broker.url = Some(rabbit.amqp_url.clone());
    // Come back quickly once the broker is up again (the default backs off to 30 s).
    settings.broker.reconnect_max_secs = 2;
    let mut cluster = Cluster::start(settings, 0).await;
    // A slow worker, so the job is still running when the broker goes down.
    let slow = Arc::new(FaultyStore::new(cluster.vectors.clone(), Fault::Slow(Duration::from_millis(100))));
    let worker = cluster.spawn_worker_with("test-host.w0", cluster.settings.worker.clone(), slow).await;
    cluster.add_worker(worker);
    let (code, body) = cluster.add_images(&images, "normal").await;
    assert_eq!(code, 202, "{body}");
    let job_id = body["job_id"].as_str().unwrap().to_string();

    let processed = |s: &serde_json::Value| s["progress"]["processed_images"].as_u64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, s) = cluster.get(&format!("/api/v1/index/status/{job_id}")).await;
        if processed(&s) >= 24 {
            assert!(processed(&s) < n as u64, "the job finished before the outage: {s}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no progress: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    rabbit.stop().await;
    tokio::time::sleep(outage()).await;
    let (_, during) = cluster.get(&format!("/api/v1/index/status/{job_id}")).await;
    assert_eq!(during["progress"]["failed_images"], 0, "{during}");
    assert!(processed(&during) < n as u64, "events cannot be applied without the broker: {during}");
    rabbit.start_again().await;

    let done = cluster.wait_all_indexed(&job_id, n as u64, Duration::from_secs(180)).await;
    assert_eq!(done["failures_by_reason"], serde_json::json!({}), "{done}");
    cluster.stop().await;
}
