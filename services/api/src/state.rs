//! What every handler shares.

use imgidx_shared::health::HealthBoard;
use std::path::PathBuf;
use std::sync::Arc;

use imgidx_shared::broker::Broker;
use imgidx_shared::config::{ApiSettings, IngestSettings};
use imgidx_shared::jobs::JobStore;
use imgidx_shared::metrics::MetricsRegistry;
use imgidx_shared::embed::Models;
use imgidx_shared::objects::Objects;
use imgidx_shared::vectors::Collections;

use crate::curation::Analyses;
use crate::query_engine::QueryEngine;
use crate::relevance::Backgrounds;
use crate::live::LiveHub;
use crate::metrics::ApiMetrics;
use crate::scan::Scanner;
use crate::webhooks::Webhooks;

/// Backends the API talks to; built from configuration by `run`, or handed in by
/// `serve` (tests and `imgidx serve` share one embedded vector store across services).
#[derive(Clone)]
pub struct ApiDeps {
    pub jobs: Arc<dyn JobStore>,
    /// The vector stores of every collection (see `target.rs` for which one a request uses).
    pub collections: Arc<Collections>,
    /// The collection a deployment starts with (`vectors.collection`): selected until
    /// another one is.
    pub initial_collection: String,
    pub broker: Arc<dyn Broker>,
    /// Model name and dimension reported by `/stats` (from the model manifest).
    pub model_name: String,
    pub embedding_dim: usize,
    /// Query embedding (text and image search) with each collection's model: this
    /// server's own and those installed in `model.models_dir`; None: search answers 503.
    pub queries: Option<Arc<Models<QueryEngine>>>,
    /// What other parts of this process (`serve`'s workers) report about themselves.
    pub health: HealthBoard,
    /// This process's metrics registry; `/metrics` shows it whole.
    pub metrics: MetricsRegistry,
    /// Where uploaded images go, and how large they may be.
    pub uploads: Uploads,
}

/// The object store uploads are kept in (workers read them from it) and the limits
/// on what one request may send.
#[derive(Clone, Debug)]
pub struct Uploads {
    pub objects: Objects,
    pub limits: IngestSettings,
}

impl Uploads {
    /// The store the settings name.
    pub fn from_settings(settings: &imgidx_shared::config::Settings) -> Result<Self, imgidx_shared::service::ServiceError> {
        let objects = Objects::open(settings).map_err(|e| imgidx_shared::service::ServiceError::Other(e.to_string()))?;
        Ok(Self { objects, limits: settings.ingest.clone() })
    }

    /// Stores bytes a client sent under their content hash; an unavailable store is 503.
    pub async fn store(&self, bytes: Vec<u8>) -> Result<imgidx_shared::objects::ObjectKey, crate::error::ApiError> {
        self.objects.put(bytes).await.map_err(|e| crate::error::ApiError::Objects(e.to_string()))
    }
}

#[derive(Clone)]
pub struct AppState {
    pub deps: ApiDeps,
    pub settings: Arc<ApiSettings>,
    /// `settings.allowed_roots`, canonicalized once.
    pub roots: Arc<Vec<PathBuf>>,
    /// Runs the directory walks of triggers.
    pub scanner: Arc<Scanner>,
    /// Relays live progress to watchers.
    pub live: LiveHub,
    pub metrics: ApiMetrics,
    /// Where jobs' ends are announced, and how deliveries are signed.
    pub webhooks: Arc<Webhooks>,
    /// Background samples for `relevance: "auto"`.
    pub backgrounds: Arc<Backgrounds>,
    /// Runs duplicate analyses.
    pub analyses: Arc<Analyses>,
}
