//! PLACEHOLDER
#[derive(Debug, Clone)]
pub struct ModelManifest;
#[derive(Debug, thiserror::Error)]
#[error("manifest")]
pub struct ManifestError;
