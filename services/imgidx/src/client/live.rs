//! Following a job live over the server's Server-Sent Events
//! (`GET /api/v1/index/status/{job_id}/events`): seed 004's `progress`,
//! `image_complete` and `job_complete` messages as they come. A stream that breaks,
//! stalls or is not offered (an older server) is reported, so the caller can poll.

use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use reqwest::Method;
use serde::Deserialize;

use super::http::Api;

/// The server sends a keep-alive comment every 15 s: silence this long is a dead stream.
const STALL: Duration = Duration::from_secs(45);
/// An SSE request lives as long as its job; this only bounds a forgotten one.
const STREAM_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default)]
pub struct LiveMessage {
    #[serde(rename = "type")]
    pub kind: String,
    pub job_id: String,
    pub status: String,
    pub progress: f64,
    pub completed: u64,
    pub failed: u64,
    pub total_images: u64,
    pub image: Option<LiveImage>,
}

#[derive(Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default)]
pub struct LiveImage {
    pub path: String,
    pub status: String,
    pub reason: Option<String>,
    pub error: Option<String>,
}

/// How following ended.
#[derive(Debug, PartialEq)]
pub enum Followed {
    /// The job ended: its `job_complete`.
    Ended(LiveMessage),
    /// No (more) live updates: the caller polls instead.
    Lost(String),
}

/// Calls `on` for every message of `job_id` (typed, and its JSON as sent) until its
/// `job_complete`, or until the stream is lost.
pub async fn follow(api: &Api, job_id: &str, mut on: impl FnMut(&LiveMessage, &str)) -> Result<Followed> {
    let (url, request) = api.request(Method::GET, &["api", "v1", "index", "status", job_id, "events"]);
    let response = match request.timeout(STREAM_LIMIT).send().await {
        Ok(r) => r,
        Err(e) => return Ok(Followed::Lost(format!("{url}: {e}"))),
    };
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        // An unknown job, or a server without live updates: the status says which.
        return Ok(Followed::Lost(format!("{url}: HTTP 404")));
    }
    if !response.status().is_success() {
        return Ok(Followed::Lost(format!("{url}: HTTP {}", response.status())));
    }
    let mut body = response.bytes_stream();
    let mut parser = SseParser::default();
    loop {
        let chunk = match tokio::time::timeout(STALL, body.next()).await {
            Err(_) => return Ok(Followed::Lost("no live update or keep-alive for 45 s".into())),
            Ok(None) => return Ok(Followed::Lost("the live stream ended before the job did".into())),
            Ok(Some(Err(e))) => return Ok(Followed::Lost(e.to_string())),
            Ok(Some(Ok(chunk))) => chunk,
        };
        for data in parser.push(&chunk) {
            let Ok(message) = serde_json::from_str::<LiveMessage>(&data) else { continue };
            on(&message, &data);
            if message.kind == "job_complete" {
                return Ok(Followed::Ended(message));
            }
        }
    }
}

/// Splits an event stream into the `data` of its events (`event:` names are in the data's
/// `type` too; comments and other fields are skipped).
#[derive(Default)]
struct SseParser {
    pending: String,
}

impl SseParser {
    fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.push_str(&String::from_utf8_lossy(chunk));
        let mut out = Vec::new();
        while let Some(end) = self.pending.find("\n\n") {
            let block: String = self.pending.drain(..end + 2).collect();
            let data: Vec<&str> = block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
            if !data.is_empty() {
                out.push(data.join("\n"));
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cut_at_blank_lines_whatever_the_chunks() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\nevent: progress\ndata: {\"type\":").is_empty());
        let out = p.push(b"\"progress\"}\n\nevent: job_complete\ndata: {}\n\n");
        assert_eq!(out, vec!["{\"type\":\"progress\"}".to_string(), "{}".to_string()]);
        assert!(p.push(b"data: x").is_empty(), "an event is complete only at its blank line");
    }
}
