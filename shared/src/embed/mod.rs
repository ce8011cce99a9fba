//! CLIP embedding: model manifest, image decoding and preprocessing exactly as
//! OpenAI CLIP does it, and the ONNX Runtime vision and text encoders.

mod cuda_libs;
pub mod decode_budget;
pub mod manifest;
pub mod models;
pub mod npy;
pub mod preprocess;
pub mod runtime;
pub mod tags;
pub mod text;
pub mod tokenizer;
pub mod vision;

pub use decode_budget::DecodeBudget;
pub use manifest::{GraphSpec, ManifestError, ModelManifest};
pub use models::{Loader, ModelError, Models};
pub use preprocess::{
    image_format, turbojpeg_available, DecodeError, PreprocessMode, Preprocessed, Preprocessor, SNIFF_BYTES,
};
pub use tags::Tagger;
pub use text::TextEncoder;
pub use tokenizer::{ClipTokenizer, TokenizerError};
pub use vision::{l2_normalize, EmbedError, VisionEncoder};
