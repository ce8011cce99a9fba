//! Reconcile: put unfinished items of unfinished jobs back on the task queue.
//!
//! `imgidx serve` runs it once on start, for every pending item, because its in-process
//! queue starts empty. In the distributed mode the aggregator runs it periodically, for
//! two kinds of loss:
//!
//! * A job whose tasks were never confirmed published `jobs.publish_grace_secs` after
//!   it was created (the API died or lost the broker between its commit and its
//!   publish) is published whatever the queue depth: nothing else would ever queue it,
//!   and a busy fleet's queues are never empty.
//! * Items pending longer than `jobs.requeue_after_secs` are queued again, but only while
//!   the task queues hold no waiting messages: a long backlog is slow, not lost, and must
//!   not be queued twice. Nor while completion events wait to be applied: an aggregator
//!   back from an outage applies them first, and the items they finish are not stale.
//!
//! Queueing an item again is harmless when the first task was not lost after all: the
//! upsert replaces the same point and the job store counts an item once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::broker::{Broker, BrokerError};
use crate::config::JobStoreSettings;
use crate::jobs::{ItemKey, JobStore, JobStoreError, RequeueItem};
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
        queued += publish_by_priority(broker, items, shutdown).await?;
        if taken < BATCH || shutdown.is_cancelled() {
            return Ok(queued);
        }
    }
}

/// Publish the pending items of every active job created at or before `created_before`
/// whose tasks were never confirmed published, then mark those jobs published. Returns
/// how many tasks were published. A pass that stops early (error, shutdown) marks
/// nothing, so the next pass publishes those jobs again: duplicates, never a loss.
pub async fn publish_unpublished(
    jobs: &dyn JobStore,
    broker: &dyn Broker,
    created_before: DateTime<Utc>,
    shutdown: &Shutdown,
) -> Result<u64, ReconcileError> {
    let (mut published, mut after, mut job_ids) = (0u64, None::<ItemKey>, BTreeSet::new());
    loop {
        let items = jobs.unpublished_items(created_before, after.as_ref(), BATCH).await?;
        let taken = items.len();
        if let Some(last) = items.last() {
            after = Some(ItemKey { job_id: last.job_id.clone(), point_id: last.item.point_id });
        }
        job_ids.extend(items.iter().map(|r| r.job_id.clone()));
        published += publish_by_priority(broker, items, shutdown).await?;
        if taken < BATCH {
            break;
        }
        if shutdown.is_cancelled() {
            return Ok(published);
        }
    }
    jobs.mark_published(&job_ids.into_iter().collect::<Vec<_>>()).await?;
    Ok(published)
}

/// Publish items as tasks of their job's priority, highest first, so a restart keeps the
/// priority order. Returns how many were published.
async fn publish_by_priority(broker: &dyn Broker, items: Vec<RequeueItem>, shutdown: &Shutdown) -> Result<u64, BrokerError> {
    let mut by_priority: BTreeMap<Priority, Vec<ImageTask>> = BTreeMap::new();
    for r in items {
        by_priority.entry(r.priority).or_default().push(r.task(None));
    }
    let mut published = 0u64;
    for (priority, tasks) in by_priority.into_iter().rev() {
        publish_patiently(broker, priority, &tasks, shutdown).await?;
        published += tasks.len() as u64;
    }
    Ok(published)
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

/// When the periodic reconcile of the distributed mode acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periodic {
    /// Items pending this long after they were queued are queued again (while the queues
    /// are idle); zero turns that off.
    pub requeue_after: Duration,
    /// Jobs never confirmed published this long after their creation are published; zero
    /// turns that off.
    pub publish_grace: Duration,
    /// Between passes; zero turns the reconcile off.
    pub interval: Duration,
}

impl Periodic {
    pub fn from_settings(jobs: &JobStoreSettings) -> Self {
        Self {
            requeue_after: Duration::from_secs(jobs.requeue_after_secs),
            publish_grace: Duration::from_secs(jobs.publish_grace_secs),
            interval: Duration::from_secs(jobs.reconcile_interval_secs),
        }
    }
}

/// The periodic reconcile of the distributed mode; returns on shutdown. Errors are
/// logged and retried at the next pass: reconcile is a safety net, not a dependency.
pub async fn run_periodic(jobs: Arc<dyn JobStore>, broker: Arc<dyn Broker>, when: Periodic, shutdown: Shutdown) {
    let requeue_after = positive(when.requeue_after, "jobs.requeue_after_secs");
    let publish_grace = positive(when.publish_grace, "jobs.publish_grace_secs");
    if when.interval.is_zero() || (requeue_after.is_none() && publish_grace.is_none()) {
        tracing::info!("periodic reconcile is off (jobs.reconcile_interval_secs is 0, or both requeue_after_secs and publish_grace_secs are)");
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(when.interval) => {}
            _ = shutdown.cancelled() => return,
        }
        if let Some(grace) = publish_grace {
            match publish_unpublished(jobs.as_ref(), broker.as_ref(), Utc::now() - grace, &shutdown).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(published = n, "reconcile: published the tasks of jobs whose publish was lost"),
                Err(e) => tracing::warn!(error = %e, "reconcile: publishing unpublished jobs failed; retrying at the next pass"),
            }
        }
        if let Some(after) = requeue_after {
            requeue_if_idle(jobs.as_ref(), broker.as_ref(), after, &shutdown).await;
        }
    }
}

/// A duration as chrono's, or None when zero (off) or out of range (off, with a warning).
fn positive(d: Duration, key: &str) -> Option<chrono::Duration> {
    if d.is_zero() {
        return None;
    }
    let converted = chrono::Duration::from_std(d).ok();
    if converted.is_none() {
        tracing::warn!(?d, key, "this part of the reconcile is off: the setting is out of range");
    }
    converted
}

/// Queue stale items again, unless tasks or events wait (see the module docs).
async fn requeue_if_idle(jobs: &dyn JobStore, broker: &dyn Broker, after: chrono::Duration, shutdown: &Shutdown) {
    let waiting = match (broker.waiting_tasks().await, broker.waiting_events().await) {
        (Ok(tasks), Ok(events)) => Ok((tasks, events)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match waiting {
        Ok((0, 0)) => {}
        Ok((tasks, events)) => {
            tracing::debug!(tasks, events, "reconcile: tasks or events are waiting; nothing is stale yet");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "reconcile: cannot read the queue depth; skipping this pass");
            return;
        }
    }
    match requeue_stale(jobs, broker, Utc::now() - after, shutdown).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(requeued = n, "reconcile: queued stale items again (their tasks were lost)"),
        Err(e) => tracing::warn!(error = %e, "reconcile pass failed; retrying at the next one"),
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
            request_id: None,
            finished_at_ms: None,
            from_cache: false,
            object_key: None,
        };
        broker.publish_events(&[event]).await.unwrap();
        let shutdown = Shutdown::new();
        let tick = Duration::from_millis(20);
        let when = Periodic { requeue_after: Duration::from_millis(1), publish_grace: Duration::ZERO, interval: tick };
        let run = tokio::spawn(run_periodic(jobs.clone(), broker.clone(), when, shutdown.clone()));
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
