//! The HTTP side of the client: one `reqwest` client with timeouts, the server's
//! error body turned into a one-line message, transport errors named by URL.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde_json::Value;

use super::args::ServerArgs;

/// How long to wait for a TCP connection: a server that is up answers at once.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of a non-JSON error body quoted in a message.
const MAX_QUOTED_BODY: usize = 200;

#[derive(Clone)]
pub struct Api {
    base: Url,
    http: reqwest::Client,
}

impl Api {
    pub fn new(args: &ServerArgs) -> Result<Api> {
        let base = parse_base_url(&args.server)?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = args.api_key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            let mut value = reqwest::header::HeaderValue::from_str(key)
                .map_err(|_| anyhow!("the API key contains characters that cannot be sent in a header"))?;
            // Kept out of reqwest's debug output.
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(Duration::from_secs(args.timeout))
            .user_agent(concat!("imgidx/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow!("cannot set up the HTTP client: {}", chain(&e)))?;
        Ok(Api { base, http })
    }

    /// The server's base URL as the user gave it (normalised).
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// URL of `segments` below the base, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    pub fn request(&self, method: Method, segments: &[&str]) -> (Url, RequestBuilder) {
        let url = self.url(segments);
        let builder = self.http.request(method, url.clone());
        (url, builder)
    }

    pub async fn get(&self, segments: &[&str]) -> Result<Value> {
        let (url, req) = self.request(Method::GET, segments);
        self.send(&url, req).await
    }

    /// GET with query parameters, each percent-encoded.
    pub async fn get_with_query(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Value> {
        let mut url = self.url(segments);
        url.query_pairs_mut().extend_pairs(query);
        let req = self.http.get(url.clone());
        self.send(&url, req).await
    }

    /// GET of a text answer (such as `/metrics`).
    pub async fn get_text(&self, segments: &[&str]) -> Result<String> {
        let (url, req) = self.request(Method::GET, segments);
        let response = req.send().await.map_err(|e| self.transport_error(&url, &e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.transport_error(&url, &e))?;
        if !status.is_success() {
            bail!("{}", error_message(status, text.as_bytes(), &url));
        }
        Ok(text)
    }

    pub async fn delete(&self, segments: &[&str]) -> Result<Value> {
        let (url, req) = self.request(Method::DELETE, segments);
        self.send(&url, req).await
    }

    pub async fn post_json(&self, segments: &[&str], body: &Value) -> Result<Value> {
        let (url, req) = self.request(Method::POST, segments);
        self.send(&url, req.json(body)).await
    }

    /// Send, and return the JSON body of a 2xx answer; anything else is an error
    /// carrying the server's own message.
    pub async fn send(&self, url: &Url, req: RequestBuilder) -> Result<Value> {
        let response = req.send().await.map_err(|e| self.transport_error(url, &e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.transport_error(url, &e))?;
        if !status.is_success() {
            bail!("{}", error_message(status, &bytes, url));
        }
        serde_json::from_slice(&bytes).map_err(|_| {
            anyhow!("unexpected answer from {url}: HTTP {status} but the body is not JSON (is {} an imgidx server?)", self.base())
        })
    }

    fn transport_error(&self, url: &Url, e: &reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            anyhow!("cannot reach the imgidx server at {}: {}", self.base(), root_cause(e))
        } else if e.is_timeout() {
            anyhow!("the imgidx server at {} did not answer {url} in time", self.base())
        } else {
            anyhow!("request to {url} failed: {}", chain(e))
        }
    }
}

fn parse_base_url(raw: &str) -> Result<Url> {
    let url = Url::parse(raw).map_err(|e| anyhow!("invalid server URL {raw:?}: {e}"))?;
    match url.scheme() {
        "http" => {}
        "https" => bail!("invalid server URL {raw:?}: https is not supported by this build; use http://"),
        other => bail!("invalid server URL {raw:?}: scheme {other:?} is not http"),
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        bail!("invalid server URL {raw:?}: expected http://HOST[:PORT]");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("invalid server URL {raw:?}: it must not carry a query or fragment");
    }
    Ok(url)
}

/// `{"error": {"code", "message"}}`, or the flat `{"error": code, "message"}`, or
/// FastAPI's `{"detail"}`; otherwise the start of the body.
fn error_message(status: StatusCode, body: &[u8], url: &Url) -> String {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(json) = json {
        let err = &json["error"];
        let (code, message) = if err.is_object() {
            (err["code"].as_str(), err["message"].as_str())
        } else {
            (err.as_str(), json["message"].as_str().or_else(|| json["detail"].as_str()))
        };
        if let Some(message) = message {
            if code == Some("unauthorized") {
                return format!("{message} (HTTP 401): pass --api-key KEY or set IMGIDX_API_KEY");
            }
            return match code {
                Some(code) => format!("{message} (HTTP {}, {code})", status.as_u16()),
                None => format!("{message} (HTTP {})", status.as_u16()),
            };
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        format!("HTTP {status} from {url}")
    } else {
        let quoted: String = text.chars().take(MAX_QUOTED_BODY).collect();
        format!("HTTP {status} from {url}: {quoted}")
    }
}

/// The innermost cause, e.g. "Connection refused (os error 111)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Every cause, outermost first, on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e;
    while let Some(next) = cur.source() {
        let s = next.to_string();
        if parts.last() != Some(&s) {
            parts.push(s);
        }
        cur = next;
    }
    parts.join(": ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://h:1/api/v1/x").unwrap()
    }

    #[test]
    fn server_messages_of_every_error_shape() {
        let nested = br#"{"error":{"code":"job_not_found","message":"job x not found"}}"#;
        assert_eq!(error_message(StatusCode::NOT_FOUND, nested, &url()), "job x not found (HTTP 404, job_not_found)");
        let flat = br#"{"error":"validation_error","message":"bad k","detail":"bad k"}"#;
        assert_eq!(error_message(StatusCode::UNPROCESSABLE_ENTITY, flat, &url()), "bad k (HTTP 422, validation_error)");
        let fastapi = br#"{"detail":"nope"}"#;
        assert_eq!(error_message(StatusCode::BAD_REQUEST, fastapi, &url()), "nope (HTTP 400)");
        let html = b"<html>bad gateway</html>";
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, html, &url()),
            "HTTP 502 Bad Gateway from http://h:1/api/v1/x: <html>bad gateway</html>"
        );
    }

    #[test]
    fn base_urls_are_checked_and_paths_encoded() {
        assert!(parse_base_url("ftp://h").is_err());
        assert!(parse_base_url("https://h").unwrap_err().to_string().contains("https"));
        assert!(parse_base_url("127.0.0.1:8000").is_err());
        assert!(parse_base_url("http://h/?q=1").is_err());
        let args = ServerArgs { server: "http://h:8000/prefix/".into(), api_key: None, json: false, timeout: 1 };
        let api = Api::new(&args).unwrap();
        assert_eq!(api.url(&["api", "v1", "index", "status", "a/b c"]).as_str(), "http://h:8000/prefix/api/v1/index/status/a%2Fb%20c");
        assert_eq!(api.base(), "http://h:8000/prefix");
    }
}
