//! Turning a query (text, or an image) into a vector in the index's space: the CLIP
//! text encoder behind the BPE tokenizer, or the same preprocessing and vision encoder
//! the workers use. Inference is blocking, so it runs on the blocking pool, and a
//! semaphore bounds how many queries embed at once. Reading a file for a query happens
//! before, outside that semaphore and bounded in time, so a slow file holds up no other
//! search; decoding takes its share of the process's decode memory budget.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use imgidx_shared::config::{ModelSettings, Settings, WorkerSettings};
use imgidx_shared::embed::tokenizer::ClipTokenizer;
use imgidx_shared::embed::{
    DecodeBudget, DecodeError, EmbedError, Loader, ModelError, ModelManifest, Models, Preprocessor, TextEncoder,
    VisionEncoder,
};
use imgidx_shared::files::{self, ReadRefusal};

use crate::error::ApiError;
use crate::text_cache::TextCache;

/// Queries embedding at the same time; more wait their turn.
const CONCURRENT_QUERIES: usize = 4;
/// Longest a query waits for the file it names to be read.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub struct QueryEngine {
    vision: Arc<VisionEncoder>,
    preprocessor: Preprocessor,
    text: Result<(TextEncoder, ClipTokenizer), String>,
    /// Vectors of recent query texts; None: off (`api.query_cache_entries = 0`).
    texts: Option<TextCache>,
    permits: Semaphore,
}

/// Most texts one call of the text encoder embeds (a batch's texts go in chunks of it).
const TEXT_BATCH: usize = 32;

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
        budget: DecodeBudget,
    ) -> Result<Self, EmbedError> {
        let vision = match vision {
            Some(v) => v,
            None => Arc::new(VisionEncoder::load(model_dir, model)?),
        };
        let m = vision.manifest().clone();
        // As the workers preprocess: a query by image must land where its image would.
        let preprocessor = Preprocessor::new(m.image_size, m.mean, m.std, limits.max_image_pixels, limits.max_file_bytes)
            .with_budget(budget)
            .with_mode(limits.preprocess);
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
        Ok(Self { vision, preprocessor, text, texts: None, permits: Semaphore::new(CONCURRENT_QUERIES) })
    }

    /// Keeps the vectors of the last `entries` query texts (0: none).
    pub fn with_text_cache(mut self, entries: usize) -> Self {
        self.texts = TextCache::new(entries);
        self
    }

    pub fn manifest(&self) -> &ModelManifest {
        self.vision.manifest()
    }

    pub async fn embed_text(self: &Arc<Self>, text: String) -> Result<Vec<f32>, ApiError> {
        let mut vectors = self.embed_texts(vec![text]).await?;
        vectors.pop().ok_or_else(|| ApiError::Internal("query embedding: the encoder returned no vector".into()))
    }

    /// The vectors of `texts`, in order: cached ones from the cache, the others embedded
    /// together (in chunks of [`TEXT_BATCH`]), each text once, and cached.
    pub async fn embed_texts(self: &Arc<Self>, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ApiError> {
        if let Err(why) = &self.text {
            return Err(ApiError::SearchUnavailable(format!("text search is unavailable: {why}")));
        }
        let mut found = std::collections::HashMap::with_capacity(texts.len());
        let mut missing = Vec::new();
        for text in &texts {
            if found.contains_key(text) {
                continue;
            }
            match self.texts.as_ref().and_then(|c| c.get(text)) {
                Some(vector) => {
                    found.insert(text.clone(), vector);
                }
                None if !missing.contains(text) => missing.push(text.clone()),
                None => {}
            }
        }
        for chunk in missing.chunks(TEXT_BATCH) {
            let chunk = chunk.to_vec();
            let vectors = self
                .blocking(move |engine| {
                    let (encoder, tokenizer) =
                        engine.text.as_ref().map_err(|why| ApiError::SearchUnavailable(why.clone()))?;
                    let context = engine.manifest().context_length;
                    let rows: Vec<_> = chunk.iter().map(|t| tokenizer.tokenize(t, context)).collect();
                    let vectors = encoder.embed(&rows).map_err(|e| ApiError::Internal(format!("query embedding: {e}")))?;
                    if vectors.len() != chunk.len() {
                        return Err(ApiError::Internal("query embedding: the encoder returned too few vectors".into()));
                    }
                    Ok(chunk.into_iter().zip(vectors).collect::<Vec<_>>())
                })
                .await?;
            for (text, vector) in vectors {
                let vector: Arc<[f32]> = Arc::from(vector);
                if let Some(cache) = &self.texts {
                    cache.put(text.clone(), vector.clone());
                }
                found.insert(text, vector);
            }
        }
        texts
            .iter()
            .map(|t| {
                found.get(t).map(|v| v.to_vec()).ok_or_else(|| ApiError::Internal("query embedding: a text was not embedded".into()))
            })
            .collect()
    }

    /// Reads the regular file at `canonical` (already checked against the allowed roots)
    /// as `imgidx_shared::files` allows, giving up after [`READ_TIMEOUT`]. Every way of not
    /// reading it is one answer ([`ApiError::ImageNotFound`]), except a file too large.
    pub async fn read_path(&self, canonical: PathBuf) -> Result<Vec<u8>, ApiError> {
        let limits = self.preprocessor.read_limits(READ_TIMEOUT);
        let read = tokio::task::spawn_blocking(move || files::read_regular(&canonical, &limits).map(|f| f.bytes));
        match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(Ok(Ok(bytes))) => Ok(bytes),
            Ok(Ok(Err(ReadRefusal::TooLarge { len, limit }))) => Err(ApiError::QueryImage {
                code: "image_too_large",
                message: format!("image_path: file is {len} bytes, more than the limit of {limit}"),
            }),
            Ok(Ok(Err(why))) => {
                tracing::debug!(%why, "query image not read");
                Err(ApiError::ImageNotFound)
            }
            Ok(Err(e)) => Err(ApiError::Internal(format!("query file read: {e}"))),
            Err(_) => {
                tracing::warn!(timeout = ?READ_TIMEOUT, "query image read timed out");
                Err(ApiError::ImageNotFound)
            }
        }
    }

    /// Embeds image bytes (an upload, or a file read by [`QueryEngine::read_path`]).
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

/// Query engines for every model this server serves: `default` (the model of `model.dir`)
/// and, loaded on first use, those installed in `model.models_dir`; collections made for
/// another model, and a collection after its model switch, are searched with theirs.
pub fn query_engines(settings: &Settings, default: QueryEngine, budget: DecodeBudget) -> Models<QueryEngine> {
    let (model, limits) = (settings.model.clone(), settings.worker.clone());
    let load: Loader<QueryEngine> =
        Arc::new(move |dir: &Path| QueryEngine::load(dir, &model, &limits, None, budget.clone()));
    let entries = settings.api.query_cache_entries;
    let load: Loader<QueryEngine> = Arc::new(move |dir: &Path| load(dir).map(|e| e.with_text_cache(entries)));
    let name = default.manifest().name.clone();
    let default = default.with_text_cache(entries);
    Models::new(&name, Arc::new(default), settings.models_dir(), settings.model.max_loaded, load)
}

/// The engine for collections of `model`; the error a search of one gets otherwise.
pub async fn engine_for(queries: Option<&Arc<Models<QueryEngine>>>, model: &str) -> Result<Arc<QueryEngine>, ApiError> {
    let queries =
        queries.ok_or_else(|| ApiError::SearchUnavailable("this server was started without a model for search".into()))?;
    queries.get(model).await.map_err(|e| match e {
        ModelError::NotInstalled { .. } => ApiError::SearchUnavailable(e.to_string()),
        ModelError::Load { .. } => ApiError::Internal(e.to_string()),
    })
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
        DecodeError::NotFound(_) => ApiError::ImageNotFound,
        DecodeError::TooLarge(m) => ApiError::QueryImage { code: "image_too_large", message: format!("{what}: {m}") },
        DecodeError::NotAnImage(m) => ApiError::QueryImage { code: "not_an_image", message: format!("{what}: {m}") },
        DecodeError::Unreadable(m) => ApiError::QueryImage { code: "unreadable_image", message: format!("{what}: {m}") },
    }
}
