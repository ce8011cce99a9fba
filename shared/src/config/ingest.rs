//! Settings of what arrives as bytes: uploads (and, later, base64 and URLs) and the
//! object store that keeps them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Largest image one upload may carry, in bytes (seed 004: 10 MB).
    pub max_image_bytes: u64,
    /// Most files one upload request may carry (seed 004: 100).
    pub max_files: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self { max_image_bytes: 10 * 1024 * 1024, max_files: 100 }
    }
}

impl IngestSettings {
    /// The body limit of an upload request: every file at its largest, plus room for
    /// the multipart framing and the text fields.
    pub fn max_upload_request_bytes(&self) -> usize {
        let files = self.max_image_bytes.saturating_mul(self.max_files as u64);
        usize::try_from(files).unwrap_or(usize::MAX).saturating_add(1024 * 1024)
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
