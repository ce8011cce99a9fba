//! One attempt at a delivery: resolve the URL's host and check every address (unless
//! `api.webhook_allow_private`), connect to the checked address only, POST the signed
//! payload, follow no redirect, and read no more of the answer than its status.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, USER_AGENT};
use reqwest::Url;

use imgidx_shared::outbound;

use super::signature::Signer;

/// How an attempt went: the receiver's status, if it answered, and what went wrong.
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub status: Option<u16>,
    pub error: Option<String>,
}

impl Answer {
    fn failed(error: String) -> Self {
        Self { status: None, error: Some(error) }
    }
}

pub struct Sender {
    pub signer: Signer,
    pub allow_private: bool,
    pub timeout: Duration,
}

impl Sender {
    pub async fn send(&self, url: &str, delivery_id: &str, body: &str) -> Answer {
        let url = match Url::parse(url) {
            Ok(u) => u,
            Err(e) => return Answer::failed(format!("not a URL: {e}")),
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Answer::failed("the URL has no host".into());
        };
        let addr = match outbound::resolve_checked(host, port, self.allow_private, self.timeout).await {
            Ok(a) => a,
            Err(e) => return Answer::failed(e.to_string()),
        };
        // Pinned to the checked address: the connection cannot be resolved anew elsewhere.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .no_proxy()
            .resolve(host.trim_start_matches('[').trim_end_matches(']'), addr)
            .build();
        let client = match client {
            Ok(c) => c,
            Err(e) => return Answer::failed(format!("building the HTTP client: {e}")),
        };
        let timestamp = chrono::Utc::now().timestamp();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(concat!("imgidx-webhooks/", env!("CARGO_PKG_VERSION"))));
        for (name, value) in [
            ("webhook-id", delivery_id.to_string()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", self.signer.sign(delivery_id, timestamp, body.as_bytes())),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        match client.post(url).headers(headers).body(body.to_string()).send().await {
            Ok(r) if r.status().is_success() => Answer { status: Some(r.status().as_u16()), error: None },
            Ok(r) => {
                let status = r.status();
                Answer { status: Some(status.as_u16()), error: Some(format!("the receiver answered {status}")) }
            }
            Err(e) if e.is_timeout() => Answer::failed(format!("no answer within {:?}", self.timeout)),
            Err(e) => Answer::failed(format!("could not deliver: {}", outbound::innermost_reason(&e))),
        }
    }
}
