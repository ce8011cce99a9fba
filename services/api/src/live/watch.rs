//! One watcher of one job: its current state first, then the hub's updates about it, and
//! one `job_complete` at the end. Between updates the job store is read every few
//! seconds, so a watcher never waits on an update the fanout lost (a broker reconnect, a
//! watcher that fell behind): it sees the counters move, and the end, all the same.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use imgidx_shared::jobs::JobStore;

use super::hub::LiveHub;
use super::message::{from_update, JobState, LiveMessage};

/// Longest a watcher goes without a look at the job store.
const STORE_CHECK_EVERY: Duration = Duration::from_secs(5);
/// Messages waiting for a slow client before its watcher waits too.
const SEND_AHEAD: usize = 64;

/// Starts watching `job_id`; the messages come on the receiver, which ends after
/// `job_complete`, at shutdown, or when the job store cannot be read (the client may
/// reconnect, or poll). Dropping the receiver stops the watcher.
pub fn watch(jobs: Arc<dyn JobStore>, hub: &LiveHub, job_id: String) -> mpsc::Receiver<LiveMessage> {
    let (tx, rx) = mpsc::channel(SEND_AHEAD);
    // Subscribed before the first read: nothing between the two is missed.
    let updates = hub.subscribe();
    let shutdown = hub.shutdown().clone();
    tokio::spawn(async move {
        tokio::select! {
            () = relay(jobs.as_ref(), &job_id, updates, &tx) => {}
            () = shutdown.cancelled() => {}
            () = tx.closed() => {}
        }
    });
    rx
}

async fn relay(
    jobs: &dyn JobStore,
    job_id: &str,
    mut updates: broadcast::Receiver<Arc<imgidx_shared::messages::ProgressEvent>>,
    tx: &mpsc::Sender<LiveMessage>,
) {
    let Some(mut last) = read(jobs, job_id).await else { return };
    if tx.send(last.summary()).await.is_err() || last.finished() {
        return;
    }
    let mut check = tokio::time::interval(STORE_CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.reset(); // the first read was just now
    loop {
        let messages = tokio::select! {
            update = updates.recv() => match update {
                Ok(update) if update.job_id == job_id => {
                    last = JobState::from(update.as_ref());
                    from_update(&update)
                }
                Ok(_) => continue, // another job's
                Err(broadcast::error::RecvError::Closed) => return,
                // Fell behind: the store says where the job is.
                Err(broadcast::error::RecvError::Lagged(_)) => match changed(jobs, job_id, &mut last).await {
                    Some(messages) => messages,
                    None => return,
                },
            },
            // However busy the fanout is with other jobs, the store is looked at this often.
            _ = check.tick() => match changed(jobs, job_id, &mut last).await {
                Some(messages) => messages,
                None => return,
            },
        };
        for message in messages {
            if tx.send(message).await.is_err() {
                return;
            }
        }
        if last.finished() {
            return;
        }
    }
}

/// The job's summary when the store shows it moved since `last` (empty when not); None
/// when it cannot be read.
async fn changed(jobs: &dyn JobStore, job_id: &str, last: &mut JobState) -> Option<Vec<LiveMessage>> {
    let now = read(jobs, job_id).await?;
    if now == *last {
        return Some(Vec::new());
    }
    *last = now;
    Some(vec![last.summary()])
}

async fn read(jobs: &dyn JobStore, job_id: &str) -> Option<JobState> {
    match jobs.job(job_id).await {
        Ok(Some(job)) => Some(JobState::from(&job)),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(job_id, error = %e, "live progress: cannot read the job; the watcher stops");
            None
        }
    }
}
