//! The API process's one subscription to the progress fanout, relayed to every watcher
//! through a broadcast channel. The subscription ends when the broker connection is
//! lost; the hub subscribes again with backoff, and watchers bridge the gap by reading
//! the job store (`watch.rs`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;

use imgidx_shared::backoff::Backoff;
use imgidx_shared::broker::Broker;
use imgidx_shared::messages::ProgressEvent;
use imgidx_shared::shutdown::Shutdown;

/// Updates held for watchers that are behind; one further behind catches up from the store.
const RELAY_CAPACITY: usize = 1024;

#[derive(Clone)]
pub struct LiveHub {
    relay: broadcast::Sender<Arc<ProgressEvent>>,
    shutdown: Shutdown,
}

impl LiveHub {
    pub fn new(shutdown: Shutdown) -> Self {
        Self { relay: broadcast::channel(RELAY_CAPACITY).0, shutdown }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ProgressEvent>> {
        self.relay.subscribe()
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Until shutdown: relays the fanout, subscribing again whenever the stream ends.
    pub async fn run(self, broker: Arc<dyn Broker>) {
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        loop {
            match broker.subscribe_progress().await {
                Ok(mut updates) => {
                    backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
                    loop {
                        tokio::select! {
                            () = self.shutdown.cancelled() => return,
                            update = updates.next() => match update {
                                // No watcher is no error.
                                Some(update) => { let _ = self.relay.send(Arc::new(update)); }
                                None => break,
                            },
                        }
                    }
                    tracing::info!("live progress: subscription ended; subscribing again");
                }
                Err(e) => tracing::warn!(error = %e, retry_in = ?backoff.next(), "live progress: cannot subscribe"),
            }
            if !backoff.pause(&self.shutdown).await {
                return;
            }
        }
    }
}
