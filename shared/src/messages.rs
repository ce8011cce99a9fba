//! What travels on the broker: image tasks (API → workers), completion events
//! (workers → aggregator) and progress events (aggregator → fanout).
//! Tagged with `type` so a queue can carry more kinds later without ambiguity.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Queue priority of a job. Higher is taken first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
}

impl Priority {
    /// Highest first: the order in which consumers drain queues.
    pub const DESCENDING: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(Priority::Low),
            "normal" => Some(Priority::Normal),
            "high" => Some(Priority::High),
            _ => None,
        }
    }
}

/// File identity used for change detection: an indexed point is current when
/// both match the file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
}

impl FileStamp {
    /// Stamp of a file from its metadata (mtime 0 when the platform has none).
    pub fn from_metadata(meta: &std::fs::Metadata) -> Self {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self { size: meta.len(), mtime_ns }
    }
}

/// One image to embed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "image_task")]
pub struct ImageTask {
    pub job_id: String,
    pub point_id: Uuid,
    /// Canonical absolute path.
    pub path: String,
    /// Stamp seen by the API at submission (None when the file could not be read then).
    pub stamp: Option<FileStamp>,
    /// The `x-request-id` of the request that queued it, so one image can be followed
    /// from request to upsert in every process's log; absent when queued by the
    /// reconcile or by an older API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Physical collection to upsert into; absent: the one the deployment started with
    /// (and every task queued before collections existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Read the bytes from this object instead of fetching `path` again: a URL image being
    /// re-embedded for a model switch, whose bytes were kept when it was first fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_key: Option<String>,
}

/// Why an image could not be indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    NotFound,
    Unreadable,
    NotAnImage,
    TooLarge,
    /// The model fails on this image (found by trying it alone), or gives a non-finite vector.
    InferenceFailed,
    /// Attempts that never finished (the worker crashed on it, or kept failing) ran out.
    RetriesExhausted,
    /// The collection it was queued for was deleted, or holds vectors of another size.
    CollectionUnavailable,
    /// Its URL could not be fetched (refused address, error status, too large, timeout).
    DownloadFailed,
    /// The model its collection is bound to is not installed on the worker, or fails to load.
    ModelUnavailable,
}

impl FailureKind {
    /// Same spelling as the wire format (`snake_case`): the stable codes clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::NotFound => "not_found",
            FailureKind::Unreadable => "unreadable",
            FailureKind::NotAnImage => "not_an_image",
            FailureKind::TooLarge => "too_large",
            FailureKind::InferenceFailed => "inference_failed",
            FailureKind::RetriesExhausted => "retries_exhausted",
            FailureKind::CollectionUnavailable => "collection_unavailable",
            FailureKind::DownloadFailed => "download_failed",
            FailureKind::ModelUnavailable => "model_unavailable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Indexed,
    Failed { kind: FailureKind, reason: String },
}

/// Result of one task. Applying the same event twice must count once; the
/// (job_id, point_id) pair identifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "completion")]
pub struct CompletionEvent {
    pub job_id: String,
    pub point_id: Uuid,
    pub path: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Who produced it (consumer tag), for operators.
    pub worker: String,
    /// Carried over from the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// When the worker finished the image (ms since the Unix epoch), for the event lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    /// Indexed with the vector of a point with the same content (no decode, no inference).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_cache: bool,
    /// Where the image's bytes are in the object store (an upload, or a fetched URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_key: Option<String>,
}

/// A completion event the aggregator could not apply, however often it tried while the
/// job store was up: set aside on `<prefix>.events.dead` with the error, so the events
/// behind it (every other job) go on. An operator can read it in the management console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "dead_event")]
pub struct DeadEvent {
    pub event: CompletionEvent,
    /// Why applying it failed, the last time.
    pub error: String,
    /// How many times it was tried.
    pub attempts: u32,
}

/// Published on the progress fanout exchange after the aggregator applies events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "progress")]
pub struct ProgressEvent {
    pub job_id: String,
    pub status: String,
    pub total_images: u64,
    pub processed_images: u64,
    pub failed_images: u64,
    pub percent_complete: f64,
    /// The images of the job this update finished, for live watchers (`image_complete`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageDone>,
}

/// One image a progress update finished, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageDone {
    pub path: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn completion_event_wire_format_is_flat_and_tagged() {
        let ev = CompletionEvent {
            job_id: "idx_1".into(),
            point_id: Uuid::nil(),
            path: "/x.jpg".into(),
            outcome: Outcome::Failed { kind: FailureKind::NotFound, reason: "no such file".into() },
            worker: "w".into(),
            request_id: None,
            finished_at_ms: None,
            from_cache: false,
            object_key: None,
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["type"], "completion");
        assert_eq!(v["outcome"], "failed");
        assert_eq!(v["kind"], "not_found");
        let back: CompletionEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn priority_parses_only_known_values() {
        assert_eq!(Priority::parse("high"), Some(Priority::High));
        assert_eq!(Priority::parse("urgent"), None);
        assert!(Priority::High > Priority::Normal && Priority::Normal > Priority::Low);
    }
}
