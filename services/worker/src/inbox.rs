//! Priority inbox: merges the per-priority task streams and hands out batches,
//! always draining higher-priority work first.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use imgidx_shared::broker::{Delivery, PriorityStreams};
use imgidx_shared::messages::ImageTask;
use imgidx_shared::shutdown::Shutdown;

pub type Task = Delivery<ImageTask>;

pub struct Inbox {
    /// Highest priority first.
    lanes: Vec<mpsc::Receiver<Task>>,
}

impl Inbox {
    /// Forward each stream into its own bounded lane; the broker's prefetch bounds how
    /// much each lane can hold, the lane capacity only smooths hand-over.
    pub fn start(streams: PriorityStreams, capacity: usize, shutdown: Shutdown) -> Self {
        let mut lanes = Vec::with_capacity(streams.streams.len());
        for (priority, mut stream) in streams.streams {
            let (tx, rx) = mpsc::channel(capacity.max(1));
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let next = tokio::select! {
                        () = shutdown.cancelled() => break,
                        next = stream.next() => next,
                    };
                    match next {
                        Some(Ok(task)) => {
                            if tx.send(task).await.is_err() {
                                break;
                            }
                        }
                        Some(Err(e)) => {
                            tracing::error!(priority = priority.as_str(), error = %e, "task stream failed");
                            break;
                        }
                        None => break,
                    }
                }
                // Dropping the stream leaves unsettled deliveries to the broker (requeued on close).
            });
            lanes.push(rx);
        }
        Self { lanes }
    }

    /// Highest-priority task available right now.
    fn try_take(&mut self) -> Option<Task> {
        self.lanes.iter_mut().find_map(|lane| lane.try_recv().ok())
    }

    /// Wait for any lane; None when every lane has closed.
    async fn take(&mut self) -> Option<Task> {
        if let Some(t) = self.try_take() {
            return Some(t);
        }
        let waits = self.lanes.iter_mut().map(|lane| Box::pin(lane.recv()));
        // `select_all` returns the first ready; a closed lane yields None, keep waiting on the others.
        let mut pending: Vec<_> = waits.collect();
        while !pending.is_empty() {
            let (got, _, rest) = futures::future::select_all(pending).await;
            if got.is_some() {
                return got;
            }
            pending = rest;
        }
        None
    }

    /// Next batch: waits for a first task, then fills up to `max` for at most `wait`,
    /// taking the highest priority available each time. None once closed or shut down.
    pub async fn next_batch(&mut self, max: usize, wait: Duration, shutdown: &Shutdown) -> Option<Vec<Task>> {
        let first = tokio::select! {
            () = shutdown.cancelled() => return None,
            t = self.take() => t?,
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + wait;
        while batch.len() < max {
            if let Some(t) = self.try_take() {
                batch.push(t);
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                () = shutdown.cancelled() => break,
                t = self.take() => match t {
                    Some(t) => batch.push(t),
                    None => break,
                },
            }
        }
        Some(batch)
    }
}
