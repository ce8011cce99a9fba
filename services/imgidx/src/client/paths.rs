//! Turning the command line's files and directories into the absolute, distinct
//! image paths the server is asked to index.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

/// File extensions (compared case-insensitively) taken from directories.
/// Every format the server decodes (HEIF and AVIF through libheif, camera RAW through its
/// embedded preview), so a folder given to `imgidx index` sends all of them.
pub const IMAGE_EXTENSIONS: [&str; 22] = [
    "jpg", "jpeg", "png", "gif", "webp", "tif", "tiff", "bmp", "heic", "heif", "hif", "avif", "dng", "cr2", "cr3", "nef",
    "nrw", "arw", "raf", "orf", "rw2", "raw",
];

#[derive(Debug, Default)]
pub struct Expansion {
    /// Absolute paths in command-line order (directory contents sorted), each once.
    pub paths: Vec<String>,
    /// Problems that did not stop the expansion (unreadable subdirectories, names that are not UTF-8).
    pub warnings: Vec<String>,
}

pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Expand `inputs`: a file is taken whatever its name (the server reports non-images as
/// failed); a directory gives its image files, its whole tree with `recursive`.
/// A missing or unreadable input is an error, before anything is submitted.
pub fn expand(inputs: &[PathBuf], recursive: bool) -> Result<Expansion> {
    let mut walk = Walk { recursive, seen_dirs: HashSet::new(), seen: HashSet::new(), out: Expansion::default() };
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| anyhow!("{}: {}", input.display(), io_reason(&e)))?;
        let abs = std::path::absolute(input).map_err(|e| anyhow!("{}: {e}", input.display()))?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(&abs).map_err(|e| anyhow!("{}: {}", input.display(), io_reason(&e)))?;
            walk.seen_dirs.insert((meta.dev(), meta.ino()));
            walk.dir(entries, &abs);
        } else {
            let text = abs.to_str().ok_or_else(|| anyhow!("{}: path is not valid UTF-8", input.display()))?;
            walk.push(text.to_string());
        }
    }
    Ok(walk.out)
}

struct Walk {
    recursive: bool,
    /// (device, inode) of every directory entered: symlink loops end here.
    seen_dirs: HashSet<(u64, u64)>,
    seen: HashSet<String>,
    out: Expansion,
}

impl Walk {
    fn push(&mut self, path: String) {
        if self.seen.insert(path.clone()) {
            self.out.paths.push(path);
        }
    }

    fn dir(&mut self, entries: std::fs::ReadDir, dir: &Path) {
        let mut children: Vec<PathBuf> = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => children.push(e.path()),
                Err(e) => self.out.warnings.push(format!("{}: {}", dir.display(), io_reason(&e))),
            }
        }
        children.sort();
        let mut subdirs = Vec::new();
        for child in children {
            // Follows symlinks: a link to an image or to a directory counts as its target.
            let Ok(meta) = std::fs::metadata(&child) else { continue };
            if meta.is_dir() {
                if self.recursive {
                    subdirs.push((child, meta));
                }
            } else if meta.is_file() && is_image_name(&child) {
                match child.to_str() {
                    Some(s) => self.push(s.to_string()),
                    None => self.out.warnings.push(format!("{}: skipped, name is not valid UTF-8", child.display())),
                }
            }
        }
        for (sub, meta) in subdirs {
            if !self.seen_dirs.insert((meta.dev(), meta.ino())) {
                continue;
            }
            match std::fs::read_dir(&sub) {
                Ok(entries) => self.dir(entries, &sub),
                Err(e) => self.out.warnings.push(format!("{}: skipped, {}", sub.display(), io_reason(&e))),
            }
        }
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    fn names(e: &Expansion, root: &Path) -> Vec<String> {
        e.paths.iter().map(|p| Path::new(p).strip_prefix(root).unwrap().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn directories_give_image_files_by_extension_any_case() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in ["b.JPG", "a.png", "c.Tiff", "notes.txt", "noext", "sub/d.webp", "sub/deep/e.bmp", "f.HEIC", "g.avif", "h.dng", "i.CR3", "j.nef"] {
            touch(&root.join(f));
        }
        let flat = expand(&[root.to_path_buf()], false).unwrap();
        assert_eq!(names(&flat, root), ["a.png", "b.JPG", "c.Tiff", "f.HEIC", "g.avif", "h.dng", "i.CR3", "j.nef"]);
        let tree = expand(&[root.to_path_buf()], true).unwrap();
        let want = ["a.png", "b.JPG", "c.Tiff", "f.HEIC", "g.avif", "h.dng", "i.CR3", "j.nef", "sub/d.webp", "sub/deep/e.bmp"];
        assert_eq!(names(&tree, root), want);
        assert!(tree.warnings.is_empty(), "{:?}", tree.warnings);
    }

    #[test]
    fn explicit_files_whatever_their_name_made_absolute_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("notes.txt"));
        touch(&root.join("a.png"));
        let inputs = [root.join("notes.txt"), root.to_path_buf(), root.join("a.png")];
        let e = expand(&inputs, false).unwrap();
        assert_eq!(names(&e, root), ["notes.txt", "a.png"]);
        assert!(e.paths.iter().all(|p| Path::new(p).is_absolute()));

        let cwd = std::env::current_dir().unwrap();
        let rel = expand(&[PathBuf::from("Cargo.toml")], false).unwrap();
        assert_eq!(rel.paths, [cwd.join("Cargo.toml").to_str().unwrap()]);
    }

    #[test]
    fn missing_input_is_an_error_naming_it() {
        let err = expand(&[PathBuf::from("/no/such/dir/x.jpg")], true).unwrap_err().to_string();
        assert_eq!(err, "/no/such/dir/x.jpg: no such file or directory");
    }

    #[test]
    fn symlinked_directories_are_followed_once_without_looping() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("a/x.jpg"));
        std::os::unix::fs::symlink(root, root.join("a/loop")).unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("b")).unwrap();
        let e = expand(&[root.to_path_buf()], true).unwrap();
        assert_eq!(names(&e, root), ["a/x.jpg"]);
    }
}
