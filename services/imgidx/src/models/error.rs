//! What can go wrong installing a model, each with a message that says what to do.

use std::path::PathBuf;

use super::registry::KnownModel;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("unknown model {name:?}; known models: {}", known.join(", "))]
    UnknownModel { name: String, known: Vec<String> },
    #[error("model {name} is already installed in {}; pass --force to replace it", path.display())]
    AlreadyInstalled { name: String, path: PathBuf },
    #[error("hub URL {url:?} is not usable: {reason}")]
    BadHub { url: String, reason: String },
    /// DNS failure, connection refused, timeout: the message lists every file and how to place them by hand.
    #[error("{message}")]
    Unreachable { message: String },
    #[error("{url} answered HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: more than {limit} redirects")]
    TooManyRedirects { url: String, limit: usize },
    #[error("{file}: the download from {url} exceeds {limit} bytes")]
    TooLarge { file: String, url: String, limit: u64 },
    #[error(
        "{file}: nothing to verify it against (no checksum is pinned for it and {url} announced none in \
         X-Linked-Etag or ETag); refusing an unverified download"
    )]
    NoChecksum { file: String, url: String },
    #[error("{file}: {kind} mismatch: expected {expected} ({origin}), got {actual}")]
    Checksum { file: String, kind: &'static str, expected: String, actual: String, origin: &'static str },
    #[error("{}: missing; download it from {url} (see `imgidx models fetch --help`)", path.display())]
    MissingLocal { path: PathBuf, url: String },
    #[error("{file} does not match the model's manifest: {message}")]
    Preprocessor { file: String, message: String },
    #[error("the manifest written for {name} does not load: {message}")]
    Manifest { name: String, message: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("interrupted; nothing was installed")]
    Interrupted,
}

impl FetchError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }

    /// The hub cannot be reached: names the cause, every file's URL and the file name it
    /// must be saved under, and the `--from` command that installs them.
    pub fn unreachable(model: &KnownModel, hub: &str, cause: &str) -> Self {
        let mut message = format!(
            "cannot reach {hub} to download model {}: {cause}\n\nThe model consists of these files:\n",
            model.name
        );
        for f in &model.files {
            message.push_str(&format!("  {}\n      save as: {}\n", f.url(hub), f.dest));
        }
        let example =
            model.files.first().map_or_else(String::new, |f| format!("  curl -fL -o DIR/{} {}\n", f.dest, f.url(hub)));
        message.push_str(&format!(
            "\nTo install it without network access here: download each file where the hub is reachable into \
             one directory DIR, under the name after \"save as\", e.g.\n{example}then bring DIR to this machine \
             and run:\n  imgidx models fetch {} --from DIR\nThe files are checked there against the checksums \
             imgidx pins for them. (Behind a proxy, set HTTPS_PROXY; for a mirror, set \
             model.hub_url or pass --hub.)",
            model.name
        ));
        Self::Unreachable { message }
    }
}
