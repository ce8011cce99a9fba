//! The messages a watcher receives, as seed 004 shapes them: `progress`, one
//! `image_complete` per finished image, and one `job_complete` at the end.

use chrono::Utc;
use serde::Serialize;

use imgidx_shared::jobs::JobRecord;
use imgidx_shared::messages::{ImageDone, Outcome, ProgressEvent};
use imgidx_shared::time::rfc3339;

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct LiveMessage {
    /// `progress`, `image_complete` or `job_complete`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "progress")]
    pub kind: &'static str,
    pub job_id: String,
    /// The job's status: queued, running, completed, failed, cancelled.
    pub status: String,
    /// Percent of the job's images finished (indexed or failed).
    pub progress: f64,
    /// Images indexed.
    pub completed: u64,
    pub failed: u64,
    pub total_images: u64,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageBody>,
}

/// The image an `image_complete` is about.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(as = LiveImage)]
pub struct ImageBody {
    pub path: String,
    pub original_filename: String,
    /// `completed` or `failed` (seed 004's words).
    #[schema(value_type = String, example = "completed")]
    pub status: &'static str,
    /// The failure code (`not_found`, …) when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Counters and status, from an update or from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct JobState {
    pub job_id: String,
    pub status: String,
    pub percent: f64,
    pub processed: u64,
    pub failed: u64,
    pub total: u64,
}

impl JobState {
    pub fn finished(&self) -> bool {
        !matches!(self.status.as_str(), "queued" | "running")
    }

    fn message(&self, kind: &'static str, image: Option<ImageBody>) -> LiveMessage {
        LiveMessage {
            kind,
            job_id: self.job_id.clone(),
            status: self.status.clone(),
            progress: self.percent,
            completed: self.processed,
            failed: self.failed,
            total_images: self.total,
            timestamp: rfc3339(Utc::now()),
            image,
        }
    }

    /// `progress`, or `job_complete` once the job has ended.
    pub fn summary(&self) -> LiveMessage {
        self.message(if self.finished() { "job_complete" } else { "progress" }, None)
    }
}

impl From<&JobRecord> for JobState {
    fn from(j: &JobRecord) -> Self {
        Self::from(&j.progress_event())
    }
}

impl From<&ProgressEvent> for JobState {
    fn from(e: &ProgressEvent) -> Self {
        Self {
            job_id: e.job_id.clone(),
            status: e.status.clone(),
            percent: e.percent_complete,
            processed: e.processed_images,
            failed: e.failed_images,
            total: e.total_images,
        }
    }
}

/// What one update tells a watcher: an `image_complete` per image it finished, then the
/// job's `progress` (or `job_complete`).
pub fn from_update(update: &ProgressEvent) -> Vec<LiveMessage> {
    let state = JobState::from(update);
    let mut out: Vec<LiveMessage> =
        update.images.iter().map(|i| state.message("image_complete", Some(image_body(i)))).collect();
    out.push(state.summary());
    out
}

fn image_body(image: &ImageDone) -> ImageBody {
    let original_filename = image.path.rsplit('/').next().unwrap_or(&image.path).to_string();
    match &image.outcome {
        Outcome::Indexed => {
            ImageBody { path: image.path.clone(), original_filename, status: "completed", reason: None, error: None }
        }
        Outcome::Failed { kind, reason } => ImageBody {
            path: image.path.clone(),
            original_filename,
            status: "failed",
            reason: Some(kind.as_str()),
            error: Some(reason.clone()),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use imgidx_shared::messages::FailureKind;

    use super::*;

    #[test]
    fn an_update_becomes_one_message_per_image_then_the_summary() {
        let update = ProgressEvent {
            job_id: "idx_a".into(),
            status: "completed".into(),
            total_images: 2,
            processed_images: 1,
            failed_images: 1,
            percent_complete: 100.0,
            images: vec![
                ImageDone { path: "/p/a.jpg".into(), outcome: Outcome::Indexed },
                ImageDone {
                    path: "/p/b.jpg".into(),
                    outcome: Outcome::Failed { kind: FailureKind::NotFound, reason: "file not found".into() },
                },
            ],
        };
        let messages = from_update(&update);
        let kinds: Vec<&str> = messages.iter().map(|m| m.kind).collect();
        assert_eq!(kinds, ["image_complete", "image_complete", "job_complete"]);
        let json = serde_json::to_value(&messages[1]).unwrap();
        assert_eq!(json["image"]["original_filename"], "b.jpg");
        assert_eq!((json["image"]["status"].as_str(), json["image"]["reason"].as_str()), (Some("failed"), Some("not_found")));
        assert_eq!(json["image"]["error"], "file not found");
        assert_eq!((json["completed"].as_u64(), json["failed"].as_u64(), json["progress"].as_f64()), (Some(1), Some(1), Some(100.0)));
        assert!(serde_json::to_value(&messages[2]).unwrap().get("image").is_none());
    }
}
