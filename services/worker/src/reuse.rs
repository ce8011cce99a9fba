//! Content-hash reuse (seed 003's cache): a file whose bytes an indexed point of the same
//! collection and model already has takes that point's vector, without decode or
//! inference. Renames, moves and copies cost a read, not an embedding.

use std::sync::Arc;

use imgidx_shared::vectors::{Collections, Reusable, VectorStore};

use crate::inbox::Task;
use crate::model::WorkerModel;

/// Finds, per task, where a reusable vector could be.
#[derive(Clone)]
pub struct Reuser {
    pub collections: Arc<Collections>,
    /// The collection of tasks that name none.
    pub initial_collection: String,
}

impl Reuser {
    /// Where the task's image could find its vector made by `model` (only that model's
    /// vectors are reused); None when its collection cannot be opened (the finishing
    /// stage reports that).
    pub async fn for_task(&self, task: &Task, model: &WorkerModel) -> Option<Reuse> {
        let collection = task.message.collection.as_deref().unwrap_or(&self.initial_collection);
        let store = self.collections.open(collection, model.dim(), None).await.ok()?;
        Some(Reuse { store, model: model.name().to_owned() })
    }
}

/// One collection's reusable vectors, for one model.
#[derive(Clone)]
pub struct Reuse {
    store: Arc<dyn VectorStore>,
    model: String,
}

impl Reuse {
    /// A point's vector for these bytes; None when there is none, or the lookup failed
    /// (the image is then embedded: a lookup never fails an image).
    pub async fn lookup(&self, sha256: &str) -> Option<Reusable> {
        match self.store.reusable(sha256, &self.model).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(error = %e, "content-hash lookup failed; embedding the image");
                None
            }
        }
    }
}
