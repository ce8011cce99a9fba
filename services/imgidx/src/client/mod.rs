//! The command-line client: talks HTTP to a running `imgidx serve` or `imgidx api`.
//! Each command prints a table by default, the server's JSON with `--json`.

mod args;
mod batch;
mod collections;
mod duplicates;
mod failures;
mod http;
mod index;
mod live;
mod jobs;
mod output;
mod paths;
mod query;
mod retry;
mod stages;
mod status;
mod trigger;
mod types;
mod upload;
mod wait;
mod watch;

pub use args::ServerArgs;
pub use http::Api;
pub use args::{
    BatchArgs, CancelArgs, CollectionsCommand, DuplicatesArgs, IndexArgs, JobsArgs, RetryArgs, SearchArgs, SimilarArgs, StatsArgs,
    StatusArgs, TriggerArgs, UploadArgs, WatchArgs,
};
pub use batch::batch;
pub use collections::collections;
pub use duplicates::duplicates;
pub use index::index;
pub use jobs::{cancel, jobs};
pub use query::{search, similar};
pub use retry::retry;
pub use status::{stats, status};
pub use trigger::trigger;
pub use upload::upload;
pub use watch::watch;

/// Exit status of `index --wait` when at least one job ended `failed`.
pub const EXIT_JOB_FAILED: u8 = 3;
/// Exit status of `index --wait` when a job was cancelled (and none failed).
pub const EXIT_JOB_CANCELLED: u8 = 4;

/// Shown under `imgidx index --help`.
pub const INDEX_EXIT_CODES: &str = "\
Exit status:
  0  submitted (with --wait: every job completed; images that could not be read are
     counted as failed in the summary without failing their job)
  1  error: a path is missing, the server is unreachable or refused the request
  2  invalid arguments
  3  with --wait: at least one job ended \"failed\" (the server fails a job when
     every one of its images failed, or when it could not be queued)
  4  with --wait: a job was cancelled (imgidx cancel), and none failed";
