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
    /// The item is not pending (already finished, or its job is unknown).
    NotPending,
    /// The item is pending in a job that ended without it (cancelled, or failed before
    /// its tasks were queued): nothing wants it embedded. Not counted.
    Withdrawn,
}

/// A pending item as a store found it: attempts so far, and whether its job is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pending {
    pub attempts: u32,
    pub job_active: bool,
}

/// How a store answers for one item, from what was stored before the call; true when
/// the attempt is to be counted.
pub(super) fn decide(before: Option<Pending>, first_only: bool) -> (AttemptCount, bool) {
    match before {
        None => (AttemptCount::NotPending, false),
        Some(p) if !p.job_active => (AttemptCount::Withdrawn, false),
        Some(p) if first_only && p.attempts > 0 => (AttemptCount::Earlier(p.attempts), false),
        Some(p) => (AttemptCount::Started(p.attempts.saturating_add(1)), true),
    }
}
