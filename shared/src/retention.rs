//! Retention: finished jobs (completed, failed, cancelled) and their items are deleted
//! `jobs.retention_days` after they finished, so the job store does not grow without
//! bound. What the index holds is not touched: the points stay, and so does each
//! image's latest outcome.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::jobs::JobStore;
use crate::shutdown::Shutdown;

/// Between passes.
const INTERVAL: Duration = Duration::from_secs(3600);
/// Jobs deleted per statement, so one pass never holds a long transaction.
const BATCH: usize = 100;

/// Deletes expired jobs now and then every hour; returns on shutdown. Zero days keeps
/// every job. Errors are logged and retried at the next pass.
pub async fn run_periodic(jobs: Arc<dyn JobStore>, retention_days: u64, shutdown: Shutdown) {
    let Some(keep) = i64::try_from(retention_days).ok().filter(|d| *d > 0).and_then(chrono::Duration::try_days) else {
        tracing::info!(retention_days, "finished jobs are kept forever (jobs.retention_days is 0 or out of range)");
        return;
    };
    loop {
        match purge_expired(jobs.as_ref(), keep, &shutdown).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, retention_days, "deleted finished jobs past their retention"),
            Err(e) => tracing::warn!(error = %e, "deleting expired jobs failed; retrying at the next pass"),
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn purge_expired(
    jobs: &dyn JobStore,
    keep: chrono::Duration,
    shutdown: &Shutdown,
) -> Result<u64, crate::jobs::JobStoreError> {
    let cutoff = Utc::now() - keep;
    let mut deleted = 0;
    loop {
        let n = jobs.purge_finished(cutoff, BATCH).await?;
        deleted += n;
        if n < BATCH as u64 || shutdown.is_cancelled() {
            return Ok(deleted);
        }
    }
}
