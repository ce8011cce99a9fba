//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::client;

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
    /// Run the API, workers and aggregator in one process. Without `broker.url` and
    /// `jobs.url` it needs nothing else: in-process queue, SQLite and embedded Qdrant
    /// under the data directory.
    Serve {
        /// Address to listen on (overrides `api.listen`; default 127.0.0.1:8000).
        #[arg(long)]
        listen: Option<String>,
        /// Where the index, the job database and the lock live (overrides `data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Model directory (overrides `model.dir`).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Worker pipelines in this process (overrides `serve.workers`).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Run a worker: consume image tasks, embed, upsert.
    Worker,
    /// Run the progress aggregator.
    Aggregator,
    /// Benchmark decode+preprocess, the bare model and the whole worker pipeline in one run
    /// (`--images DIR`); `imgidx bench search` measures the embedded index.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Bench {
        #[command(subcommand)]
        what: Option<BenchCommand>,
        /// Directory of images to cycle through.
        #[arg(long, required = true)]
        images: Option<PathBuf>,
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
    /// Client: submit image files and directories to a running server for indexing.
    #[command(after_help = crate::client::INDEX_EXIT_CODES)]
    Index(client::IndexArgs),
    /// Client: upload image files from this machine to the server, which stores and
    /// indexes them (for a server that cannot read this machine's disk).
    #[command(after_help = crate::client::INDEX_EXIT_CODES)]
    Upload(client::UploadArgs),
    /// Client: send one batch of images (seed 004): URLs for the server to fetch, and
    /// files from this machine; `--wait` prints each image's outcome.
    #[command(after_help = crate::client::INDEX_EXIT_CODES)]
    Batch(client::BatchArgs),
    /// Client: have the server index a directory of its own (new and changed images;
    /// `--prune` drops those whose file is gone).
    #[command(after_help = crate::client::INDEX_EXIT_CODES)]
    Trigger(client::TriggerArgs),
    /// Client: search the index by text.
    Search(client::SearchArgs),
    /// Client: find images similar to an image (uploaded, or a path on the server).
    Similar(client::SimilarArgs),
    /// Client: status of one indexing job (`--failed`: its failed images and why), or of
    /// the active and recent jobs.
    Status(client::StatusArgs),
    /// Client: follow a job live (a line per update, one per failed image; `--json`: the
    /// server's messages); exit status as `index --wait`.
    #[command(after_help = crate::client::INDEX_EXIT_CODES)]
    Watch(client::WatchArgs),
    /// Client: queue the failed images of a finished job again, as a new job.
    #[command(after_help = crate::client::INDEX_EXIT_CODES)]
    Retry(client::RetryArgs),
    /// Client: list jobs, newest first (`--status`, `--priority`, `--limit`).
    Jobs(client::JobsArgs),
    /// Client: cancel a queued or running job; its images not processed yet are not embedded.
    Cancel(client::CancelArgs),
    /// Client: index statistics.
    Stats(client::StatsArgs),
    /// Client: list, create, delete and select the server's collections (`--collection
    /// NAME` on index, trigger, search, similar and stats picks one per command).
    #[command(subcommand)]
    Collections(client::CollectionsCommand),
    /// Client: find exact and near duplicates in a collection (`--archive [--dry-run]`
    /// moves the extra exact copies into `_duplicates/`; `--restore ID` undoes that).
    Duplicates(client::DuplicatesArgs),
    /// Make API keys (`keys new --name NAME [--scope read]`).
    #[command(subcommand)]
    Keys(crate::keys_cmd::KeysCommand),
    /// Download and list CLIP models (`models fetch NAME`, `models list`).
    #[command(subcommand)]
    Models(crate::models::ModelsCommand),
}

impl Command {
    /// Commands that talk to a server over HTTP (or only print) and read no configuration.
    pub fn is_client(&self) -> bool {
        matches!(
            self,
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
                | Command::Keys(_)
        )
    }
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
    /// Print the CLIP token ids of TEXT as a JSON array: [sot, ..., eot], truncated to the
    /// model's context length.
    Tokenize {
        /// Text to tokenize (cleaned, lowercased and split as CLIP does).
        text: String,
        /// Model directory whose manifest names the tokenizer file (default: `model.dir`).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Print the whole zero-padded row, exactly as the text encoder receives it.
        #[arg(long)]
        padded: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// What add-images costs a client, against a running server: rounds of new paths
    /// (hard links to --image), then the same paths again once indexed.
    Api {
        /// A folder the server may read, where the linked files go (a new run-… folder in it).
        #[arg(long)]
        dir: PathBuf,
        /// The image every file links to.
        #[arg(long)]
        image: PathBuf,
        /// Paths per request.
        #[arg(long, default_value_t = 10_000)]
        paths: usize,
        /// Requests of new paths (then as many again of indexed ones).
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Also write the report as JSON here.
        #[arg(long)]
        report: Option<PathBuf>,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// Search cost of the embedded index as it grows: exact vs HNSW p50/p99, recall@k,
    /// build time, memory per million vectors, on synthetic clustered unit vectors.
    Search {
        /// Collection sizes to measure, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 100_000])]
        vectors: Vec<usize>,
        #[arg(long, default_value_t = 512)]
        dim: usize,
        /// Queries per measurement.
        #[arg(long, default_value_t = 200)]
        queries: usize,
        #[arg(long, default_value_t = 10)]
        top_k: usize,
        /// Clusters the vectors are drawn around.
        #[arg(long, default_value_t = 100)]
        clusters: usize,
        /// Beam widths to search the index with, comma-separated (default: vectors.hnsw_ef).
        #[arg(long, value_delimiter = ',')]
        ef: Vec<usize>,
        /// Quantization settings to measure, comma-separated: none, int8.
        #[arg(long, value_delimiter = ',', default_values_t = [String::from("none")])]
        quantization: Vec<String>,
        /// Where the scratch collections go (the system's temporary directory when unset).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Also write the report as JSON here.
        #[arg(long)]
        report: Option<PathBuf>,
    },
}
