//! CLIP embedding: model manifest, image decoding and preprocessing exactly as
//! OpenAI CLIP does it, and the ONNX Runtime vision encoder.

pub mod manifest;
pub mod npy;
pub mod preprocess;
pub mod runtime;
pub mod text;
pub mod vision;

pub use manifest::{ModelManifest, ManifestError};
pub use preprocess::{DecodeError, Preprocessed, Preprocessor};
pub use vision::{EmbedError, VisionEncoder};
