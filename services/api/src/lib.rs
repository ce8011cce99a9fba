//! The HTTP API (seed 000's contract): accepts images to index, reports job
//! progress and index statistics. It records jobs, queues tasks, and answers
//! only once both are durable.

mod curation;
mod error;
mod freshness;
mod http;
pub mod keys;
mod live;
mod metrics;
mod openapi;
mod paths;
mod query_engine;
mod relevance;
mod routes;
mod scan;
mod state;
mod switches;
mod target;
mod text_cache;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use error::ApiError;
pub use query_engine::{query_engines, QueryEngine};
pub use routes::document as openapi_document;
pub use routes::add_images::AddImagesResponse;
pub use state::{ApiDeps, Uploads};

use imgidx_shared::config::{ApiSettings, Settings};
use imgidx_shared::service::{self, ServiceError};
use imgidx_shared::shutdown::Shutdown;
use imgidx_shared::collections::CollectionRecord;
use imgidx_shared::jobs::JobStore;
use imgidx_shared::vectors::{self, Collections};
use chrono::Utc;

use http::auth::Guard;
use http::rate_limit::RateLimiter;
use http::server::ServerLimits;
use http::HostPolicy;
use keys::KeySet;
use metrics::ApiMetrics;
use live::LiveHub;
use scan::Scanner;
use state::AppState;
use webhooks::Webhooks;

/// Build the backends from configuration and serve until `shutdown`.
pub async fn run(settings: Settings, listener: TcpListener, shutdown: Shutdown) -> Result<(), ServiceError> {
    // Search embeds queries with the model's encoders (text and vision).
    let (dir, model, limits) = (settings.model.dir.clone(), settings.model.clone(), settings.worker.clone());
    let budget = imgidx_shared::embed::DecodeBudget::from_settings(&settings.worker);
    let for_engine = budget.clone();
    let engine = tokio::task::spawn_blocking(move || QueryEngine::load(&dir, &model, &limits, None, for_engine))
        .await
        .map_err(|e| ServiceError::Other(format!("loading the query encoders: {e}")))??;
    let manifest = engine.manifest().clone();
    let jobs = service::job_store(&settings).await?;
    let collections = open_collections(&settings, jobs.as_ref(), &manifest.name, manifest.embedding_dim).await?;
    let uploads = Uploads::from_settings(&settings)?;
    let broker = service::broker(&settings, "api").await?;
    let deps = ApiDeps {
        jobs,
        collections,
        initial_collection: settings.vectors.collection.clone(),
        broker: broker.clone(),
        model_name: manifest.name.clone(),
        embedding_dim: manifest.embedding_dim,
        queries: Some(Arc::new(query_engines(&settings, engine, budget))),
        health: Default::default(),
        metrics: Default::default(),
        uploads,
    };
    let result = serve(&settings.api, deps, listener, shutdown).await;
    broker.close().await;
    result
}

/// The vector stores of every collection, with the collection a deployment starts with
/// (`vectors.collection`) made if missing and in the catalog, bound to `model`.
pub async fn open_collections(
    settings: &Settings,
    jobs: &dyn JobStore,
    model: &str,
    dim: usize,
) -> Result<Arc<Collections>, ServiceError> {
    let collections = vectors::collections(settings)?;
    let initial = CollectionRecord::initial(&settings.vectors.collection, model, dim, Utc::now());
    let stored = jobs.ensure_initial_collection(&initial).await?;
    // Made with the catalog's shape: a restart with another model keeps the index it had.
    collections.open(&stored.physical, stored.dim, Some(stored.distance)).await?;
    Ok(collections)
}

/// Serve with backends built elsewhere.
pub async fn serve(
    settings: &ApiSettings,
    deps: ApiDeps,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), ServiceError> {
    let roots = paths::canonical_roots(&settings.allowed_roots)?;
    let keys = KeySet::load(&settings.api_keys, settings.api_keys_file.as_deref())
        .map_err(|e| ServiceError::Other(e.to_string()))?;
    let webhooks = Arc::new(Webhooks::from_settings(settings).map_err(ServiceError::Other)?);
    let addr = listener.local_addr()?;
    warn_if_exposed(addr, &keys);
    let guard = Guard { keys: Arc::new(keys), limiter: RateLimiter::new(settings.rate_limit_per_minute).map(Arc::new) };
    let roots = Arc::new(roots);
    let scans_stop = shutdown.child_token();
    let scanner = Arc::new(Scanner::new(
        deps.clone(),
        Arc::clone(&roots),
        settings.max_concurrent_scans,
        Duration::from_secs(settings.scan_lease_secs),
        scans_stop.clone(),
    ));
    let resumer = tokio::spawn(Arc::clone(&scanner).resume_loop());
    let analyses = Arc::new(curation::Analyses::new(
        deps.clone(),
        Duration::from_secs(settings.scan_lease_secs),
        scans_stop.clone(),
    ));
    let analyses_resumer = tokio::spawn(Arc::clone(&analyses).resume_loop());
    let switcher = tokio::spawn(switches::watch(deps.clone(), scans_stop.clone()));
    // Watchers end at the stop itself, so their connections do not hold up the drain.
    let live = LiveHub::new(shutdown.clone());
    let relay = tokio::spawn(live.clone().run(deps.broker.clone()));
    let metrics = ApiMetrics::new(deps.metrics.clone());
    let dispatcher = tokio::spawn(webhooks::dispatch(deps.jobs.clone(), Arc::clone(&webhooks), scans_stop.clone()));
    let state = AppState {
        deps,
        settings: Arc::new(settings.clone()),
        roots,
        scanner: Arc::clone(&scanner),
        live,
        metrics: metrics.clone(),
        webhooks,
        analyses: Arc::clone(&analyses),
        backgrounds: Default::default(),
    };
    let host = HostPolicy::new(addr.ip().is_loopback(), &settings.allowed_hosts);
    let app = http::layered(routes::router(state, guard.clone()), settings, host, metrics).map_err(ServiceError::Other)?;
    tracing::info!(%addr, keys = guard.keys.len(), "api listening");
    let limits = ServerLimits {
        max_connections: settings.max_connections,
        header_read_timeout: Duration::from_secs(settings.header_read_timeout_secs),
        idle_timeout: Duration::from_secs(settings.idle_timeout_secs),
        drain_timeout: Duration::from_secs(settings.request_timeout_secs),
    };
    http::server::serve(listener, app, limits, shutdown).await;
    scans_stop.cancel(); // walks stop with the server
    let _ = resumer.await;
    let _ = relay.await;
    let _ = dispatcher.await;
    let _ = analyses_resumer.await;
    let _ = switcher.await;
    scanner.drain().await;
    analyses.drain().await;
    Ok(())
}

/// Anyone who can reach a non-loopback address can index and search without keys.
fn warn_if_exposed(addr: std::net::SocketAddr, keys: &KeySet) {
    if keys.is_empty() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "the API listens on a non-loopback address without API keys: anyone who can reach it may \
             index and search; set api.api_keys or api.api_keys_file (see docs/security.md)"
        );
    }
}
