//! The directory walk of a trigger, on a blocking thread: depth first, one directory
//! listing open at a time, handing what it finds to the async side in chunks through a
//! bounded channel, so a directory of a million files never sits in memory whole and
//! the walk never runs far ahead of the queueing.
//!
//! A file is an image when its first bytes are a format the workers decode, whatever
//! its name says (an image named `photo` is found; a `.jpg` that is not an image, such
//! as a macOS `._photo.jpg`, is counted in `not_images` and skipped). Symlinks are
//! followed, each directory is entered once (by device and inode, so a symlink loop
//! ends), and whatever resolves outside the allowed roots is left out. Directories and
//! files that cannot be read are counted in `unreadable` and the walk goes on. The
//! folders archives move images into (`_duplicates`, `_archive`) are not entered, so
//! what was archived is not indexed again.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::curation::moves::{ARCHIVE_FOLDER, DUPLICATES_FOLDER};

use imgidx_shared::embed::{image_format, SNIFF_BYTES};
use imgidx_shared::files::{self, ReadRefusal};
use imgidx_shared::jobs::ScanCounts;
use imgidx_shared::messages::FileStamp;

use crate::paths::inside;

/// What the walk found since the last chunk, and its counts so far.
#[derive(Debug, Default)]
pub struct Chunk {
    pub images: Vec<FoundImage>,
    pub counts: ScanCounts,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FoundImage {
    /// Canonical path (symlinks resolved).
    pub path: String,
    pub stamp: FileStamp,
}

pub struct WalkOptions {
    pub recursive: bool,
    /// Canonical allowed roots; empty: anywhere.
    pub roots: Vec<PathBuf>,
    /// Images per chunk at most.
    pub chunk_images: usize,
    /// A chunk goes out at least this often while the walk finds anything or not, so
    /// the counts stay live and the lease is renewed.
    pub chunk_interval: Duration,
}

/// Walks `dir` (canonical), sending chunks until done or until the receiver is gone
/// (then it stops early). The last chunk carries the final counts.
pub fn walk(dir: &Path, options: &WalkOptions, tx: &mpsc::Sender<Chunk>) {
    let mut walker = Walker { options, tx, chunk: Chunk::default(), last_sent: Instant::now(), visited: HashSet::new() };
    let _ = walker.run(dir);
}

/// The receiver went away: stop walking.
struct Stopped;

struct Walker<'a> {
    options: &'a WalkOptions,
    tx: &'a mpsc::Sender<Chunk>,
    chunk: Chunk,
    last_sent: Instant,
    /// (device, inode) of every directory entered.
    visited: HashSet<(u64, u64)>,
}

impl Walker<'_> {
    fn run(&mut self, top: &Path) -> Result<(), Stopped> {
        let mut pending = vec![top.to_path_buf()];
        if let Ok(meta) = fs::metadata(top) {
            self.visited.insert((meta.dev(), meta.ino()));
        }
        while let Some(dir) = pending.pop() {
            self.list(&dir, &mut pending)?;
        }
        self.send()
    }

    fn list(&mut self, dir: &Path, pending: &mut Vec<PathBuf>) -> Result<(), Stopped> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::info!(dir = %dir.display(), error = %e, "scan: directory skipped: cannot be read");
                self.chunk.counts.unreadable += 1;
                return Ok(());
            }
        };
        for entry in entries {
            let Ok(entry) = entry else {
                self.chunk.counts.unreadable += 1;
                continue;
            };
            self.entry(&entry.path(), pending);
            if self.chunk.images.len() >= self.options.chunk_images
                || self.last_sent.elapsed() >= self.options.chunk_interval
            {
                self.send()?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, pending: &mut Vec<PathBuf>) {
        let Ok(link_meta) = fs::symlink_metadata(path) else {
            return; // gone since the listing
        };
        let is_link = link_meta.file_type().is_symlink();
        let meta = if is_link {
            match fs::metadata(path) {
                Ok(meta) => meta,
                Err(_) => return, // a dangling link is not a file
            }
        } else {
            link_meta
        };
        // Only a symlink can lead elsewhere: anything else lies under a canonical directory.
        let canonical = if is_link {
            match fs::canonicalize(path) {
                Ok(c) if self.options.roots.is_empty() || inside(&c, &self.options.roots) => c,
                Ok(c) => {
                    tracing::debug!(path = %path.display(), target = %c.display(), "scan: symlink out of the allowed roots skipped");
                    return;
                }
                Err(_) => return,
            }
        } else {
            path.to_path_buf()
        };
        if meta.is_dir() {
            if is_archive_folder(path) {
                return;
            }
            if self.options.recursive && self.visited.insert((meta.dev(), meta.ino())) {
                pending.push(canonical);
            }
        } else if meta.is_file() {
            self.file(canonical, &meta);
        }
    }

    fn file(&mut self, path: PathBuf, meta: &fs::Metadata) {
        self.chunk.counts.files_seen += 1;
        match sniff(&path) {
            Ok(true) => {}
            Ok(false) => {
                self.chunk.counts.not_images += 1;
                return;
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "scan: file skipped: cannot be read");
                self.chunk.counts.unreadable += 1;
                return;
            }
        }
        let Some(path) = path.to_str().map(str::to_string) else {
            self.chunk.counts.unreadable += 1; // not UTF-8: cannot be named in JSON
            return;
        };
        self.chunk.counts.images_found += 1;
        self.chunk.images.push(FoundImage { path, stamp: FileStamp::from_metadata(meta) });
    }

    /// Sends what was found so far; the counts carry over into the next chunk.
    fn send(&mut self) -> Result<(), Stopped> {
        let counts = self.chunk.counts;
        let chunk = std::mem::replace(&mut self.chunk, Chunk { images: Vec::new(), counts });
        self.last_sent = Instant::now();
        self.tx.blocking_send(chunk).map_err(|_| Stopped)
    }
}

/// Whether the file starts with an image format the workers decode; opened as a worker
/// opens it (non-blocking, no symlink, regular files only).
fn is_archive_folder(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == DUPLICATES_FOLDER || n == ARCHIVE_FOLDER)
}

fn sniff(path: &Path) -> Result<bool, ReadRefusal> {
    Ok(image_format(&files::read_head(path, SNIFF_BYTES)?).is_some())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    const PNG: &[u8] = &[0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 0, 0, 13, b'I', b'H', b'D', b'R'];

    fn collect(dir: &Path, options: WalkOptions) -> (Vec<String>, ScanCounts, usize) {
        let (tx, mut rx) = mpsc::channel(1);
        let dir = dir.to_path_buf();
        let walker = std::thread::spawn(move || walk(&dir, &options, &tx));
        let (mut images, mut counts, mut chunks) = (Vec::new(), ScanCounts::default(), 0);
        while let Some(chunk) = rx.blocking_recv() {
            images.extend(chunk.images.into_iter().map(|i| i.path));
            counts = chunk.counts;
            chunks += 1;
        }
        walker.join().unwrap();
        images.sort();
        (images, counts, chunks)
    }

    fn options(recursive: bool) -> WalkOptions {
        WalkOptions { recursive, roots: Vec::new(), chunk_images: 2, chunk_interval: Duration::from_secs(60) }
    }

    #[test]
    fn finds_images_by_content_through_nested_dirs_links_and_loops() {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        let write = |rel: &str, bytes: &[u8]| {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, bytes).unwrap();
        };
        write("a.png", PNG);
        write("deep/er/b.jpg.png", PNG);
        write("deep/noext", PNG); // an image without an extension
        write("deep/fake.jpg", b"not an image at all"); // an extension without an image
        write("deep/empty.png", b"");
        write("_duplicates/a.png", PNG); // archived: not walked into
        write("deep/_archive/trip/c.png", PNG);
        symlink(&root, root.join("deep/loop")).unwrap(); // back to the top
        symlink(root.join("a.png"), root.join("alias.png")).unwrap(); // same file again
        symlink(root.join("nowhere"), root.join("dangling")).unwrap();

        let (images, counts, chunks) = collect(&root, options(true));
        let p = |rel: &str| root.join(rel).to_string_lossy().into_owned();
        let expected = vec![p("a.png"), p("a.png"), p("deep/er/b.jpg.png"), p("deep/noext")];
        assert_eq!(images, expected, "the alias resolves to the file it names");
        assert_eq!(counts.not_images, 2, "{counts:?}");
        assert_eq!((counts.files_seen, counts.unreadable), (6, 0), "{counts:?}");
        assert!(chunks >= 2, "chunks of at most 2 images");

        let (flat, _, _) = collect(&root, options(false));
        assert_eq!(flat, vec![p("a.png"), p("a.png")], "not recursive: the top directory only");
    }

    /// Where the walk of [`unreadable_directories_and_files_are_counted_and_skipped`] runs.
    const UNREADABLE_DIR_ENV: &str = "IMGIDX_TEST_UNREADABLE_WALK_DIR";
    /// `nobody`: whom the test runs as when it was started with privileges that read anything.
    const NOBODY: u32 = 65534;

    #[test]
    fn unreadable_directories_and_files_are_counted_and_skipped() {
        if let Ok(dir) = std::env::var(UNREADABLE_DIR_ENV) {
            return expect_unreadable_skipped(Path::new(&dir)); // the unprivileged run
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("open.png"), PNG).unwrap();
        let locked = root.join("locked");
        fs::create_dir(&locked).unwrap();
        fs::write(locked.join("hidden.png"), PNG).unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        fs::write(root.join("secret.png"), PNG).unwrap();
        fs::set_permissions(root.join("secret.png"), fs::Permissions::from_mode(0o000)).unwrap();
        if fs::read_dir(&locked).is_err() {
            return expect_unreadable_skipped(&root);
        }
        // Privileged (root reads anything): run this test again as nobody, for real.
        use std::os::unix::process::CommandExt;
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "scan::walk::tests::unreadable_directories_and_files_are_counted_and_skipped"])
            .env(UNREADABLE_DIR_ENV, &root)
            .uid(NOBODY)
            .gid(NOBODY)
            .status()
            .unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(status.success(), "the walk as an unprivileged user failed its checks");
    }

    fn expect_unreadable_skipped(root: &Path) {
        let (images, counts, _) = collect(root, options(true));
        assert_eq!(images, vec![root.join("open.png").to_string_lossy().into_owned()]);
        assert_eq!((counts.unreadable, counts.files_seen, counts.images_found), (2, 2, 1), "{counts:?}");
    }

    #[test]
    fn links_out_of_the_allowed_roots_are_left_out() {
        let (inside_dir, outside_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (root, out) = (fs::canonicalize(inside_dir.path()).unwrap(), fs::canonicalize(outside_dir.path()).unwrap());
        fs::write(out.join("secret.png"), PNG).unwrap();
        fs::write(root.join("mine.png"), PNG).unwrap();
        symlink(out.join("secret.png"), root.join("leak.png")).unwrap();
        symlink(&out, root.join("leakdir")).unwrap();
        let options = WalkOptions { roots: vec![root.clone()], ..options(true) };
        let (images, counts, _) = collect(&root, options);
        assert_eq!(images, vec![root.join("mine.png").to_string_lossy().into_owned()]);
        assert_eq!(counts.files_seen, 1);
    }

    #[test]
    fn a_receiver_that_goes_away_stops_the_walk() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..50 {
            fs::write(tmp.path().join(format!("{i}.png")), PNG).unwrap();
        }
        let (tx, mut rx) = mpsc::channel(1);
        let dir = tmp.path().to_path_buf();
        let walker = std::thread::spawn(move || walk(&dir, &options(true), &tx));
        assert!(rx.blocking_recv().is_some());
        drop(rx);
        walker.join().unwrap(); // returns instead of blocking on a full channel
    }
}
