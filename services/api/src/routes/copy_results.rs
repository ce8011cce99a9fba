//! Seed 002's `copy_results: true`: the query's result files are hard-linked (copied
//! when a link is impossible, e.g. across file systems) into
//! `<api.results_dir>/<query id>/`, named `<rank>_<file name>`, and the answer names
//! that folder. Only regular files are linked or copied, only inside
//! `api.allowed_roots` when roots are set, and a copy reads at most `max_file_bytes`
//! through `imgidx_shared::files` (no symlink, FIFO or device is ever followed).

use std::path::{Path, PathBuf};

use uuid::Uuid;

use imgidx_shared::files::{self, ReadLimits};

use crate::error::ApiError;

/// Where one query's files went, and which results could not be copied.
#[derive(Debug, PartialEq)]
pub struct Copied {
    pub folder: PathBuf,
    /// Ranks of results whose file is gone or not a regular file any more.
    pub skipped: Vec<usize>,
}

/// Links or copies `paths` (in rank order) into a new folder under `results_dir`. Blocking.
pub fn copy_results(results_dir: &Path, paths: &[String], roots: &[PathBuf], limits: &ReadLimits) -> Result<Copied, ApiError> {
    let folder = results_dir.join(Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&folder).map_err(|e| ApiError::Internal(format!("creating {}: {e}", folder.display())))?;
    let mut skipped = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let rank = i + 1;
        let source = Path::new(path);
        let allowed = roots.is_empty() || crate::paths::inside(source, roots);
        let name = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
        let target = folder.join(format!("{rank:03}_{name}"));
        if !allowed || place(source, &target, limits).is_err() {
            skipped.push(rank);
        }
    }
    Ok(Copied { folder, skipped })
}

/// A hard link when the file is a regular file on the same file system, else a bounded copy.
fn place(source: &Path, target: &Path, limits: &ReadLimits) -> Result<(), ()> {
    let meta = std::fs::symlink_metadata(source).map_err(|_| ())?;
    if !meta.file_type().is_file() {
        return Err(());
    }
    if std::fs::hard_link(source, target).is_ok() {
        return Ok(());
    }
    let contents = files::read_regular(source, limits).map_err(|_| ())?;
    std::fs::write(target, contents.bytes).map_err(|_| ())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LIMITS: ReadLimits = ReadLimits { max_bytes: 1 << 20, max_time: Duration::from_secs(5) };

    #[test]
    fn results_are_linked_in_rank_order_and_odd_files_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let images = root.join("images");
        std::fs::create_dir(&images).unwrap();
        std::fs::write(images.join("a.jpg"), b"aaa").unwrap();
        std::fs::write(images.join("b.jpg"), b"bbb").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", images.join("c.jpg")).unwrap();
        let paths: Vec<String> = ["b.jpg", "a.jpg", "c.jpg", "gone.jpg"]
            .iter()
            .map(|n| images.join(n).to_string_lossy().into_owned())
            .collect();
        let out = copy_results(&root.join("results"), &paths, &[], &LIMITS).unwrap();
        assert_eq!(out.skipped, vec![3, 4], "a symlink and a missing file are not copied");
        assert_eq!(std::fs::read(out.folder.join("001_b.jpg")).unwrap(), b"bbb");
        assert_eq!(std::fs::read(out.folder.join("002_a.jpg")).unwrap(), b"aaa");
        assert_eq!(std::fs::read_dir(&out.folder).unwrap().count(), 2);
        // Outside the roots: nothing.
        let out = copy_results(&root.join("results"), &paths, &[root.join("elsewhere")], &LIMITS).unwrap();
        assert_eq!(out.skipped, vec![1, 2, 3, 4]);
    }
}
