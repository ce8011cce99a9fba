//! Stage 2: embed a prepared batch, upsert it durably, publish one completion event
//! per image, and only then acknowledge. Any transient failure returns the whole
//! batch to the queue; redelivery re-upserts the same point ids, so nothing is lost
//! or duplicated.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;

use imgidx_shared::broker::{Broker, BrokerError};
use imgidx_shared::embed::{EmbedError, VisionEncoder};
use imgidx_shared::messages::{CompletionEvent, Outcome};
use imgidx_shared::time::{from_unix_nanos, rfc3339};
use imgidx_shared::vectors::{ImagePayload, Point, VectorStore, VectorStoreError};

use crate::prepare::{Decoded, Prepared};

#[derive(Debug, thiserror::Error)]
pub enum TransientError {
    #[error("inference failed: {0}")]
    Embed(#[from] EmbedError),
    #[error("upsert failed: {0}")]
    Vectors(#[from] VectorStoreError),
    #[error("publishing events failed: {0}")]
    Broker(#[from] BrokerError),
    #[error("inference task failed: {0}")]
    Join(String),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub indexed: u64,
    pub failed: u64,
}

pub struct Finisher {
    pub broker: Arc<dyn Broker>,
    pub vectors: Arc<dyn VectorStore>,
    pub encoder: Arc<VisionEncoder>,
    /// Consumer tag, recorded in events.
    pub worker: String,
}

impl Finisher {
    pub async fn finish(&self, batch: Vec<Prepared>) -> Result<Counts, TransientError> {
        match self.record(&batch).await {
            Ok((counts, events_len)) => {
                for item in batch {
                    // An ack lost here only means a redelivery, which is idempotent.
                    if let Err(e) = item.task.ack().await {
                        tracing::warn!(error = %e, "ack failed; the task will be redelivered");
                    }
                }
                tracing::debug!(worker = %self.worker, indexed = counts.indexed, failed = counts.failed, events_len, "batch done");
                Ok(counts)
            }
            Err(e) => {
                for item in batch {
                    if let Err(e) = item.task.retry().await {
                        tracing::warn!(error = %e, "requeue failed; the broker redelivers on channel close");
                    }
                }
                Err(e)
            }
        }
    }

    /// Everything that must be durable before the acks.
    async fn record(&self, batch: &[Prepared]) -> Result<(Counts, usize), TransientError> {
        let decoded: Vec<(&Prepared, &Decoded)> =
            batch.iter().filter_map(|p| p.result.as_ref().ok().map(|d| (p, d))).collect();
        if !decoded.is_empty() {
            let vectors = self.embed(&decoded).await?;
            let indexed_at = rfc3339(Utc::now());
            let model = self.encoder.manifest().name.clone();
            let points = decoded
                .iter()
                .zip(vectors)
                .map(|((p, d), vector)| Point {
                    id: p.task.message.point_id,
                    vector,
                    payload: payload(p, d, &model, &indexed_at),
                })
                .collect();
            self.vectors.upsert(points).await?;
        }
        let events: Vec<CompletionEvent> = batch.iter().map(|p| self.event(p)).collect();
        self.broker.publish_events(&events).await?;
        let counts = Counts { indexed: decoded.len() as u64, failed: (batch.len() - decoded.len()) as u64 };
        Ok((counts, events.len()))
    }

    async fn embed(&self, decoded: &[(&Prepared, &Decoded)]) -> Result<Vec<Vec<f32>>, TransientError> {
        let per_image = decoded.first().map(|(_, d)| d.image.tensor.len()).unwrap_or(0);
        let mut pixels = Vec::with_capacity(per_image * decoded.len());
        for (_, d) in decoded {
            pixels.extend_from_slice(&d.image.tensor);
        }
        let n = decoded.len();
        let encoder = self.encoder.clone();
        tokio::task::spawn_blocking(move || encoder.embed(&pixels, n))
            .await
            .map_err(|e| TransientError::Join(e.to_string()))?
            .map_err(TransientError::from)
    }

    fn event(&self, p: &Prepared) -> CompletionEvent {
        let outcome = match &p.result {
            Ok(_) => Outcome::Indexed,
            Err(e) => Outcome::Failed { kind: e.kind(), reason: e.to_string() },
        };
        let task = &p.task.message;
        CompletionEvent {
            job_id: task.job_id.clone(),
            point_id: task.point_id,
            path: task.path.clone(),
            outcome,
            worker: self.worker.clone(),
        }
    }
}

fn payload(p: &Prepared, d: &Decoded, model: &str, indexed_at: &str) -> ImagePayload {
    let task = &p.task.message;
    ImagePayload {
        file_name: Path::new(&task.path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        path: task.path.clone(),
        size: d.stamp.size,
        mtime: rfc3339(from_unix_nanos(d.stamp.mtime_ns)),
        mtime_ns: d.stamp.mtime_ns,
        width: d.image.width,
        height: d.image.height,
        format: d.image.format.to_string(),
        model: model.to_string(),
        indexed_at: indexed_at.to_string(),
        job_id: task.job_id.clone(),
    }
}
