//! Collect deliveries from a stream into bounded batches.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use imgidx_shared::broker::{BrokerError, Delivery, DeliveryStream};
use imgidx_shared::shutdown::Shutdown;

/// Waits for a first delivery, then takes more for at most `wait`, up to `max`.
/// Ok(None) once the stream ended or shutdown was asked for.
pub async fn next_batch<T>(
    stream: &mut DeliveryStream<T>,
    max: usize,
    wait: Duration,
    shutdown: &Shutdown,
) -> Result<Option<Vec<Delivery<T>>>, BrokerError> {
    let first = tokio::select! {
        () = shutdown.cancelled() => return Ok(None),
        d = stream.next() => match d {
            None => return Ok(None),
            Some(d) => d?,
        },
    };
    let mut batch = vec![first];
    let deadline = Instant::now() + wait;
    while batch.len() < max {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            d = stream.next() => match d {
                Some(d) => batch.push(d?),
                None => break,
            },
        }
    }
    Ok(Some(batch))
}
