//! Which collection a request works on: the one it names, else the selected one; checked
//! to hold vectors of a model this server serves (its own, or one installed in
//! `model.models_dir`), with its store opened.

use std::sync::Arc;

use imgidx_shared::collections::{name_of, CollectionRecord};
use imgidx_shared::jobs::JobStoreError;
use imgidx_shared::vectors::{VectorStore, VectorStoreError};

use crate::error::ApiError;
use crate::state::ApiDeps;

/// A collection a request may index into and search.
#[derive(Clone)]
pub struct Target {
    pub record: CollectionRecord,
    /// The physical collection written and read: the record's current one, or for a job
    /// the one it was created for.
    pub physical: String,
    pub store: Arc<dyn VectorStore>,
}

/// Why a job's collection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum JobTargetError {
    #[error(transparent)]
    Jobs(#[from] JobStoreError),
    #[error(transparent)]
    Vectors(#[from] VectorStoreError),
    #[error("collection {0} is no longer in the catalog")]
    Gone(String),
}

impl From<JobTargetError> for ApiError {
    fn from(e: JobTargetError) -> Self {
        match e {
            JobTargetError::Gone(name) => ApiError::CollectionNotFound(name),
            JobTargetError::Jobs(e) => e.into(),
            JobTargetError::Vectors(e) => e.into(),
        }
    }
}

impl Target {
    /// The request's collection (`requested`, else the selected one) to index into (or
    /// change): its model must be served here, and no model switch may be filling its
    /// next generation (what is indexed now would be missing from it).
    pub async fn resolve(deps: &ApiDeps, requested: Option<&str>) -> Result<Self, ApiError> {
        let target = Self::searchable(deps, requested).await?;
        if let Some(next) = &target.record.next {
            return Err(ApiError::CollectionSwitching {
                collection: target.record.name,
                model: next.model.clone(),
                job_id: next.job_id.clone(),
            });
        }
        Ok(target)
    }

    /// The request's collection to search: its model must be served here.
    pub async fn searchable(deps: &ApiDeps, requested: Option<&str>) -> Result<Self, ApiError> {
        let target = Self::open(deps, requested).await?;
        if !serves(deps, &target.record.model, target.record.dim) {
            return Err(ApiError::CollectionModelMismatch {
                collection: target.record.name,
                bound: target.record.model,
                served: deps.model_name.clone(),
            });
        }
        Ok(target)
    }

    /// The request's collection whatever its model (for reading its figures).
    pub async fn open(deps: &ApiDeps, requested: Option<&str>) -> Result<Self, ApiError> {
        let record = record(deps, requested).await?;
        let store = deps.collections.open(&record.physical, record.dim, None).await?;
        Ok(Self { physical: record.physical.clone(), record, store })
    }

    /// The collection a job writes into, from the physical name it was created with
    /// (None: the initial collection, as for jobs from before collections).
    pub async fn of_job(deps: &ApiDeps, physical: Option<&str>) -> Result<Self, JobTargetError> {
        let physical = physical.unwrap_or(&deps.initial_collection);
        let name = name_of(physical);
        let record = deps.jobs.collection(name).await?.ok_or_else(|| JobTargetError::Gone(name.to_owned()))?;
        // The next generation of a model switch holds another size of vector.
        let dim = record.model_of(physical).map_or(record.dim, |(_, dim)| dim);
        let store = deps.collections.open(physical, dim, None).await?;
        Ok(Self { physical: physical.to_owned(), record, store })
    }

    /// The point of the image at `canonical_path` in this collection.
    pub fn point_id(&self, canonical_path: &str) -> uuid::Uuid {
        self.record.point_id(canonical_path)
    }
}

/// Whether this server embeds with `model` (making `dim`-dim vectors): its own model, or
/// one installed in `model.models_dir`.
pub fn serves(deps: &ApiDeps, model: &str, dim: usize) -> bool {
    if model == deps.model_name {
        return dim == deps.embedding_dim;
    }
    match deps.queries.as_ref().map(|q| q.manifest(model)) {
        Some(Ok(Some(m))) => m.embedding_dim == dim,
        _ => false,
    }
}

/// The catalog record of the request's collection (`requested`, else the selected one).
pub async fn record(deps: &ApiDeps, requested: Option<&str>) -> Result<CollectionRecord, ApiError> {
    let name = match requested.filter(|n| !n.is_empty()) {
        Some(name) => name.to_owned(),
        None => selected(deps).await?,
    };
    deps.jobs.collection(&name).await?.ok_or(ApiError::CollectionNotFound(name))
}

/// The selected collection's name; the initial one until another is selected.
pub async fn selected(deps: &ApiDeps) -> Result<String, ApiError> {
    Ok(deps.jobs.selected_collection().await?.unwrap_or_else(|| deps.initial_collection.clone()))
}
