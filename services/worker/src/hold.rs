//! Holding on through an outage: a step that failed because a dependency is down (vector
//! store, job store, broker, the model runtime as a whole) is tried again with backoff
//! while the worker keeps its batch, instead of handing the batch back to the queue,
//! which would spend the images' delivery budget on a fault that is not theirs.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use imgidx_shared::backoff::Backoff;
use imgidx_shared::health::HealthBoard;
use imgidx_shared::shutdown::Shutdown;

/// First pause after a failure; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest pause between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Tries again until it works or the worker shuts down, reporting to the log and the
/// health board while it waits.
#[derive(Clone)]
pub struct Hold {
    pub worker: String,
    pub health: HealthBoard,
    pub shutdown: Shutdown,
}

impl Hold {
    /// `op` until it succeeds; None when shutdown came first (the caller then leaves
    /// what it holds to the broker, unsettled).
    pub async fn until_ok<T, E, F, Fut>(&self, step: &str, mut op: F) -> Option<T>
    where
        E: Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
        let mut failures = 0u32;
        loop {
            match op().await {
                Ok(v) => {
                    if failures > 0 {
                        self.health.clear(&self.worker);
                        tracing::info!(worker = %self.worker, step, failures, "dependency back; going on with the batch");
                    }
                    return Some(v);
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(worker = %self.worker, step, error = %e, retry_in = ?backoff.next(), failures, "step failed; holding the batch and trying again");
                    self.health.report(&self.worker, format!("{step} failing, retrying: {e}"));
                    if !backoff.pause(&self.shutdown).await {
                        self.health.clear(&self.worker);
                        return None;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hold() -> Hold {
        Hold { worker: "w".into(), health: HealthBoard::default(), shutdown: Shutdown::new() }
    }

    #[tokio::test]
    async fn a_failing_step_is_retried_and_reported_until_it_works() {
        let h = hold();
        let mut calls = 0;
        let board = h.health.clone();
        let got = h
            .until_ok("upsert", || {
                calls += 1;
                let n = calls;
                let board = board.clone();
                async move {
                    if n < 3 {
                        // While failing, the board says so.
                        if n > 1 {
                            assert!(board.troubles()[0].1.message.contains("upsert failing"));
                        }
                        Err("down")
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(got, Some(3));
        assert!(h.health.troubles().is_empty());
    }

    #[tokio::test]
    async fn shutdown_ends_the_wait() {
        let h = hold();
        let stop = h.shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stop.cancel();
        });
        let got: Option<()> = h.until_ok("publish", || async { Err("down") }).await;
        assert_eq!(got, None);
        assert!(h.health.troubles().is_empty());
    }
}
