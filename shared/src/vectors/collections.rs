//! Physical collections: opening (and caching) one store per collection, dropping them, and
//! the Qdrant aliases that give a collection's current generation its plain name.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::OnceCell;

use super::*;

/// What differs between the Qdrant server and the embedded store when handling whole collections.
#[async_trait]
pub trait CollectionBackend: Send + Sync {
    /// A handle on the physical collection (no request made, nothing created).
    async fn connect(&self, physical: &str) -> Result<Arc<dyn VectorStore>, VectorStoreError>;
    async fn exists(&self, physical: &str) -> Result<bool, VectorStoreError>;
    /// Deletes the collection and its points; a missing one is not an error. `open` is this
    /// process's handle on it, if it had one (no longer handed out).
    async fn drop_collection(&self, physical: &str, open: Option<Arc<dyn VectorStore>>) -> Result<(), VectorStoreError>;
    /// Points `alias` at `physical`, replacing where it pointed; the embedded store has no
    /// aliases (the catalog alone maps names there), so it does nothing.
    async fn set_alias(&self, alias: &str, physical: &str) -> Result<(), VectorStoreError>;
    /// Removes `alias` if it exists.
    async fn remove_alias(&self, alias: &str) -> Result<(), VectorStoreError>;
    /// Whether the store answers.
    async fn healthy(&self) -> bool;
}

/// An opened store, with the vector size it was checked for.
type Opened = (usize, Arc<dyn VectorStore>);

/// Where one collection's store is opened once: callers of one collection wait for each
/// other, never for another collection's (a slow server, a large shard loading).
type Slot = Arc<OnceCell<Opened>>;

/// The stores of the collections in use, opened once each and shared by the API and workers.
pub struct Collections {
    backend: Box<dyn CollectionBackend>,
    /// The number of collections is bounded by the catalog (`api.max_collections`); a slot
    /// whose opening failed is removed again.
    open: Mutex<HashMap<String, Slot>>,
}

impl Collections {
    pub fn new(backend: Box<dyn CollectionBackend>) -> Self {
        Self { backend, open: Mutex::new(HashMap::new()) }
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        // Held only to look up or change the map, never across an await.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Only the collection `name`, held by `store` (benchmarks, and tests that put a
    /// store with faults in front of a worker).
    pub fn single(name: &str, store: Arc<dyn VectorStore>) -> Self {
        Self::new(Box::new(Single { name: name.to_owned(), store }))
    }

    /// The store of `physical`, checked to hold `dim`-dim vectors. With `create`, a missing
    /// collection is made with that distance (and an existing one must use it); without, a
    /// missing one is [`VectorStoreError::NotFound`].
    pub async fn open(
        &self,
        physical: &str,
        dim: usize,
        create: Option<Distance>,
    ) -> Result<Arc<dyn VectorStore>, VectorStoreError> {
        let slot = Arc::clone(self.slots().entry(physical.to_owned()).or_default());
        // One opening per collection: an Edge shard must not be loaded twice.
        let opened = slot.get_or_try_init(|| self.load(physical, dim, create)).await;
        let (checked, store) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                let mut slots = self.slots();
                if slots.get(physical).is_some_and(|s| Arc::ptr_eq(s, &slot) && s.get().is_none()) {
                    slots.remove(physical);
                }
                return Err(e);
            }
        };
        if *checked != dim {
            return Err(VectorStoreError::Mismatch(format!(
                "collection {physical} holds {checked}-dim vectors, expected {dim}"
            )));
        }
        Ok(Arc::clone(store))
    }

    async fn load(&self, physical: &str, dim: usize, create: Option<Distance>) -> Result<Opened, VectorStoreError> {
        let store = self.backend.connect(physical).await?;
        match create {
            Some(distance) => store.ensure_shape(dim, distance).await?,
            None if !self.backend.exists(physical).await? => {
                return Err(VectorStoreError::NotFound(format!("collection {physical} does not exist")));
            }
            None => store.attach(dim).await?,
        }
        Ok((dim, store))
    }

    /// Deletes a physical collection (and forgets its store).
    pub async fn drop_collection(&self, physical: &str) -> Result<(), VectorStoreError> {
        // Out of the map first: no new handle is given out while dropping waits for the
        // requests still using it.
        let slot = self.slots().remove(physical);
        let store = slot.and_then(|slot| slot.get().map(|(_, store)| Arc::clone(store)));
        self.backend.drop_collection(physical, store).await
    }

    pub async fn set_alias(&self, alias: &str, physical: &str) -> Result<(), VectorStoreError> {
        self.backend.set_alias(alias, physical).await
    }

    pub async fn remove_alias(&self, alias: &str) -> Result<(), VectorStoreError> {
        self.backend.remove_alias(alias).await
    }

    pub async fn healthy(&self) -> bool {
        self.backend.healthy().await
    }
}

/// One collection in a given store; no other exists, and it cannot be dropped.
struct Single {
    name: String,
    store: Arc<dyn VectorStore>,
}

#[async_trait]
impl CollectionBackend for Single {
    async fn connect(&self, physical: &str) -> Result<Arc<dyn VectorStore>, VectorStoreError> {
        if physical != self.name {
            return Err(VectorStoreError::NotFound(format!("collection {physical} does not exist")));
        }
        Ok(Arc::clone(&self.store))
    }

    async fn exists(&self, physical: &str) -> Result<bool, VectorStoreError> {
        Ok(physical == self.name)
    }

    async fn drop_collection(&self, physical: &str, _open: Option<Arc<dyn VectorStore>>) -> Result<(), VectorStoreError> {
        Err(VectorStoreError::Other(format!("collection {physical} cannot be dropped here")))
    }

    async fn set_alias(&self, _alias: &str, _physical: &str) -> Result<(), VectorStoreError> {
        Ok(())
    }

    async fn remove_alias(&self, _alias: &str) -> Result<(), VectorStoreError> {
        Ok(())
    }

    async fn healthy(&self) -> bool {
        self.store.healthy().await
    }
}

/// Embedded: one Edge shard directory per physical collection.
pub struct EdgeCollections {
    /// The collection a deployment started with lives at `initial_path`, as before collections.
    initial: String,
    initial_path: PathBuf,
    /// Every other one at `<dir>/<physical name>`.
    dir: PathBuf,
    tuning: EdgeTuning,
}

impl EdgeCollections {
    pub fn new(initial: &str, initial_path: PathBuf, dir: PathBuf) -> Self {
        Self { initial: initial.to_owned(), initial_path, dir, tuning: EdgeTuning::default() }
    }

    /// Opens every shard indexed and searched as `tuning` says.
    pub fn tuned(mut self, tuning: EdgeTuning) -> Self {
        self.tuning = tuning;
        self
    }

    fn path(&self, physical: &str) -> Result<PathBuf, VectorStoreError> {
        if physical == self.initial {
            return Ok(self.initial_path.clone());
        }
        // Names are checked where they are made; this keeps a bad one from leaving `dir`.
        crate::collections::check_name(crate::collections::name_of(physical))
            .map_err(|e| VectorStoreError::Other(e.to_string()))?;
        Ok(self.dir.join(physical))
    }
}

#[async_trait]
impl CollectionBackend for EdgeCollections {
    async fn connect(&self, physical: &str) -> Result<Arc<dyn VectorStore>, VectorStoreError> {
        let path = self.path(physical)?;
        // Loading a shard reads its segments from disk.
        let tuning = self.tuning.clone();
        let store = tokio::task::spawn_blocking(move || EdgeStore::open_tuned(&path, tuning))
            .await
            .map_err(|e| VectorStoreError::Other(format!("edge task failed: {e}")))??;
        Ok(Arc::new(store))
    }

    async fn exists(&self, physical: &str) -> Result<bool, VectorStoreError> {
        Ok(EdgeStore::exists_at(&self.path(physical)?))
    }

    async fn drop_collection(&self, physical: &str, open: Option<Arc<dyn VectorStore>>) -> Result<(), VectorStoreError> {
        let path = self.path(physical)?;
        if let Some(store) = open {
            // A shard flushes into its directory when it is dropped: only once the last
            // request using it has finished may the directory go.
            release(store).await?;
        }
        match tokio::fs::remove_dir_all(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(VectorStoreError::Other(format!("remove {}: {e}", path.display()))),
        }
    }

    async fn set_alias(&self, _alias: &str, _physical: &str) -> Result<(), VectorStoreError> {
        Ok(())
    }

    async fn remove_alias(&self, _alias: &str) -> Result<(), VectorStoreError> {
        Ok(())
    }

    /// In-process: it answers whenever this process does.
    async fn healthy(&self) -> bool {
        true
    }
}

/// Longest wait for the requests still using a collection that is being dropped.
const RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until `store` is the last handle on its shard, then drops it (on the blocking
/// pool: dropping flushes).
async fn release(store: Arc<dyn VectorStore>) -> Result<(), VectorStoreError> {
    let deadline = tokio::time::Instant::now() + RELEASE_TIMEOUT;
    // No new handle can appear: the store is out of the cache that hands them out.
    while Arc::strong_count(&store) > 1 {
        if tokio::time::Instant::now() >= deadline {
            return Err(VectorStoreError::Unavailable("the collection is still in use; try again".into()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::task::spawn_blocking(move || drop(store))
        .await
        .map_err(|e| VectorStoreError::Other(format!("closing the collection failed: {e}")))
}

/// Qdrant server: physical collections are Qdrant collections, names are Qdrant aliases.
pub struct QdrantCollections {
    client: Arc<qdrant_client::Qdrant>,
}

impl QdrantCollections {
    /// Builds the client; no request is made until the first call.
    pub fn connect(url: &str, api_key: Option<&str>) -> Result<Self, VectorStoreError> {
        Ok(Self { client: Arc::new(qdrant::client(url, api_key)?) })
    }
}

#[async_trait]
impl CollectionBackend for QdrantCollections {
    async fn connect(&self, physical: &str) -> Result<Arc<dyn VectorStore>, VectorStoreError> {
        Ok(Arc::new(QdrantStore::with_client(Arc::clone(&self.client), physical)))
    }

    async fn exists(&self, physical: &str) -> Result<bool, VectorStoreError> {
        self.client.collection_exists(physical).await.map_err(qdrant::map_err)
    }

    async fn drop_collection(&self, physical: &str, _open: Option<Arc<dyn VectorStore>>) -> Result<(), VectorStoreError> {
        // Deleting a missing collection answers `result: false`, not an error.
        self.client.delete_collection(physical).await.map_err(qdrant::map_err)?;
        Ok(())
    }

    async fn set_alias(&self, alias: &str, physical: &str) -> Result<(), VectorStoreError> {
        // Refused when a collection (not an alias) has that name: names and physical names differ.
        let request = qdrant_client::qdrant::CreateAliasBuilder::new(physical, alias);
        self.client.create_alias(request).await.map_err(qdrant::map_err)?;
        Ok(())
    }

    async fn remove_alias(&self, alias: &str) -> Result<(), VectorStoreError> {
        let aliases = self.client.list_aliases().await.map_err(qdrant::map_err)?;
        if aliases.aliases.iter().any(|a| a.alias_name == alias) {
            self.client.delete_alias(alias).await.map_err(qdrant::map_err)?;
        }
        Ok(())
    }

    async fn healthy(&self) -> bool {
        self.client.health_check().await.is_ok()
    }
}
