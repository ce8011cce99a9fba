//! Where images that arrive as bytes are kept (uploads now; base64 and downloaded URLs
//! next): a local directory by default, or any S3-compatible store (MinIO, AWS). An
//! object is named by the SHA-256 of its content (`ab/abcdef…`), so the same bytes are
//! stored once, a key can never name something a client chose, and workers read the
//! bytes from the store: a worker needs no access to the API's disk.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};

use crate::config::Settings;

/// How long one store request may take before it counts as unavailable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of a failed request, and how long they may go on in all: an upload answers
/// 503 and a worker tries again later (`worker.file_retry_secs`), rather than a request
/// hanging for the client library's default of minutes.
const RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object not found")]
    NotFound,
    #[error("object is {len} bytes, more than the limit of {limit}")]
    TooLarge { len: u64, limit: u64 },
    /// May pass on a later try: the store did not answer, or answered with an error.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    #[error("object store configuration: {0}")]
    Config(String),
}

/// SHA-256 of `bytes`, in lower-case hex: how objects are named and how the payload
/// records an image's content.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The name of an object: its content hash under a two-character fan-out directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// The key of content whose SHA-256 is `sha256`; None unless it is 64 lower-case hex digits.
    pub fn of_hash(sha256: &str) -> Option<Self> {
        let hex = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        hex.then(|| Self(format!("{}/{sha256}", &sha256[..2])))
    }

    /// A key as [`as_str`](Self::as_str) writes it; None for anything else.
    pub fn parse(key: &str) -> Option<Self> {
        let (fan, hash) = key.split_once('/')?;
        Self::of_hash(hash).filter(|k| k.sha256().starts_with(fan) && fan.len() == 2)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn sha256(&self) -> &str {
        &self.0[3..]
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The object store the settings name.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: Option<StorePath>,
    /// Where it is, for logs and health (no credentials).
    location: String,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").field("location", &self.location).finish()
    }
}

impl Objects {
    /// S3 when `objects.url` is set, else the local directory (created if missing).
    pub fn open(settings: &Settings) -> Result<Self, ObjectError> {
        let o = &settings.objects;
        let Some(url) = &o.url else {
            return Self::local(&settings.objects_dir());
        };
        let rest = url.strip_prefix("s3://").ok_or_else(|| ObjectError::Config(format!("objects.url {url:?} is not s3://bucket[/prefix]")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(ObjectError::Config(format!("objects.url {url:?} names no bucket")));
        }
        // The environment's AWS_* variables first, so the usual credentials work; the
        // settings win where given.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(o.region.clone().unwrap_or_else(|| "us-east-1".into()))
            .with_allow_http(o.allow_http)
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_timeout(REQUEST_TIMEOUT)
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_allow_http(o.allow_http),
            )
            .with_retry(object_store::RetryConfig {
                max_retries: RETRIES,
                retry_timeout: RETRY_TIMEOUT,
                ..Default::default()
            });
        if let Some(endpoint) = &o.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(id) = &o.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &o.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|e| ObjectError::Config(e.to_string()))?;
        let prefix = prefix.trim_matches('/');
        Ok(Self {
            store: Arc::new(store),
            prefix: (!prefix.is_empty()).then(|| StorePath::from(prefix)),
            location: match &o.endpoint {
                Some(endpoint) => format!("{url} at {endpoint}"),
                None => url.clone(),
            },
        })
    }

    /// A store in the directory `dir` (created if missing).
    pub fn local(dir: &std::path::Path) -> Result<Self, ObjectError> {
        std::fs::create_dir_all(dir).map_err(|e| ObjectError::Config(format!("objects directory {}: {e}", dir.display())))?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| ObjectError::Config(e.to_string()))?;
        Ok(Self { store: Arc::new(store), prefix: None, location: dir.display().to_string() })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, key: &ObjectKey) -> StorePath {
        match &self.prefix {
            Some(prefix) => prefix.parts().chain(StorePath::from(key.as_str()).parts()).collect(),
            None => StorePath::from(key.as_str()),
        }
    }

    /// Stores `bytes` under their content hash, unless an object with that name exists
    /// (then it holds these very bytes). Returns the key.
    pub async fn put(&self, bytes: Vec<u8>) -> Result<ObjectKey, ObjectError> {
        let hash = content_hash(&bytes);
        let key = ObjectKey::of_hash(&hash).ok_or_else(|| ObjectError::Unavailable("bad content hash".into()))?;
        let path = self.path(&key);
        match self.store.head(&path).await {
            Ok(_) => return Ok(key),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(unavailable(e)),
        }
        // Written whole or not at all (a temporary file renamed, or one S3 PUT), so a
        // reader never sees part of an object.
        self.store.put(&path, PutPayload::from(bytes)).await.map_err(unavailable)?;
        Ok(key)
    }

    /// The bytes of `key`, refused without reading them when there are more than `max_bytes`.
    pub async fn get(&self, key: &ObjectKey, max_bytes: u64) -> Result<Vec<u8>, ObjectError> {
        let path = self.path(key);
        let result = self.store.get(&path).await.map_err(not_found_or_unavailable)?;
        let len = result.meta.size;
        if len > max_bytes {
            return Err(ObjectError::TooLarge { len, limit: max_bytes });
        }
        let bytes = result.bytes().await.map_err(not_found_or_unavailable)?;
        Ok(bytes.to_vec())
    }

    /// Whether the store answers (a missing object is an answer).
    pub async fn healthy(&self) -> bool {
        let probe = self.path(&ObjectKey(format!("00/{}", "0".repeat(64))));
        matches!(self.store.head(&probe).await, Ok(_) | Err(object_store::Error::NotFound { .. }))
    }
}

fn unavailable(e: object_store::Error) -> ObjectError {
    ObjectError::Unavailable(e.to_string())
}

fn not_found_or_unavailable(e: object_store::Error) -> ObjectError {
    match e {
        object_store::Error::NotFound { .. } => ObjectError::NotFound,
        other => unavailable(other),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_sha256_hex() {
        assert_eq!(content_hash(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn keys_are_content_hashes_only() {
        let hash = content_hash(b"abc");
        let key = ObjectKey::of_hash(&hash).unwrap();
        assert_eq!(key.as_str(), format!("ba/{hash}"));
        assert_eq!(ObjectKey::parse(key.as_str()), Some(key.clone()));
        assert_eq!(key.sha256(), hash);
        for bad in ["", "ba", "../etc/passwd", &format!("zz/{hash}"), &format!("ba/{}", hash.to_uppercase()), &format!("ba/{hash}/x")] {
            assert_eq!(ObjectKey::parse(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn local_store_keeps_each_content_once() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::local(dir.path()).unwrap();
        let a = objects.put(b"image bytes".to_vec()).await.unwrap();
        let again = objects.put(b"image bytes".to_vec()).await.unwrap();
        assert_eq!(a, again);
        assert_eq!(objects.get(&a, 100).await.unwrap(), b"image bytes");
        assert!(matches!(objects.get(&a, 3).await, Err(ObjectError::TooLarge { len: 11, limit: 3 })));
        let missing = ObjectKey::of_hash(&content_hash(b"other")).unwrap();
        assert!(matches!(objects.get(&missing, 100).await, Err(ObjectError::NotFound)));
        assert!(objects.healthy().await);
        let files: Vec<_> = std::fs::read_dir(dir.path().join(&a.as_str()[..2])).unwrap().collect();
        assert_eq!(files.len(), 1);
    }
}
