//! Job progress rules, kept apart from the SQL so they are testable without a database
//! and shared by every backend.

use std::collections::HashMap;

use uuid::Uuid;

use crate::jobs::{ItemKey, JobRecord, JobStatus};

/// Counters of a job before a batch of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counters {
    pub total: u64,
    pub processed: u64,
    pub failed: u64,
}

/// What a batch does to one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Advance {
    pub processed: u64,
    pub failed: u64,
    pub status: JobStatus,
    /// Every item is finished: the job gets its `completed_at`.
    pub finished: bool,
    /// Finished items that did not fit under `total` and were not counted. Cannot happen
    /// while items are counted once each; reported so a broken invariant gets logged.
    pub dropped: u64,
}

/// Adds newly finished items to an active job and picks its next status: running once
/// anything finished, then completed (something indexed) or failed (nothing indexed).
pub(super) fn advance(before: Counters, newly_indexed: u64, newly_failed: u64) -> Advance {
    let room = before.total.saturating_sub(before.processed + before.failed);
    let indexed = newly_indexed.min(room);
    let failed = newly_failed.min(room - indexed);
    let processed = before.processed + indexed;
    let failed_total = before.failed + failed;
    let finished = processed + failed_total >= before.total;
    let status = match (finished, processed > 0) {
        (false, _) => JobStatus::Running,
        (true, true) => JobStatus::Completed,
        (true, false) => JobStatus::Failed,
    };
    Advance {
        processed,
        failed: failed_total,
        status,
        finished,
        dropped: newly_indexed + newly_failed - indexed - failed,
    }
}

/// An item a batch of events moved from `pending` to finished.
pub(super) struct Finished {
    pub job_id: String,
    pub point_id: Uuid,
    pub indexed: bool,
    /// Indexed with a reused vector (the event's `from_cache`).
    pub from_cache: bool,
    /// Who finished it (the event's `worker`).
    pub worker: String,
}

/// The keys of finished items, in the order they finished.
pub(super) fn finished_keys(finished: &[Finished]) -> Vec<ItemKey> {
    finished.iter().map(|f| ItemKey { job_id: f.job_id.clone(), point_id: f.point_id }).collect()
}

/// What one worker finished of one job in a batch of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WorkerTally {
    pub job_id: String,
    pub worker: String,
    pub indexed: u64,
    pub failed: u64,
}

/// Finished items counted per (job, worker), in that order (the order rows are upserted).
pub(super) fn worker_tallies(finished: &[Finished]) -> Vec<WorkerTally> {
    let mut by: std::collections::BTreeMap<(&str, &str), (u64, u64)> = std::collections::BTreeMap::new();
    for f in finished {
        let entry = by.entry((f.job_id.as_str(), f.worker.as_str())).or_default();
        if f.indexed {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    by.into_iter()
        .map(|((job_id, worker), (indexed, failed))| WorkerTally { job_id: job_id.into(), worker: worker.into(), indexed, failed })
        .collect()
}

/// New counters and status of one active job.
pub(super) struct JobUpdate {
    pub job_id: String,
    pub advance: Advance,
    /// Newly indexed items that reused a vector, added to the job's `from_cache`.
    pub from_cache: u64,
    /// Set by the backend for jobs this batch fails (see [`all_failed_message`]).
    pub error_message: Option<String>,
}

/// The new state of every active job (in `jobs`, the batch's jobs as they were before it)
/// that had items finish. A cancelled job counts the outcomes of batches that were past
/// the cancel already, so its counters match the index, and stays cancelled; completed
/// and failed jobs keep their counters and status.
pub(super) fn plan_updates(jobs: &HashMap<String, JobRecord>, finished: &[Finished]) -> Vec<JobUpdate> {
    let mut tally: HashMap<&str, (u64, u64, u64)> = HashMap::new();
    for f in finished {
        let entry = tally.entry(f.job_id.as_str()).or_default();
        if f.indexed {
            entry.0 += 1;
            entry.2 += u64::from(f.from_cache);
        } else {
            entry.1 += 1;
        }
    }
    let mut updates = Vec::with_capacity(tally.len());
    for (job_id, (indexed, failed, from_cache)) in tally {
        let Some(job) = jobs.get(job_id).filter(|j| j.status.is_active() || j.status == JobStatus::Cancelled) else {
            tracing::debug!(job_id, "items of a finished job recorded; its counters stay as they are");
            continue;
        };
        let before = Counters { total: job.total_images, processed: job.processed_images, failed: job.failed_images };
        let mut advance = advance(before, indexed, failed);
        if job.status == JobStatus::Cancelled {
            advance.status = JobStatus::Cancelled;
            advance.finished = false;
        } else if job.scanning && advance.finished {
            // Every item so far is done, but the walk may add more: finish_scan ends it.
            advance.status = JobStatus::Running;
            advance.finished = false;
        }
        if advance.dropped > 0 {
            tracing::warn!(job_id, dropped = advance.dropped, "finished items beyond the job's total were not counted");
        }
        // Counted as indexed items are (none beyond the total): dropped ones are not cached ones.
        let from_cache = from_cache.min(advance.processed - before.processed);
        updates.push(JobUpdate { job_id: job_id.to_owned(), advance, from_cache, error_message: None });
    }
    updates.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    updates
}

/// The update that ends a job whose directory walk is over, when nothing of it is
/// pending: completed (also with no items at all) or failed as [`advance`] decides.
pub(super) fn completion(job: &JobRecord) -> Option<JobUpdate> {
    if job.pending_images() > 0 {
        return None;
    }
    let before = Counters { total: job.total_images, processed: job.processed_images, failed: job.failed_images };
    let mut advance = advance(before, 0, 0);
    if job.total_images == 0 {
        advance.status = JobStatus::Completed; // nothing new to index is a success
    }
    Some(JobUpdate { job_id: job.job_id.clone(), advance, from_cache: 0, error_message: None })
}

/// Each finished point once, in `point_id` order, with whether its latest attempt
/// succeeded: a success wins a tie within one batch, since the image is then indexed.
pub(super) fn latest_outcomes(finished: &[Finished]) -> Vec<(Uuid, bool)> {
    let mut by_point: HashMap<Uuid, bool> = HashMap::with_capacity(finished.len());
    for f in finished {
        *by_point.entry(f.point_id).or_insert(false) |= f.indexed;
    }
    let mut outcomes: Vec<(Uuid, bool)> = by_point.into_iter().collect();
    outcomes.sort_unstable();
    outcomes
}

/// Failed items of one kind, with one example for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FailureGroup {
    pub kind: String,
    pub count: u64,
    pub example_path: String,
    pub example_reason: String,
}

/// Longest example reason quoted in a job's error message.
const MAX_EXAMPLE_CHARS: usize = 200;

/// Error message of a job none of whose items was indexed, e.g.
/// `all 3 images failed: 2 not_found, 1 not_an_image (e.g. /a.jpg: no such file)`, or
/// `the only image failed: too_large (/big.png: too many pixels)`. Counts lead, in
/// words a reader scans; the codes are those of the items endpoint and
/// `failures_by_reason`, so the message can be matched against them.
pub(super) fn all_failed_message(total: u64, groups: &[FailureGroup]) -> String {
    let mut groups: Vec<&FailureGroup> = groups.iter().collect();
    // Most common cause first; ties by name so the message is stable.
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.kind.cmp(&b.kind)));
    let example = groups.first().map(|top| {
        let reason: String = top.example_reason.chars().take(MAX_EXAMPLE_CHARS).collect();
        format!("{}: {reason}", top.example_path)
    });
    if total == 1 {
        return match (groups.first(), example) {
            (Some(top), Some(example)) => format!("the only image failed: {} ({example})", top.kind),
            _ => "the only image failed".to_string(),
        };
    }
    let head = format!("all {total} images failed");
    let kinds: Vec<String> = groups.iter().map(|g| format!("{} {}", g.count, g.kind)).collect();
    match example {
        Some(example) => format!("{head}: {} (e.g. {example})", kinds.join(", ")),
        None => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(total: u64, processed: u64, failed: u64) -> Counters {
        Counters { total, processed, failed }
    }

    #[test]
    fn first_progress_runs_then_completes() {
        let a = advance(counters(3, 0, 0), 1, 0);
        assert_eq!((a.processed, a.failed, a.status, a.finished), (1, 0, JobStatus::Running, false));
        let a = advance(counters(3, 1, 0), 0, 2);
        assert_eq!((a.processed, a.failed, a.status, a.finished), (1, 2, JobStatus::Completed, true));
    }

    #[test]
    fn nothing_indexed_fails_the_job() {
        let a = advance(counters(2, 0, 1), 0, 1);
        assert_eq!((a.status, a.finished), (JobStatus::Failed, true));
    }

    #[test]
    fn counters_never_pass_total() {
        let a = advance(counters(3, 1, 1), 2, 2);
        assert_eq!((a.processed, a.failed, a.dropped), (2, 1, 3));
        assert_eq!(a.status, JobStatus::Completed);
    }

    #[test]
    fn a_success_wins_a_tie_within_a_batch() {
        let f = |job: &str, n, indexed| Finished { job_id: job.into(), point_id: Uuid::from_u128(n), indexed, from_cache: false, worker: "w".into() };
        let outcomes = latest_outcomes(&[f("a", 2, false), f("b", 1, false), f("c", 2, true)]);
        assert_eq!(outcomes, vec![(Uuid::from_u128(1), false), (Uuid::from_u128(2), true)]);
    }

    #[test]
    fn workers_are_tallied_per_job_in_key_order() {
        let f = |job: &str, worker: &str, indexed| Finished { job_id: job.into(), point_id: Uuid::nil(), indexed, from_cache: false, worker: worker.into() };
        let tallies = worker_tallies(&[f("b", "w2", true), f("a", "w2", false), f("b", "w1", true), f("b", "w2", false)]);
        let got: Vec<(&str, &str, u64, u64)> =
            tallies.iter().map(|t| (t.job_id.as_str(), t.worker.as_str(), t.indexed, t.failed)).collect();
        assert_eq!(got, vec![("a", "w2", 0, 1), ("b", "w1", 1, 0), ("b", "w2", 1, 1)]);
    }

    #[test]
    fn message_lists_causes_most_common_first() {
        let group = |kind: &str, count, path: &str, reason: &str| FailureGroup {
            kind: kind.into(),
            count,
            example_path: path.into(),
            example_reason: reason.into(),
        };
        let msg = all_failed_message(
            3,
            &[group("not_an_image", 1, "/b.txt", "unknown format"), group("not_found", 2, "/a.jpg", "no such file")],
        );
        assert_eq!(msg, "all 3 images failed: 2 not_found, 1 not_an_image (e.g. /a.jpg: no such file)");
        let msg = all_failed_message(1, &[group("too_large", 1, "/big.png", "too many pixels")]);
        assert_eq!(msg, "the only image failed: too_large (/big.png: too many pixels)");
        assert_eq!(all_failed_message(2, &[]), "all 2 images failed");
    }
}
