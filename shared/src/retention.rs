//! Retention: finished jobs (completed, failed, cancelled) and their items are deleted
//! `jobs.retention_days` after they finished, and batch jobs (seed 004) already
//! `batch.retention_hours` after, so the job store does not grow without bound. What the
//! index holds is not touched: the points stay, and so does each image's latest outcome.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::config::Settings;
use crate::jobs::{JobStore, JobStoreError};
use crate::shutdown::Shutdown;

/// Between passes.
const INTERVAL: Duration = Duration::from_secs(3600);
/// Jobs deleted per statement, so one pass never holds a long transaction.
const BATCH: usize = 100;

/// How long finished jobs are kept; None: forever.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    pub jobs: Option<chrono::Duration>,
    pub batches: Option<chrono::Duration>,
}

impl Retention {
    pub fn from_settings(settings: &Settings) -> Self {
        let positive = |n: u64, unit: fn(i64) -> Option<chrono::Duration>| i64::try_from(n).ok().filter(|n| *n > 0).and_then(unit);
        Self {
            jobs: positive(settings.jobs.retention_days, chrono::Duration::try_days),
            batches: positive(settings.batch.retention_hours, chrono::Duration::try_hours),
        }
    }
}

/// Deletes expired jobs now and then every hour; returns on shutdown. Errors are logged
/// and retried at the next pass.
pub async fn run_periodic(jobs: Arc<dyn JobStore>, retention: Retention, shutdown: Shutdown) {
    if retention.jobs.is_none() {
        tracing::info!("finished jobs are kept forever (jobs.retention_days is 0 or out of range)");
    }
    if retention == (Retention { jobs: None, batches: None }) {
        return;
    }
    loop {
        if let Some(keep) = retention.batches {
            let purged = purge_expired(keep, &shutdown, |cutoff| jobs.purge_batches(cutoff, BATCH)).await;
            report(purged, "batch jobs");
        }
        if let Some(keep) = retention.jobs {
            let purged = purge_expired(keep, &shutdown, |cutoff| jobs.purge_finished(cutoff, BATCH)).await;
            report(purged, "jobs");
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

fn report(purged: Result<u64, JobStoreError>, what: &str) {
    match purged {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "deleted finished {what} past their retention"),
        Err(e) => tracing::warn!(error = %e, "deleting expired {what} failed; retrying at the next pass"),
    }
}

/// Calls `purge` with the cutoff until a call deletes less than a whole batch.
async fn purge_expired<F, Fut>(keep: chrono::Duration, shutdown: &Shutdown, purge: F) -> Result<u64, JobStoreError>
where
    F: Fn(chrono::DateTime<Utc>) -> Fut,
    Fut: std::future::Future<Output = Result<u64, JobStoreError>>,
{
    let cutoff = Utc::now() - keep;
    let mut deleted = 0;
    loop {
        let n = purge(cutoff).await?;
        deleted += n;
        if n < BATCH as u64 || shutdown.is_cancelled() {
            return Ok(deleted);
        }
    }
}
