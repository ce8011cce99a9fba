//! Digests of downloaded files and what to check them against.
//!
//! The Hugging Face hub names every file's content in its answer to a resolve request:
//! an LFS file's SHA-256 in `X-Linked-Etag`, a small (plain git) file's git blob id in
//! `ETag`, i.e. the SHA-1 of `blob {len}\0{content}`. Both kinds are checked here, as is
//! the SHA-256 the registry pins.

use std::io::Read;
use std::path::Path;

use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// A checksum a file must match, and who vouches for it (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Sha256 { hex: String, origin: &'static str },
    GitSha1 { hex: String, origin: &'static str },
}

impl Expected {
    /// Reads a hub `X-Linked-Etag` / `ETag` value: 64 hex digits are a SHA-256, 40 a git
    /// blob id; anything else (a weak or opaque tag) names no checksum.
    pub fn from_etag(value: &str, origin: &'static str) -> Option<Self> {
        let v = value.trim();
        let v = v.strip_prefix("W/").unwrap_or(v).trim_matches('"').to_ascii_lowercase();
        if !v.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        match v.len() {
            64 => Some(Self::Sha256 { hex: v, origin }),
            40 => Some(Self::GitSha1 { hex: v, origin }),
            _ => None,
        }
    }

    /// `Err((expected, actual, origin))` when `digest` does not match.
    pub fn check(&self, digest: &FileDigest) -> Result<(), Mismatch> {
        let (expected, actual, origin, kind) = match self {
            Self::Sha256 { hex, origin } => (hex, &digest.sha256, origin, "sha256"),
            Self::GitSha1 { hex, origin } => (hex, &digest.git_sha1, origin, "git blob sha1"),
        };
        if expected.eq_ignore_ascii_case(actual) {
            return Ok(());
        }
        Err(Mismatch { kind, expected: expected.clone(), actual: actual.clone(), origin })
    }

    /// Short label recorded in `checksums.json`.
    pub fn label(&self) -> String {
        match self {
            Self::Sha256 { origin, .. } => format!("sha256 {origin}"),
            Self::GitSha1 { origin, .. } => format!("git blob sha1 {origin}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub kind: &'static str,
    pub expected: String,
    pub actual: String,
    pub origin: &'static str,
}

/// Both digests of one file, lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub len: u64,
    pub sha256: String,
    pub git_sha1: String,
}

/// Hashes a file in one pass. The git blob id needs the length up front, which the
/// file's metadata gives; a file that changes while being read is reported, not hashed.
pub fn digest_file(path: &Path) -> std::io::Result<FileDigest> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut sha256 = Sha256::new();
    let mut sha1 = Sha1::new();
    sha1.update(format!("blob {len}\0").as_bytes());
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        sha256.update(&buf[..n]);
        sha1.update(&buf[..n]);
    }
    if read != len {
        return Err(std::io::Error::other(format!(
            "{} changed while being hashed ({len} bytes before, {read} read)",
            path.display()
        )));
    }
    Ok(FileDigest { len, sha256: hex(&sha256.finalize()), git_sha1: hex(&sha1.finalize()) })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    fn digest(content: &[u8]) -> FileDigest {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, content).unwrap();
        digest_file(&path).unwrap()
    }

    #[test]
    fn digests_match_known_values() {
        // `printf 'hello\n' | sha256sum` and `printf 'hello\n' | git hash-object --stdin`.
        let d = digest(b"hello\n");
        assert_eq!(d.len, 6);
        assert_eq!(d.sha256, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
        assert_eq!(d.git_sha1, "ce013625030ba8dba906f756967f9e9ca394464a");
        let empty = digest(b"");
        assert_eq!(empty.sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(empty.git_sha1, "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    #[test]
    fn etags_name_their_kind() {
        let sha = "5891B5B522D5DF086D0FF0B110FBD9D21BB4FC7163AF34D08286A2E846F6BE03";
        let e = Expected::from_etag(&format!("\"{sha}\""), "hub").unwrap();
        assert!(matches!(&e, Expected::Sha256 { hex, .. } if hex == &sha.to_ascii_lowercase()));
        let g = Expected::from_etag("W/\"ce013625030ba8dba906f756967f9e9ca394464a\"", "hub").unwrap();
        assert!(matches!(g, Expected::GitSha1 { .. }));
        assert_eq!(Expected::from_etag("\"abc-123\"", "hub"), None);
        assert_eq!(Expected::from_etag("\"d41d8cd98f00b204e9800998ecf8427e\"", "hub"), None, "an md5 names nothing");
        let d = digest(b"hello\n");
        assert!(e.check(&d).is_ok() && g.check(&d).is_ok());
        let bad = digest(b"hello");
        let m = e.check(&bad).unwrap_err();
        assert_eq!(
            (m.kind, m.expected.as_str(), m.actual.as_str()),
            ("sha256", &*sha.to_ascii_lowercase(), &*bad.sha256)
        );
        assert!(g.check(&bad).is_err());
    }
}
