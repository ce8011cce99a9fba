//! Turning a query (text, or an image) into a vector in the index's space: the CLIP
//! text encoder behind the BPE tokenizer, or the same preprocessing and vision encoder
//! the workers use. Inference is blocking, so it runs on the blocking pool, and a
//! semaphore bounds how many queries embed at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;

use imgidx_shared::config::{ModelSettings, WorkerSettings};
use imgidx_shared::embed::tokenizer::ClipTokenizer;
use imgidx_shared::embed::{DecodeError, EmbedError, ModelManifest, Preprocessor, TextEncoder, VisionEncoder};

use crate::error::ApiError;

/// Queries embedding at the same time; more wait their turn.
const CONCURRENT_QUERIES: usize = 4;

pub struct QueryEngine {
    vision: Arc<VisionEncoder>,
    preprocessor: Preprocessor,
    text: Result<(TextEncoder, ClipTokenizer), String>,
    permits: Semaphore,
}

impl QueryEngine {
    /// Loads what search needs from `model_dir`. `vision` reuses an encoder already loaded
    /// in this process (`imgidx serve`). A model without a text graph or tokenizer gives
    /// image search only; a text graph or tokenizer that fails to load is an error.
    /// Blocking.
    pub fn load(
        model_dir: &Path,
        model: &ModelSettings,
        limits: &WorkerSettings,
        vision: Option<Arc<VisionEncoder>>,
    ) -> Result<Self, EmbedError> {
        let vision = match vision {
            Some(v) => v,
            None => Arc::new(VisionEncoder::load(model_dir, model)?),
        };
        let m = vision.manifest().clone();
        let preprocessor = Preprocessor::new(m.image_size, m.mean, m.std, limits.max_image_pixels, limits.max_file_bytes);
        let text = match (&m.text, m.tokenizer_path(model_dir)) {
            (Some(_), Some(_)) => {
                let tokenizer = ClipTokenizer::for_model(model_dir, &m)
                    .map_err(|e| EmbedError::Unsupported(format!("tokenizer of {}: {e}", m.name)))?;
                Ok((TextEncoder::load(model_dir, model)?, tokenizer))
            }
            (None, _) => Err(unavailable(&m, model_dir, "has no text encoder")),
            (Some(_), None) => Err(unavailable(&m, model_dir, "names no tokenizer file")),
        };
        if let Err(why) = &text {
            tracing::warn!(model = %m.name, "text search disabled: {why}");
        }
        Ok(Self { vision, preprocessor, text, permits: Semaphore::new(CONCURRENT_QUERIES) })
    }

    pub fn manifest(&self) -> &ModelManifest {
        self.vision.manifest()
    }

    pub async fn embed_text(self: &Arc<Self>, text: String) -> Result<Vec<f32>, ApiError> {
        if let Err(why) = &self.text {
            return Err(ApiError::SearchUnavailable(format!("text search is unavailable: {why}")));
        }
        self.blocking(move |engine| {
            let (encoder, tokenizer) = engine.text.as_ref().map_err(|why| ApiError::SearchUnavailable(why.clone()))?;
            let row = tokenizer.tokenize(&text, engine.manifest().context_length);
            first(encoder.embed(&[row]))
        })
        .await
    }

    /// Embeds an image file on this machine.
    pub async fn embed_path(self: &Arc<Self>, path: PathBuf) -> Result<Vec<f32>, ApiError> {
        self.blocking(move |engine| {
            let image = engine.preprocessor.load_path(&path).map_err(|e| decode_error(e, &path.display().to_string()))?;
            first(engine.vision.embed(&image.tensor, 1))
        })
        .await
    }

    /// Embeds uploaded image bytes.
    pub async fn embed_bytes(self: &Arc<Self>, bytes: axum::body::Bytes, name: String) -> Result<Vec<f32>, ApiError> {
        self.blocking(move |engine| {
            let image = engine.preprocessor.load_bytes(&bytes).map_err(|e| decode_error(e, &name))?;
            first(engine.vision.embed(&image.tensor, 1))
        })
        .await
    }

    async fn blocking<T, F>(self: &Arc<Self>, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&QueryEngine) -> Result<T, ApiError> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|e| ApiError::Internal(e.to_string()))?;
        let engine = self.clone();
        tokio::task::spawn_blocking(move || work(&engine)).await.map_err(|e| ApiError::Internal(e.to_string()))?
    }
}

fn unavailable(m: &ModelManifest, dir: &Path, why: &str) -> String {
    format!("model {} ({}) {why}", m.name, dir.display())
}

fn first(vectors: Result<Vec<Vec<f32>>, EmbedError>) -> Result<Vec<f32>, ApiError> {
    vectors
        .map_err(|e| ApiError::Internal(format!("query embedding: {e}")))?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Internal("query embedding: the encoder returned no vector".into()))
}

fn decode_error(e: DecodeError, what: &str) -> ApiError {
    match e {
        DecodeError::NotFound(_) => ApiError::ImageNotFound(format!("{what}: no such file")),
        DecodeError::TooLarge(m) => ApiError::QueryImage { code: "image_too_large", message: format!("{what}: {m}") },
        DecodeError::NotAnImage(m) => ApiError::QueryImage { code: "not_an_image", message: format!("{what}: {m}") },
        DecodeError::Unreadable(m) => ApiError::QueryImage { code: "unreadable_image", message: format!("{what}: {m}") },
    }
}
