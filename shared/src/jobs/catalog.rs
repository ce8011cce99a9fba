//! The collection catalog (see `crate::collections`): which collections exist, the model
//! each is bound to, and the server-wide selected one. Kept in the job store so every API
//! process sees one catalog, and so a collection with active jobs cannot be removed under them.

use async_trait::async_trait;

use super::JobStoreError;
use crate::collections::CollectionRecord;

/// Key of the selected collection in `server_settings`.
pub(crate) const SELECTED_KEY: &str = "selected_collection";

/// What [`CollectionCatalog::add_collection`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum AddCollection {
    Added,
    /// The name is taken (by this record).
    Exists(CollectionRecord),
    /// The catalog holds its most collections already.
    Full,
}

/// What [`CollectionCatalog::remove_collection`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoveCollection {
    /// Gone from the catalog; its physical collections are the caller's to drop.
    Removed(CollectionRecord),
    Missing,
    /// It is the selected collection: select another one first.
    Selected,
    /// Jobs writing into it are still queued or running.
    Busy { active_jobs: u64 },
}

#[async_trait]
pub trait CollectionCatalog: Send + Sync {
    /// Registers the collection a deployment starts with unless its name is known, and
    /// selects it when nothing is selected; returns the record as stored (one step, so two
    /// processes starting at once agree).
    async fn ensure_initial_collection(&self, record: &CollectionRecord) -> Result<CollectionRecord, JobStoreError>;

    /// Adds a collection unless its name is taken or the catalog holds `max` already.
    async fn add_collection(&self, record: &CollectionRecord, max: usize) -> Result<AddCollection, JobStoreError>;

    async fn collection(&self, name: &str) -> Result<Option<CollectionRecord>, JobStoreError>;

    /// Every collection, by name.
    async fn collections(&self) -> Result<Vec<CollectionRecord>, JobStoreError>;

    /// Removes a collection that is neither selected nor written into by an active job
    /// (checked in the same step).
    async fn remove_collection(&self, name: &str) -> Result<RemoveCollection, JobStoreError>;

    /// Makes `name` the collection requests without one use; false when it does not exist.
    async fn select_collection(&self, name: &str) -> Result<bool, JobStoreError>;

    /// The selected collection's name, if one was ever selected.
    async fn selected_collection(&self) -> Result<Option<String>, JobStoreError>;
}
