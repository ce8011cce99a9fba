//! Stage 1: read, decode and preprocess a batch on a bounded CPU pool.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Semaphore;

use imgidx_shared::embed::{DecodeError, Preprocessed, Preprocessor};
use imgidx_shared::messages::{FailureKind, FileStamp};

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
pub async fn prepare_batch(tasks: Vec<Task>, preprocessor: Arc<Preprocessor>, pool: Arc<Semaphore>) -> Vec<Prepared> {
    let handles: Vec<_> = tasks
        .iter()
        .map(|task| {
            let preprocessor = preprocessor.clone();
            let pool = pool.clone();
            let path = task.message.path.clone();
            tokio::spawn(async move {
                // Held until the blocking decode finishes; the semaphore is never closed.
                let _permit = pool.acquire_owned().await.ok();
                tokio::task::spawn_blocking(move || decode(&preprocessor, Path::new(&path))).await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for (task, handle) in tasks.into_iter().zip(handles) {
        let result = match handle.await {
            Ok(Ok(r)) => r.map_err(Failure::from),
            // A panic inside the decoder is a property of this file: report it, don't crash.
            _ => Err(Failure::from(DecodeError::NotAnImage("the decoder failed on this file".into()))),
        };
        out.push(Prepared { task, result });
    }
    out
}

/// The stamp comes from the `fstat` of the opened file, so it describes the bytes read.
/// Only regular files are read (`imgidx_shared::files`): a FIFO or device is reported
/// `not_an_image` at once instead of blocking a decode thread.
fn decode(preprocessor: &Preprocessor, path: &Path) -> Result<Decoded, DecodeError> {
    let file = preprocessor.read_path(path)?;
    let image = preprocessor.load_bytes(&file.bytes)?;
    Ok(Decoded { image, stamp: FileStamp::from_metadata(&file.meta) })
}
