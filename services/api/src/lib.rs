//! The HTTP API (seed 000's contract): accepts images to index, reports job
//! progress and index statistics. It records jobs, queues tasks, and answers
//! only once both are durable.

mod error;
mod paths;
mod query_engine;
mod routes;
mod state;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use query_engine::QueryEngine;
pub use routes::add_images::AddImagesResponse;
pub use state::ApiDeps;

use imgidx_shared::config::{ApiSettings, Settings};
use imgidx_shared::service::{self, ServiceError};
use imgidx_shared::shutdown::Shutdown;
use imgidx_shared::vectors;

use state::AppState;

/// Build the backends from configuration and serve until `shutdown`.
pub async fn run(settings: Settings, listener: TcpListener, shutdown: Shutdown) -> Result<(), ServiceError> {
    // Search embeds queries with the model's encoders (text and vision).
    let (dir, model, limits) = (settings.model.dir.clone(), settings.model.clone(), settings.worker.clone());
    let budget = imgidx_shared::embed::DecodeBudget::from_settings(&settings.worker);
    let engine = tokio::task::spawn_blocking(move || QueryEngine::load(&dir, &model, &limits, None, budget))
        .await
        .map_err(|e| ServiceError::Other(format!("loading the query encoders: {e}")))??;
    let manifest = engine.manifest().clone();
    let jobs = service::job_store(&settings).await?;
    let vectors = vectors::open(&settings, manifest.embedding_dim).await?;
    let broker = service::broker(&settings, "api").await?;
    let deps = ApiDeps {
        jobs,
        vectors,
        broker: broker.clone(),
        model_name: manifest.name.clone(),
        embedding_dim: manifest.embedding_dim,
        query: Some(Arc::new(engine)),
    };
    let result = serve(&settings.api, deps, listener, shutdown).await;
    broker.close().await;
    result
}

/// Serve with backends built elsewhere.
pub async fn serve(
    settings: &ApiSettings,
    deps: ApiDeps,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), ServiceError> {
    let roots = paths::canonical_roots(&settings.allowed_roots)?;
    let state = AppState { deps, settings: Arc::new(settings.clone()), roots: Arc::new(roots) };
    let app = routes::router(state)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http());
    tracing::info!(addr = %listener.local_addr()?, "api listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}
