//! Reading a file the server opens for someone else: a client's query by path (API) or
//! a task's image (worker). The path is canonical (symlinks resolved, checked against the
//! allowed roots by the caller), so the rules are strict:
//!
//! * open with `O_NONBLOCK`: opening a FIFO without a writer, or a device, never waits;
//! * open with `O_NOFOLLOW`: a symlink at a canonical path means it changed since;
//! * `fstat` the opened file and read only regular files (FIFOs, sockets, devices such as
//!   `/dev/zero` and directories are refused before a byte is read);
//! * check the size on the opened file and read at most one byte past the limit, so a
//!   growing file cannot exhaust memory; stop reading once the time limit has passed;
//! * make sure the opened file is the one at the canonical path (see [`check_identity`]).
//!
//! The time limit is checked between reads; one read that never returns (a hung network
//! file system) is the caller's to bound, e.g. the API's `tokio::time::timeout`.

use std::fs::{File, FileType, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes asked of the kernel per read; the time limit is checked between reads.
const CHUNK: usize = 1 << 20;

/// How much, and for how long, one read may go on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadLimits {
    pub max_bytes: u64,
    pub max_time: Duration,
}

/// A regular file's bytes and the `fstat` of the very file they were read from.
#[derive(Debug)]
pub struct FileContents {
    pub bytes: Vec<u8>,
    pub meta: Metadata,
}

/// Why a file was not read. Messages never name another path than the one asked for.
#[derive(Debug, thiserror::Error)]
pub enum ReadRefusal {
    #[error("file not found")]
    NotFound,
    #[error("permission denied")]
    Denied,
    #[error("not a regular file ({0})")]
    NotRegular(&'static str),
    #[error("file is {len} bytes, more than the limit of {limit}")]
    TooLarge { len: u64, limit: u64 },
    /// The opened file is not the one at the canonical path any more (replaced meanwhile).
    #[error("the file changed while it was being opened")]
    Changed,
    #[error("reading the file took longer than {0:?}")]
    TimedOut(Duration),
    /// May pass on a later try: an error of the device or the network file system
    /// (EIO, ESTALE, a timeout) or no file descriptor left (EMFILE, ENFILE).
    #[error("cannot read file for now: {0}")]
    Unavailable(io::Error),
    /// Not found, and its directory is missing too: what the files of a share that is not
    /// mounted look like, so it may pass on a later try. A file missing from a directory
    /// that exists is [`NotFound`](Self::NotFound).
    #[error("file not found, and its directory is missing too (a share that is not mounted?)")]
    DirectoryMissing,
    #[error("cannot read file: {0}")]
    Io(io::Error),
}

impl ReadRefusal {
    /// Whether a later try may read the file (see [`Unavailable`](Self::Unavailable) and
    /// [`DirectoryMissing`](Self::DirectoryMissing)).
    pub fn is_transient(&self) -> bool {
        matches!(self, ReadRefusal::Unavailable(_) | ReadRefusal::DirectoryMissing)
    }
}

/// Reads the regular file at the canonical `path` within `limits`. Blocking.
pub fn read_regular(path: &Path, limits: &ReadLimits) -> Result<FileContents, ReadRefusal> {
    let started = Instant::now();
    let (file, meta) = open_regular(path)?;
    if meta.len() > limits.max_bytes {
        return Err(ReadRefusal::TooLarge { len: meta.len(), limit: limits.max_bytes });
    }
    let bytes = read_bounded(file, meta.len(), limits, started)?;
    Ok(FileContents { bytes, meta })
}

/// Reads at most the first `n` bytes of the regular file at the canonical `path`, opened
/// by the same rules as [`read_regular`] (a directory walk checking formats). Blocking.
pub fn read_head(path: &Path, n: usize) -> Result<Vec<u8>, ReadRefusal> {
    let (file, _) = open_regular(path)?;
    let mut head = Vec::with_capacity(n);
    file.take(n as u64).read_to_end(&mut head).map_err(io_error)?;
    Ok(head)
}

/// Opens the regular file at the canonical `path`: non-blocking, not through a symlink,
/// and the very file at that path (see the module doc).
fn open_regular(path: &Path) -> Result<(File, Metadata), ReadRefusal> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| open_error(e, path))?;
    let meta = file.metadata().map_err(io_error)?;
    if !meta.file_type().is_file() {
        return Err(ReadRefusal::NotRegular(kind_of(&meta.file_type())));
    }
    check_identity(&file, path, &meta)?;
    Ok((file, meta))
}

/// TOCTOU: the caller checked `path` (canonical) against the allowed roots before we
/// opened it, but a directory on the way could have been swapped for a symlink in between
/// (`O_NOFOLLOW` covers only the last component). So ask the kernel where the opened file
/// descriptor really is (`/proc/self/fd/N`) and require exactly `path`. Without `/proc`,
/// fall back to comparing `(dev, ino)` of the opened file with a fresh `lstat` of `path`,
/// and require `path` to be canonical still.
fn check_identity(file: &File, path: &Path, meta: &Metadata) -> Result<(), ReadRefusal> {
    use std::os::fd::AsRawFd;
    match std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
        Ok(real) if real == path => Ok(()),
        Ok(_) => Err(ReadRefusal::Changed),
        Err(_) => {
            let now = std::fs::symlink_metadata(path).map_err(|_| ReadRefusal::Changed)?;
            let canonical: Option<PathBuf> = std::fs::canonicalize(path).ok();
            if (now.dev(), now.ino()) == (meta.dev(), meta.ino()) && canonical.as_deref() == Some(path) {
                Ok(())
            } else {
                Err(ReadRefusal::Changed)
            }
        }
    }
}

fn read_bounded(file: File, len: u64, limits: &ReadLimits, started: Instant) -> Result<Vec<u8>, ReadRefusal> {
    let cap = limits.max_bytes.saturating_add(1);
    let mut bytes = Vec::with_capacity(usize::try_from(len.min(cap)).unwrap_or(0));
    let mut reader = file.take(cap);
    loop {
        if started.elapsed() > limits.max_time {
            return Err(ReadRefusal::TimedOut(limits.max_time));
        }
        let read = reader.by_ref().take(CHUNK as u64).read_to_end(&mut bytes).map_err(io_error)?;
        if read == 0 {
            break;
        }
    }
    let read = bytes.len() as u64;
    if read > limits.max_bytes {
        // Grew past the limit after the size check.
        return Err(ReadRefusal::TooLarge { len: read, limit: limits.max_bytes });
    }
    Ok(bytes)
}

fn open_error(e: io::Error, path: &Path) -> ReadRefusal {
    match e.raw_os_error() {
        // O_NOFOLLOW on a symlink.
        Some(libc::ELOOP) => return ReadRefusal::NotRegular("symbolic link"),
        // open(2) of a Unix socket, or of a device without a driver.
        Some(libc::ENXIO) => return ReadRefusal::NotRegular("socket or device"),
        Some(libc::ENOTDIR) => return ReadRefusal::NotFound,
        _ => {}
    }
    match e.kind() {
        io::ErrorKind::NotFound if directory_absent(path) => ReadRefusal::DirectoryMissing,
        io::ErrorKind::NotFound => ReadRefusal::NotFound,
        io::ErrorKind::PermissionDenied => ReadRefusal::Denied,
        _ => io_error(e),
    }
}

/// Errors of the storage rather than of the file: a later try may pass.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EIO
                | libc::ESTALE
                | libc::EMFILE
                | libc::ENFILE
                | libc::ENOMEM
                | libc::ETIMEDOUT
                | libc::EAGAIN
                | libc::EINTR
                | libc::ENOLCK
                | libc::ENOTCONN
                | libc::ECONNRESET
                | libc::ECONNABORTED
                | libc::EHOSTDOWN
                | libc::EHOSTUNREACH
                | libc::ENETDOWN
                | libc::ENETUNREACH
                | libc::ENETRESET
        )
    )
}

fn io_error(e: io::Error) -> ReadRefusal {
    if transient(&e) {
        ReadRefusal::Unavailable(e)
    } else {
        ReadRefusal::Io(e)
    }
}

/// Whether the directory of a file that was not found is missing too (or cannot be
/// looked at for a transient reason), as under the mount point of an unmounted share.
fn directory_absent(path: &Path) -> bool {
    let Some(dir) = path.parent() else { return false };
    match std::fs::metadata(dir) {
        Ok(_) => false,
        Err(e) => e.kind() == io::ErrorKind::NotFound || transient(&e),
    }
}

fn kind_of(t: &FileType) -> &'static str {
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "named pipe"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const LIMITS: ReadLimits = ReadLimits { max_bytes: 1000, max_time: Duration::from_secs(5) };

    /// Every refusal must come back at once: a FIFO read would block forever.
    fn refused(path: &Path) -> ReadRefusal {
        let started = Instant::now();
        let err = read_regular(path, &LIMITS).expect_err("must be refused");
        assert!(started.elapsed() < Duration::from_secs(1), "{path:?} took {:?}", started.elapsed());
        err
    }

    fn canonical_tempdir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().canonicalize().unwrap();
        (dir, path)
    }

    #[test]
    fn a_regular_file_is_read_with_its_fstat() {
        let (_dir, root) = canonical_tempdir();
        let path = root.join("a.bin");
        std::fs::write(&path, b"hello").unwrap();
        let got = read_regular(&path, &LIMITS).unwrap();
        assert_eq!(got.bytes, b"hello");
        assert_eq!(got.meta.len(), 5);
        assert_eq!(got.meta.ino(), std::fs::metadata(&path).unwrap().ino());
    }

    #[test]
    fn a_missing_directory_may_come_back() {
        let (_dir, root) = canonical_tempdir();
        // Under the mount point of a share that is not mounted.
        for path in [root.join("photos/a.jpg"), root.join("photos/2024/a.jpg")] {
            let refusal = refused(&path);
            assert!(matches!(refusal, ReadRefusal::DirectoryMissing), "{path:?}: {refusal:?}");
            assert!(refusal.is_transient());
        }
        // A file missing from a directory that exists is not found at once.
        std::fs::create_dir(root.join("photos")).unwrap();
        let refusal = refused(&root.join("photos/a.jpg"));
        assert!(matches!(refusal, ReadRefusal::NotFound), "{refusal:?}");
        assert!(!refusal.is_transient());
    }

    #[test]
    fn storage_errors_are_transient_and_others_are_not() {
        for errno in [libc::EIO, libc::ESTALE, libc::EMFILE, libc::ENFILE, libc::ETIMEDOUT] {
            let refusal = io_error(io::Error::from_raw_os_error(errno));
            assert!(matches!(refusal, ReadRefusal::Unavailable(_)) && refusal.is_transient(), "errno {errno}: {refusal:?}");
        }
        for errno in [libc::EISDIR, libc::EINVAL, libc::EFBIG] {
            let refusal = io_error(io::Error::from_raw_os_error(errno));
            assert!(matches!(refusal, ReadRefusal::Io(_)) && !refusal.is_transient(), "errno {errno}: {refusal:?}");
        }
        let denied = open_error(io::Error::from_raw_os_error(libc::EACCES), Path::new("/x"));
        assert!(matches!(denied, ReadRefusal::Denied) && !denied.is_transient());
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let (_dir, root) = canonical_tempdir();
        assert!(matches!(refused(&root.join("nope")), ReadRefusal::NotFound));
        // A file on the way is no directory: not found, not missing.
        std::fs::write(root.join("file"), b"x").unwrap();
        assert!(matches!(refused(&root.join("file/deeper")), ReadRefusal::NotFound));
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let (_dir, root) = canonical_tempdir();
        let fifo = root.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        assert!(matches!(refused(&fifo), ReadRefusal::NotRegular("named pipe")));
    }

    #[test]
    fn a_head_is_read_by_the_same_rules() {
        let (_dir, root) = canonical_tempdir();
        std::fs::write(root.join("a.bin"), b"0123456789").unwrap();
        assert_eq!(read_head(&root.join("a.bin"), 4).unwrap(), b"0123");
        assert_eq!(read_head(&root.join("a.bin"), 64).unwrap(), b"0123456789");
        let fifo = root.join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(matches!(read_head(&fifo, 4), Err(ReadRefusal::NotRegular("named pipe"))));
        std::os::unix::fs::symlink(root.join("a.bin"), root.join("link")).unwrap();
        assert!(read_head(&root.join("link"), 4).is_err(), "a symlink at a canonical path is refused");
    }

    #[test]
    fn dev_zero_is_refused_without_reading() {
        assert!(matches!(refused(Path::new("/dev/zero")), ReadRefusal::NotRegular("character device")));
    }

    #[test]
    fn a_directory_is_refused() {
        let (_dir, root) = canonical_tempdir();
        assert!(matches!(refused(&root), ReadRefusal::NotRegular("directory")));
    }

    #[test]
    fn a_unix_socket_is_refused() {
        let (_dir, root) = canonical_tempdir();
        let sock = root.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(matches!(refused(&sock), ReadRefusal::NotRegular(_)));
    }

    #[test]
    fn a_final_symlink_is_not_followed() {
        let (_dir, root) = canonical_tempdir();
        std::fs::write(root.join("target"), b"secret").unwrap();
        std::os::unix::fs::symlink(root.join("target"), root.join("link")).unwrap();
        assert!(matches!(refused(&root.join("link")), ReadRefusal::NotRegular("symbolic link")));
    }

    #[test]
    fn a_symlinked_directory_on_the_way_is_refused() {
        let (_dir, root) = canonical_tempdir();
        std::fs::create_dir(root.join("real")).unwrap();
        std::fs::write(root.join("real/a.bin"), b"x").unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("swapped")).unwrap();
        // As if "swapped" had been a directory when the caller checked the path.
        assert!(matches!(refused(&root.join("swapped/a.bin")), ReadRefusal::Changed));
    }

    #[test]
    fn an_oversized_file_is_refused_from_its_size() {
        let (_dir, root) = canonical_tempdir();
        let path = root.join("big.bin");
        std::fs::write(&path, vec![0u8; 1001]).unwrap();
        assert!(matches!(refused(&path), ReadRefusal::TooLarge { len: 1001, limit: 1000 }));
        std::fs::write(&path, vec![0u8; 1000]).unwrap();
        assert_eq!(read_regular(&path, &LIMITS).unwrap().bytes.len(), 1000, "exactly the limit is fine");
    }

    #[test]
    fn the_time_limit_stops_a_read() {
        let (_dir, root) = canonical_tempdir();
        let path = root.join("a.bin");
        std::fs::write(&path, b"x").unwrap();
        let none = ReadLimits { max_bytes: 10, max_time: Duration::ZERO };
        assert!(matches!(read_regular(&path, &none), Err(ReadRefusal::TimedOut(_))));
    }
}
