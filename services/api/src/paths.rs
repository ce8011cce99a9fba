//! Turning a client's path into the canonical path we index: absolute, symlinks
//! resolved, inside the allowed roots, with the file stamp used for change detection.

use std::collections::HashMap;
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
    resolve_in(raw, roots, &mut HashMap::new())
}

/// Paths one thread of [`resolve_many`] takes at least.
const MIN_PER_THREAD: usize = 512;

/// [`resolve`] for each of `raws`, in order. A request carries up to 10,000 paths, and
/// resolving one path on its own costs a system call per component: here each directory
/// is resolved once, a file in it costs one `lstat`, and the paths are spread over the
/// machine's cores.
pub fn resolve_many(raws: &[String], roots: &[PathBuf]) -> Vec<Result<ResolvedPath, PathRejection>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = raws.len().div_ceil(cores).max(MIN_PER_THREAD);
    if raws.len() <= per_thread {
        let mut dirs = HashMap::new();
        return raws.iter().map(|raw| resolve_in(raw, roots, &mut dirs)).collect();
    }
    std::thread::scope(|s| {
        let chunks: Vec<_> = raws
            .chunks(per_thread)
            .map(|chunk| {
                let handle = s.spawn(move || {
                    let mut dirs = HashMap::new();
                    chunk.iter().map(|raw| resolve_in(raw, roots, &mut dirs)).collect::<Vec<_>>()
                });
                (chunk, handle)
            })
            .collect();
        chunks
            .into_iter()
            .flat_map(|(chunk, handle)| {
                // A thread that panicked resolved nothing: its paths are refused, never lost.
                handle.join().unwrap_or_else(|_| chunk.iter().map(|raw| Err(PathRejection::Invalid(raw.clone()))).collect())
            })
            .collect()
    })
}

/// [`resolve`], with `dirs` caching the canonical form of each parent directory met.
fn resolve_in(raw: &str, roots: &[PathBuf], dirs: &mut HashMap<PathBuf, Option<PathBuf>>) -> Result<ResolvedPath, PathRejection> {
    let path = checked(raw)?;
    let (canonical, stamp) = match in_known_dir(path, dirs) {
        Some(found) => found,
        None => {
            let canonical = canonicalize_lenient(path);
            let stamp = stamp_of(&canonical);
            (canonical, stamp)
        }
    };
    let canonical = canonical.into_os_string().into_string().map_err(|_| PathRejection::Invalid(raw.to_string()))?;
    if !roots.is_empty() && !inside(Path::new(&canonical), roots) {
        return Err(PathRejection::OutsideRoots(raw.to_string()));
    }
    Ok(ResolvedPath { canonical, stamp })
}

/// The canonical path and stamp of an existing entry that is not a symlink, from its
/// directory's canonical form (cached) and one `lstat`: `realpath(dir/name)` is
/// `realpath(dir)/name` then. None for anything else (missing, a symlink, a name such as
/// `..`): the full resolution decides.
fn in_known_dir(path: &Path, dirs: &mut HashMap<PathBuf, Option<PathBuf>>) -> Option<(PathBuf, Option<FileStamp>)> {
    let (parent, name) = (path.parent()?, path.file_name()?);
    let dir = dirs.entry(parent.to_path_buf()).or_insert_with(|| std::fs::canonicalize(parent).ok()).as_ref()?;
    let full = dir.join(name);
    let meta = std::fs::symlink_metadata(&full).ok()?;
    if meta.file_type().is_symlink() {
        return None;
    }
    let stamp = meta.is_file().then(|| FileStamp::from_metadata(&meta));
    Some((full, stamp))
}

/// The canonical form of an absolute client path (no root check).
pub fn canonical(raw: &str) -> Result<String, PathRejection> {
    let canonical = canonicalize_lenient(checked(raw)?);
    canonical.to_str().map(str::to_string).ok_or_else(|| PathRejection::Invalid(raw.to_string()))
}

/// `raw` as a path, if it is absolute and could name a file at all.
fn checked(raw: &str) -> Result<&Path, PathRejection> {
    let path = Path::new(raw);
    if raw.is_empty() || !path.is_absolute() {
        return Err(PathRejection::Relative(raw.to_string()));
    }
    // Longer than the OS's PATH_MAX cannot be opened anyway, and bounds the work below.
    if raw.contains('\0') || raw.len() > MAX_PATH_BYTES {
        return Err(PathRejection::Invalid(raw.to_string()));
    }
    Ok(path)
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

    #[test]
    fn many_paths_resolve_as_each_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("photos/sub")).unwrap();
        std::fs::create_dir_all(root.join("elsewhere")).unwrap();
        std::fs::write(root.join("elsewhere/secret.png"), b"x").unwrap();
        std::os::unix::fs::symlink(root.join("elsewhere/secret.png"), root.join("photos/link.png")).unwrap();
        std::os::unix::fs::symlink(root.join("photos/sub"), root.join("photos/subdir")).unwrap();
        let mut raws = Vec::new();
        for i in 0..1500 {
            let name = format!("photos/sub/{i}.jpg");
            std::fs::write(root.join(&name), vec![0u8; i % 7]).unwrap();
            raws.push(root.join(&name).display().to_string());
            raws.push(format!("{}/photos/subdir/{i}.jpg", root.display()));
            raws.push(format!("{}/photos/sub/../sub/{i}.jpg", root.display()));
        }
        for odd in ["photos/link.png", "photos/missing.jpg", "photos/nodir/x.jpg", "photos/sub/..", "photos/sub", "elsewhere/secret.png"] {
            raws.push(root.join(odd).display().to_string());
        }
        raws.push("relative.jpg".into());
        let roots = vec![root.join("photos")];
        let alone: Vec<_> = raws.iter().map(|r| resolve(r, &roots)).collect();
        // `resolve` itself takes the cached route: compare with a resolution from scratch too.
        let scratch: Vec<_> = raws
            .iter()
            .map(|r| {
                let c = canonical(r)?;
                if !inside(Path::new(&c), &roots) {
                    return Err(PathRejection::OutsideRoots(r.clone()));
                }
                Ok(ResolvedPath { stamp: stamp_of(Path::new(&c)), canonical: c })
            })
            .collect();
        let many = resolve_many(&raws, &roots);
        assert_eq!(many.len(), raws.len());
        assert_eq!(many, alone);
        assert_eq!(many, scratch);
        assert!(matches!(&many[4500], Err(PathRejection::OutsideRoots(_))), "a link out of the roots: {:?}", many[4500]);
        assert_eq!(many[1].as_ref().unwrap().canonical, many[0].as_ref().unwrap().canonical, "through a symlinked directory");
        assert!(many[4501].as_ref().unwrap().stamp.is_none(), "missing");
    }

}
