//! `WS /api/v1/batch/{job_id}/ws` (seed 004): a batch's progress live. The job's live
//! messages (`crate::live`) told in the batch's terms: seed 004's status words, the
//! counts over the images of the request, and each `image_complete` naming the image by
//! its index (an image sent twice is announced twice, once per index).

use std::collections::HashMap;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::Utc;
use serde::Serialize;
use tokio::sync::mpsc;

use imgidx_shared::jobs::{BatchImageRecord, JobStatus};
use imgidx_shared::time::rfc3339;

use super::batch_status::{batch_status_word, tally, BatchError, BatchImageBody};
use super::live::{serve_socket, start};
use crate::error::ApiError;
use crate::live::LiveMessage;
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchMessage {
    /// `progress`, `image_complete` or `job_complete`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "image_complete")]
    kind: &'static str,
    job_id: String,
    /// `pending`, `processing`, `completed`, `failed` or `cancelled`.
    #[schema(value_type = String, example = "processing")]
    status: &'static str,
    progress: f64,
    completed: usize,
    failed: usize,
    total_images: usize,
    /// With `image_complete`: the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<BatchImageBody>,
    timestamp: String,
}

/// A batch's progress live, over a WebSocket (seed 004).
#[utoipa::path(
    get,
    path = "/api/v1/batch/{job_id}/ws",
    tag = "batch",
    params(("job_id" = String, Path)),
    responses(
        (status = 101, description = "A WebSocket of `BatchMessage` texts: the current state first, one `image_complete` per image as it finishes, `progress` after each batch of work, one `job_complete`, then a close. Pings every 20 s; a client silent for 60 s is closed."),
        (status = 400, description = "`bad_request`: not a WebSocket upgrade request", body = BatchError),
        (status = 404, description = "`job_not_found`: no batch job has this id", body = BatchError),
        (status = 426, description = "`bad_request`: the connection cannot be upgraded", body = BatchError),
    )
)]
pub async fn batch_ws(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Some(records) = state.deps.jobs.batch_images(&job_id).await? else {
        return Err(ApiError::JobNotFound(job_id));
    };
    let mut view = View::of(&records);
    let mut live = start(&state, job_id.clone()).await?;
    let (tx, rx) = mpsc::channel(64);
    let jobs = state.deps.jobs.clone();
    tokio::spawn(async move {
        while let Some(message) = live.recv().await {
            if message.kind == "job_complete" {
                // The end from the store itself, whatever updates were missed on the way.
                if let Ok(Some(records)) = jobs.batch_images(&job_id).await {
                    view = View::of(&records);
                }
            }
            for out in view.tell(&message) {
                if tx.send(out).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(upgrade.on_upgrade(move |socket| serve_socket(socket, rx)))
}

/// The batch's images as a watcher last heard of them.
struct View {
    images: Vec<BatchImageBody>,
    /// Item path → the indexes of the images it is.
    by_path: HashMap<String, Vec<usize>>,
}

impl View {
    fn of(records: &[BatchImageRecord]) -> Self {
        let mut by_path: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            by_path.entry(r.path.clone()).or_default().push(i);
        }
        Self { images: records.iter().map(BatchImageBody::of).collect(), by_path }
    }

    /// One live message of the job, in the batch's terms.
    fn tell(&mut self, message: &LiveMessage) -> Vec<BatchMessage> {
        let status = JobStatus::parse(&message.status).map_or("processing", batch_status_word);
        let Some(done) = message.image.as_ref().filter(|_| message.kind == "image_complete") else {
            return vec![self.message(message, status, None)];
        };
        let indexes = self.by_path.get(&done.path).cloned().unwrap_or_default();
        let now = rfc3339(Utc::now());
        indexes
            .into_iter()
            .map(|i| {
                let image = &mut self.images[i];
                image.status = done.status;
                image.error = done.reason.map(|code| format!("{code}: {}", done.error.as_deref().unwrap_or_default()));
                image.end_time.get_or_insert_with(|| now.clone());
                let image = image.clone();
                self.message(message, status, Some(image))
            })
            .collect()
    }

    fn message(&self, from: &LiveMessage, status: &'static str, image: Option<BatchImageBody>) -> BatchMessage {
        let (completed, failed, progress) = tally(&self.images);
        BatchMessage {
            kind: from.kind,
            job_id: from.job_id.clone(),
            status,
            progress,
            completed,
            failed,
            total_images: self.images.len(),
            image,
            timestamp: from.timestamp.clone(),
        }
    }
}
