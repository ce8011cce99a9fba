//! API keys: which presented secrets are valid, with which scope and under which
//! name. Keys are held only as SHA-256 digests (a key file never contains a secret),
//! and a presented key is compared against every digest in constant time.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a key may do: `read` (status, stats, search) or `write` (also indexing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            _ => None,
        }
    }
}

/// A valid key, as the rest of the server knows it: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    pub name: String,
    pub scope: Scope,
}

struct Entry {
    digest: [u8; 32],
    identity: KeyIdentity,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("api.api_keys_file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("api.api_keys_file {path} line {line}: {message}")]
    Syntax { path: String, line: usize, message: String },
}

/// The configured keys; empty means the API is open.
#[derive(Default)]
pub struct KeySet {
    entries: Vec<Entry>,
}

impl KeySet {
    /// Keys from `api.api_keys` (full access, named `key-1`, `key-2`, …) and from the
    /// digest file `api.api_keys_file`.
    pub fn load(plain: &[String], file: Option<&Path>) -> Result<Self, KeysError> {
        let mut entries: Vec<Entry> = plain
            .iter()
            .enumerate()
            .map(|(i, key)| Entry {
                digest: digest(key.trim()),
                identity: KeyIdentity { name: format!("key-{}", i + 1), scope: Scope::Write },
            })
            .collect();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|error| KeysError::Read { path: path.display().to_string(), error })?;
            for (i, line) in text.lines().enumerate() {
                let syntax = |message: String| KeysError::Syntax { path: path.display().to_string(), line: i + 1, message };
                if let Some(entry) = parse_line(line, i + 1).map_err(syntax)? {
                    entries.push(entry);
                }
            }
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The identity of `presented`, if it is a configured key. Every digest is
    /// compared, whatever matched, so timing says nothing about which or how much.
    pub fn identify(&self, presented: &str) -> Option<&KeyIdentity> {
        let d = digest(presented);
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&d)) && found.is_none() {
                found = Some(&entry.identity);
            }
        }
        found
    }
}

/// `sha256:<64 hex> [read|write] [name…]`; blank lines and `#` comments are skipped.
fn parse_line(line: &str, number: usize) -> Result<Option<Entry>, String> {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let first = words.next().unwrap_or("");
    let hex = first
        .strip_prefix("sha256:")
        .ok_or_else(|| "expected sha256:<hex digest> (imgidx keys new prints such a line)".to_string())?;
    let digest = parse_hex32(hex).ok_or_else(|| "the digest must be 64 hex digits".to_string())?;
    let mut scope = Scope::Write;
    let mut rest: Vec<&str> = words.collect();
    if let Some(s) = rest.first().and_then(|w| Scope::parse(w)) {
        scope = s;
        rest.remove(0);
    }
    let name = if rest.is_empty() { format!("line-{number}") } else { rest.join(" ") };
    Ok(Some(Entry { digest, identity: KeyIdentity { name, scope } }))
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random key and the key-file line that accepts it (`imgidx keys new`).
pub struct NewKey {
    pub key: String,
    pub line: String,
}

/// 32 random bytes from the OS, hex-encoded behind a recognisable prefix.
pub fn new_key(name: &str, scope: Scope) -> Result<NewKey, std::io::Error> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| std::io::Error::other(format!("no randomness from the OS: {e}")))?;
    let key = format!("imgidx_{}", to_hex(&secret));
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    let line = format!("sha256:{} {} {name}", to_hex(&digest(&key)), scope.as_str());
    Ok(NewKey { key, line })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn plain_keys_and_key_file_lines_identify_with_their_scope() {
        let dir = tempfile::tempdir().unwrap();
        let reader = new_key("ci  reader", Scope::Read).unwrap();
        let writer = new_key("uploader", Scope::Write).unwrap();
        assert!(reader.line.ends_with(" read ci reader"), "{}", reader.line);
        let file = dir.path().join("keys");
        std::fs::write(&file, format!("# keys\n\n{}\n{}  # trailing\n", reader.line, writer.line)).unwrap();
        let keys = KeySet::load(&["plain-secret-0123456789".into()], Some(&file)).unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys.identify(&reader.key), Some(&KeyIdentity { name: "ci reader".into(), scope: Scope::Read }));
        assert_eq!(keys.identify(&writer.key).unwrap().scope, Scope::Write);
        assert_eq!(keys.identify("plain-secret-0123456789").unwrap().name, "key-1");
        assert_eq!(keys.identify("plain-secret-012345678"), None);
        assert_eq!(keys.identify(""), None);
        // The file holds digests only.
        assert!(!std::fs::read_to_string(&file).unwrap().contains(&reader.key));
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(&file, "sha256:abcd read\n").unwrap();
        let err = KeySet::load(&[], Some(&file)).err().unwrap().to_string();
        assert!(err.contains("line 1") && err.contains("64 hex"), "{err}");
        std::fs::write(&file, "imgidx_plaintext\n").unwrap();
        assert!(KeySet::load(&[], Some(&file)).is_err());
        assert!(KeySet::load(&[], Some(&dir.path().join("missing"))).is_err());
    }
}
