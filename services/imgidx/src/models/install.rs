//! `models fetch`: gather a model's files (from the hub or a local directory) into a
//! hidden staging directory, verify them, write `manifest.json` and `checksums.json`,
//! prove the manifest loads, and only then rename the directory into place. So
//! `<models_dir>/<name>/` is either absent, the previous complete model, or the new
//! complete model; an interrupted fetch leaves at most a `.fetch-*` directory, which
//! `models list` ignores.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tempfile::TempDir;

use imgidx_shared::embed::ModelManifest;

use super::checksum::{digest_file, Expected, FileDigest};
use super::error::FetchError;
use super::hub::{self, DownloadError, HttpOptions};
use super::preprocessor;
use super::progress::Progress;
use super::registry::{KnownModel, Registry, RemoteFile};

/// Beside `manifest.json`: the SHA-256 of every file and how each was verified.
pub const CHECKSUMS_FILE: &str = "checksums.json";

/// Largest file accepted when the registry gives no size.
const MAX_FILE_BYTES: u64 = 8 << 30;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checksums {
    pub model: String,
    /// Hub base URL or local directory the files came from.
    pub source: String,
    pub files: BTreeMap<String, FileRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub sha256: String,
    pub bytes: u64,
    /// URL or path the file was taken from.
    pub from: String,
    /// The checksums it matched (empty: none was known, e.g. a generated file).
    pub verified: Vec<String>,
}

#[derive(Debug)]
pub struct FetchRequest {
    pub name: String,
    /// Hub base URL: downloaded from unless `from` is set; named in messages either way.
    pub hub: String,
    /// Take the files from this directory instead of the hub.
    pub from: Option<PathBuf>,
    /// Replace an installed model of the same name.
    pub force: bool,
    /// No progress lines (tests).
    pub quiet: bool,
}

enum Source<'a> {
    Hub(reqwest::Client),
    Dir(&'a Path),
}

#[derive(Debug)]
pub struct Installed {
    pub dir: PathBuf,
    pub manifest: ModelManifest,
    pub bytes: u64,
}

pub async fn fetch(
    registry: &Registry,
    models_dir: &Path,
    req: &FetchRequest,
    http: &HttpOptions,
) -> Result<Installed, FetchError> {
    let model = registry.get(&req.name).ok_or_else(|| FetchError::UnknownModel {
        name: req.name.clone(),
        known: registry.names().into_iter().map(String::from).collect(),
    })?;
    let target = models_dir.join(&model.name);
    // Checked first so a second fetch does not download hundreds of MB to then refuse.
    if target.exists() && !req.force {
        return Err(FetchError::AlreadyInstalled { name: model.name.clone(), path: target });
    }
    check_hub(&req.hub)?;
    tokio::fs::create_dir_all(models_dir)
        .await
        .map_err(FetchError::io(format!("creating {}", models_dir.display())))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".fetch-{}-", model.name))
        .tempdir_in(models_dir)
        .map_err(FetchError::io(format!("creating a staging directory in {}", models_dir.display())))?;
    let source = match &req.from {
        Some(dir) => Source::Dir(dir),
        None => Source::Hub(hub::client(http)?),
    };

    let mut files = BTreeMap::new();
    for file in &model.files {
        let path = staging.path().join(&file.dest);
        let (from, announced) = match &source {
            Source::Dir(dir) => (copy_local(dir, file, &req.hub, &path).await?, None),
            Source::Hub(client) => {
                let url = file.url(&req.hub);
                let mut progress = Progress::new(&file.dest, req.quiet);
                let limit = file.size.unwrap_or(MAX_FILE_BYTES);
                let done =
                    hub::download(client, http, &url, &file.dest, &path, limit, &mut progress).await.map_err(|e| {
                        match e {
                            DownloadError::Transport(cause) => FetchError::unreachable(model, &req.hub, &cause),
                            DownloadError::Other(e) => e,
                        }
                    })?;
                (url, done.announced)
            }
        };
        let digest = digest(&path).await?;
        let verified = verify(file, &digest, announced, req.from.is_none(), &from)?;
        files.insert(file.dest.clone(), FileRecord { sha256: digest.sha256, bytes: digest.len, from, verified });
    }

    if let Some(config) = &model.preprocessor_config {
        preprocessor::check(&staging.path().join(config), &model.manifest)
            .map_err(|message| FetchError::Preprocessor { file: config.clone(), message })?;
    }
    let taken_from = match &req.from {
        Some(dir) => dir.display().to_string(),
        None => req.hub.clone(),
    };
    let bytes = write_metadata(staging.path(), model, taken_from, files).await?;
    let manifest = ModelManifest::load(staging.path())
        .map_err(|e| FetchError::Manifest { name: model.name.clone(), message: e.to_string() })?;
    commit(staging, &target, models_dir, &model.name)?;
    Ok(Installed { dir: target, manifest, bytes })
}

/// Only http(s) base URLs; a typo fails before anything is created.
fn check_hub(hub: &str) -> Result<(), FetchError> {
    let bad = |reason: String| FetchError::BadHub { url: hub.into(), reason };
    let url = reqwest::Url::parse(hub).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!("scheme {:?} is not http or https", url.scheme())));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a hub base URL takes no query or fragment".into()));
    }
    Ok(())
}

/// Copies `<dir>/<dest>` into the staging directory; a missing file names its URL.
async fn copy_local(dir: &Path, file: &RemoteFile, hub: &str, to: &Path) -> Result<String, FetchError> {
    let src = dir.join(&file.dest);
    let meta = match tokio::fs::metadata(&src).await {
        Ok(meta) if meta.is_file() => meta,
        _ => return Err(FetchError::MissingLocal { path: src, url: file.url(hub) }),
    };
    let limit = file.size.unwrap_or(MAX_FILE_BYTES);
    if meta.len() > limit {
        return Err(FetchError::TooLarge { file: file.dest.clone(), url: src.display().to_string(), limit });
    }
    tokio::fs::copy(&src, to).await.map_err(FetchError::io(format!("copying {}", src.display())))?;
    Ok(src.display().to_string())
}

async fn digest(path: &Path) -> Result<FileDigest, FetchError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || digest_file(&owned))
        .await
        .map_err(|e| FetchError::Io {
            context: format!("hashing {}", path.display()),
            source: std::io::Error::other(e),
        })?
        .map_err(FetchError::io(format!("hashing {}", path.display())))
}

/// Checks the pinned SHA-256 and the hub's announced checksum, whichever exist. A hub
/// download must have at least one; local files are trusted where none is known.
fn verify(
    file: &RemoteFile,
    digest: &FileDigest,
    announced: Option<Expected>,
    downloaded: bool,
    from: &str,
) -> Result<Vec<String>, FetchError> {
    let pinned = file
        .sha256
        .as_ref()
        .map(|hex| Expected::Sha256 { hex: hex.clone(), origin: "pinned in imgidx's model registry" });
    let checks: Vec<Expected> = pinned.into_iter().chain(announced).collect();
    if checks.is_empty() && downloaded {
        return Err(FetchError::NoChecksum { file: file.dest.clone(), url: from.into() });
    }
    for check in &checks {
        check.check(digest).map_err(|m| FetchError::Checksum {
            file: file.dest.clone(),
            kind: m.kind,
            expected: m.expected,
            actual: m.actual,
            origin: m.origin,
        })?;
    }
    Ok(checks.iter().map(Expected::label).collect())
}

/// Writes `manifest.json` and `checksums.json`; returns the model directory's total size.
async fn write_metadata(
    dir: &Path,
    model: &KnownModel,
    source: String,
    mut files: BTreeMap<String, FileRecord>,
) -> Result<u64, FetchError> {
    let json = |what: &str, e: serde_json::Error| FetchError::Io {
        context: format!("serialising {what}"),
        source: std::io::Error::other(e),
    };
    let mut manifest = serde_json::to_vec_pretty(&model.manifest).map_err(|e| json(ModelManifest::FILE, e))?;
    manifest.push(b'\n');
    let manifest_path = dir.join(ModelManifest::FILE);
    tokio::fs::write(&manifest_path, &manifest)
        .await
        .map_err(FetchError::io(format!("writing {}", manifest_path.display())))?;
    let generated = digest(&manifest_path).await?;
    files.insert(
        ModelManifest::FILE.into(),
        FileRecord {
            sha256: generated.sha256,
            bytes: generated.len,
            from: "written by imgidx models fetch".into(),
            verified: Vec::new(),
        },
    );
    let bytes: u64 = files.values().map(|f| f.bytes).sum();
    let record = Checksums { model: model.name.clone(), source, files };
    let mut text = serde_json::to_vec_pretty(&record).map_err(|e| json(CHECKSUMS_FILE, e))?;
    text.push(b'\n');
    let path = dir.join(CHECKSUMS_FILE);
    tokio::fs::write(&path, &text).await.map_err(FetchError::io(format!("writing {}", path.display())))?;
    Ok(bytes + text.len() as u64)
}

/// Renames the staging directory to `target`. A model being replaced is first moved
/// aside (and put back if the swap fails), then deleted.
fn commit(staging: TempDir, target: &Path, models_dir: &Path, name: &str) -> Result<(), FetchError> {
    let previous = if target.exists() {
        let aside = tempfile::Builder::new()
            .prefix(&format!(".old-{name}-"))
            .tempdir_in(models_dir)
            .map_err(FetchError::io(format!("creating a directory in {}", models_dir.display())))?;
        // Onto the empty directory just made: rename replaces an empty directory.
        std::fs::rename(target, aside.path())
            .map_err(FetchError::io(format!("moving the installed {} aside", target.display())))?;
        Some(aside)
    } else {
        None
    };
    if let Err(e) = std::fs::rename(staging.path(), target) {
        let mut context = format!("moving the new model into {}", target.display());
        if let Some(aside) = previous {
            if std::fs::rename(aside.path(), target).is_err() {
                // Kept (not deleted with the TempDir) so the previous model is not lost.
                context.push_str(&format!("; the previous model is in {}", aside.keep().display()));
            }
        }
        return Err(FetchError::Io { context, source: e });
    }
    // The staging path is now the target: disarm its cleanup.
    let _ = staging.keep();
    drop(previous); // deletes the replaced model
    Ok(())
}
