//! Shared helpers: a real `imgidx serve` child process on embedded defaults on a free
//! loopback port, and a runner for the `imgidx` binary itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_imgidx")
}

pub fn fixture_images() -> PathBuf {
    repo_root().join("tests/fixtures/images")
}

pub fn tiny_model_dir() -> PathBuf {
    repo_root().join("tests/fixtures/models/tiny-clip")
}

/// Copies the decodable sample images into `dir`: once under their own names, or
/// `copies` times as `<stem>_<i>.<ext>`.
pub fn copy_images(dir: &Path, copies: usize) -> Vec<PathBuf> {
    let src = repo_root().join("tests/fixtures/images");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_string();
        if !["png", "jpg", "gif"].contains(&ext.as_str()) {
            continue;
        }
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        for i in 0..copies {
            let name = if copies == 1 { format!("{stem}.{ext}") } else { format!("{stem}_{i}.{ext}") };
            let dest = dir.join(name);
            std::fs::copy(&path, &dest).unwrap();
            out.push(dest.canonicalize().unwrap());
        }
    }
    out.sort();
    out
}

/// A port nothing listens on (just released by the OS).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Serve {
    child: Child,
    pub url: String,
    http: reqwest::Client,
    log: PathBuf,
    /// The data directory, when this server owns it (`fresh`).
    _owned: Option<tempfile::TempDir>,
}

/// Which role the child process runs.
#[derive(Clone, Copy)]
enum Role {
    /// Every role in one process (`imgidx serve`).
    Serve,
    /// The HTTP API alone (`imgidx api`), on the broker and job store `env` names.
    Api,
}

fn command(role: Role, data_dir: &Path, port: u16, env: &[(&str, &str)], log: &Path) -> Command {
    command_with_model(role, data_dir, &tiny_model_dir(), port, env, log)
}

fn command_with_model(role: Role, data_dir: &Path, model: &Path, port: u16, env: &[(&str, &str)], log: &Path) -> Command {
    let mut cmd = Command::new(bin());
    let listen = format!("127.0.0.1:{port}");
    match role {
        Role::Serve => {
            cmd.arg("serve").arg("--listen").arg(listen).arg("--data-dir").arg(data_dir).arg("--model").arg(model);
        }
        // `api` has no --data-dir and --model flags: the same settings by environment.
        Role::Api => {
            cmd.arg("api").arg("--listen").arg(listen);
        }
    }
    // Embedded defaults only: nothing from the developer's environment leaks in.
    for (k, _) in std::env::vars() {
        if k.starts_with("IMGIDX__") || k == "IMGIDX_CONFIG" {
            cmd.env_remove(k);
        }
    }
    if let Role::Api = role {
        cmd.env("IMGIDX__DATA_DIR", data_dir).env("IMGIDX__MODEL__DIR", model);
    }
    cmd.env("RUST_LOG", "info,lapin=warn").envs(env.iter().copied());
    let log = std::fs::File::create(log).unwrap();
    cmd.stdout(Stdio::null()).stderr(log).kill_on_drop(true);
    cmd
}

impl Serve {
    /// Serve in a data directory of its own, removed with it.
    pub async fn fresh() -> Serve {
        let data = tempfile::tempdir().unwrap();
        let mut serve = Serve::start(data.path(), &[]).await;
        serve._owned = Some(data);
        serve
    }

    /// Starts serve and waits until `/health` answers.
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Serve {
        Self::start_as(Role::Serve, data_dir, env).await
    }

    /// Starts `imgidx api` alone (data directory and model set for it) and waits until
    /// `/health` answers.
    pub async fn api(data_dir: &Path, env: &[(&str, &str)]) -> Serve {
        Self::start_as(Role::Api, data_dir, env).await
    }

    /// Serve with another model directory.
    pub async fn start_with_model(data_dir: &Path, model: &Path, env: &[(&str, &str)]) -> Serve {
        Self::start_full(Role::Serve, data_dir, model, env).await
    }

    async fn start_as(role: Role, data_dir: &Path, env: &[(&str, &str)]) -> Serve {
        Self::start_full(role, data_dir, &tiny_model_dir(), env).await
    }

    async fn start_full(role: Role, data_dir: &Path, model: &Path, env: &[(&str, &str)]) -> Serve {
        let port = free_port();
        let log = data_dir.join(format!("imgidx-{port}.log"));
        let mut child = command_with_model(role, data_dir, model, port, env, &log).spawn().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{url}/health")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("serve exited with {status}: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            assert!(tokio::time::Instant::now() < deadline, "serve not healthy: {}", std::fs::read_to_string(&log).unwrap());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Serve { child, url, http, log, _owned: None }
    }

    /// Starts serve expecting it to exit on its own; returns what it logged.
    pub async fn try_start(data_dir: &Path, env: &[(&str, &str)]) -> String {
        let port = free_port();
        let log = data_dir.join(format!("serve-{port}.log"));
        let mut child = command(Role::Serve, data_dir, port, env, &log).spawn().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("serve kept running").unwrap();
        assert!(!status.success());
        std::fs::read_to_string(&log).unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Waits for the process to end on its own (after a signal sent elsewhere).
    pub async fn wait_exit(mut self, timeout: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(timeout, self.child.wait()).await.expect("serve kept running").unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn answer(r: reqwest::Response) -> (u16, Value) {
        let code = r.status().as_u16();
        let text = r.text().await.unwrap();
        (code, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        Self::answer(self.http.get(format!("{}{path}", self.url)).send().await.unwrap()).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        Self::answer(self.http.post(format!("{}{path}", self.url)).json(body).send().await.unwrap()).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        Self::answer(self.http.delete(format!("{}{path}", self.url)).send().await.unwrap()).await
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self.http.post(format!("{}{path}", self.url)).header("content-type", content_type).body(body);
        Self::answer(r.send().await.unwrap()).await
    }

    /// Multipart upload: the file in field `image`, plus text fields.
    pub async fn post_upload(&self, path: &str, name: &str, bytes: Vec<u8>, fields: &[(&str, &str)]) -> (u16, Value) {
        let mut form =
            reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()));
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        Self::answer(self.http.post(format!("{}{path}", self.url)).multipart(form).send().await.unwrap()).await
    }

    /// Any multipart form.
    pub async fn post_form(&self, path: &str, form: reqwest::multipart::Form) -> (u16, Value) {
        Self::answer(self.http.post(format!("{}{path}", self.url)).multipart(form).send().await.unwrap()).await
    }

    /// Kill -9: no drain, no goodbye.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM, then wait for the graceful drain.
    pub async fn stop(mut self) {
        let pid = self.child.id().unwrap();
        let term = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
        assert!(term.success());
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await.expect("serve did not stop").unwrap();
        assert!(status.success(), "serve exited with {status}: {}", std::fs::read_to_string(&self.log).unwrap());
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
        .env_remove("IMGIDX_API_KEY")
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
