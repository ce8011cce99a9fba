//! An archive's manifest: every image it took out of the way, where its file went, and
//! a snapshot of its point (vector and payload), so that a restore puts the file and the
//! index back as they were without embedding anything again. It is written before
//! anything moves and again once everything has.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use imgidx_shared::time::rfc3339;
use imgidx_shared::vectors::{ImagePayload, Point};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveKind {
    /// All but one image of each exact group (`POST /api/v1/duplicates/archive-exact`).
    Exact,
    /// A chosen selection (`POST /api/v1/curation/archive-selection`).
    Selection,
}

impl ArchiveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveKind::Exact => "exact",
            ArchiveKind::Selection => "selection",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Recorded, not moved yet (or the archive is a dry run).
    Planned,
    /// Its file is at `to` and its point is out of the index.
    Moved,
    /// Not a file on this server's disk (an upload or a URL): only its point left the index.
    Unindexed,
    /// Could not be moved (see `error`): the file and its point are where they were.
    Failed,
    /// Put back by a restore.
    Restored,
    /// A restore could not put it back (see `error`): the file is still at `to`.
    NotRestored,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub archive_id: String,
    pub kind: ArchiveKind,
    /// The folder the files went to under their root (`_duplicates`, `_archive/<name>`).
    pub folder: String,
    /// The collection's name and its physical collection.
    pub collection: String,
    pub physical: String,
    /// The analysis an exact archive came from.
    pub task_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub point_id: Uuid,
    /// The image's path when it was archived.
    pub from: String,
    /// Where its file goes; None for an image that is no file here.
    pub to: Option<String>,
    pub state: EntryState,
    pub error: Option<String>,
    pub snapshot: Snapshot,
}

/// A point as it was: its vector (little-endian f32, base64) and payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub vector: String,
    pub payload: ImagePayload,
}

impl Snapshot {
    pub fn of(point: &Point) -> Self {
        let bytes: Vec<u8> = point.vector.iter().flat_map(|x| x.to_le_bytes()).collect();
        Self { vector: STANDARD.encode(bytes), payload: point.payload.clone() }
    }

    /// The point again; None when the stored vector does not decode.
    pub fn point(&self, id: Uuid) -> Option<Point> {
        let bytes = STANDARD.decode(&self.vector).ok()?;
        if bytes.len() % 4 != 0 {
            return None;
        }
        let vector = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Some(Point { id, vector, payload: self.payload.clone() })
    }
}

impl Manifest {
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    pub fn from_json(value: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(value)
    }
}

/// One image of an archive, as the API shows it (the snapshot stays in the store).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EntryView {
    pub point_id: Uuid,
    pub from: String,
    /// Where its file goes (or went); absent for an upload or a URL, of which only the
    /// point leaves the index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub state: EntryState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An archive, or the plan of one (`dry_run`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ArchiveView {
    /// Pass to `POST /api/v1/duplicates/restore`; absent on a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_id: Option<String>,
    pub kind: ArchiveKind,
    pub dry_run: bool,
    pub collection: String,
    pub folder: String,
    /// RFC 3339.
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_at: Option<String>,
    /// Entries by state.
    pub planned: usize,
    pub moved: usize,
    pub unindexed: usize,
    pub failed: usize,
    pub restored: usize,
    pub not_restored: usize,
    pub entries: Vec<EntryView>,
    /// Images a selection named that are not in the collection.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_indexed: Vec<String>,
}

impl ArchiveView {
    pub fn of(manifest: &Manifest, dry_run: bool, restored_at: Option<DateTime<Utc>>) -> Self {
        let count = |state| manifest.entries.iter().filter(|e| e.state == state).count();
        Self {
            archive_id: (!dry_run).then(|| manifest.archive_id.clone()),
            kind: manifest.kind,
            dry_run,
            collection: manifest.collection.clone(),
            folder: manifest.folder.clone(),
            created_at: rfc3339(manifest.created_at),
            restored_at: restored_at.map(rfc3339),
            planned: count(EntryState::Planned),
            moved: count(EntryState::Moved),
            unindexed: count(EntryState::Unindexed),
            failed: count(EntryState::Failed),
            restored: count(EntryState::Restored),
            not_restored: count(EntryState::NotRestored),
            entries: manifest
                .entries
                .iter()
                .map(|e| EntryView { point_id: e.point_id, from: e.from.clone(), to: e.to.clone(), state: e.state, error: e.error.clone() })
                .collect(),
            not_indexed: Vec::new(),
        }
    }
}
