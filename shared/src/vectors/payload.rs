//! What both backends store and filter on the same way: the JSON payload and filter values.
//!
//! Stored keys are exactly the `ImagePayload` fields (so the Qdrant dashboard shows them as is)
//! plus `dirs`: every ancestor directory of `path`, shallowest first. `dirs` exists only so that
//! `SearchFilter::path_prefix` can be a keyword match (exact, indexable) instead of a string
//! prefix scan, which Qdrant does not offer.

use std::path::Path;

use serde_json::{Map, Value};

use super::{ImagePayload, VectorStoreError};
use crate::collections::Distance;
use crate::messages::FileStamp;

/// Payload key holding the ancestor directories of `path`.
pub(crate) const DIRS_KEY: &str = "dirs";
/// Payload key holding the image's path.
pub(crate) const PATH_KEY: &str = "path";
/// Payload key holding the content hash, indexed (keyword) for reuse lookups.
pub(crate) const HASH_KEY: &str = "sha256";
/// Payload key holding the image's tags, indexed (keyword) for tag filters.
pub(crate) const TAGS_KEY: &str = "tags";
/// Payload key holding the model that made the vector.
pub(crate) const MODEL_KEY: &str = "model";
/// Payload keys search filters read (`SearchFilter`), each indexed.
pub(crate) const FORMAT_KEY: &str = "format";
pub(crate) const WIDTH_KEY: &str = "width";
pub(crate) const HEIGHT_KEY: &str = "height";
pub(crate) const MTIME_KEY: &str = "mtime_ns";
pub(crate) const INDEXED_KEY: &str = "indexed_at";

/// What a payload index holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexKind {
    Keyword,
    Integer,
    /// RFC 3339 strings, compared as instants.
    Datetime,
}

/// Every indexed payload key, in both backends: what filters and reuse lookups match on,
/// so none of them scans payloads.
pub(crate) const INDEXES: [(&str, IndexKind); 8] = [
    (DIRS_KEY, IndexKind::Keyword),
    (HASH_KEY, IndexKind::Keyword),
    (TAGS_KEY, IndexKind::Keyword),
    (FORMAT_KEY, IndexKind::Keyword),
    (WIDTH_KEY, IndexKind::Integer),
    (HEIGHT_KEY, IndexKind::Integer),
    (MTIME_KEY, IndexKind::Integer),
    (INDEXED_KEY, IndexKind::Datetime),
];
/// Keys read back for a reuse; fetching only these keeps `reusable` cheap.
pub(crate) const REUSE_KEYS: [&str; 3] = ["width", "height", "format"];

/// Keys read back for change detection; fetching only these keeps `stamps` cheap.
pub(crate) const STAMP_KEYS: [&str; 2] = ["size", "mtime_ns"];

/// Payload object to store for `payload`.
pub(crate) fn to_json(payload: &ImagePayload) -> Result<Map<String, Value>, VectorStoreError> {
    let mut map = match serde_json::to_value(payload) {
        Ok(Value::Object(map)) => map,
        Ok(other) => return Err(VectorStoreError::Other(format!("payload is not an object: {other}"))),
        Err(e) => return Err(VectorStoreError::Other(format!("payload serialization: {e}"))),
    };
    let dirs = ancestor_dirs(&payload.path).into_iter().map(Value::String).collect();
    map.insert(DIRS_KEY.into(), Value::Array(dirs));
    Ok(map)
}

/// `ImagePayload` from a stored object; `dirs` (and any unknown key) is ignored.
pub(crate) fn from_json(mut map: Map<String, Value>) -> Result<ImagePayload, VectorStoreError> {
    map.remove(DIRS_KEY);
    serde_json::from_value(Value::Object(map))
        .map_err(|e| VectorStoreError::Other(format!("stored payload is not an image payload: {e}")))
}

/// The store's `score_threshold` for a cosine `min_score` ("at least"). Qdrant keeps scores
/// strictly above a similarity threshold and strictly below a distance one, so the next float
/// turns the strict comparison into an inclusive one (exactly, for cosine and dot).
pub(crate) fn score_threshold(distance: Distance, min_score: f32) -> f32 {
    match distance {
        Distance::Cosine | Distance::Dot => min_score.next_down(),
        Distance::Euclid => distance.from_cosine(min_score).next_up(),
    }
}

/// Width, height and format from a stored object holding at least `REUSE_KEYS`.
pub(crate) fn reuse_facts(map: &Map<String, Value>) -> Result<(u32, u32, String), VectorStoreError> {
    let dim = |k: &str| map.get(k).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok());
    match (dim("width"), dim("height"), map.get("format").and_then(Value::as_str)) {
        (Some(w), Some(h), Some(f)) => Ok((w, h, f.to_owned())),
        _ => Err(VectorStoreError::Other("stored payload lacks width/height/format".into())),
    }
}

/// `FileStamp` from a stored object holding at least `STAMP_KEYS`.
pub(crate) fn stamp_from_json(map: &Map<String, Value>) -> Result<FileStamp, VectorStoreError> {
    let size = map.get("size").and_then(Value::as_u64);
    let mtime_ns = map.get("mtime_ns").and_then(Value::as_i64);
    match (size, mtime_ns) {
        (Some(size), Some(mtime_ns)) => Ok(FileStamp { size, mtime_ns }),
        _ => Err(VectorStoreError::Other("stored payload lacks size/mtime_ns".into())),
    }
}

/// The `path` of a stored object read with at least [`PATH_KEY`].
pub(crate) fn path_from_json(map: &Map<String, Value>) -> Result<String, VectorStoreError> {
    map.get(PATH_KEY)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| VectorStoreError::Other("stored payload lacks its path".into()))
}

/// Every ancestor directory of `path`, shallowest first, without the root itself
/// (`/a/b/c.jpg` → `["/a", "/a/b"]`): filtering on the root would match everything anyway.
pub(crate) fn ancestor_dirs(path: &str) -> Vec<String> {
    let mut dirs: Vec<String> = Path::new(path)
        .ancestors()
        .skip(1) // the path itself
        .filter(|dir| dir.parent().is_some()) // the root (or the empty relative base)
        .map(|dir| dir.to_string_lossy().into_owned())
        .collect();
    dirs.reverse();
    dirs
}

/// The `dirs` value a `path_prefix` must match, or `None` when it restricts nothing.
///
/// A prefix is a directory: `/a/b` and `/a/b/` both mean "anything under /a/b", and `/a/b`
/// does NOT match `/a/bc/x.jpg`. The root (`/`) or an empty prefix means no restriction.
pub(crate) fn prefix_dir(prefix: &str) -> Option<String> {
    let trimmed = prefix.trim_end_matches(['/', std::path::MAIN_SEPARATOR]);
    let is_root = trimmed.is_empty() || Path::new(trimmed).parent().is_none();
    (!is_root).then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ImagePayload {
        ImagePayload {
            path: "/a/b/c.jpg".into(),
            file_name: "c.jpg".into(),
            size: 10,
            mtime: "2024-01-01T00:00:00Z".into(),
            mtime_ns: 1_704_067_200_000_000_000,
            width: 4,
            height: 3,
            format: "jpeg".into(),
            model: "clip".into(),
            indexed_at: "2024-01-02T00:00:00Z".into(),
            job_id: "job".into(),
            sha256: "ab".repeat(32),
            object_key: String::new(),
            tags: vec!["beach".into()],
        }
    }

    #[test]
    fn ancestors_shallowest_first_without_root() {
        assert_eq!(ancestor_dirs("/a/b/c.jpg"), vec!["/a", "/a/b"]);
        assert_eq!(ancestor_dirs("/c.jpg"), Vec::<String>::new());
        assert_eq!(ancestor_dirs("a/c.jpg"), vec!["a"]);
    }

    #[test]
    fn prefix_is_a_directory() {
        assert_eq!(prefix_dir("/a/b/").as_deref(), Some("/a/b"));
        assert_eq!(prefix_dir("/a/b").as_deref(), Some("/a/b"));
        assert_eq!(prefix_dir("/"), None);
        assert_eq!(prefix_dir(""), None);
    }

    #[test]
    fn round_trip_ignores_dirs() -> Result<(), VectorStoreError> {
        let json = to_json(&sample())?;
        assert_eq!(json.get(DIRS_KEY), Some(&serde_json::json!(["/a", "/a/b"])));
        assert_eq!(json.len(), 14, "the 13 payload fields (an empty object_key left out) plus dirs");
        assert_eq!(stamp_from_json(&json)?, sample().stamp());
        assert_eq!(from_json(json)?, sample());
        Ok(())
    }
}
