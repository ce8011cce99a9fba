//! Stage 1: read, decode and preprocess a batch on a bounded CPU pool; an image whose
//! bytes are indexed already takes that vector instead (`reuse.rs`).

use std::sync::Arc;

use tokio::sync::Semaphore;

use imgidx_shared::embed::{DecodeError, Preprocessed, Preprocessor};
use imgidx_shared::files::ReadRefusal;
use imgidx_shared::messages::{FailureKind, FileStamp};
use imgidx_shared::objects::ObjectKey;
use imgidx_shared::sources::ImageSource;
use imgidx_shared::vectors::Reusable;

use crate::file_retry::FileRetry;
use crate::inbox::Task;
use crate::metrics::{Stage, WorkerMetrics};
use crate::model::{ModelChoice, WorkerModel};
use crate::read::{Read, Reader};
use crate::reuse::{Reuse, Reuser};

/// An image read and ready for its vector, with what its payload needs.
pub struct Decoded {
    pub content: Content,
    pub stamp: FileStamp,
    /// SHA-256 of the bytes read (hex).
    pub sha256: String,
    /// Where the bytes are in the object store, when they are there.
    pub object_key: Option<ObjectKey>,
}

pub enum Content {
    /// Pixels for the encoder.
    Pixels(Preprocessed),
    /// The vector of an indexed point with the same bytes and model.
    Reused(Reusable),
}

impl Decoded {
    pub fn pixels(&self) -> Option<&Preprocessed> {
        match &self.content {
            Content::Pixels(p) => Some(p),
            Content::Reused(_) => None,
        }
    }

    /// Width, height and format, as the payload records them.
    pub fn facts(&self) -> (u32, u32, String) {
        match &self.content {
            Content::Pixels(p) => (p.width, p.height, p.format.to_string()),
            Content::Reused(r) => (r.width, r.height, r.format.clone()),
        }
    }
}

/// Why an image gets no vector: reported in its completion event.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    pub reason: String,
}

impl Failure {
    /// NUL bytes (a decoder quoting a file's bytes) are dropped: PostgreSQL text cannot
    /// hold them, and the event would never apply.
    pub fn new(kind: FailureKind, reason: &str) -> Self {
        Self { kind, reason: reason.replace('\0', "") }
    }

    /// A panic inside the decoder is a property of this file: report it, don't crash.
    pub fn decoder_panicked() -> Self {
        Self::from(DecodeError::NotAnImage("the decoder failed on this file".into()))
    }
}

impl From<DecodeError> for Failure {
    fn from(e: DecodeError) -> Self {
        Self::new(e.kind(), &e.to_string())
    }
}

pub struct Prepared {
    pub task: Task,
    pub result: Result<Decoded, Failure>,
    /// The model the task names, loaded; None when the image failed before one was needed.
    pub model: Option<Arc<WorkerModel>>,
}

impl Prepared {
    /// An image given up without trying it again.
    pub fn exhausted(task: Task, attempts: u32) -> Self {
        let reason = format!(
            "gave up after {attempts} attempts that did not finish (the worker stopped or crashed while working on this image)"
        );
        Self { task, result: Err(Failure::new(FailureKind::RetriesExhausted, &reason)), model: None }
    }
}

/// Preprocess every task of a batch in parallel, at most `pool` permits at once
/// (shared by all batches of this worker, so decoding never oversubscribes the CPU).
/// A file that may come back is tried again within `retry`'s budget; None when the
/// worker shuts down meanwhile (the batch is then left to the broker, unsettled).
pub async fn prepare_batch(
    tasks: Vec<Task>,
    reader: &Reader,
    choice: &ModelChoice,
    pool: Arc<Semaphore>,
    retry: &FileRetry,
    reuser: Option<&Reuser>,
    metrics: &WorkerMetrics,
) -> Option<Vec<Prepared>> {
    let chosen = choice.for_tasks(&tasks, &retry.hold).await?;
    let mut handles = Vec::with_capacity(tasks.len());
    for task in &tasks {
        let model = match chosen.get(choice.collection_of(task)) {
            Some(Ok(model)) => Arc::clone(model),
            Some(Err(failure)) => {
                handles.push(Err(failure.clone()));
                continue;
            }
            None => {
                handles.push(Err(Failure::new(FailureKind::CollectionUnavailable, "no model was chosen for its collection")));
                continue;
            }
        };
        let reuse = match reuser {
            Some(r) => r.for_task(task, &model).await,
            None => None,
        };
        let attempt = Attempt::new(reader.clone(), pool.clone(), task.message.path.clone())
            .measured(metrics.clone())
            .decoding_with(model.preprocessor.clone())
            .kept_in(task.message.object_key.as_deref().and_then(ObjectKey::parse))
            .reusing(reuse);
        handles.push(Ok((model, tokio::spawn(retry.clone().read_patiently(attempt)))));
    }
    let mut out = Vec::with_capacity(tasks.len());
    let mut stopped = false;
    for (task, handle) in tasks.into_iter().zip(handles) {
        let (result, model) = match handle {
            Err(failure) => (Err(failure), None),
            Ok((model, handle)) => match handle.await {
                Ok(Some(r)) => (r, Some(model)),
                Ok(None) => {
                    stopped = true;
                    continue;
                }
                Err(_) => (Err(Failure::decoder_panicked()), Some(model)),
            },
        };
        out.push(Prepared { task, result, model });
    }
    retry.settled();
    (!stopped).then_some(out)
}

/// One try at reading and decoding one file.
pub struct Attempt {
    reader: Reader,
    /// The task's model's; the reader's (the worker's own model) unless told otherwise.
    preprocessor: Arc<Preprocessor>,
    pool: Arc<Semaphore>,
    path: String,
    /// Where the bytes of a URL image were kept when it was fetched: read there instead.
    kept: Option<ObjectKey>,
    metrics: WorkerMetrics,
    reuse: Option<Reuse>,
}

/// What one try gave.
pub enum Tried {
    Done(Result<Decoded, Failure>),
    /// Not read, for a reason that may pass.
    Again(ReadRefusal),
}

impl Attempt {
    pub fn new(reader: Reader, pool: Arc<Semaphore>, path: String) -> Self {
        let preprocessor = reader.preprocessor.clone();
        Self { reader, preprocessor, pool, path, kept: None, metrics: WorkerMetrics::default(), reuse: None }
    }

    /// Decodes for another model's input size and normalisation.
    pub fn decoding_with(self, preprocessor: Arc<Preprocessor>) -> Self {
        Self { preprocessor, ..self }
    }

    /// Counts its read and decode times in `metrics`.
    pub fn measured(self, metrics: WorkerMetrics) -> Self {
        Self { metrics, ..self }
    }

    /// Reads a URL image from the object its bytes were kept in, rather than fetching it again.
    pub fn kept_in(self, kept: Option<ObjectKey>) -> Self {
        Self { kept, ..self }
    }

    /// Looks for an indexed point with the same bytes before decoding.
    pub fn reusing(self, reuse: Option<Reuse>) -> Self {
        Self { reuse, ..self }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub async fn run(&self) -> Tried {
        // The pool bounds the blocking work: disk reads and decodes. An object or a URL
        // is awaited without a permit, so a slow server never keeps the CPUs idle.
        // The semaphore is never closed.
        let reads_disk = matches!(ImageSource::parse(&self.path), Some(ImageSource::File(_)));
        let mut permit = if reads_disk { self.pool.clone().acquire_owned().await.ok() } else { None };
        let read = match self.reader.read(&self.path, self.kept.as_ref(), &self.metrics).await {
            Ok(read) => read,
            Err(tried) => return tried,
        };
        if let Some(reuse) = &self.reuse {
            if let Some(found) = reuse.lookup(&read.sha256).await {
                let Read { stamp, sha256, object_key, .. } = read;
                return Tried::Done(Ok(Decoded { content: Content::Reused(found), stamp, sha256, object_key }));
            }
        }
        if permit.is_none() {
            permit = self.pool.clone().acquire_owned().await.ok();
        }
        let _permit = permit;
        let (preprocessor, metrics) = (self.preprocessor.clone(), self.metrics.clone());
        match tokio::task::spawn_blocking(move || decode(&preprocessor, read, &metrics)).await {
            Ok(tried) => tried,
            Err(_) => Tried::Done(Err(Failure::decoder_panicked())),
        }
    }
}

fn decode(preprocessor: &Preprocessor, read: Read, metrics: &WorkerMetrics) -> Tried {
    let Read { bytes, stamp, sha256, object_key } = read;
    let decoded = metrics
        .time(Stage::Decode, || preprocessor.load_bytes(&bytes))
        .map(|image| Decoded { content: Content::Pixels(image), stamp, sha256, object_key });
    Tried::Done(decoded.map_err(Failure::from))
}
