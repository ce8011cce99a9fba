//! Moving archived files on disk. A move never replaces a file (a hard link, which fails
//! when the name is taken, then the old name removed) and never leaves the root the file
//! lies under (the destination's directory is checked after it is made, so a symlink
//! planted in the archive folder cannot lead elsewhere).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::paths;

/// Folder exact duplicates go to, beside the files they duplicate, under each root.
pub const DUPLICATES_FOLDER: &str = "_duplicates";
/// Folder selections go to (`_archive/<archive_name>`), under each root.
pub const ARCHIVE_FOLDER: &str = "_archive";

/// Where `path` goes in `folder`: under the allowed root holding it (the deepest one),
/// keeping its path relative to that root. With no allowed roots, the file's own
/// directory counts as its root. None when `path` is under no root.
pub fn destination(path: &Path, roots: &[PathBuf], folder: &Path) -> Option<PathBuf> {
    let root = root_of(path, roots)?;
    let relative = path.strip_prefix(&root).ok()?;
    (!relative.as_os_str().is_empty()).then(|| root.join(folder).join(relative))
}

/// Moves `from` to `to` unless a file is there already. `root` bounds where `to` may be.
pub fn move_file(from: &Path, to: &Path, root: &Path) -> io::Result<()> {
    // The file must still be the one indexed, not a symlink put in its place since.
    let real = fs::canonicalize(from)?;
    if real != from {
        return Err(io::Error::other("the path is now a link to another file; left as it is"));
    }
    let dir = to.parent().ok_or_else(|| io::Error::other("no directory to move into"))?;
    fs::create_dir_all(dir)?;
    if !paths::inside(&fs::canonicalize(dir)?, std::slice::from_ref(&root.to_path_buf())) {
        return Err(io::Error::other("the destination leads outside the root; nothing moved"));
    }
    fs::hard_link(from, to).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => io::Error::new(e.kind(), "a file is at the destination already; nothing moved"),
        _ => e,
    })?;
    if let Err(e) = fs::remove_file(from) {
        let _ = fs::remove_file(to);
        return Err(e);
    }
    Ok(())
}

/// The root `path` is under: the deepest allowed root holding it, or with no allowed
/// roots its own directory.
pub fn root_of(path: &Path, roots: &[PathBuf]) -> Option<PathBuf> {
    match roots {
        [] => path.parent().map(Path::to_path_buf),
        _ => roots.iter().filter(|r| path.starts_with(r)).max_by_key(|r| r.as_os_str().len()).cloned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn destinations_keep_the_path_under_the_deepest_root() {
        let roots = vec![PathBuf::from("/srv"), PathBuf::from("/srv/photos")];
        let to = destination(Path::new("/srv/photos/2024/a.jpg"), &roots, Path::new(DUPLICATES_FOLDER));
        assert_eq!(to, Some(PathBuf::from("/srv/photos/_duplicates/2024/a.jpg")));
        assert_eq!(destination(Path::new("/elsewhere/a.jpg"), &roots, Path::new("x")), None);
        let alone = destination(Path::new("/p/a.jpg"), &[], Path::new("_archive/trip"));
        assert_eq!(alone, Some(PathBuf::from("/p/_archive/trip/a.jpg")));
    }

    #[test]
    fn a_move_never_replaces_a_file_nor_leaves_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let (a, b) = (root.join("a.jpg"), root.join("b.jpg"));
        fs::write(&a, b"a").unwrap();
        fs::write(&b, b"b").unwrap();
        let err = move_file(&a, &b, &root).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!((fs::read(&a).unwrap(), fs::read(&b).unwrap()), (b"a".to_vec(), b"b".to_vec()));

        let to = root.join("_duplicates/sub/a.jpg");
        move_file(&a, &to, &root).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read(&to).unwrap(), b"a");

        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("_archive")).unwrap();
        let err = move_file(&b, &root.join("_archive/b.jpg"), &root).unwrap_err();
        assert!(err.to_string().contains("outside the root"), "{err}");
        assert!(b.exists());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
