//! The models a process serves: the one `model.dir` names (loaded at start, kept for
//! good) and, on demand, any other installed as `<models_dir>/<name>`, which collections
//! made for another model and model switches (`POST /api/v1/collections/{name}/reembed`)
//! need. Each is loaded once; at most `model.max_loaded` others stay loaded, and the one
//! used least recently is let go (what still uses it keeps it until done). Generic over
//! what is loaded, so workers keep encoders and taggers, and the API query engines.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::OnceCell;

use super::{EmbedError, ModelManifest};

/// Why a model cannot be used here.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    #[error("model {name:?} is not installed here (no {dir}/manifest.json); install it with `imgidx models fetch` or copy its directory there")]
    NotInstalled { name: String, dir: String },
    #[error("model {name:?} could not be loaded: {why}")]
    Load { name: String, why: String },
}

/// Loads one model's `T` from its directory. Blocking.
pub type Loader<T> = Arc<dyn Fn(&Path) -> Result<T, EmbedError> + Send + Sync>;

/// Where one model is loaded once: callers of one model wait for each other only.
type Slot<T> = Arc<OnceCell<Arc<T>>>;

pub struct Models<T> {
    default_name: String,
    default: Arc<T>,
    dir: PathBuf,
    max_loaded: usize,
    load: Loader<T>,
    /// Most recently used last; at most `max_loaded`.
    loaded: Mutex<Vec<(String, Slot<T>)>>,
}

impl<T: Send + Sync + 'static> Models<T> {
    /// `default` is the model `default_name`; others are looked for in `dir`.
    pub fn new(default_name: &str, default: Arc<T>, dir: PathBuf, max_loaded: usize, load: Loader<T>) -> Self {
        Self { default_name: default_name.to_owned(), default, dir, max_loaded, load, loaded: Mutex::new(Vec::new()) }
    }

    /// Serves the default model only (tools and tests with one model).
    pub fn only(default_name: &str, default: Arc<T>) -> Self {
        let refuse: Loader<T> = Arc::new(|dir: &Path| {
            Err(EmbedError::Unsupported(format!("only one model is served here, not the one in {}", dir.display())))
        });
        Self::new(default_name, default, PathBuf::new(), 0, refuse)
    }

    pub fn default_name(&self) -> &str {
        &self.default_name
    }

    pub fn default_model(&self) -> &Arc<T> {
        &self.default
    }

    /// The manifest of model `name` as installed (read, not loaded); for the default model,
    /// None (its manifest is the caller's already).
    pub fn manifest(&self, name: &str) -> Result<Option<ModelManifest>, ModelError> {
        if name == self.default_name {
            return Ok(None);
        }
        let dir = self.dir_of(name)?;
        let manifest = ModelManifest::load(&dir).map_err(|e| match e {
            super::ManifestError::Read { .. } => not_installed(name, &dir),
            other => ModelError::Load { name: name.to_owned(), why: other.to_string() },
        })?;
        if manifest.name != name {
            return Err(ModelError::Load {
                name: name.to_owned(),
                why: format!("{} holds model {:?}", dir.display(), manifest.name),
            });
        }
        Ok(Some(manifest))
    }

    /// Model `name`, loaded (on the blocking pool) the first time it is asked for.
    pub async fn get(&self, name: &str) -> Result<Arc<T>, ModelError> {
        if name == self.default_name {
            return Ok(Arc::clone(&self.default));
        }
        let dir = self.dir_of(name)?;
        if let Some(model) = self.loaded_now(name) {
            return Ok(model);
        }
        self.manifest(name)?;
        let slot = self.slot(name);
        let load = Arc::clone(&self.load);
        let loaded = slot
            .get_or_try_init(|| async move {
                let shown = name.to_owned();
                tokio::task::spawn_blocking(move || load(&dir).map(Arc::new))
                    .await
                    .map_err(|e| ModelError::Load { name: shown.clone(), why: format!("loading task failed: {e}") })?
                    .map_err(|e| ModelError::Load { name: shown, why: e.to_string() })
            })
            .await;
        match loaded {
            Ok(model) => {
                tracing::debug!(model = name, "model ready");
                Ok(Arc::clone(model))
            }
            Err(e) => {
                // Not kept: a model installed or fixed later loads on the next request.
                self.slots().retain(|(n, s)| n != name || !Arc::ptr_eq(s, &slot));
                Err(e)
            }
        }
    }

    fn slots(&self) -> MutexGuard<'_, Vec<(String, Slot<T>)>> {
        // Held only to look up or change the list, never across an await.
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Model `name` if it is loaded, now the most recently used.
    fn loaded_now(&self, name: &str) -> Option<Arc<T>> {
        let mut slots = self.slots();
        let i = slots.iter().position(|(n, s)| n == name && s.initialized())?;
        let entry = slots.remove(i);
        let model = entry.1.get().map(Arc::clone);
        slots.push(entry);
        model
    }

    /// The slot of `name`, now the most recently used, making room for it if new.
    fn slot(&self, name: &str) -> Slot<T> {
        let mut slots = self.slots();
        let slot = match slots.iter().position(|(n, _)| n == name) {
            Some(i) => slots.remove(i).1,
            None => Arc::default(),
        };
        slots.push((name.to_owned(), Arc::clone(&slot)));
        while slots.len() > self.max_loaded.max(1) {
            let (evicted, _) = slots.remove(0);
            tracing::info!(model = evicted, max_loaded = self.max_loaded, "model unloaded (least recently used)");
        }
        slot
    }

    fn dir_of(&self, name: &str) -> Result<PathBuf, ModelError> {
        // A name becomes a path: keep it one plain component.
        let plain = !name.is_empty()
            && name.len() <= 128
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !name.starts_with('.');
        let dir = self.dir.join(name);
        if !plain || self.max_loaded == 0 {
            return Err(not_installed(name, &dir));
        }
        Ok(dir)
    }
}

fn not_installed(name: &str, dir: &Path) -> ModelError {
    ModelError::NotInstalled { name: name.to_owned(), dir: dir.display().to_string() }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models")
    }

    fn counting(loads: Arc<AtomicUsize>) -> Loader<String> {
        Arc::new(move |dir: &Path| {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok(ModelManifest::load(dir)?.name)
        })
    }

    #[tokio::test]
    async fn loads_each_installed_model_once_and_refuses_others() {
        let loads = Arc::new(AtomicUsize::new(0));
        let models = Models::new("main", Arc::new("main".to_owned()), fixtures(), 2, counting(loads.clone()));
        assert_eq!(*models.get("main").await.unwrap(), "main");
        assert_eq!(*models.get("tiny-clip-b").await.unwrap(), "tiny-clip-b");
        assert_eq!(*models.get("tiny-clip-b").await.unwrap(), "tiny-clip-b");
        assert_eq!(loads.load(Ordering::SeqCst), 1, "the default is never loaded, the other once");
        assert_eq!(models.manifest("tiny-clip-b").unwrap().unwrap().embedding_dim, 32);
        for bad in ["nope", "../tiny-clip", "", ".hidden", "a/b"] {
            assert!(matches!(models.get(bad).await, Err(ModelError::NotInstalled { .. })), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn keeps_at_most_max_loaded_models() {
        let loads = Arc::new(AtomicUsize::new(0));
        let models = Models::new("main", Arc::new("main".to_owned()), fixtures(), 1, counting(loads.clone()));
        let b = models.get("tiny-clip-b").await.unwrap();
        models.get("tiny-clip").await.unwrap();
        models.get("tiny-clip-b").await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 3, "tiny-clip-b was let go and loaded again");
        assert_eq!(*b, "tiny-clip-b", "a model in use stays usable after it is let go");
    }

    #[tokio::test]
    async fn a_single_model_set_serves_its_default_only() {
        let models = Models::only("main", Arc::new(1u8));
        assert_eq!(*models.get("main").await.unwrap(), 1);
        assert!(matches!(models.get("tiny-clip-b").await, Err(ModelError::NotInstalled { .. })));
    }
}
