//! `imgidx`: one binary, any role. It only parses arguments, loads configuration
//! and wires the service libraries together.

mod bench;
mod bench_api;
mod bench_search;
mod cli;
mod client;
mod embed_cmd;
mod keys_cmd;
mod models;
mod serve;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use imgidx_shared::config::{LogFormat, Settings};
use imgidx_shared::shutdown::{os_signal, Shutdown};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// To stderr, at `RUST_LOG` (default `info`); `log.format = "json"` for log shippers.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lapin=warn"));
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.init(),
        LogFormat::Json => fmt.json().with_current_span(true).with_span_list(false).init(),
    }
}

/// Cancelled on SIGINT/SIGTERM. A drain has a deadline (`shutdown_timeout_secs`), and
/// a second signal ends the process at once: what it still held goes back to the
/// broker (unacked) or is queued again by the reconcile / the next `serve` start.
fn shutdown_on_signal(settings: &Settings) -> Shutdown {
    let shutdown = Shutdown::new();
    let s = shutdown.clone();
    let deadline = std::time::Duration::from_secs(settings.shutdown_timeout_secs);
    tokio::spawn(async move {
        os_signal().await;
        tracing::info!(deadline = ?deadline, "shutdown requested; draining (a second signal exits at once)");
        s.cancel();
        tokio::select! {
            () = os_signal() => {
                tracing::warn!("second signal: exiting without draining");
                std::process::exit(130);
            }
            () = tokio::time::sleep(deadline) => {
                tracing::error!(deadline = ?deadline, "did not drain before shutdown_timeout_secs; exiting");
                std::process::exit(1);
            }
        }
    });
    shutdown
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // Client commands talk to a server over HTTP and need no local configuration.
    if cli.command.is_client() {
        init_logging(LogFormat::Text);
    }
    match cli.command {
        Command::Index(args) => return client::index(args).await,
        Command::Upload(args) => return client::upload(args).await,
        Command::Batch(args) => return client::batch(args).await,
        Command::Trigger(args) => return client::trigger(args).await,
        Command::Search(args) => return client::search(args).await,
        Command::Similar(args) => return client::similar(args).await,
        Command::Status(args) => return client::status(args).await,
        Command::Watch(args) => return client::watch(args).await,
        Command::Retry(args) => return client::retry(args).await,
        Command::Jobs(args) => return client::jobs(args).await,
        Command::Cancel(args) => return client::cancel(args).await,
        Command::Stats(args) => return client::stats(args).await,
        Command::Collections(cmd) => return client::collections(cmd).await,
        Command::Duplicates(args) => return client::duplicates(args).await,
        Command::Keys(cmd) => {
            keys_cmd::run(cmd)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let mut settings = Settings::load(cli.config.as_deref())?;
    init_logging(settings.log.format);
    match cli.command {
        Command::Api { listen } => {
            if let Some(listen) = listen {
                settings.api.listen = listen;
            }
            let listener = tokio::net::TcpListener::bind(&settings.api.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.api.listen))?;
            let shutdown = shutdown_on_signal(&settings);
            imgidx_api::run(settings, listener, shutdown).await?;
        }
        Command::Serve { listen, data_dir, model, workers } => {
            if let Some(listen) = listen {
                settings.api.listen = listen;
            }
            if let Some(dir) = data_dir {
                // A model dir and a results dir derived from the old data dir follow the new one.
                let derived = settings.model.dir == settings.default_model_dir();
                let derived_results = settings.api.results_dir == Some(settings.default_results_dir());
                settings.data_dir = dir;
                if derived {
                    settings.model.dir = settings.default_model_dir();
                }
                if derived_results {
                    settings.api.results_dir = Some(settings.default_results_dir());
                }
            }
            if let Some(model) = model {
                settings.model.dir = model;
            }
            if let Some(workers) = workers {
                anyhow::ensure!(workers > 0, "--workers must be at least 1");
                settings.serve.workers = workers;
            }
            let shutdown = shutdown_on_signal(&settings);
            serve::run(settings, shutdown).await?;
        }
        Command::Worker => {
            let shutdown = shutdown_on_signal(&settings);
            imgidx_worker::run(settings, shutdown).await?;
        }
        Command::Aggregator => {
            let shutdown = shutdown_on_signal(&settings);
            imgidx_aggregator::run(settings, shutdown).await?;
        }
        Command::Bench { what: Some(cli::BenchCommand::Search { vectors, dim, queries, top_k, clusters, ef, quantization, dir, report }), .. } => {
            let quantization = quantization
                .iter()
                .map(|q| match q.as_str() {
                    "none" => Ok(imgidx_shared::config::Quantization::None),
                    "int8" => Ok(imgidx_shared::config::Quantization::Int8),
                    other => Err(anyhow::anyhow!("--quantization: {other:?} is neither none nor int8")),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let args = bench_search::SearchBenchArgs { sizes: vectors, dim, queries, top_k, clusters, quantization, efs: ef, dir, report };
            bench_search::run(&settings, args).await?;
        }
        Command::Bench { what: Some(cli::BenchCommand::Api { dir, image, paths, rounds, report, server }), .. } => {
            bench_api::run(bench_api::ApiBenchArgs { server, dir, image, paths, rounds, report }).await?;
        }
        Command::Bench { what: None, images, count, model, report } => {
            if let Some(model) = model {
                settings.model.dir = model;
            }
            let images_dir = images.ok_or_else(|| anyhow::anyhow!("imgidx bench needs --images DIR"))?;
            let r = bench::run(&settings, bench::BenchArgs { images_dir, count, report }).await?;
            bench::print(&r);
        }
        Command::Embed(cmd) => embed_cmd::run(&settings, cmd)?,
        // Dispatched above, before any configuration is loaded.
        Command::Index(_)
        | Command::Upload(_)
        | Command::Batch(_)
        | Command::Trigger(_)
        | Command::Search(_)
        | Command::Similar(_)
        | Command::Status(_)
        | Command::Watch(_)
        | Command::Retry(_)
        | Command::Jobs(_)
        | Command::Cancel(_)
        | Command::Stats(_)
        | Command::Collections(_)
        | Command::Duplicates(_)
        | Command::Keys(_) => {}
        Command::Models(cmd) => models::run(&settings, cmd).await?,
    }
    Ok(ExitCode::SUCCESS)
}
