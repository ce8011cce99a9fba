//! What an operator does with jobs as a whole: list them page by page, see which
//! workers worked on one, cancel one, and delete finished ones after their retention
//! period.

use chrono::{DateTime, Utc};

use super::{JobRecord, JobStatus};
use crate::messages::Priority;

/// Which jobs to list, newest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobQuery {
    pub status: Option<JobStatus>,
    pub priority: Option<Priority>,
    /// Start after this job (the previous page's `next`).
    pub after: Option<JobCursor>,
    pub limit: usize,
}

/// Where a page of jobs ends: jobs are ordered by `(created_at, job_id)`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCursor {
    pub created_at: DateTime<Utc>,
    pub job_id: String,
}

impl JobCursor {
    /// Opaque to clients: `<created_at in µs>.<job_id>`.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at.timestamp_micros(), self.job_id)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (micros, job_id) = s.split_once('.')?;
        let created_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        (!job_id.is_empty()).then(|| Self { created_at, job_id: job_id.to_string() })
    }

    pub fn of(job: &JobRecord) -> Self {
        Self { created_at: job.created_at, job_id: job.job_id.clone() }
    }
}

/// One page of jobs and how many match the query in all.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    pub jobs: Vec<JobRecord>,
    pub total: u64,
    /// Pass as `after` for the next page; None when this page is the last.
    pub next: Option<JobCursor>,
}

impl JobPage {
    /// Cuts jobs fetched with one row beyond `limit` down to a page (no empty last page).
    pub(super) fn from_overfetch(mut jobs: Vec<JobRecord>, limit: usize, total: u64) -> Self {
        let more = jobs.len() > limit;
        jobs.truncate(limit);
        let next = if more { jobs.last().map(JobCursor::of) } else { None };
        Self { jobs, total, next }
    }
}

/// A worker that worked on a job: what it finished of it, and when it last did.
#[derive(Debug, Clone, PartialEq)]
pub struct JobWorker {
    pub worker_id: String,
    pub images_processed: u64,
    pub images_failed: u64,
    pub last_seen_at: DateTime<Utc>,
}

/// What [`cancel_job`](super::JobStore::cancel_job) found.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// Cancelled now: the job as it is after.
    Cancelled(JobRecord),
    /// It had finished already (completed, failed or cancelled); left as it is.
    AlreadyFinished(JobRecord),
    Unknown,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = JobCursor { created_at: DateTime::from_timestamp_micros(1_733_100_000_123_456).unwrap(), job_id: "idx_a.b".into() };
        assert_eq!(JobCursor::decode(&c.encode()), Some(c));
        for bad in ["", "x.y", "12", "12.", ".idx"] {
            assert_eq!(JobCursor::decode(bad), None, "{bad}");
        }
    }
}
