//! DNS rebinding: a web page can make a browser send requests to 127.0.0.1 under
//! the page's own host name. A server on a loopback address therefore accepts only
//! requests whose `Host` is a loopback name or address, or one of `api.allowed_hosts`
//! (which also restricts a server on any other address when set).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::HOST;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;

#[derive(Clone)]
pub struct HostPolicy {
    allowed: Arc<Vec<String>>,
}

impl HostPolicy {
    /// None when nothing is to be checked: a non-loopback listener without `allowed_hosts`.
    pub fn new(listening_on_loopback: bool, allowed_hosts: &[String]) -> Option<Self> {
        if !listening_on_loopback && allowed_hosts.is_empty() {
            return None;
        }
        let allowed = allowed_hosts.iter().map(|h| host_name(h.trim()).to_ascii_lowercase()).collect();
        Some(Self { allowed: Arc::new(allowed) })
    }

    fn allows(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        is_loopback_name(&name) || self.allowed.contains(&name)
    }
}

pub async fn check(State(policy): State<HostPolicy>, request: Request, next: Next) -> Result<Response, ApiError> {
    // HTTP/1.1 sends Host; an absolute-form request line carries it in the URI.
    let host = request
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_string()));
    match host {
        Some(h) if policy.allows(&h) => Ok(next.run(request).await),
        _ => Err(ApiError::HostNotAllowed),
    }
}

/// `example.com:8000` → `example.com`; `[::1]:8000` → `::1`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn is_loopback_name(name: &str) -> bool {
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_pass_and_others_only_when_allowed() {
        assert!(HostPolicy::new(false, &[]).is_none());
        let p = HostPolicy::new(true, &["imgidx.lan".into()]).unwrap();
        for ok in ["localhost", "localhost:8000", "127.0.0.1:8000", "127.9.9.9", "[::1]:8000", "::1", "IMGIDX.lan:80", "a.localhost"] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil.example", "", "10.0.0.1"] {
            assert!(!p.allows(bad), "{bad}");
        }
    }
}
