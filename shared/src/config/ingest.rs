//! Settings of what arrives as bytes: uploads (and, later, base64 and URLs) and the
//! object store that keeps them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Largest image one upload may carry, in bytes (seed 004: 10 MB).
    pub max_image_bytes: u64,
    /// Most files one upload request may carry, and most images one batch (seed 004: 100).
    pub max_files: usize,
    /// Let workers fetch URLs on loopback, private, link-local and other non-public
    /// addresses (a trusted network). Off: such a URL fails its image, `download_failed`.
    pub allow_private_urls: bool,
    /// Seconds one URL's fetch may take in all (resolution, redirects, body).
    pub fetch_timeout_secs: u64,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self { max_image_bytes: 10 * 1024 * 1024, max_files: 100, allow_private_urls: false, fetch_timeout_secs: 30 }
    }
}

impl IngestSettings {
    /// How workers fetch images named by URL.
    pub fn fetch_limits(&self) -> crate::fetch::FetchLimits {
        crate::fetch::FetchLimits {
            max_bytes: self.max_image_bytes,
            timeout: std::time::Duration::from_secs(self.fetch_timeout_secs.max(1)),
            allow_private: self.allow_private_urls,
        }
    }

    /// The body limit of an upload request: every file at its largest, plus room for
    /// the multipart framing and the text fields.
    pub fn max_upload_request_bytes(&self) -> usize {
        let files = self.max_image_bytes.saturating_mul(self.max_files as u64);
        usize::try_from(files).unwrap_or(usize::MAX).saturating_add(1024 * 1024)
    }

    /// The body limit of a batch request: as an upload's, in base64 (4 bytes per 3).
    pub fn max_batch_request_bytes(&self) -> usize {
        (self.max_upload_request_bytes() / 3).saturating_mul(4).saturating_add(1024 * 1024)
    }
}

/// Tags (see `embed::tags`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TagsSettings {
    /// Tag images at all (needs a model with a text encoder).
    pub enabled: bool,
    /// One label per line (`#` comments); the committed vocabulary of everyday labels when unset.
    pub vocabulary_file: Option<PathBuf>,
    /// Least cosine between an image and "a photo of a <label>" for the label to be a tag.
    pub min_score: f32,
    /// Most tags per image.
    pub max: usize,
}

impl Default for TagsSettings {
    fn default() -> Self {
        Self { enabled: true, vocabulary_file: None, min_score: 0.24, max: 5 }
    }
}

/// Seed 004's batch jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchSettings {
    /// Hours a finished batch job is kept (seed 004: 24); 0 leaves it to `jobs.retention_days`.
    pub retention_hours: u64,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self { retention_hours: 24 }
    }
}

/// Where images that arrive as bytes are kept. A local directory unless `url` names an
/// S3 bucket; API and workers must see the same store, so a fleet whose workers run on
/// other machines than the API uses S3 (or a shared `local_dir`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectSettings {
    /// `s3://bucket` or `s3://bucket/prefix`; the local directory when unset.
    pub url: Option<String>,
    /// Local directory of the objects; `<data_dir>/objects` when unset.
    pub local_dir: Option<PathBuf>,
    /// S3 endpoint, for S3-compatible stores such as MinIO (`http://minio:9000`);
    /// AWS's own endpoint when unset.
    pub endpoint: Option<String>,
    /// S3 region; `us-east-1` when unset.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow an `http://` endpoint (MinIO on a private network, tests).
    pub allow_http: bool,
}
