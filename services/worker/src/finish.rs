//! Stage 2: embed a prepared batch, upsert it durably, publish one completion event
//! per image, and only then acknowledge. A dependency that fails (vector store, broker,
//! the model runtime as a whole) is waited out with the batch held (`hold.rs`); a
//! failure that may be one image's fault is pinned on that image (`isolate.rs`).
//! A redelivery after a crash re-upserts the same point ids, so nothing is lost or
//! duplicated.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use imgidx_shared::broker::Broker;
use imgidx_shared::embed::{EmbedError, PixelBatch, VisionEncoder};
use imgidx_shared::messages::{CompletionEvent, FailureKind, Outcome};
use imgidx_shared::time::{from_unix_nanos, rfc3339};
use imgidx_shared::vectors::{Collections, ImagePayload, Point, VectorStore, VectorStoreError};

use crate::hold::Hold;
use crate::isolate::{isolate, Leaf};
use crate::metrics::{Stage, WorkerMetrics};
use crate::model::WorkerModel;
use crate::prepare::{Content, Decoded, Failure, Prepared};

/// A model and the batch's images it embeds (index in the batch, image).
type ModelImages<'a> = (Arc<WorkerModel>, Vec<(usize, &'a Decoded)>);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub indexed: u64,
    pub failed: u64,
}

pub struct Finisher {
    pub broker: Arc<dyn Broker>,
    /// Each task names the physical collection it goes into.
    pub collections: Arc<Collections>,
    /// The collection of tasks that name none (queued before collections existed).
    pub initial_collection: String,
    pub hold: Hold,
    pub metrics: WorkerMetrics,
}

impl Finisher {
    /// Settles the batch; None when shutdown came while a dependency was down (the
    /// deliveries are then left unsettled, for the broker to hand out again).
    pub async fn finish(&self, batch: Vec<Prepared>) -> Option<Counts> {
        let mut outcomes: Vec<Result<(), Failure>> = batch.iter().map(|p| p.result.as_ref().map(|_| ()).map_err(Clone::clone)).collect();
        // Before inference: an image whose collection is gone is not worth embedding.
        let stores = self.stores(&batch, &outcomes).await?;
        for (i, p) in batch.iter().enumerate() {
            if let Some(Err(failure)) = stores.get(self.collection_of(p)) {
                if outcomes[i].is_ok() {
                    outcomes[i] = Err(failure.clone());
                }
            }
        }
        let ready: Vec<(usize, &Decoded)> = batch
            .iter()
            .enumerate()
            .filter(|(i, _)| outcomes[*i].is_ok())
            .filter_map(|(i, p)| p.result.as_ref().ok().map(|d| (i, d)))
            .collect();
        let indexed_at = rfc3339(Utc::now());
        let mut points: HashMap<&str, Vec<Point>> = HashMap::new();
        let mut from_cache = vec![false; batch.len()];
        // Images whose bytes are indexed already take that vector: no inference.
        for (i, d) in &ready {
            if let (Content::Reused(r), Some(model)) = (&d.content, &batch[*i].model) {
                let task = &batch[*i].task.message;
                let payload = tagged(model, payload(task, d, model.name(), &indexed_at), &r.vector);
                let point = Point { id: task.point_id, vector: r.vector.clone(), payload };
                points.entry(self.collection_of(&batch[*i])).or_default().push(point);
                from_cache[*i] = true;
            }
        }
        // One inference run per model the batch's images need (one, but for a model switch).
        let mut by_model: Vec<ModelImages> = Vec::new();
        for (i, d) in ready.into_iter().filter(|(_, d)| d.pixels().is_some()) {
            let Some(model) = &batch[i].model else { continue };
            match by_model.iter_mut().find(|(m, _)| Arc::ptr_eq(m, model)) {
                Some((_, images)) => images.push((i, d)),
                None => by_model.push((Arc::clone(model), vec![(i, d)])),
            }
        }
        for (model, decoded) in &by_model {
            let images: Vec<&Decoded> = decoded.iter().map(|(_, d)| *d).collect();
            let started = Instant::now();
            let vectors = self.hold.until_ok("inference", || embed(&model.encoder, &images)).await?;
            self.metrics.observe(Stage::Inference, started.elapsed());
            for ((i, d), vector) in decoded.iter().zip(vectors) {
                match vector {
                    Ok(vector) => {
                        let task = &batch[*i].task.message;
                        let payload = tagged(model, payload(task, d, model.name(), &indexed_at), &vector);
                        let point = Point { id: task.point_id, vector, payload };
                        points.entry(self.collection_of(&batch[*i])).or_default().push(point);
                    }
                    Err(failure) => outcomes[*i] = Err(failure),
                }
            }
        }
        let counts = Counts {
            indexed: points.values().map(|p| p.len() as u64).sum(),
            failed: outcomes.iter().filter(|o| o.is_err()).count() as u64,
        };
        if !points.is_empty() {
            let started = Instant::now();
            for (collection, points) in points {
                let Some(Ok(store)) = stores.get(collection) else { continue };
                self.hold.until_ok("upsert into the vector store", || store.upsert(points.clone())).await?;
            }
            self.metrics.observe(Stage::Upsert, started.elapsed());
        }
        let started = Instant::now();
        let events: Vec<CompletionEvent> =
            batch.iter().zip(outcomes).zip(from_cache).map(|((p, o), cached)| self.event(p, o, cached)).collect();
        self.hold.until_ok("publishing completion events", || self.broker.publish_events(&events)).await?;
        for item in batch {
            // An ack lost here only means a redelivery, which is idempotent.
            if let Err(e) = item.task.ack().await {
                tracing::warn!(error = %e, "ack failed; the task will be redelivered");
            }
        }
        self.metrics.observe(Stage::PublishAck, started.elapsed());
        tracing::debug!(worker = %self.hold.worker, indexed = counts.indexed, failed = counts.failed, "batch done");
        Some(counts)
    }

    fn collection_of<'a>(&'a self, p: &'a Prepared) -> &'a str {
        p.task.message.collection.as_deref().unwrap_or(&self.initial_collection)
    }

    /// The store of each collection the batch's images that are still going go into, or
    /// the failure of those images when it is gone or holds another size of vector.
    /// None when shutdown came while the vector store was down.
    async fn stores<'a>(
        &'a self,
        batch: &'a [Prepared],
        outcomes: &[Result<(), Failure>],
    ) -> Option<HashMap<&'a str, Result<Arc<dyn VectorStore>, Failure>>> {
        let mut stores = HashMap::new();
        for (p, outcome) in batch.iter().zip(outcomes) {
            let collection = self.collection_of(p);
            let Some(dim) = p.model.as_ref().map(|m| m.dim()) else { continue };
            if outcome.is_err() || stores.contains_key(collection) {
                continue;
            }
            let opened = self
                .hold
                .until_ok("opening the collection", || async {
                    match self.collections.open(collection, dim, None).await {
                        Ok(store) => Ok(Ok(store)),
                        Err(e @ (VectorStoreError::NotFound(_) | VectorStoreError::Mismatch(_))) => {
                            let reason = format!("collection {collection} cannot take this image: {e}");
                            Ok(Err(Failure::new(FailureKind::CollectionUnavailable, &reason)))
                        }
                        Err(e) => Err(e),
                    }
                })
                .await?;
            stores.insert(collection, opened);
        }
        Some(stores)
    }

    fn event(&self, p: &Prepared, outcome: Result<(), Failure>, from_cache: bool) -> CompletionEvent {
        let (outcome, from_cache) = match outcome {
            Ok(()) => (Outcome::Indexed, from_cache),
            Err(f) => (Outcome::Failed { kind: f.kind, reason: f.reason }, false),
        };
        let task = &p.task.message;
        tracing::debug!(
            worker = %self.hold.worker,
            request_id = task.request_id.as_deref().unwrap_or("-"),
            job_id = %task.job_id,
            path = %task.path,
            indexed = matches!(outcome, Outcome::Indexed),
            "image finished"
        );
        CompletionEvent {
            job_id: task.job_id.clone(),
            point_id: task.point_id,
            path: task.path.clone(),
            outcome,
            worker: self.hold.worker.clone(),
            request_id: task.request_id.clone(),
            finished_at_ms: Some(Utc::now().timestamp_millis()),
            from_cache,
            // Where an indexed image's bytes are kept (uploads, fetched URLs).
            object_key: p.result.as_ref().ok().and_then(|d| d.object_key.as_ref()).map(ToString::to_string),
        }
    }
}

/// One vector or one image's failure per image. Err only when the runtime fails
/// as a whole (it fails even on a blank image): then nothing is any image's fault.
async fn embed(encoder: &Arc<VisionEncoder>, images: &[&Decoded]) -> Result<Vec<Result<Vec<f32>, Failure>>, EmbedError> {
    let per_image = images.first().and_then(|d| d.pixels()).map(|p| p.tensor.len()).unwrap_or(0);
    let results = isolate(images.len(), |range| run(encoder, staged(encoder, &images[range]))).await;
    if results.iter().any(|r| matches!(r, Err(Leaf::Error(_)))) {
        // A run of one image failed: is it the image, or the runtime?
        let blank = encoder.batch(1).and_then(|mut b| b.push(&vec![0.0; per_image]).map(|()| b));
        run(encoder, blank).await?;
    }
    Ok(results
        .into_iter()
        .map(|r| {
            r.map_err(|leaf| {
                let reason = match leaf {
                    Leaf::Error(e) => format!("the model fails on this image: {e}"),
                    Leaf::NonFinite => "the model gives a non-finite vector for this image".to_string(),
                };
                Failure::new(FailureKind::InferenceFailed, &reason)
            })
        })
        .collect())
}

/// The images' pixels, written where the runtime reads them (pinned memory on CUDA).
fn staged(encoder: &VisionEncoder, images: &[&Decoded]) -> Result<PixelBatch, EmbedError> {
    let mut batch = encoder.batch(images.len())?;
    for p in images.iter().filter_map(|d| d.pixels()) {
        batch.push(&p.tensor)?;
    }
    Ok(batch)
}

async fn run(encoder: &Arc<VisionEncoder>, batch: Result<PixelBatch, EmbedError>) -> Result<Vec<Vec<f32>>, EmbedError> {
    let (encoder, batch) = (encoder.clone(), batch?);
    tokio::task::spawn_blocking(move || encoder.embed_batch(batch))
        .await
        .map_err(|e| EmbedError::Runtime(format!("inference task failed: {e}")))?
}

/// The payload with the model's tags for the vector (none when the model has no tagger).
fn tagged(model: &WorkerModel, mut payload: ImagePayload, vector: &[f32]) -> ImagePayload {
    if let Some(tagger) = &model.tagger {
        payload.tags = tagger.tag(vector);
    }
    payload
}

fn payload(task: &imgidx_shared::messages::ImageTask, d: &Decoded, model: &str, indexed_at: &str) -> ImagePayload {
    let (width, height, format) = d.facts();
    ImagePayload {
        file_name: Path::new(&task.path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        path: task.path.clone(),
        size: d.stamp.size,
        mtime: rfc3339(from_unix_nanos(d.stamp.mtime_ns)),
        mtime_ns: d.stamp.mtime_ns,
        width,
        height,
        format,
        model: model.to_string(),
        indexed_at: indexed_at.to_string(),
        job_id: task.job_id.clone(),
        sha256: d.sha256.clone(),
        object_key: d.object_key.as_ref().map(ToString::to_string).unwrap_or_default(),
        tags: Vec::new(),
    }
}
