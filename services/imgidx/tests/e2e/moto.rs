//! A real S3-protocol server on loopback for the object-store tests: moto's, from PyPI,
//! which `tests/run.sh` installs and names in `IMGIDX_MOTO_SERVER`. Without it the tests
//! skip (and fail under `IMGIDX_REQUIRE_SERVICES=1`).

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::server::free_port;

pub struct Moto {
    _child: Child,
    pub endpoint: String,
}

impl Moto {
    /// A fresh server with the bucket `bucket`; None when moto is not installed.
    pub async fn start(bucket: &str) -> Option<Moto> {
        let Some(bin) = std::env::var_os("IMGIDX_MOTO_SERVER") else {
            assert_ne!(std::env::var("IMGIDX_REQUIRE_SERVICES").as_deref(), Ok("1"), "IMGIDX_MOTO_SERVER must be set");
            eprintln!("skipping: IMGIDX_MOTO_SERVER is not set (tests/run.sh installs moto[server])");
            return None;
        };
        let port = free_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        // Creating the bucket is also the readiness probe.
        loop {
            if let Ok(r) = http.put(format!("{endpoint}/{bucket}")).send().await {
                assert!(r.status().is_success(), "creating bucket {bucket}: {}", r.status());
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "moto did not start on {endpoint}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Moto { _child: child, endpoint })
    }

    /// The settings that point `imgidx` at `s3://bucket/prefix` on this server.
    pub fn env(&self, url: &str) -> Vec<(&'static str, String)> {
        vec![
            ("IMGIDX__OBJECTS__URL", url.to_string()),
            ("IMGIDX__OBJECTS__ENDPOINT", self.endpoint.clone()),
            ("IMGIDX__OBJECTS__ACCESS_KEY_ID", "test".into()),
            ("IMGIDX__OBJECTS__SECRET_ACCESS_KEY", "test".into()),
            ("IMGIDX__OBJECTS__ALLOW_HTTP", "true".into()),
        ]
    }

    /// The object keys under `bucket/prefix`, by S3's ListObjectsV2.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let url = format!("{}/{bucket}?list-type=2&prefix={prefix}", self.endpoint);
        let text = reqwest::get(url).await.unwrap().text().await.unwrap();
        text.split("<Key>").skip(1).filter_map(|s| s.split("</Key>").next()).map(str::to_string).collect()
    }
}
