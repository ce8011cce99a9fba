//! Where an image's bytes come from, as its item path says. The path is the image's
//! identity (point id, payload, job items), so it also names the source:
//!
//! * `/srv/photos/a.jpg`: a file on the server, under the API's allowed roots;
//! * `object:<sha256>/<name>`: an object in the object store (an upload), with the name
//!   it was uploaded as. The same bytes uploaded under two names are two images (two
//!   points) sharing one object, as two copies of a file are;
//! * `https://…` or `http://…`: an image a worker fetches (`crate::fetch`), then keeps in
//!   the object store.
//!
//! No client can submit an `object:` path as a file path: file paths must be absolute.

use crate::objects::ObjectKey;

const OBJECT_SCHEME: &str = "object:";

/// Longest uploaded name kept, in characters.
const MAX_NAME_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource<'a> {
    File(&'a str),
    Object { key: ObjectKey, name: &'a str },
    Url(&'a str),
}

impl<'a> ImageSource<'a> {
    /// None for a path that names no source (neither absolute nor a well-formed object).
    pub fn parse(path: &'a str) -> Option<Self> {
        if path.starts_with('/') {
            return Some(ImageSource::File(path));
        }
        if path.starts_with("https://") || path.starts_with("http://") {
            return Some(ImageSource::Url(path));
        }
        let (hash, name) = path.strip_prefix(OBJECT_SCHEME)?.split_once('/')?;
        let key = ObjectKey::of_hash(hash)?;
        (!name.is_empty()).then_some(ImageSource::Object { key, name })
    }
}

/// The item path of the object `key` uploaded as `name` (see [`clean_name`]).
pub fn object_path(key: &ObjectKey, name: &str) -> String {
    format!("{OBJECT_SCHEME}{}/{name}", key.sha256())
}

/// The name a client gave an upload, made safe to show and to use as a file name: its
/// last path component (clients send `C:\photos\a.jpg` or `../a.jpg`), without control
/// characters, at most 200 characters; `fallback` when nothing is left.
pub fn clean_name(raw: Option<&str>, fallback: &str) -> String {
    let last = raw.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        fallback.to_string()
    } else {
        cleaned.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::objects::content_hash;

    #[test]
    fn paths_name_their_source() {
        let key = ObjectKey::of_hash(&content_hash(b"x")).unwrap();
        let path = object_path(&key, "beach day.jpg");
        assert_eq!(ImageSource::parse(&path), Some(ImageSource::Object { key: key.clone(), name: "beach day.jpg" }));
        assert_eq!(ImageSource::parse("/srv/a.jpg"), Some(ImageSource::File("/srv/a.jpg")));
        assert_eq!(ImageSource::parse("https://x/a.jpg"), Some(ImageSource::Url("https://x/a.jpg")));
        for bad in ["a.jpg", "object:", "object:abc/a.jpg", &format!("object:{}/", key.sha256()), "ftp://x/a.jpg"] {
            assert_eq!(ImageSource::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_keep_only_their_last_component() {
        assert_eq!(clean_name(Some("C:\\photos\\a.jpg"), "f"), "a.jpg");
        assert_eq!(clean_name(Some("../../etc/passwd"), "f"), "passwd");
        assert_eq!(clean_name(Some("a\u{0}b\n.png"), "f"), "ab.png");
        assert_eq!(clean_name(Some(".."), "f"), "f");
        assert_eq!(clean_name(None, "upload-3"), "upload-3");
        assert_eq!(clean_name(Some(&"x".repeat(500)), "f").len(), 200);
    }
}
