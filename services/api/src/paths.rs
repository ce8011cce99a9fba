//! Turning a client's path into the canonical path we index: absolute, symlinks
//! resolved, inside the allowed roots, with the file stamp used for change detection.

use std::io;
use std::path::{Component, Path, PathBuf};

use imgidx_shared::messages::FileStamp;

/// Linux's PATH_MAX.
const MAX_PATH_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPath {
    pub canonical: String,
    /// None when the path is not a readable regular file (the worker reports why).
    pub stamp: Option<FileStamp>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PathRejection {
    #[error("path must be absolute: {0:?}")]
    Relative(String),
    #[error("path is not valid: {0:?}")]
    Invalid(String),
    /// Names only the path the client gave, never where its symlinks lead.
    #[error("path {0:?} is outside the allowed roots")]
    OutsideRoots(String),
}

/// Resolve the allowed roots once at start-up (they may themselves be symlinks).
pub fn canonical_roots(roots: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    roots
        .iter()
        .map(|r| {
            std::fs::canonicalize(r)
                .map_err(|e| io::Error::new(e.kind(), format!("allowed root {}: {e}", r.display())))
        })
        .collect()
}

/// Resolve one client path. Follows symlinks where the path exists; a missing path is
/// resolved through its deepest existing ancestor so that `..` and symlinked parents
/// cannot escape the allowed roots either.
pub fn resolve(raw: &str, roots: &[PathBuf]) -> Result<ResolvedPath, PathRejection> {
    let canonical = canonical(raw)?;
    if !roots.is_empty() && !inside(Path::new(&canonical), roots) {
        return Err(PathRejection::OutsideRoots(raw.to_string()));
    }
    Ok(ResolvedPath { stamp: stamp_of(Path::new(&canonical)), canonical })
}

/// The canonical form of an absolute client path (no root check).
pub fn canonical(raw: &str) -> Result<String, PathRejection> {
    let path = Path::new(raw);
    if raw.is_empty() || !path.is_absolute() {
        return Err(PathRejection::Relative(raw.to_string()));
    }
    // Longer than the OS's PATH_MAX cannot be opened anyway, and bounds the work below.
    if raw.contains('\0') || raw.len() > MAX_PATH_BYTES {
        return Err(PathRejection::Invalid(raw.to_string()));
    }
    let canonical = canonicalize_lenient(path);
    canonical.to_str().map(str::to_string).ok_or_else(|| PathRejection::Invalid(raw.to_string()))
}

/// Whether a canonical path lies under one of the (canonical) roots.
pub fn inside(canonical: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|root| canonical.starts_with(root))
}

/// Size and modification time of a regular file.
pub fn stamp_of(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    Some(FileStamp::from_metadata(&meta))
}

fn canonicalize_lenient(path: &Path) -> PathBuf {
    if let Ok(full) = std::fs::canonicalize(path) {
        return full;
    }
    // The deepest prefix that exists, canonicalized (symlinks and `..` resolved by the OS),
    // then the rest lexically. Existence is monotone in the prefix length, so a binary
    // search finds it with O(log n) canonicalizations instead of one per component.
    let components: Vec<Component> = path.components().collect();
    let prefix = |n: usize| -> PathBuf { components[..n].iter().collect() };
    let (mut lo, mut hi) = (0usize, components.len());
    let mut best: Option<PathBuf> = None;
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        match std::fs::canonicalize(prefix(mid)) {
            Ok(found) => {
                best = Some(found);
                lo = mid;
            }
            Err(_) => hi = mid - 1,
        }
    }
    match best {
        Some(mut out) => {
            for c in &components[lo..] {
                out.push(c.as_os_str());
            }
            lexical_normalize(&out)
        }
        None => lexical_normalize(path),
    }
}

/// Remove `.` and resolve `..` without touching the file system.
fn lexical_normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_empty_paths_are_rejected() {
        assert_eq!(resolve("images/a.jpg", &[]), Err(PathRejection::Relative("images/a.jpg".into())));
        assert_eq!(resolve("", &[]), Err(PathRejection::Relative(String::new())));
    }

    #[test]
    fn symlinks_resolve_and_roots_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.png"), b"x").unwrap();
        std::fs::write(root.join("ok.png"), b"xy").unwrap();
        std::os::unix::fs::symlink(outside.join("secret.png"), root.join("link.png")).unwrap();
        let roots = canonical_roots(std::slice::from_ref(&root)).unwrap();

        let ok = resolve(root.join("ok.png").to_str().unwrap(), &roots).unwrap();
        assert_eq!(ok.stamp.unwrap().size, 2);
        let link = root.join("link.png").to_str().unwrap().to_string();
        let rejected = resolve(&link, &roots).unwrap_err();
        assert_eq!(rejected, PathRejection::OutsideRoots(link.clone()));
        // The message names the client's path only, never where the symlink leads.
        assert!(!rejected.to_string().contains("outside/secret.png"), "{rejected}");
        assert!(!rejected.to_string().contains("secret"), "{rejected}");
        let escape = format!("{}/../outside/missing.png", root.display());
        assert!(matches!(resolve(&escape, &roots), Err(PathRejection::OutsideRoots(..))));
        // A missing file inside the root is accepted (the worker reports it), with no stamp.
        let missing = resolve(root.join("nope/missing.png").to_str().unwrap(), &roots).unwrap();
        assert!(missing.stamp.is_none());
        assert!(missing.canonical.ends_with("/root/nope/missing.png"));
    }

    #[test]
    fn overlong_and_deep_missing_paths_are_bounded() {
        assert!(matches!(resolve(&format!("/{}", "a/".repeat(2100)), &[]), Err(PathRejection::Invalid(_))));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("x/y")).unwrap();
        let deep = format!("{}/x/y/{}z.png", dir.path().display(), "m/".repeat(1000));
        let r = resolve(&deep, &[]).unwrap();
        assert!(r.canonical.contains("/x/y/m/m/") && r.canonical.ends_with("/m/z.png") && r.stamp.is_none());
        // `..` after a missing directory is resolved lexically.
        let back = resolve(&format!("{}/x/missing/../y", dir.path().display()), &[]).unwrap();
        assert!(back.canonical.ends_with("/x/y"), "{}", back.canonical);
    }

    #[test]
    fn same_file_through_two_spellings_is_one_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), b"x").unwrap();
        let a = resolve(dir.path().join("a.png").to_str().unwrap(), &[]).unwrap();
        let b = resolve(&format!("{}/./sub/../a.png", dir.path().display()), &[]).unwrap();
        assert_eq!(a.canonical, b.canonical);
    }
}
