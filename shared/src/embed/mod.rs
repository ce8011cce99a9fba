//! CLIP embedding: model manifest, image decoding and preprocessing exactly as
//! OpenAI CLIP does it, and the ONNX Runtime vision and text encoders.

pub mod batch_probe;
mod cuda_libs;
pub mod decode_budget;
pub mod manifest;
pub mod models;
pub mod npy;
pub mod preprocess;
pub mod runtime;
mod staging;
pub mod tags;
pub mod text;
pub mod tokenizer;
pub mod vision;

pub use batch_probe::{BatchProbe, ProbeLimits};
pub use decode_budget::DecodeBudget;
pub use manifest::{GraphSpec, ManifestError, ModelManifest};
pub use models::{Loader, ModelError, Models};
pub use preprocess::{
    image_format, turbojpeg_available, DecodeError, PreprocessMode, Preprocessed, Preprocessor, SNIFF_BYTES,
};
pub use tags::Tagger;
pub use text::TextEncoder;
pub use tokenizer::{ClipTokenizer, TokenizerError};
pub use staging::PixelBatch;
pub use vision::{l2_normalize, EmbedError, VisionEncoder};
