//! Stage 1: read, decode and preprocess a batch on a bounded CPU pool.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Semaphore;

use imgidx_shared::embed::{DecodeError, Preprocessed, Preprocessor};
use imgidx_shared::files::ReadRefusal;
use imgidx_shared::messages::{FailureKind, FileStamp};

use crate::file_retry::FileRetry;
use crate::metrics::{Stage, WorkerMetrics};
use crate::inbox::Task;

/// A decoded image ready for the encoder, with what its payload needs.
pub struct Decoded {
    pub image: Preprocessed,
    pub stamp: FileStamp,
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
}

impl Prepared {
    /// An image given up without trying it again.
    pub fn exhausted(task: Task, attempts: u32) -> Self {
        let reason = format!(
            "gave up after {attempts} attempts that did not finish (the worker stopped or crashed while working on this image)"
        );
        Self { task, result: Err(Failure::new(FailureKind::RetriesExhausted, &reason)) }
    }
}

/// Preprocess every task of a batch in parallel, at most `pool` permits at once
/// (shared by all batches of this worker, so decoding never oversubscribes the CPU).
/// A file that may come back is tried again within `retry`'s budget; None when the
/// worker shuts down meanwhile (the batch is then left to the broker, unsettled).
pub async fn prepare_batch(
    tasks: Vec<Task>,
    preprocessor: Arc<Preprocessor>,
    pool: Arc<Semaphore>,
    retry: &FileRetry,
    metrics: &WorkerMetrics,
) -> Option<Vec<Prepared>> {
    let handles: Vec<_> = tasks
        .iter()
        .map(|task| {
            let attempt = Attempt::new(preprocessor.clone(), pool.clone(), task.message.path.clone())
                .measured(metrics.clone());
            tokio::spawn(retry.clone().read_patiently(attempt))
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    let mut stopped = false;
    for (task, handle) in tasks.into_iter().zip(handles) {
        let result = match handle.await {
            Ok(Some(r)) => r,
            Ok(None) => {
                stopped = true;
                continue;
            }
            Err(_) => Err(Failure::decoder_panicked()),
        };
        out.push(Prepared { task, result });
    }
    retry.settled();
    (!stopped).then_some(out)
}

/// One try at reading and decoding one file.
pub struct Attempt {
    preprocessor: Arc<Preprocessor>,
    pool: Arc<Semaphore>,
    path: String,
    metrics: WorkerMetrics,
}

/// What one try gave.
pub enum Tried {
    Done(Result<Decoded, Failure>),
    /// Not read, for a reason that may pass.
    Again(ReadRefusal),
}

impl Attempt {
    pub fn new(preprocessor: Arc<Preprocessor>, pool: Arc<Semaphore>, path: String) -> Self {
        Self { preprocessor, pool, path, metrics: WorkerMetrics::default() }
    }

    /// Counts its read and decode times in `metrics`.
    pub fn measured(self, metrics: WorkerMetrics) -> Self {
        Self { metrics, ..self }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub async fn run(&self) -> Tried {
        // Held until the blocking decode finishes; the semaphore is never closed.
        let _permit = self.pool.clone().acquire_owned().await.ok();
        let (preprocessor, path, metrics) = (self.preprocessor.clone(), self.path.clone(), self.metrics.clone());
        match tokio::task::spawn_blocking(move || decode(&preprocessor, Path::new(&path), &metrics)).await {
            Ok(tried) => tried,
            Err(_) => Tried::Done(Err(Failure::decoder_panicked())),
        }
    }
}

/// The stamp comes from the `fstat` of the opened file, so it describes the bytes read.
/// Only regular files are read (`imgidx_shared::files`): a FIFO or device is reported
/// `not_an_image` at once instead of blocking a decode thread.
fn decode(preprocessor: &Preprocessor, path: &Path, metrics: &WorkerMetrics) -> Tried {
    let file = match metrics.time(Stage::Read, || preprocessor.read_file(path)) {
        Ok(file) => file,
        Err(why) if why.is_transient() => return Tried::Again(why),
        Err(why) => return Tried::Done(Err(Failure::from(DecodeError::from(why)))),
    };
    let decoded = metrics.time(Stage::Decode, || preprocessor.load_bytes(&file.bytes)).map(|image| Decoded { image, stamp: FileStamp::from_metadata(&file.meta) });
    Tried::Done(decoded.map_err(Failure::from))
}
