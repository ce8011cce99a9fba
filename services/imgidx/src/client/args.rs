//! Command-line arguments of the client commands.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// Options every client command takes.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Base URL of the imgidx server (`imgidx serve` or `imgidx api`).
    #[arg(long, env = "IMGIDX_SERVER", default_value = "http://127.0.0.1:8000")]
    pub server: String,
    /// API key of the server (sent as `X-API-Key`), when it requires one.
    #[arg(long, env = "IMGIDX_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print the result as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for each HTTP request.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Low,
    Normal,
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }
}

/// Options of the commands that queue images.
#[derive(Args, Debug, Clone)]
pub struct SubmitOptions {
    #[arg(long, value_enum, default_value_t = Priority::Normal)]
    pub priority: Priority,
    /// Wait until the work has finished, showing progress, then print a summary.
    #[arg(long)]
    pub wait: bool,
    /// Collection to index into (`imgidx collections list`); the server's selected one when unset.
    #[arg(long, value_name = "NAME")]
    pub collection: Option<String>,
}

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// Image files and directories (a directory contributes its image files).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Descend into subdirectories.
    #[arg(long, short = 'r')]
    pub recursive: bool,
    /// Paths per request (each request creates at most one job).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub chunk: u64,
    #[command(flatten)]
    pub submit: SubmitOptions,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct UploadArgs {
    /// Image files and directories on this machine (a directory contributes its image files).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Descend into subdirectories.
    #[arg(long, short = 'r')]
    pub recursive: bool,
    /// Files per request (each request creates at most one job; the server takes at most
    /// `ingest.max_files`). The client holds one request's files in memory.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub chunk: u64,
    #[command(flatten)]
    pub submit: SubmitOptions,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct BatchArgs {
    /// An image URL for the server's workers to fetch (repeatable).
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,
    /// An image file on this machine, sent as base64 (repeatable).
    #[arg(long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub submit: SubmitOptions,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Options shared by the two query commands.
#[derive(Args, Debug, Clone, Default)]
pub struct QueryOptions {
    /// Number of results (server default when unset).
    #[arg(short = 'k', long = "top-k", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub top_k: Option<u64>,
    /// Only images whose path starts with this prefix.
    #[arg(long)]
    pub path_prefix: Option<String>,
    /// Only results scoring at least this much.
    #[arg(long, allow_negative_numbers = true)]
    pub min_score: Option<f64>,
    /// Collection to search (`imgidx collections list`); the server's selected one when unset.
    #[arg(long, value_name = "NAME")]
    pub collection: Option<String>,
    /// Results to skip, best first: `--offset 20 -k 10` is the third page of ten.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub offset: Option<u64>,
    /// Only images that pass it, applied by the index (repeatable): format=png (repeat for
    /// any of several), tag=beach (every one), min_width=N, min_height=N, and RFC 3339 times
    /// mtime_from=, mtime_to=, indexed_from=, indexed_to=.
    #[arg(long = "filter", value_name = "KEY=VALUE", value_parser = parse_filter)]
    pub filters: Vec<(String, String)>,
    /// Only results that stand out from the query's background over the collection
    /// (`relevance: "auto"`: a cutoff computed for this query, shown with the results).
    #[arg(long)]
    pub relevant: bool,
}

/// Query fields `--filter` sets, by its key; repeatable ones collect into a list.
pub const FILTER_KEYS: [(&str, &str); 8] = [
    ("format", "formats"),
    ("tag", "tags"),
    ("min_width", "min_width"),
    ("min_height", "min_height"),
    ("mtime_from", "mtime_from"),
    ("mtime_to", "mtime_to"),
    ("indexed_from", "indexed_from"),
    ("indexed_to", "indexed_to"),
];

/// `KEY=VALUE` as the query field it sets and its value.
fn parse_filter(s: &str) -> Result<(String, String), String> {
    let (key, value) = s.split_once('=').ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    let known = FILTER_KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ");
    let (_, field) = FILTER_KEYS.iter().find(|(k, _)| *k == key).ok_or_else(|| format!("unknown filter {key:?} (one of {known})"))?;
    if field.starts_with("min_") && value.parse::<u32>().is_err() {
        return Err(format!("{key} takes a number of pixels (got {value:?})"));
    }
    Ok(((*field).to_owned(), value.to_owned()))
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// What to look for, in words.
    pub text: String,
    /// Steer away from this (repeatable): the query becomes TEXT minus half of each.
    #[arg(long, value_name = "TEXT")]
    pub minus: Vec<String>,
    #[command(flatten)]
    pub query: QueryOptions,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct SimilarArgs {
    /// The query image: a local file, uploaded to the server (or, with --server-path, a path on the server).
    pub image: PathBuf,
    /// Send IMAGE as a path on the server instead of uploading it: an indexed image is
    /// searched with its stored vector; any other must lie under the server's allowed roots.
    #[arg(long)]
    pub server_path: bool,
    #[command(flatten)]
    pub query: QueryOptions,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Job id (as printed by `imgidx index`); without one, the active and recent jobs.
    pub job_id: Option<String>,
    /// List the job's failed images with the reason each failed (every page).
    #[arg(long, requires = "job_id")]
    pub failed: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct TriggerArgs {
    /// Directory on the server to index (a relative path is made absolute here first).
    pub dir: PathBuf,
    /// Re-embed every image found, indexed and unchanged or not.
    #[arg(long)]
    pub force: bool,
    /// Delete from the index the images under DIR whose file is gone.
    #[arg(long)]
    pub prune: bool,
    /// Only DIR itself, not its subdirectories.
    #[arg(long)]
    pub no_recursive: bool,
    /// Have the server POST to this URL when the job ends (signed; needs webhooks on the server).
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    #[command(flatten)]
    pub submit: SubmitOptions,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// The job to follow.
    pub job_id: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct RetryArgs {
    /// The finished job whose failed images to queue again.
    pub job_id: String,
    /// Wait until the new job has finished, showing progress, then print a summary.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

#[derive(Args, Debug)]
pub struct JobsArgs {
    /// Only jobs in this state.
    #[arg(long)]
    pub status: Option<JobState>,
    /// Only jobs of this priority.
    #[arg(long, value_enum)]
    pub priority: Option<Priority>,
    /// How many of the newest jobs to list.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub limit: u64,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    /// The queued or running job to cancel: its images not processed yet are not embedded.
    pub job_id: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Figures of this collection (`imgidx collections list`); the server's selected one when unset.
    #[arg(long, value_name = "NAME")]
    pub collection: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct DuplicatesArgs {
    /// Cosine similarity at or above which two images count as near duplicates (0–1].
    #[arg(long, default_value_t = 0.95)]
    pub threshold: f32,
    /// The collection to analyse; the server's selected one when unset.
    #[arg(long, value_name = "NAME")]
    pub collection: Option<String>,
    /// Then move all but one image of each exact group into `_duplicates/` under its root
    /// (the kept one: a file before an upload, then the shortest path).
    #[arg(long, conflicts_with = "restore")]
    pub archive: bool,
    /// With --archive: only list what would move.
    #[arg(long, requires = "archive")]
    pub dry_run: bool,
    /// Undo an archive instead (its id, as --archive printed it).
    #[arg(long, value_name = "ARCHIVE_ID")]
    pub restore: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// How a new collection compares vectors. CLIP embeddings are unit vectors, so all
/// three rank alike; the server reports every score as cosine similarity.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distance {
    Cosine,
    Dot,
    #[value(alias = "euclidean")]
    Euclid,
}

impl Distance {
    /// The server's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Distance::Cosine => "Cosine",
            Distance::Dot => "Dot",
            Distance::Euclid => "Euclid",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum CollectionsCommand {
    /// The collections, with their model, size and points; `*` marks the selected one.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Make a new, empty collection, for the model the server embeds with unless --model says another.
    Create {
        /// 1 to 64 characters of a-z, 0-9, `-` and `_`, starting with a letter or digit.
        name: String,
        /// Vector size; must be the model's embedding size (checked by the server).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        vector_size: Option<u64>,
        /// How vectors are compared (server default: cosine).
        #[arg(long, value_enum, ignore_case = true)]
        distance: Option<Distance>,
        /// The model it is for: the server's own (the default) or one installed in its `model.models_dir`.
        #[arg(long, value_name = "MODEL")]
        model: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a collection and its points (not the selected one, nor one jobs still write into).
    Delete {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Make NAME the server's selected collection: the one every request without a collection uses.
    Select {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Forget a collection's content hashes (the selected one without NAME), so images met
    /// again are embedded instead of taking the vector of an indexed copy.
    ClearCache {
        name: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Switch NAME to another model without downtime: every image is embedded again with
    /// MODEL as a job, searches use the current model until it completes, then MODEL.
    Reembed {
        name: String,
        /// The server's own model, or one installed in its `model.models_dir`.
        #[arg(long, value_name = "MODEL")]
        model: String,
        /// Follow the job, and return once searches use MODEL (or the switch was abandoned).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete the generation a completed model switch left (the old model's vectors).
    DeletePrevious {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}
