//! End-to-end tests of the `imgidx` binary: a real `imgidx serve` subprocess on
//! embedded defaults, over HTTP and driven through the client commands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod batches;
mod cli;
mod collections;
mod crashes;
mod duplicates;
mod exposure;
mod formats;
mod model_switch;
mod moto;
mod openapi;
mod reads;
mod reuse;
mod search_filters;
mod outcomes;
mod serve;
mod server;
mod tags;
mod two_apis;
mod uploads;
mod webhooks;
