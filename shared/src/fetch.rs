//! Fetching an image a client named by URL (seed 004's batches), safely: http(s) only;
//! the host resolved and every address checked (`outbound`: no loopback, private,
//! link-local, multicast or metadata address, in IPv4 or IPv6, unless allowed); the
//! connection pinned to the checked address, so a second resolution cannot send it
//! elsewhere (DNS rebinding); every redirect checked the same way, at most 5; the body
//! streamed with a cap and the whole fetch under one timeout. What the bytes are is left
//! to the decoder, which goes by their magic bytes, never by `Content-Type`.

use std::time::Duration;

use reqwest::{StatusCode, Url};

use crate::outbound::{self, OutboundRefusal};

const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FetchLimits {
    pub max_bytes: u64,
    /// For the whole fetch: resolution, redirects and body.
    pub timeout: Duration,
    /// Allow loopback and private addresses (a test, or a trusted network).
    pub allow_private: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    #[error("not an http or https URL: {0}")]
    NotHttp(String),
    #[error("{0}")]
    Refused(#[from] OutboundRefusal),
    #[error("status {0}")]
    Status(u16),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("a redirect without a valid Location")]
    BadRedirect,
    #[error("larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("connection failed: {0}")]
    Connection(String),
}

impl FetchError {
    /// Whether a later try may succeed: the server was unreachable, slow, or said so.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::TimedOut(_) | FetchError::Connection(_) => true,
            FetchError::Status(s) => *s == 429 || (500..600).contains(s),
            _ => false,
        }
    }
}

/// Whether `url` is one this module would try: an absolute http(s) URL with a host.
pub fn check_url(url: &str) -> Result<Url, FetchError> {
    let parsed = Url::parse(url).map_err(|e| FetchError::NotHttp(format!("{url:?} ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(FetchError::NotHttp(format!("{url:?}")));
    }
    Ok(parsed)
}

/// The body at `url`, within `limits`.
pub async fn fetch(url: &str, limits: &FetchLimits) -> Result<Vec<u8>, FetchError> {
    tokio::time::timeout(limits.timeout, follow(url, limits)).await.map_err(|_| FetchError::TimedOut(limits.timeout))?
}

async fn follow(url: &str, limits: &FetchLimits) -> Result<Vec<u8>, FetchError> {
    let mut url = check_url(url)?;
    for _ in 0..=MAX_REDIRECTS {
        let response = get(&url, limits).await?;
        let status = response.status();
        if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
            let location = response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok());
            let next = location.and_then(|l| url.join(l).ok()).ok_or(FetchError::BadRedirect)?;
            url = check_url(next.as_str())?;
            continue;
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        return body(response, limits.max_bytes).await;
    }
    Err(FetchError::TooManyRedirects)
}

/// One GET, connected to the address that was checked.
async fn get(url: &Url, limits: &FetchLimits) -> Result<reqwest::Response, FetchError> {
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Err(FetchError::NotHttp(url.to_string()));
    };
    let addr = outbound::resolve_checked(host, port, limits.allow_private, limits.timeout).await?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .resolve(host.trim_start_matches('[').trim_end_matches(']'), addr)
        .user_agent(concat!("imgidx/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Connection(e.to_string()))?;
    client.get(url.clone()).send().await.map_err(|e| FetchError::Connection(outbound::innermost_reason(&e)))
}

async fn body(mut response: reqwest::Response, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
    if response.content_length().is_some_and(|n| n > max_bytes) {
        return Err(FetchError::TooLarge(max_bytes));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| FetchError::Connection(outbound::innermost_reason(&e)))? {
        if (bytes.len() + chunk.len()) as u64 > max_bytes {
            return Err(FetchError::TooLarge(max_bytes));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server answering each connection with the next of `answers`.
    async fn server(answers: Vec<String>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for answer in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        format!("http://{addr}")
    }

    fn ok(body: &str) -> String {
        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/html\r\n\r\n{body}", body.len())
    }

    fn redirect(to: &str) -> String {
        format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\n\r\n")
    }

    fn limits(allow_private: bool) -> FetchLimits {
        FetchLimits { max_bytes: 16, timeout: Duration::from_secs(5), allow_private }
    }

    #[tokio::test]
    async fn bodies_come_through_redirects_within_the_limits() {
        let base = server(vec![redirect("/next"), ok("image bytes")]).await;
        assert_eq!(fetch(&format!("{base}/a.jpg"), &limits(true)).await.unwrap(), b"image bytes");
        let base = server(vec![ok("seventeen bytes!!")]).await;
        assert_eq!(fetch(&base, &limits(true)).await, Err(FetchError::TooLarge(16)));
        let base = server(vec!["HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".into()]).await;
        let err = fetch(&base, &limits(true)).await.unwrap_err();
        assert_eq!((err.to_string().as_str(), err.is_transient()), ("status 404", false));
        let base = server((0..7).map(|_| redirect("/again")).collect()).await;
        assert_eq!(fetch(&base, &limits(true)).await, Err(FetchError::TooManyRedirects));
    }

    #[tokio::test]
    async fn private_addresses_and_other_schemes_are_refused() {
        let base = server(vec![ok("secret")]).await;
        assert!(matches!(fetch(&base, &limits(false)).await, Err(FetchError::Refused(OutboundRefusal::NotPublic { .. }))));
        for url in ["http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://10.0.0.1/"] {
            assert!(matches!(fetch(url, &limits(false)).await, Err(FetchError::Refused(_))), "{url}");
        }
        for url in ["file:///etc/passwd", "ftp://example.com/a.jpg", "not a url", "https://"] {
            assert!(matches!(fetch(url, &limits(true)).await, Err(FetchError::NotHttp(_))), "{url}");
        }
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let l = FetchLimits { timeout: Duration::from_millis(300), ..limits(true) };
        let err = fetch(&url, &l).await.unwrap_err();
        assert!(matches!(err, FetchError::TimedOut(_)) && err.is_transient(), "{err:?}");
        drop(listener);
    }
}
