//! Building backends from configuration, and the error a service's `run` ends with.

use std::sync::Arc;

use crate::broker::{Broker, BrokerError, RabbitBroker};
use crate::config::{ConfigError, JobStoreLocation, Settings};
use crate::embed::{EmbedError, ManifestError};
use crate::metrics::{self, MetricsRegistry};
use crate::shutdown::Shutdown;
use crate::jobs::{JobStore, JobStoreError, PostgresJobStore, SqliteJobStore};
use crate::vectors::VectorStoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Jobs(#[from] JobStoreError),
    #[error(transparent)]
    Vectors(#[from] VectorStoreError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// Binds `addr` now (a taken port fails the caller at start) and serves the registry's
/// `/metrics` there until `shutdown`.
pub async fn metrics_endpoint(
    addr: &str,
    registry: MetricsRegistry,
    shutdown: Shutdown,
) -> Result<tokio::task::JoinHandle<()>, ServiceError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServiceError::Other(format!("metrics_listen {addr}: {e}")))?;
    Ok(tokio::spawn(async move {
        if let Err(e) = metrics::serve_endpoint(listener, registry, shutdown).await {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    }))
}

/// The job store the configuration names: PostgreSQL, or SQLite (under `data_dir` by default).
pub async fn job_store(settings: &Settings) -> Result<Arc<dyn JobStore>, ServiceError> {
    Ok(match settings.job_store_location()? {
        JobStoreLocation::Postgres(url) => Arc::new(
            PostgresJobStore::connect_with_ca(&url, settings.jobs.pool_size, settings.jobs.tls_ca_file.as_deref()).await?,
        ),
        JobStoreLocation::Sqlite(path) => {
            tracing::info!(path = %path.display(), "job store: SQLite");
            Arc::new(SqliteJobStore::open(&path)?)
        }
    })
}

/// The broker the configuration names; `role` shows in the management console.
pub async fn broker(settings: &Settings, role: &str) -> Result<Arc<dyn Broker>, BrokerError> {
    let name = format!("imgidx-{role}@{}", settings.node_name());
    Ok(Arc::new(RabbitBroker::connect(&settings.broker, &name).await?))
}
