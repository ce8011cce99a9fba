//! `models list`: the models installed in `models_dir` (directories whose manifest
//! loads), directories there that are not valid models, and the known models not
//! installed yet.

use std::path::{Path, PathBuf};

use serde::Serialize;

use imgidx_shared::embed::ModelManifest;

use super::error::FetchError;
use super::install::CHECKSUMS_FILE;
use super::progress::mb;
use super::registry::Registry;

/// Directory entries looked at, and files counted per model: bounded on purpose.
const MAX_ENTRIES: usize = 10_000;
const MAX_DEPTH: usize = 4;

#[derive(Debug, Serialize)]
pub struct Listing {
    pub models_dir: PathBuf,
    pub installed: Vec<InstalledModel>,
    pub invalid: Vec<InvalidDir>,
    /// Known to `models fetch` and not installed.
    pub available: Vec<Available>,
}

#[derive(Debug, Serialize)]
pub struct InstalledModel {
    /// Directory name (what `models fetch` installed it as).
    pub name: String,
    /// `name` in its manifest.
    pub model: String,
    pub embedding_dim: usize,
    pub image_size: u32,
    pub text_encoder: bool,
    pub tokenizer: bool,
    /// Has a `checksums.json` (installed by `models fetch`).
    pub checksums: bool,
    pub bytes: u64,
    pub path: PathBuf,
    /// It is the configured `model.dir`.
    pub active: bool,
}

#[derive(Debug, Serialize)]
pub struct InvalidDir {
    pub name: String,
    pub path: PathBuf,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct Available {
    pub name: String,
    pub description: String,
}

pub fn list(models_dir: &Path, registry: &Registry, active: &Path) -> Result<Listing, FetchError> {
    let mut installed = Vec::new();
    let mut invalid = Vec::new();
    let mut dirs = subdirectories(models_dir)?;
    dirs.sort();
    let active = active.canonicalize().ok();
    for (name, path) in dirs {
        match ModelManifest::load(&path) {
            Ok(m) => installed.push(InstalledModel {
                model: m.name.clone(),
                embedding_dim: m.embedding_dim,
                image_size: m.image_size,
                text_encoder: m.text.is_some(),
                tokenizer: m.tokenizer.is_some(),
                checksums: path.join(CHECKSUMS_FILE).is_file(),
                bytes: size_on_disk(&path, 0, &mut 0),
                active: active.is_some() && path.canonicalize().ok() == active,
                name,
                path,
            }),
            Err(e) => invalid.push(InvalidDir { name, path, error: e.to_string() }),
        }
    }
    let available = registry
        .models()
        .iter()
        .filter(|m| !installed.iter().any(|i| i.name == m.name))
        .map(|m| Available { name: m.name.clone(), description: m.description.clone() })
        .collect();
    Ok(Listing { models_dir: models_dir.to_path_buf(), installed, invalid, available })
}

/// Visible subdirectories; none when `models_dir` does not exist yet. Hidden ones are
/// `models fetch`'s staging and replaced directories, never models.
fn subdirectories(models_dir: &Path) -> Result<Vec<(String, PathBuf)>, FetchError> {
    let entries = match std::fs::read_dir(models_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FetchError::Io { context: format!("reading {}", models_dir.display()), source: e }),
    };
    let mut dirs = Vec::new();
    for entry in entries.take(MAX_ENTRIES) {
        let entry = entry.map_err(FetchError::io(format!("reading {}", models_dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        dirs.push((name, entry.path()));
    }
    Ok(dirs)
}

/// Sum of file sizes below `dir` (symlinks not followed), bounded in depth and count.
fn size_on_disk(dir: &Path, depth: usize, seen: &mut usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut total = 0;
    for entry in entries.flatten() {
        *seen += 1;
        if *seen > MAX_ENTRIES {
            break;
        }
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_file() {
            total += entry.metadata().map_or(0, |m| m.len());
        } else if kind.is_dir() && depth < MAX_DEPTH {
            total += size_on_disk(&entry.path(), depth + 1, seen);
        }
    }
    total
}

pub fn render(listing: &Listing) -> String {
    let mut out = String::new();
    if listing.installed.is_empty() {
        out.push_str(&format!("no models installed in {}\n", listing.models_dir.display()));
    } else {
        let rows: Vec<[String; 7]> = listing
            .installed
            .iter()
            .map(|m| {
                let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
                let name = if m.active { format!("{} *", m.name) } else { m.name.clone() };
                [
                    name,
                    m.embedding_dim.to_string(),
                    m.image_size.to_string(),
                    yes(m.text_encoder),
                    yes(m.tokenizer),
                    mb(m.bytes),
                    m.path.display().to_string(),
                ]
            })
            .collect();
        let header = ["NAME", "DIM", "IMAGE", "TEXT", "TOKENIZER", "SIZE", "PATH"].map(String::from);
        let widths: Vec<usize> =
            (0..7).map(|c| rows.iter().chain([&header]).map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        for row in std::iter::once(&header).chain(&rows) {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        if listing.installed.iter().any(|m| m.active) {
            out.push_str("* the configured model.dir\n");
        }
    }
    for bad in &listing.invalid {
        out.push_str(&format!("not a usable model: {}: {}\n", bad.path.display(), bad.error));
    }
    if !listing.available.is_empty() {
        out.push_str("\navailable (imgidx models fetch NAME):\n");
        for m in &listing.available {
            out.push_str(&format!("  {}  {}\n", m.name, m.description));
        }
    }
    out
}
