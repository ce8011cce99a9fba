//! Vector store: where embeddings and their readable payloads live.
//! Production: Qdrant server over gRPC (`qdrant.rs`). Embedded: Qdrant Edge in-process (`edge.rs`).

mod collections;
#[cfg(test)]
mod conformance;
mod edge;
mod edge_index;
mod payload;
mod qdrant;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use collections::{CollectionBackend, Collections, EdgeCollections, QdrantCollections};
pub use edge::{EdgeStore, IndexStatus};
pub use edge_index::EdgeTuning;
pub use qdrant::QdrantStore;

use crate::collections::Distance;
use crate::config::Settings;
use crate::messages::FileStamp;

#[derive(Debug, thiserror::Error)]
pub enum VectorStoreError {
    /// The store could not be reached or refused the request; worth retrying.
    #[error("vector store unavailable: {0}")]
    Unavailable(String),
    /// The collection exists with an incompatible shape (e.g. another embedding dim).
    #[error("vector store collection mismatch: {0}")]
    Mismatch(String),
    /// The collection does not exist (it was deleted, or never made).
    #[error("vector store collection not found: {0}")]
    NotFound(String),
    #[error("vector store error: {0}")]
    Other(String),
}

/// What a person sees on a point in the Qdrant dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImagePayload {
    pub path: String,
    pub file_name: String,
    pub size: u64,
    /// Modification time, RFC 3339 (readable); `mtime_ns` is the exact value used for change detection.
    pub mtime: String,
    pub mtime_ns: i64,
    pub width: u32,
    pub height: u32,
    /// Decoded format, lowercase (`jpeg`, `png`, ...).
    pub format: String,
    pub model: String,
    /// RFC 3339.
    pub indexed_at: String,
    pub job_id: String,
    /// SHA-256 of the file's bytes (hex): another file with the same bytes reuses this
    /// point's vector. Empty on points from before content hashes, and after a cache clear.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// Where an uploaded image's bytes are in the object store (`ab/ab12…`); empty for
    /// files on the server's disk.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub object_key: String,
    /// Labels of the tag vocabulary nearest the image, best first (`embed::tags`); empty
    /// when the model has no text encoder or tags are off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl ImagePayload {
    pub fn stamp(&self) -> FileStamp {
        FileStamp { size: self.size, mtime_ns: self.mtime_ns }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub id: Uuid,
    /// L2-normalised embedding.
    pub vector: Vec<f32>,
    pub payload: ImagePayload,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScoredImage {
    pub id: Uuid,
    /// Cosine similarity.
    pub score: f32,
    pub payload: ImagePayload,
}

/// Optional restrictions on a search, and the page of results wanted. Every restriction
/// is a filter the store applies while it searches (on indexed payload keys), never a
/// pass over the results afterwards, so a page is always full when enough images match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchFilter {
    /// Only images whose path starts with this.
    pub path_prefix: Option<String>,
    /// Only results scoring at least this.
    pub min_score: Option<f32>,
    /// Only images with every one of these tags.
    pub tags: Vec<String>,
    /// Only images in one of these formats (as `ImagePayload::format`: `jpeg`, `heic`, …).
    pub formats: Vec<String>,
    /// Only images at least this many pixels wide, and tall (after orientation).
    pub min_width: Option<u32>,
    pub min_height: Option<u32>,
    /// Only images whose file was modified in this range (`mtime_ns`).
    pub mtime_ns: Bounds<i64>,
    /// Only images indexed in this range (`indexed_at`).
    pub indexed_at: Bounds<DateTime<Utc>>,
    /// Results to skip, best first: the page after them (the search's `top_k` is its size).
    pub offset: usize,
}

/// A range with both ends included; either may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bounds<T> {
    pub from: Option<T>,
    pub to: Option<T>,
}

impl<T> Bounds<T> {
    pub fn is_open(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }
}

/// What a new point can take from an indexed one with the same content and model: no
/// decode, no inference (see [`VectorStore::reusable`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Reusable {
    pub vector: Vec<f32>,
    pub width: u32,
    pub height: u32,
    pub format: String,
}

/// A page of indexed paths (see [`VectorStore::paths_under`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PathPage {
    /// Point id and path, in point-id order.
    pub points: Vec<(Uuid, String)>,
    /// Pass as `from` for the next page; None when this page is the last.
    pub next: Option<Uuid>,
}

/// A page of whole points (see [`VectorStore::points_page`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PointPage {
    /// Vector and payload, in point-id order.
    pub points: Vec<Point>,
    /// Pass as `from` for the next page; None when this page is the last.
    pub next: Option<Uuid>,
}

#[async_trait]
pub trait VectorStore: Send + Sync {
    /// Create the collection (`dim`, `distance`) if missing; error if it exists with another shape.
    async fn ensure_shape(&self, dim: usize, distance: Distance) -> Result<(), VectorStoreError>;
    /// Uses the existing collection as it is, checking that it holds `dim`-dim vectors;
    /// [`VectorStoreError::NotFound`] when it does not exist. Creates nothing.
    async fn attach(&self, dim: usize) -> Result<(), VectorStoreError>;
    /// [`ensure_shape`](Self::ensure_shape) with cosine distance.
    async fn ensure_collection(&self, dim: usize) -> Result<(), VectorStoreError> {
        self.ensure_shape(dim, Distance::Cosine).await
    }
    /// Insert or replace points, returning only once the write is durable.
    async fn upsert(&self, points: Vec<Point>) -> Result<(), VectorStoreError>;
    /// File stamps of the given points that exist (missing ids are absent from the map).
    async fn stamps(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, FileStamp>, VectorStoreError>;
    /// The stored vector of one point, if it exists (a query by an indexed image's path
    /// searches with it instead of reading the file again).
    async fn vector(&self, id: Uuid) -> Result<Option<Vec<f32>>, VectorStoreError>;
    /// The vector (and image facts) of some point whose content hash is `sha256` and
    /// whose vector was made by `model`; None when there is none.
    async fn reusable(&self, sha256: &str, model: &str) -> Result<Option<Reusable>, VectorStoreError>;
    /// Removes every point's content hash, so nothing is reused until images are embedded
    /// again (a cache clear). Points and vectors stay.
    async fn forget_hashes(&self) -> Result<(), VectorStoreError>;
    /// Nearest images that pass `filter`, best first, scored by cosine similarity whatever
    /// the distance: at most `top_k`, after the best `filter.offset`.
    async fn search(
        &self,
        vector: &[f32],
        top_k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<ScoredImage>, VectorStoreError>;
    /// At most `limit` points whose path lies under the directory `dir` (at any depth;
    /// `/` means every point), starting at the point `from`, in point-id order: pages
    /// that read only the path, for pruning points whose file is gone.
    async fn paths_under(&self, dir: &str, from: Option<Uuid>, limit: usize) -> Result<PathPage, VectorStoreError>;
    /// At most `limit` whole points (vector and payload) of the collection, starting at
    /// the point `from`, in point-id order: how a duplicate analysis reads everything.
    async fn points_page(&self, from: Option<Uuid>, limit: usize) -> Result<PointPage, VectorStoreError>;
    /// The stored points among `ids`, whole (ids not stored are absent), in no set order.
    async fn points(&self, ids: &[Uuid]) -> Result<Vec<Point>, VectorStoreError>;
    /// Deletes the points (ids not stored are ignored), durably once it returns.
    async fn delete(&self, ids: &[Uuid]) -> Result<(), VectorStoreError>;
    /// Number of points in the collection (exact).
    async fn count(&self) -> Result<u64, VectorStoreError>;
    /// Bytes the index takes (on disk for the embedded store, an estimate from the server otherwise).
    async fn size_bytes(&self) -> Result<u64, VectorStoreError>;
    /// Whether the store answers.
    async fn healthy(&self) -> bool;
}

/// The collections the configuration asks for: on a Qdrant server when `vectors.qdrant_url`
/// is set, else embedded Edge shards under the data directory.
pub fn collections(settings: &Settings) -> Result<Arc<Collections>, VectorStoreError> {
    let backend: Box<dyn CollectionBackend> = match &settings.vectors.qdrant_url {
        Some(url) => Box::new(QdrantCollections::connect(url, settings.vectors.qdrant_api_key.as_deref())?),
        None => Box::new(
            EdgeCollections::new(&settings.vectors.collection, settings.edge_path(), settings.edge_collections_dir())
                .tuned(EdgeTuning::from_settings(&settings.vectors)),
        ),
    };
    Ok(Arc::new(Collections::new(backend)))
}
