//! Doubling pauses between tries of a step that failed, cut short by shutdown: how a
//! worker and the aggregator wait out a dependency that is down.

use std::time::Duration;

use crate::shutdown::Shutdown;

pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Pauses start at `first` and double up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { next: first, max }
    }

    /// The pause the next [`pause`](Self::pause) will take (for logs).
    pub fn next(&self) -> Duration {
        self.next
    }

    /// Sleeps the current pause, then doubles it; false when shutdown came first.
    pub async fn pause(&mut self, shutdown: &Shutdown) -> bool {
        let slept = tokio::select! {
            () = tokio::time::sleep(self.next) => true,
            () = shutdown.cancelled() => false,
        };
        self.next = (self.next * 2).min(self.max);
        slept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pauses_double_up_to_the_bound_and_end_on_shutdown() {
        let stop = Shutdown::new();
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(3));
        assert!(b.pause(&stop).await);
        assert_eq!(b.next(), Duration::from_millis(2));
        assert!(b.pause(&stop).await);
        assert_eq!(b.next(), Duration::from_millis(3));
        stop.cancel();
        assert!(!b.pause(&stop).await);
    }
}
