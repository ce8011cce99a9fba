//! How fast a job goes and when it should end: its own average since it started (seed
//! 002's `throughput_images_per_sec` and `estimated_completion`), and which of its
//! workers are still at it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use imgidx_shared::jobs::{JobRecord, JobWorker};
use imgidx_shared::time::rfc3339;

/// A worker that finished nothing of an active job for this long is `idle`.
const ACTIVE_WITHIN_SECS: i64 = 60;

#[derive(Serialize, Debug, PartialEq, utoipa::ToSchema)]
pub struct Pace {
    /// Images finished (indexed or failed) per second since the job started; 0 before.
    pub throughput_images_per_sec: f64,
    /// When the job should finish at that pace (its `completed_at` once finished); null
    /// while nothing has finished yet.
    pub estimated_completion: Option<String>,
}

pub fn pace(job: &JobRecord, now: DateTime<Utc>) -> Pace {
    let done = job.processed_images + job.failed_images;
    let throughput = match job.started_at {
        Some(started) => {
            let until = job.completed_at.unwrap_or(now);
            let secs = (until - started).num_milliseconds().max(1) as f64 / 1000.0;
            done as f64 / secs
        }
        None => 0.0,
    };
    let estimated_completion = if !job.status.is_active() {
        job.completed_at.map(rfc3339)
    } else if job.scanning {
        None // the walk is still adding images: the end is not known yet
    } else if throughput > 0.0 {
        let remaining = job.pending_images() as f64;
        chrono::Duration::try_milliseconds((remaining / throughput * 1000.0).round() as i64).map(|d| rfc3339(now + d))
    } else {
        None
    };
    Pace { throughput_images_per_sec: (throughput * 100.0).round() / 100.0, estimated_completion }
}

#[derive(Serialize, Debug, PartialEq, utoipa::ToSchema)]
#[schema(as = JobWorker)]
pub struct WorkerBody {
    worker_id: String,
    /// `active` (finished images of this job within the last minute), `idle`, or `done`
    /// once the job has finished.
    #[schema(value_type = String, example = "active")]
    status: &'static str,
    images_processed: u64,
    images_failed: u64,
    last_seen_at: String,
}

pub fn workers(job: &JobRecord, workers: Vec<JobWorker>, now: DateTime<Utc>) -> Vec<WorkerBody> {
    workers
        .into_iter()
        .map(|w| {
            let status = match (job.status.is_active(), (now - w.last_seen_at).num_seconds() < ACTIVE_WITHIN_SECS) {
                (false, _) => "done",
                (true, true) => "active",
                (true, false) => "idle",
            };
            WorkerBody {
                worker_id: w.worker_id,
                status,
                images_processed: w.images_processed,
                images_failed: w.images_failed,
                last_seen_at: rfc3339(w.last_seen_at),
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use imgidx_shared::jobs::JobStatus;
    use imgidx_shared::messages::Priority;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_640_000 + secs, 0).unwrap()
    }

    fn job(status: JobStatus, done: u64, started: Option<i64>, completed: Option<i64>) -> JobRecord {
        JobRecord {
            job_id: "j".into(),
            status,
            priority: Priority::Normal,
            total_images: 100,
            processed_images: done,
            failed_images: 0,
            created_at: at(0),
            started_at: started.map(at),
            completed_at: completed.map(at),
            error_message: None,
            scanning: false,
            collection: None,
            from_cache: 0,
        }
    }

    #[test]
    fn the_pace_is_the_average_since_the_start() {
        let p = pace(&job(JobStatus::Running, 30, Some(10), None), at(20));
        assert_eq!(p.throughput_images_per_sec, 3.0);
        // 70 to go at 3 per second.
        assert_eq!(p.estimated_completion, Some(rfc3339(at(20) + chrono::Duration::milliseconds(23_333))));
        let queued = pace(&job(JobStatus::Queued, 0, None, None), at(20));
        assert_eq!(queued, Pace { throughput_images_per_sec: 0.0, estimated_completion: None });
        let done = pace(&job(JobStatus::Completed, 100, Some(10), Some(60)), at(500));
        assert_eq!(done, Pace { throughput_images_per_sec: 2.0, estimated_completion: Some(rfc3339(at(60))) });
    }

    #[test]
    fn workers_are_active_idle_or_done() {
        let w = |seen| JobWorker { worker_id: "w".into(), images_processed: 3, images_failed: 1, last_seen_at: at(seen) };
        let running = job(JobStatus::Running, 4, Some(0), None);
        assert_eq!(workers(&running, vec![w(90)], at(100))[0].status, "active");
        assert_eq!(workers(&running, vec![w(10)], at(100))[0].status, "idle");
        let finished = job(JobStatus::Cancelled, 4, Some(0), Some(95));
        assert_eq!(workers(&finished, vec![w(90)], at(100))[0].status, "done");
    }
}
