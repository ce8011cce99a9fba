//! End-to-end tests of the `imgidx` binary: `serve` on embedded defaults and the CLI
//! client against it. One test binary for the crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod serve;
mod server;
