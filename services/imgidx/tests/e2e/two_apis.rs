//! The API is stateless: two `imgidx api` processes on one job store and broker answer
//! for the same jobs. A job created through one is watched, listed and cancelled
//! through the other. Needs the test servers (`tests/run.sh`); no worker runs, so the
//! job waits in the queue until it is cancelled.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::crashes::on_test_servers;
use crate::server::{bin, copy_images, free_port, tiny_model_dir};

struct Api {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Api {
    /// `imgidx api` with its own data directory (its embedded index), on the shared servers.
    async fn start(data: &Path, env: &[(&'static str, String)]) -> Api {
        let port = free_port();
        let log = data.join(format!("api-{port}.log"));
        let mut cmd = Command::new(bin());
        cmd.arg("api").arg("--listen").arg(format!("127.0.0.1:{port}"));
        for (k, _) in std::env::vars() {
            if k.starts_with("IMGIDX__") || k == "IMGIDX_CONFIG" {
                cmd.env_remove(k);
            }
        }
        cmd.env("IMGIDX__DATA_DIR", data).env("IMGIDX__MODEL__DIR", tiny_model_dir()).env("RUST_LOG", "info,lapin=warn");
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while reqwest::get(format!("{url}/health")).await.map(|r| r.status().is_success()).ok() != Some(true) {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("api exited with {status}: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            assert!(tokio::time::Instant::now() < deadline, "api not healthy: {}", std::fs::read_to_string(&log).unwrap());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Api { child, url, log }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = reqwest::Client::new().request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let code = r.status().as_u16();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        (code, r.json().await.unwrap_or_else(|e| panic!("not JSON ({e}); log: {log}")))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn stop(mut self) {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await.expect("api did not stop").unwrap();
        assert!(status.success(), "api exited with {status}: {}", std::fs::read_to_string(&self.log).unwrap());
    }
}

#[tokio::test]
async fn two_api_processes_answer_for_the_same_jobs() {
    let Some(env) = on_test_servers() else { return };
    let (a_dir, b_dir, imgs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let images = copy_images(imgs.path(), 1);
    let (a, b) = tokio::join!(Api::start(a_dir.path(), &env), Api::start(b_dir.path(), &env));

    let paths: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
    let (code, job) = a.post("/api/v1/index/add-images", json!({ "image_paths": paths, "priority": "high" })).await;
    assert_eq!(code, 202, "{job}");
    let job_id = job["job_id"].as_str().unwrap().to_string();

    let (code, status) = b.get(&format!("/api/v1/index/status/{job_id}")).await;
    assert_eq!((code, status["status"].as_str()), (200, Some("queued")), "{status}");
    assert_eq!(status["progress"]["total_images"], images.len());
    let (_, listed) = b.get("/api/v1/index/jobs?priority=high").await;
    assert_eq!((listed["total"].as_u64(), listed["jobs"][0]["job_id"].as_str()), (Some(1), Some(job_id.as_str())), "{listed}");

    let (code, cancelled) = b.post(&format!("/api/v1/index/jobs/{job_id}/cancel"), json!({})).await;
    assert_eq!((code, cancelled["status"].as_str()), (200, Some("cancelled")), "{cancelled}");
    let (_, seen) = a.get(&format!("/api/v1/index/status/{job_id}")).await;
    assert_eq!(seen["status"], "cancelled", "{seen}");
    let (_, listed) = a.get("/api/v1/index/jobs?status=cancelled").await;
    assert_eq!(listed["jobs"][0]["job_id"], job_id.as_str(), "{listed}");
    let (code, again) = a.post(&format!("/api/v1/index/jobs/{job_id}/cancel"), json!({})).await;
    assert_eq!((code, again["error"].as_str()), (409, Some("job_finished")), "{again}");
    tokio::join!(a.stop(), b.stop());
}
