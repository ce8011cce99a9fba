//! Reconcile: put unfinished items of unfinished jobs back on the task queue.
//!
//! `imgidx serve` runs it once on start, for every pending item, because its in-process
//! queue starts empty. In the distributed mode the aggregator runs it periodically for
//! items pending longer than `jobs.requeue_after_secs`, and only while the task queues
//! hold no waiting messages: a long backlog is slow, not lost, and must not be queued
//! twice. Nor while completion events wait to be applied: an aggregator back from an
//! outage applies them first, and the items they finish are not stale. Queueing an item again is harmless when the first task was not lost after
//! all: the upsert replaces the same point and the job store counts an item once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::broker::{Broker, BrokerError};
use crate::jobs::{JobStore, JobStoreError};
use crate::messages::{ImageTask, Priority};
use crate::shutdown::Shutdown;

/// Items taken from the job store and published per round.
const BATCH: usize = 500;
/// Wait before publishing again when the in-process queue is full.
const FULL_BACKOFF: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Jobs(#[from] JobStoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Queue again every pending item of an active job last queued at or before `queued_before`.
/// Returns how many were queued. Stops early (with what it did so far) on shutdown.
pub async fn requeue_stale(
    jobs: &dyn JobStore,
    broker: &dyn Broker,
    queued_before: DateTime<Utc>,
    shutdown: &Shutdown,
) -> Result<u64, ReconcileError> {
    let mut queued = 0u64;
    loop {
        let items = jobs.requeue_stale_items(queued_before, BATCH).await?;
        let taken = items.len();
        let mut by_priority: BTreeMap<Priority, Vec<ImageTask>> = BTreeMap::new();
        for r in items {
            by_priority.entry(r.priority).or_default().push(ImageTask {
                job_id: r.job_id,
                point_id: r.item.point_id,
                path: r.item.path,
                stamp: r.item.stamp,
            });
        }
        // Highest first, so a restart keeps the priority order.
        for (priority, tasks) in by_priority.into_iter().rev() {
            publish_patiently(broker, priority, &tasks, shutdown).await?;
            queued += tasks.len() as u64;
        }
        if taken < BATCH || shutdown.is_cancelled() {
            return Ok(queued);
        }
    }
}

/// Publish, waiting while a bounded in-process queue is full (workers drain it). Items
/// not published stay pending in the job store and come back on the next pass.
async fn publish_patiently(
    broker: &dyn Broker,
    priority: Priority,
    tasks: &[ImageTask],
    shutdown: &Shutdown,
) -> Result<(), BrokerError> {
    loop {
        match broker.publish_tasks(priority, tasks).await {
            Err(BrokerError::NotConfirmed(reason)) if !shutdown.is_cancelled() => {
                tracing::debug!(%reason, "reconcile: queue refused the batch; waiting");
                tokio::select! {
                    _ = tokio::time::sleep(FULL_BACKOFF) => {}
                    _ = shutdown.cancelled() => return Err(BrokerError::NotConfirmed(reason)),
                }
            }
            other => return other,
        }
    }
}

/// The periodic reconcile of the distributed mode; returns on shutdown. Errors are
/// logged and retried at the next pass: reconcile is a safety net, not a dependency.
pub async fn run_periodic(
    jobs: Arc<dyn JobStore>,
    broker: Arc<dyn Broker>,
    requeue_after: Duration,
    interval: Duration,
    shutdown: Shutdown,
) {
    if requeue_after.is_zero() || interval.is_zero() {
        tracing::info!("periodic reconcile is off (jobs.requeue_after_secs or jobs.reconcile_interval_secs is 0)");
        return;
    }
    let Ok(after) = chrono::Duration::from_std(requeue_after) else {
        tracing::warn!(?requeue_after, "periodic reconcile is off: jobs.requeue_after_secs is out of range");
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        let waiting = match (broker.waiting_tasks().await, broker.waiting_events().await) {
            (Ok(tasks), Ok(events)) => Ok((tasks, events)),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        match waiting {
            Ok((0, 0)) => {}
            Ok((tasks, events)) => {
                tracing::debug!(tasks, events, "reconcile: tasks or events are waiting; nothing is stale yet");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reconcile: cannot read the queue depth; skipping this pass");
                continue;
            }
        }
        match requeue_stale(jobs.as_ref(), broker.as_ref(), Utc::now() - after, &shutdown).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(requeued = n, "reconcile: queued stale items again (their tasks were lost)"),
            Err(e) => tracing::warn!(error = %e, "reconcile pass failed; retrying at the next one"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use futures::StreamExt;
    use uuid::Uuid;

    use super::*;
    use crate::broker::MemoryBroker;
    use crate::jobs::{NewItem, SqliteJobStore};
    use crate::messages::{CompletionEvent, Outcome};

    #[tokio::test]
    async fn waiting_events_hold_the_reconcile_back() {
        let dir = tempfile::tempdir().unwrap();
        let jobs: Arc<dyn JobStore> = Arc::new(SqliteJobStore::open(&dir.path().join("jobs.sqlite3")).unwrap());
        let broker = Arc::new(MemoryBroker::new(100, 8, 8, 5));
        let item = NewItem { point_id: Uuid::new_v4(), path: "/srv/a.png".into(), stamp: None };
        jobs.create_job("idx_20261201_000000_aaaaaaaa", Priority::Normal, std::slice::from_ref(&item)).await.unwrap();
        // The item's event waits in the queue (the aggregator is behind): not stale.
        let event = CompletionEvent {
            job_id: "idx_20261201_000000_aaaaaaaa".into(),
            point_id: item.point_id,
            path: item.path.clone(),
            outcome: Outcome::Indexed,
            worker: "w".into(),
        };
        broker.publish_events(&[event]).await.unwrap();
        let shutdown = Shutdown::new();
        let tick = Duration::from_millis(20);
        let run = tokio::spawn(run_periodic(jobs.clone(), broker.clone(), Duration::from_millis(1), tick, shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(broker.waiting_tasks().await.unwrap(), 0, "requeued while its event waited");
        // Once the event is taken (its job store write is what decides), the item is stale again.
        let mut events = broker.consume_events("test").await.unwrap();
        events.next().await.unwrap().unwrap().ack().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while broker.waiting_tasks().await.unwrap() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "never requeued");
            tokio::time::sleep(tick).await;
        }
        shutdown.cancel();
        run.await.unwrap();
    }
}
