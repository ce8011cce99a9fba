//! Charging attempts to the images being worked on. A batch is counted in the job store
//! when it enters decode (one round trip); its images that were attempted before
//! without finishing (a crash, a shutdown mid-outage) are set aside and each tried
//! alone, with nothing else in flight in this process, so an image that crashes the
//! worker again is the only one charged for it. Past `worker.max_attempts` an image is
//! reported `retries_exhausted` without being tried.

use std::sync::Arc;

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use imgidx_shared::jobs::{AttemptCount, ItemKey, JobStore};

use crate::hold::Hold;
use crate::inbox::Task;

/// Shared by every pipeline of a process: batches run side by side under shared
/// guards; an image tried alone takes the exclusive guard, so it waits for whatever is
/// in flight to finish and nothing starts beside it.
#[derive(Clone, Default)]
pub struct Isolation(Arc<RwLock<()>>);

/// Held from a batch's decode until it is settled.
#[allow(dead_code)] // Held for its drop.
pub enum Guard {
    Shared(OwnedRwLockReadGuard<()>),
    Alone(OwnedRwLockWriteGuard<()>),
}

impl Isolation {
    pub async fn shared(&self) -> Guard {
        Guard::Shared(self.0.clone().read_owned().await)
    }

    pub async fn alone(&self) -> Guard {
        Guard::Alone(self.0.clone().write_owned().await)
    }
}

/// A batch from the inbox, sorted by its images' attempts.
#[derive(Default)]
pub struct Sorted {
    /// Counted now (or not tracked by the job store): decode together.
    pub fresh: Vec<Task>,
    /// Attempted before and not finished: try each alone.
    pub retried: Vec<Task>,
    /// Out of attempts, with how many were made.
    pub exhausted: Vec<(Task, u32)>,
    /// Of a job that ended without them (cancelled): ack without work.
    pub withdrawn: Vec<Task>,
}

/// What to do with an image about to be tried alone.
pub enum Alone {
    /// Try it: this is attempt `n` (0 when the job store does not track it).
    Try(u32),
    /// Another worker's attempts used up its budget meanwhile (`n` made).
    Exhausted(u32),
    /// Its job ended without it (cancelled): ack without work.
    Withdrawn,
}

fn key(task: &Task) -> ItemKey {
    ItemKey { job_id: task.message.job_id.clone(), point_id: task.message.point_id }
}

/// Counts the batch's first attempts; None when shutdown came while the job store was down.
pub async fn sort(jobs: &dyn JobStore, hold: &Hold, tasks: Vec<Task>, max_attempts: u32) -> Option<Sorted> {
    let keys: Vec<ItemKey> = tasks.iter().map(key).collect();
    let counts = hold.until_ok("counting attempts in the job store", || jobs.count_attempts(&keys, true)).await?;
    let mut sorted = Sorted::default();
    for (task, count) in tasks.into_iter().zip(counts) {
        match count {
            AttemptCount::Earlier(n) if n >= max_attempts => sorted.exhausted.push((task, n)),
            AttemptCount::Earlier(_) => sorted.retried.push(task),
            // Not pending: a duplicate of a finished item, or a task no job tracks
            // (benchmarks); embedding it again is harmless and idempotent.
            AttemptCount::Started(_) | AttemptCount::NotPending => sorted.fresh.push(task),
            AttemptCount::Withdrawn => sorted.withdrawn.push(task),
        }
    }
    Some(sorted)
}

/// Counts one more attempt at an image about to be tried alone. None on shutdown.
pub async fn count_alone(jobs: &dyn JobStore, hold: &Hold, task: &Task, max_attempts: u32) -> Option<Alone> {
    let keys = [key(task)];
    let counts = hold.until_ok("counting attempts in the job store", || jobs.count_attempts(&keys, false)).await?;
    Some(match counts.first() {
        Some(AttemptCount::Started(n) | AttemptCount::Earlier(n)) if *n > max_attempts => Alone::Exhausted(*n - 1),
        Some(AttemptCount::Started(n) | AttemptCount::Earlier(n)) => Alone::Try(*n),
        Some(AttemptCount::Withdrawn) => Alone::Withdrawn,
        Some(AttemptCount::NotPending) | None => Alone::Try(0),
    })
}

/// Acks tasks whose job no longer wants them (cancelled): no work, no event.
pub async fn ack_withdrawn(worker: &str, tasks: Vec<Task>) {
    if tasks.is_empty() {
        return;
    }
    tracing::debug!(worker, tasks = tasks.len(), "acking tasks of cancelled jobs without work");
    for task in tasks {
        if let Err(e) = task.ack().await {
            tracing::warn!(worker, error = %e, "ack failed; the task will be redelivered and acked then");
        }
    }
}
