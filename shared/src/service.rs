//! Building backends from configuration, and the error a service's `run` ends with.

use std::sync::Arc;

use crate::broker::{Broker, BrokerError, RabbitBroker};
use crate::config::{ConfigError, Settings};
use crate::embed::{EmbedError, ManifestError};
use crate::jobs::{JobStore, JobStoreError, PostgresJobStore};
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

/// The job store the configuration names.
pub async fn job_store(settings: &Settings) -> Result<Arc<dyn JobStore>, JobStoreError> {
    Ok(Arc::new(PostgresJobStore::connect(&settings.jobs.url, settings.jobs.pool_size).await?))
}

/// The broker the configuration names; `role` shows in the management console.
pub async fn broker(settings: &Settings, role: &str) -> Result<Arc<dyn Broker>, BrokerError> {
    let name = format!("imgidx-{role}@{}", settings.node_name());
    Ok(Arc::new(RabbitBroker::connect(&settings.broker, &name).await?))
}
