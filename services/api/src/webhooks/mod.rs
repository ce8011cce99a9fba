//! Webhooks (seed 002 phase 5): when a job finishes (completed, failed, cancelled), a
//! signed POST to the URL its request named (`webhook_url`) and to every
//! `api.webhook_urls`. Deliveries live in the job store (`jobs/webhooks.rs`), written
//! before the job itself, and are made at least once by the dispatcher of any API
//! process (`dispatch`), retried with growing waits for `api.webhook_retry_hours`.
//! Only public addresses are called unless `api.webhook_allow_private`.

mod deliver;
mod dispatch;
mod payload;
mod signature;

use std::time::Duration;

use reqwest::Url;
use uuid::Uuid;

use imgidx_shared::config::ApiSettings;
use imgidx_shared::jobs::JobStore;
use imgidx_shared::outbound::{self, OutboundRefusal};

use crate::error::ApiError;
use deliver::Sender;
use signature::Signer;

pub use dispatch::run as dispatch;
pub use payload::WebhookPayload;

/// Longest URL accepted.
const MAX_URL_LEN: usize = 2048;
/// How long a request waits for its `webhook_url`'s host to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Webhooks {
    /// None: no `api.webhook_secret`, webhooks are off.
    sender: Option<Sender>,
    global: Vec<String>,
    retry_window: Duration,
}

impl Webhooks {
    pub fn from_settings(s: &ApiSettings) -> Result<Self, String> {
        let sender = match s.webhook_secret.as_deref().filter(|k| !k.is_empty()) {
            Some(secret) => Some(Sender {
                signer: Signer::new(secret)?,
                allow_private: s.webhook_allow_private,
                timeout: Duration::from_secs(s.webhook_timeout_secs),
            }),
            None => None,
        };
        for url in &s.webhook_urls {
            let parsed = parse(url).map_err(|e| format!("api.webhook_urls: {e}"))?;
            // Names are resolved at each delivery; a literal address is checked now.
            if let Some(ip) = literal_ip(&parsed) {
                if !s.webhook_allow_private && !outbound::is_public(ip) {
                    return Err(format!(
                        "api.webhook_urls: {url:?} is not a public address (set api.webhook_allow_private to allow it)"
                    ));
                }
            }
        }
        Ok(Self {
            sender,
            global: s.webhook_urls.clone(),
            retry_window: Duration::from_secs(s.webhook_retry_hours.saturating_mul(3600)),
        })
    }

    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// A request's `webhook_url`, checked: http(s), and a host that resolves to public
    /// addresses only (unless `api.webhook_allow_private`). Deliveries check again.
    pub async fn check_requested(&self, raw: &str) -> Result<String, ApiError> {
        let Some(sender) = &self.sender else {
            return Err(ApiError::Validation(
                "webhook_url: webhooks are off on this server (it has no api.webhook_secret)".into(),
            ));
        };
        let url = parse(raw).map_err(|e| ApiError::Validation(format!("webhook_url: {e}")))?;
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(443);
        outbound::resolve_checked(host, port, sender.allow_private, RESOLVE_TIMEOUT).await.map_err(|e| match e {
            OutboundRefusal::NotPublic { .. } => ApiError::WebhookNotAllowed(format!(
                "webhook_url: {e}; this server only calls public addresses (api.webhook_allow_private)"
            )),
            OutboundRefusal::Unresolvable { .. } => ApiError::WebhookNotAllowed(format!("webhook_url: {e}")),
        })?;
        Ok(raw.to_string())
    }

    /// Where the end of a request's job is announced: its `webhook_url` (checked) and
    /// every configured URL.
    pub async fn for_request(&self, webhook_url: Option<&str>) -> Result<Vec<String>, ApiError> {
        let requested = match webhook_url {
            Some(url) => Some(self.check_requested(url).await?),
            None => None,
        };
        Ok(self.targets(requested))
    }

    /// Where a job's end is announced: the request's URL and every configured one.
    pub fn targets(&self, requested: Option<String>) -> Vec<String> {
        if !self.enabled() {
            return Vec::new();
        }
        let mut out: Vec<String> = requested.into_iter().collect();
        for url in &self.global {
            if !out.contains(url) {
                out.push(url.clone());
            }
        }
        out
    }

    /// Records the deliveries of a job about to be created (see `jobs/webhooks.rs`).
    pub async fn register(&self, jobs: &dyn JobStore, job_id: &str, targets: &[String]) -> Result<(), ApiError> {
        if targets.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = targets.iter().map(|_| format!("msg_{}", Uuid::new_v4().simple())).collect();
        Ok(jobs.add_webhooks(job_id, targets, &ids).await?)
    }
}

fn parse(raw: &str) -> Result<Url, String> {
    if raw.len() > MAX_URL_LEN {
        return Err(format!("longer than {MAX_URL_LEN} characters"));
    }
    let url = Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{raw:?} is not an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{raw:?} names no host"));
    }
    Ok(url)
}

fn literal_ip(url: &Url) -> Option<std::net::IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// A URL as listings show it: no user name, password or query (they may hold secrets).
pub fn redacted(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) => {
            let had_query = url.query().is_some();
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            let mut s = url.to_string();
            if had_query {
                s.push_str("?…");
            }
            s
        }
        Err(_) => "(not a URL)".into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings(urls: &[&str], allow_private: bool) -> ApiSettings {
        ApiSettings {
            webhook_urls: urls.iter().map(|u| u.to_string()).collect(),
            webhook_secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            webhook_allow_private: allow_private,
            ..ApiSettings::default()
        }
    }

    #[test]
    fn configured_urls_are_checked_at_start() {
        assert!(Webhooks::from_settings(&settings(&["https://hooks.example/a"], false)).is_ok());
        for bad in ["ftp://x/", "not a url", "http://127.0.0.1:9/x", "http://[::1]/x", "http://169.254.169.254/"] {
            assert!(Webhooks::from_settings(&settings(&[bad], false)).is_err(), "{bad}");
        }
        assert!(Webhooks::from_settings(&settings(&["http://127.0.0.1:9/x"], true)).is_ok());
    }

    #[tokio::test]
    async fn requested_urls_must_be_public_unless_allowed() {
        let w = Webhooks::from_settings(&settings(&[], false)).unwrap();
        for bad in ["http://127.0.0.1:9/x", "http://localhost/x", "http://[::ffff:10.0.0.1]/", "http://0.0.0.0/"] {
            assert!(matches!(w.check_requested(bad).await, Err(ApiError::WebhookNotAllowed(_))), "{bad}");
        }
        assert!(matches!(w.check_requested("file:///etc/passwd").await, Err(ApiError::Validation(_))));
        let open = Webhooks::from_settings(&settings(&[], true)).unwrap();
        assert_eq!(open.check_requested("http://127.0.0.1:9/x").await.unwrap(), "http://127.0.0.1:9/x");
        let off = Webhooks::from_settings(&ApiSettings::default()).unwrap();
        assert!(matches!(off.check_requested("https://hooks.example/").await, Err(ApiError::Validation(m)) if m.contains("off")));
        assert!(off.targets(Some("https://x/".into())).is_empty());
    }

    #[test]
    fn targets_add_the_configured_urls_once() {
        let w = Webhooks::from_settings(&settings(&["https://a.example/", "https://b.example/"], false)).unwrap();
        assert_eq!(w.targets(Some("https://b.example/".into())), vec!["https://b.example/", "https://a.example/"]);
        assert_eq!(w.targets(None), vec!["https://a.example/", "https://b.example/"]);
    }

    #[test]
    fn listings_hide_credentials_and_queries() {
        assert_eq!(redacted("https://u:p@h.example:8443/hook?token=s3cret#x"), "https://h.example:8443/hook?…");
        assert_eq!(redacted("http://h.example/a"), "http://h.example/a");
    }
}
