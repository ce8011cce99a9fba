//! PLACEHOLDER
pub struct Preprocessor;
pub struct Preprocessed;
#[derive(Debug, thiserror::Error)]
#[error("decode")]
pub struct DecodeError;
