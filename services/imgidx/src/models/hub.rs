//! Downloads from a Hugging Face hub (or a mirror serving its resolve URLs).
//!
//! Redirects are followed by hand: the hub answers a resolve request for an LFS file
//! with a redirect to its CDN that carries the content's SHA-256 in `X-Linked-Etag`,
//! and the CDN's own `ETag` at the end of the chain means something else. So the
//! checksum is read from the hub's resolve responses only (same origin as the first
//! URL, a `/resolve/` path).

use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, ETAG, LOCATION};
use reqwest::Url;
use tokio::io::AsyncWriteExt as _;

use super::checksum::Expected;
use super::error::FetchError;
use super::progress::Progress;

/// Network limits: short connect timeout so an offline machine fails in seconds.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Name resolution plus TCP (and TLS) connect.
    pub connect_timeout: Duration,
    /// Longest silence while waiting for a response or the next piece of a body.
    pub read_timeout: Duration,
    pub max_redirects: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(10), read_timeout: Duration::from_secs(30), max_redirects: 10 }
    }
}

pub fn client(opts: &HttpOptions) -> Result<reqwest::Client, FetchError> {
    reqwest::Client::builder()
        .connect_timeout(opts.connect_timeout)
        .read_timeout(opts.read_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("imgidx/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Io {
            context: "cannot set up the HTTP client".into(),
            source: std::io::Error::other(e),
        })
}

/// A finished download: the checksum the hub announced for it, if any.
#[derive(Debug)]
pub struct Downloaded {
    pub announced: Option<Expected>,
}

#[derive(Debug)]
pub enum DownloadError {
    /// The hub (or its CDN) could not be reached or the connection broke: the cause.
    Transport(String),
    Other(FetchError),
}

impl From<FetchError> for DownloadError {
    fn from(e: FetchError) -> Self {
        Self::Other(e)
    }
}

/// Downloads `url` into `dest` (created or truncated), refusing more than `limit` bytes.
pub async fn download(
    client: &reqwest::Client,
    opts: &HttpOptions,
    url: &str,
    file: &str,
    dest: &Path,
    limit: u64,
    progress: &mut Progress,
) -> Result<Downloaded, DownloadError> {
    let start = Url::parse(url).map_err(|e| FetchError::BadHub { url: url.into(), reason: e.to_string() })?;
    let hub = start.origin();
    let mut current = start;
    let mut announced = None;
    let mut announced_size = None;
    for _ in 0..=opts.max_redirects {
        let resp = client.get(current.clone()).send().await.map_err(|e| transport(&current, &e))?;
        // The hub's own answer to a resolve request (possibly after a redirect to a renamed
        // repository's resolve URL); not a CDN, even one on the same origin.
        let from_hub = current.origin() == hub && current.path().contains("/resolve/");
        let status = resp.status();
        if from_hub && announced.is_none() {
            announced = header(resp.headers(), "x-linked-etag")
                .and_then(|v| Expected::from_etag(v, "announced by the hub in X-Linked-Etag"));
            announced_size = header(resp.headers(), "x-linked-size").and_then(|v| v.parse::<u64>().ok());
        }
        if status.is_redirection() {
            let location = header(resp.headers(), LOCATION.as_str())
                .ok_or_else(|| FetchError::Http { url: current.to_string(), status: status.as_u16() })?;
            current = current.join(location).map_err(|e| FetchError::BadHub {
                url: current.to_string(),
                reason: format!("redirect to an invalid location {location:?}: {e}"),
            })?;
            continue;
        }
        if !status.is_success() {
            return Err(FetchError::Http { url: current.to_string(), status: status.as_u16() }.into());
        }
        if from_hub && announced.is_none() {
            announced = header(resp.headers(), ETAG.as_str())
                .and_then(|v| Expected::from_etag(v, "announced by the hub in ETag"));
        }
        let total = announced_size.or(resp.content_length());
        save_body(resp, &current, file, dest, total, limit, progress).await?;
        return Ok(Downloaded { announced });
    }
    Err(FetchError::TooManyRedirects { url: url.into(), limit: opts.max_redirects }.into())
}

async fn save_body(
    mut resp: reqwest::Response,
    url: &Url,
    file: &str,
    dest: &Path,
    total: Option<u64>,
    limit: u64,
    progress: &mut Progress,
) -> Result<u64, DownloadError> {
    let too_large = || FetchError::TooLarge { file: file.into(), url: url.to_string(), limit };
    if total.is_some_and(|t| t > limit) {
        return Err(too_large().into());
    }
    let mut out =
        tokio::fs::File::create(dest).await.map_err(FetchError::io(format!("creating {}", dest.display())))?;
    progress.start(total);
    let mut written = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(url, &e))? {
        written += chunk.len() as u64;
        if written > limit {
            return Err(too_large().into());
        }
        out.write_all(&chunk).await.map_err(FetchError::io(format!("writing {}", dest.display())))?;
        progress.update(written);
    }
    out.sync_all().await.map_err(FetchError::io(format!("writing {}", dest.display())))?;
    if let Some(total) = total.filter(|t| *t != written) {
        return Err(DownloadError::Transport(format!("{url}: the download ended after {written} of {total} bytes")));
    }
    progress.finish(written);
    Ok(written)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// reqwest's own message is terse ("error sending request"); the causes say why.
fn transport(url: &Url, e: &reqwest::Error) -> DownloadError {
    // reqwest's message names the URL already, unless it was stripped.
    let mut text = match e.url() {
        Some(_) => e.to_string(),
        None => format!("{url}: {e}"),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    if e.is_timeout() {
        text.push_str(" (timed out)");
    }
    DownloadError::Transport(text)
}
