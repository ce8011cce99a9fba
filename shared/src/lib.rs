//! Pieces every imgidx service shares: configuration, queue messages, and the
//! traits (with production and embedded backends) for the broker, the job
//! store, the vector store and the CLIP embedder.

pub mod backoff;
pub mod broker;
pub mod collections;
pub mod config;
pub mod embed;
pub mod fetch;
pub mod files;
pub mod health;
pub mod ids;
pub mod jobs;
pub mod messages;
pub mod metrics;
pub mod objects;
pub mod outbound;
pub mod reconcile;
pub mod retention;
pub mod service;
pub mod shutdown;
pub mod sources;
pub mod time;
pub mod tls;
pub mod vectors;
