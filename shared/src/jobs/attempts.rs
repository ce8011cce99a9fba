//! Attempts per item: how often a worker started on an image. Counted where the work
//! happens (when the image's batch enters decode), so a worker that crashes charges
//! only what it was working on, never what it merely held prefetched.

use uuid::Uuid;

/// One item of one job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemKey {
    pub job_id: String,
    pub point_id: Uuid,
}

/// What [`JobStore::count_attempts`](super::JobStore::count_attempts) did with one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptCount {
    /// Counted: this is the item's attempt number `n` (1 for the first).
    Started(u32),
    /// Not counted (`first_only` and the item was attempted before): `n` attempts so far,
    /// none of which finished.
    Earlier(u32),
    /// The item is not pending (already finished, its job failed or is unknown).
    NotPending,
}

/// How a store answers for one item, from the attempts stored before the call.
pub(super) fn decide(before: Option<u32>, first_only: bool) -> (AttemptCount, bool) {
    match before {
        None => (AttemptCount::NotPending, false),
        Some(n) if first_only && n > 0 => (AttemptCount::Earlier(n), false),
        Some(n) => (AttemptCount::Started(n.saturating_add(1)), true),
    }
}
