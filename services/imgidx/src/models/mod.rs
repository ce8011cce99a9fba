//! `imgidx models fetch NAME` and `imgidx models list`: install known CLIP models from
//! the Hugging Face hub (or from files placed by hand) into `<models_dir>/<NAME>/`,
//! verified and with a `manifest.json` the encoders load, and list what is installed.

mod checksum;
mod error;
mod hub;
mod install;
mod list;
mod preprocessor;
mod progress;
mod registry;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use clap::Subcommand;

use imgidx_shared::config::Settings;

use error::FetchError;
use hub::HttpOptions;
use install::{fetch, FetchRequest};
use list::list;
use registry::Registry;

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Download a known model into `<models_dir>/NAME/`, verify its checksums and write its manifest.
    ///
    /// Without network access, download the files the error message lists into a directory
    /// (under the names it gives) and install them with `--from DIR`.
    Fetch {
        /// Model name (`imgidx models list` shows the known ones).
        name: String,
        /// Hub base URL (overrides `model.hub_url`).
        #[arg(long, value_name = "URL")]
        hub: Option<String>,
        /// Take the files from this directory instead of downloading them.
        #[arg(long, value_name = "DIR", conflicts_with = "hub")]
        from: Option<PathBuf>,
        /// Replace the model if it is already installed.
        #[arg(long)]
        force: bool,
    },
    /// List the models installed in `models_dir` and the known ones not installed.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(settings: &Settings, cmd: ModelsCommand) -> anyhow::Result<()> {
    let registry = Registry::builtin();
    let models_dir = settings.models_dir();
    match cmd {
        ModelsCommand::Fetch { name, hub, from, force } => {
            let req = FetchRequest {
                name,
                hub: hub.unwrap_or_else(|| settings.model.hub_url.clone()),
                from,
                force,
                quiet: false,
            };
            let http = HttpOptions::default();
            // On Ctrl-C the fetch future is dropped, and with it the staging directory.
            let installed = tokio::select! {
                r = fetch(&registry, &models_dir, &req, &http) => r?,
                Ok(()) = tokio::signal::ctrl_c() => return Err(FetchError::Interrupted.into()),
            };
            let m = &installed.manifest;
            println!(
                "installed {} in {} ({}-d, {} px, {}, {})",
                m.name,
                installed.dir.display(),
                m.embedding_dim,
                m.image_size,
                if m.text.is_some() { "text encoder" } else { "no text encoder" },
                progress::mb(installed.bytes)
            );
            if !same_dir(&settings.model.dir, &installed.dir) {
                println!(
                    "to use it, set model.dir = \"{}\" (or IMGIDX__MODEL__DIR={})",
                    installed.dir.display(),
                    installed.dir.display()
                );
            }
        }
        ModelsCommand::List { json } => {
            let listing = list(&models_dir, &registry, &settings.model.dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&listing)?);
            } else {
                print!("{}", list::render(&listing));
            }
        }
    }
    Ok(())
}

fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}
