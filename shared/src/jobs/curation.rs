//! Duplicate analyses and archives (seed 003's duplicates and curation endpoints).
//!
//! An analysis runs in some API process under a lease (an owner token and a heartbeat,
//! as directory walks do): each progress report renews it, and an analysis whose
//! heartbeat is older than the lease is taken over and run again from the start, so a
//! crash costs an analysis repeated, never one stuck `running`. Its report is a JSON
//! document the API writes and reads; the store keeps it whole.
//!
//! An archive records files moved out of the way (and the points taken out of the
//! index) in a manifest written before anything moves, so that a restore can put every
//! file and point back whatever happened after it was written.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::JobStoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalysisState {
    Running,
    Completed,
    Failed,
}

impl AnalysisState {
    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisState::Running => "running",
            AnalysisState::Completed => "completed",
            AnalysisState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(AnalysisState::Running),
            "completed" => Some(AnalysisState::Completed),
            "failed" => Some(AnalysisState::Failed),
            _ => None,
        }
    }
}

/// What an analysis is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisSpec {
    /// Physical collection it reads.
    pub collection: String,
    /// Cosine similarity at or above which two images are near duplicates.
    pub threshold: f32,
}

/// An analysis as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateAnalysis {
    pub task_id: String,
    pub spec: AnalysisSpec,
    pub state: AnalysisState,
    /// Points read so far, of `total` (counted from zero by each run).
    pub scanned: u64,
    pub total: u64,
    /// The report, once completed.
    pub report: Option<serde_json::Value>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// How an analysis ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AnalysisOutcome {
    Completed(serde_json::Value),
    Failed(String),
}

/// An archive as stored: which collection, and the manifest of what moved.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveRecord {
    pub archive_id: String,
    /// `exact` (archive-exact) or `selection` (curation).
    pub kind: String,
    pub collection: String,
    pub manifest: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub restored_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait Curation: Send + Sync {
    /// Records a new analysis (`running`) whose lease `owner` holds.
    async fn create_analysis(&self, task_id: &str, spec: &AnalysisSpec, owner: &str) -> Result<(), JobStoreError>;

    /// Takes over at most one running analysis whose heartbeat is older than `lease`
    /// (its process died, or gave it back), oldest first; `owner` holds it then.
    async fn claim_stale_analysis(&self, owner: &str, lease: Duration) -> Result<Option<DuplicateAnalysis>, JobStoreError>;

    /// Records progress and renews the lease; false when `owner` no longer holds it
    /// (another process took the analysis over, or it finished): stop then.
    async fn analysis_progress(&self, task_id: &str, owner: &str, scanned: u64, total: u64) -> Result<bool, JobStoreError>;

    /// Ends the analysis; false (and nothing changes) when `owner` no longer holds it.
    async fn finish_analysis(&self, task_id: &str, owner: &str, outcome: &AnalysisOutcome) -> Result<bool, JobStoreError>;

    async fn analysis(&self, task_id: &str) -> Result<Option<DuplicateAnalysis>, JobStoreError>;

    /// Writes the archive, or replaces the manifest of the one with its id.
    async fn save_archive(&self, record: &ArchiveRecord) -> Result<(), JobStoreError>;

    async fn archive(&self, archive_id: &str) -> Result<Option<ArchiveRecord>, JobStoreError>;

    /// Marks the archive restored now; false when it was already (or is unknown).
    async fn mark_restored(&self, archive_id: &str) -> Result<bool, JobStoreError>;
}
