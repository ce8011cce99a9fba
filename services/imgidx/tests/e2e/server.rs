//! Shared helpers: a real `imgidx serve` subprocess on a free loopback port, and a
//! runner for the `imgidx` binary itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// How long a fresh server may take to answer `/health` with 200.
const START_TIMEOUT: Duration = Duration::from_secs(90);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_imgidx")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn fixture_images() -> PathBuf {
    repo_root().join("tests/fixtures/images")
}

/// Environment that points a server at its backends, or None to skip the test.
///
/// The one place that knows about RabbitMQ and PostgreSQL: fresh names (queue
/// prefix, database) per server so runs never share state. With
/// `IMGIDX_REQUIRE_SERVICES=1` a missing service fails instead of skipping.
pub fn backend_env() -> Option<Vec<(String, String)>> {
    let amqp = std::env::var("IMGIDX_TEST_AMQP_URL").ok();
    let pg = std::env::var("IMGIDX_TEST_PG_URL").ok();
    let (Some(amqp), Some(pg)) = (amqp, pg) else {
        if std::env::var("IMGIDX_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("IMGIDX_TEST_AMQP_URL and IMGIDX_TEST_PG_URL must be set: run tests/run.sh");
        }
        eprintln!("skipping: RabbitMQ/PostgreSQL not configured (run tests/run.sh)");
        return None;
    };
    let fresh = uuid::Uuid::new_v4().simple().to_string();
    let (pg_base, _) = pg.rsplit_once('/').expect("database URL has a path");
    Some(vec![
        ("IMGIDX__BROKER__URL".into(), amqp),
        ("IMGIDX__BROKER__QUEUE_PREFIX".into(), format!("cli_{fresh}")),
        ("IMGIDX__JOBS__URL".into(), format!("{pg_base}/imgidx_cli_{fresh}")),
    ])
}

/// A port nothing listens on (just released by the OS).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `imgidx serve` in a fresh data directory; killed on drop.
pub struct Server {
    pub url: String,
    child: Child,
    log: PathBuf,
    _data: tempfile::TempDir,
}

impl Server {
    /// Start a server and wait until it is healthy; None when the backends are not configured.
    pub async fn start() -> Option<Server> {
        let env = backend_env()?;
        let data = tempfile::tempdir().unwrap();
        let log = data.path().join("serve.log");
        let port = free_port();
        let child = Command::new(bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--workers", "1"])
            .env("IMGIDX__MODEL__DIR", repo_root().join("tests/fixtures/models/tiny-clip"))
            .env("IMGIDX__DATA_DIR", data.path().join("data"))
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server { url: format!("http://127.0.0.1:{port}"), child, log, _data: data };
        server.wait_healthy().await;
        Some(server)
    }

    async fn wait_healthy(&mut self) {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("imgidx serve exited with {status}:\n{}", self.log_text());
            }
            if let Ok(r) = http.get(format!("{}/health", self.url)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "imgidx serve not healthy:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a path of the server's API: (status, JSON body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(format!("{}{path}", self.url)).await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One run of the `imgidx` binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// Run `imgidx ARGS` (client commands read no configuration; IMGIDX_SERVER is cleared
/// so only `--server` decides).
pub async fn imgidx<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let out = tokio::process::Command::new(bin())
        .args(args)
        .env_remove("IMGIDX_SERVER")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
