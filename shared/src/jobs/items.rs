//! What the job store tells about single items: their outcome, listed page by page,
//! counted by failure reason, and the failed ones a retry would queue again.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::NewItem;

/// Where one item of a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemState {
    Pending,
    Indexed,
    Failed,
}

impl ItemState {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Pending => "pending",
            ItemState::Indexed => "indexed",
            ItemState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(ItemState::Pending),
            "indexed" => Some(ItemState::Indexed),
            "failed" => Some(ItemState::Failed),
            _ => None,
        }
    }
}

/// One item of a job and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRecord {
    pub point_id: Uuid,
    pub path: String,
    pub state: ItemState,
    /// Stable failure code (`not_found`, `unreadable`, `not_an_image`, `too_large`,
    /// `retries_exhausted`); set only for failed items.
    pub failure_kind: Option<String>,
    /// The worker's human-readable explanation of a failure.
    pub reason: Option<String>,
    /// How many times a worker started on it (see [`count_attempts`](super::JobStore::count_attempts)).
    pub attempts: u32,
    /// When the item's outcome was recorded; None while pending.
    pub finished_at: Option<DateTime<Utc>>,
    /// Indexed with the vector of a point with the same bytes (no decode, no inference).
    pub from_cache: bool,
}

/// One page of a job's items, in `point_id` order.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemPage {
    pub items: Vec<ItemRecord>,
    /// Pass as `after` for the next page; None when this page is the last.
    pub next_after: Option<Uuid>,
}

impl ItemPage {
    /// Cuts a result fetched with one row beyond `limit` down to a page, noting where
    /// the next one starts only when that extra row exists (so no empty last page).
    pub(super) fn from_overfetch(mut items: Vec<ItemRecord>, limit: usize) -> Self {
        let more = items.len() > limit;
        items.truncate(limit);
        let next_after = if more { items.last().map(|i| i.point_id) } else { None };
        Self { items, next_after }
    }
}

/// The items of a finished job that were not indexed, as a retry sees them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RetryCandidates {
    /// Items whose image is still not indexed, in `point_id` order, with the file
    /// stamps recorded when they were queued.
    pub items: Vec<NewItem>,
    /// Items whose image has been indexed since, by a later job.
    pub indexed_since: u64,
}
