//! The collection catalog (see `crate::collections`): which collections exist, the model
//! each is bound to, and the server-wide selected one. Kept in the job store so every API
//! process sees one catalog, and so a collection with active jobs cannot be removed under them.

use async_trait::async_trait;

use super::JobStoreError;
use crate::collections::{CollectionRecord, NextGeneration};

/// Key of the selected collection in `server_settings`.
pub(crate) const SELECTED_KEY: &str = "selected_collection";

/// What [`CollectionCatalog::add_collection`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum AddCollection {
    Added,
    /// The name is taken (by this record).
    Exists(Box<CollectionRecord>),
    /// The catalog holds its most collections already.
    Full,
}

/// What [`CollectionCatalog::remove_collection`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoveCollection {
    /// Gone from the catalog; its physical collections are the caller's to drop.
    Removed(Box<CollectionRecord>),
    Missing,
    /// It is the selected collection: select another one first.
    Selected,
    /// Jobs writing into it are still queued or running.
    Busy { active_jobs: u64 },
}

/// What [`CollectionCatalog::begin_switch`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum BeginSwitch {
    /// The collection now has this next generation (the record after the change).
    Started(CollectionRecord),
    Missing,
    /// Another switch is under way (its next generation).
    Switching(NextGeneration),
    /// Jobs writing into the collection are still queued or running: what they index
    /// after the switch has read past it would be missing from the next generation.
    Busy { active_jobs: u64 },
}

/// What [`CollectionCatalog::complete_switch`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct SwitchCompleted {
    /// The record after the change: the new generation is current, the old one previous.
    pub record: CollectionRecord,
    /// The generation that was previous until now, for the caller to drop.
    pub replaced: Option<String>,
}

/// What [`CollectionCatalog::forget_previous`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ForgetPrevious {
    /// Out of the catalog; the caller drops this physical collection.
    Forgotten(String),
    Missing,
    NoPrevious,
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

    /// Gives collection `name` the next generation `next` (a model switch), unless it has
    /// one already or jobs write into it; one step, so two requests never start two switches.
    async fn begin_switch(&self, name: &str, next: &NextGeneration) -> Result<BeginSwitch, JobStoreError>;

    /// Makes the next generation filled by `job_id` current, in one step (searches move
    /// to it at once); the current one becomes previous. None when no such switch is pending
    /// (another process completed or abandoned it).
    async fn complete_switch(&self, name: &str, job_id: &str) -> Result<Option<SwitchCompleted>, JobStoreError>;

    /// Forgets the next generation filled by `job_id` (its job failed or was cancelled);
    /// its physical name, for the caller to drop, or None when no such switch is pending.
    async fn abandon_switch(&self, name: &str, job_id: &str) -> Result<Option<String>, JobStoreError>;

    /// Forgets the previous generation a switch left, for the caller to drop.
    async fn forget_previous(&self, name: &str) -> Result<ForgetPrevious, JobStoreError>;
}
