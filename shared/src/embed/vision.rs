//! PLACEHOLDER
pub struct VisionEncoder;
#[derive(Debug, thiserror::Error)]
#[error("embed")]
pub struct EmbedError;
