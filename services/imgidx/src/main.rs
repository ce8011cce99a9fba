//! `imgidx`: one binary, any role. It only parses arguments, loads configuration
//! and wires the service libraries together.

mod bench;
mod cli;
mod embed_cmd;
mod models;
mod serve;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use imgidx_shared::config::Settings;
use imgidx_shared::shutdown::{os_signal, Shutdown};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lapin=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// Cancelled on SIGINT/SIGTERM.
fn shutdown_on_signal() -> Shutdown {
    let shutdown = Shutdown::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        os_signal().await;
        tracing::info!("shutdown requested; draining");
        s.cancel();
    });
    shutdown
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Api { listen } => {
            if let Some(listen) = listen {
                settings.api.listen = listen;
            }
            let listener = tokio::net::TcpListener::bind(&settings.api.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.api.listen))?;
            imgidx_api::run(settings, listener, shutdown_on_signal()).await?;
        }
        Command::Serve { listen, workers } => {
            if let Some(listen) = listen {
                settings.api.listen = listen;
            }
            serve::run(settings, workers, shutdown_on_signal()).await?;
        }
        Command::Worker => {
            imgidx_worker::run(settings, shutdown_on_signal()).await?;
        }
        Command::Aggregator => {
            imgidx_aggregator::run(settings, shutdown_on_signal()).await?;
        }
        Command::Bench { images, count, model, report } => {
            if let Some(model) = model {
                settings.model.dir = model;
            }
            let r = bench::run(&settings, bench::BenchArgs { images_dir: images, count, report }).await?;
            bench::print(&r);
        }
        Command::Embed(cmd) => embed_cmd::run(&settings, cmd)?,
        Command::Models(cmd) => models::run(&settings, cmd).await?,
    }
    Ok(())
}
