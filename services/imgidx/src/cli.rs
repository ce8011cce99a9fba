//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "imgidx", version, about = "Index image collections as CLIP embeddings and search them")]
pub struct Cli {
    /// Configuration file (TOML). Environment variables `IMGIDX__SECTION__KEY` override it.
    #[arg(long, global = true, env = "IMGIDX_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP API.
    Api {
        /// Address to listen on (overrides `api.listen`).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run the API, workers and aggregator in one process (one shared vector store).
    Serve {
        /// Address to listen on (overrides `api.listen`).
        #[arg(long)]
        listen: Option<String>,
        /// Worker pipelines in this process.
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// Run a worker: consume image tasks, embed, upsert.
    Worker,
    /// Run the progress aggregator.
    Aggregator,
    /// Benchmark decode+preprocess, the bare model and the whole worker pipeline in one run.
    Bench {
        /// Directory of images to cycle through.
        #[arg(long)]
        images: PathBuf,
        /// Images per measurement.
        #[arg(long, default_value_t = 256)]
        count: usize,
        /// Model directory (default: `model.dir`).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Also write the report as JSON here.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Embedding tools.
    #[command(subcommand)]
    Embed(EmbedCommand),
    /// Download and list CLIP models (`models fetch NAME`, `models list`).
    #[command(subcommand)]
    Models(crate::models::ModelsCommand),
}

#[derive(Subcommand, Debug)]
pub enum EmbedCommand {
    /// Preprocess one image exactly as the encoder sees it and write the (1,3,H,W) float32 tensor.
    Preprocess {
        image: PathBuf,
        /// Output `.npy` file.
        #[arg(long)]
        npy: PathBuf,
        /// Model directory whose manifest gives input size, mean and std (default: `model.dir`).
        #[arg(long)]
        model: Option<PathBuf>,
    },
}
