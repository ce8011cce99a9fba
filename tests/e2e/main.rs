//! End-to-end tests: the whole distributed pipeline against real RabbitMQ and
//! PostgreSQL (started by `tests/run.sh`), embedded vector store, tiny CLIP fixture.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_contract;
mod broker_outage;
mod cancel;
mod deploy_config;
mod pipeline;
mod priority;
mod reconcile;
mod reconnect;
mod seed000_client;
mod live;
mod metrics;
mod tls;
mod trigger;
mod topology;
mod operator;
mod outages;
mod poison;
mod redelivery;
