//! Consumers that outlive their connection: when the channel or connection is lost
//! they subscribe again (with backoff) on a fresh one. Deliveries the lost channel
//! held are redelivered by RabbitMQ; settling them on the dead channel fails, which
//! the consumer treats as any failed settle (the work is idempotent).

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use lapin::options::BasicQosOptions;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::consume::consume_on;
use super::link::{unavailable, Link};
use crate::broker::{BrokerError, Delivery, DeliveryStream};

const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// One consumer per `(queue, tag)` on a shared channel with `prefetch` per consumer.
/// The returned streams (same order) end only when the link is closed.
pub async fn subscribe<T>(
    link: Arc<Link>,
    consumers: Vec<(String, String)>,
    prefetch: u16,
) -> Result<Vec<DeliveryStream<T>>, BrokerError>
where
    T: DeserializeOwned + Send + 'static,
{
    // The first subscription is made here so that a broker refusing it fails the caller.
    let first = open(&link, &consumers, prefetch).await?;
    let (senders, receivers): (Vec<_>, Vec<_>) =
        consumers.iter().map(|_| mpsc::channel(usize::from(prefetch.max(1)))).unzip();
    tokio::spawn(forward(link, consumers, prefetch, first, senders));
    Ok(receivers.into_iter().map(receiver_stream).collect())
}

fn receiver_stream<T: Send + 'static>(rx: mpsc::Receiver<Item<T>>) -> DeliveryStream<T> {
    Box::pin(stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

type Item<T> = Result<Delivery<T>, BrokerError>;

type Opened<T> = (lapin::Channel, Vec<DeliveryStream<T>>);

async fn open<T>(link: &Link, consumers: &[(String, String)], prefetch: u16) -> Result<Opened<T>, BrokerError>
where
    T: DeserializeOwned + Send + 'static,
{
    let live = link.live().await?;
    let channel = match live.connection.create_channel().await {
        Ok(c) => c,
        Err(e) => {
            link.invalidate(&live).await;
            return Err(unavailable(e));
        }
    };
    channel.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(unavailable)?;
    let mut streams = Vec::with_capacity(consumers.len());
    for (queue, tag) in consumers {
        streams.push(consume_on(&channel, queue, tag).await?);
    }
    Ok((channel, streams))
}

/// Why a subscription's forwarding stopped.
enum Ended {
    /// The link was closed: stop for good.
    Closed,
    /// Every subscriber dropped its stream: stop taking deliveries.
    Abandoned,
    /// The channel or connection failed: subscribe again.
    Lost,
}

async fn forward<T>(
    link: Arc<Link>,
    consumers: Vec<(String, String)>,
    prefetch: u16,
    first: Opened<T>,
    senders: Vec<mpsc::Sender<Item<T>>>,
) where
    T: DeserializeOwned + Send + 'static,
{
    let max_backoff = Duration::from_secs(link.settings.reconnect_max_secs.max(1));
    let mut opened = Some(first);
    let mut backoff = FIRST_BACKOFF;
    loop {
        if let Some((channel, streams)) = opened.take() {
            backoff = FIRST_BACKOFF;
            match pump(&link, streams, &senders).await {
                Ended::Closed => return,
                Ended::Abandoned => {
                    // The consumers are cancelled (dropped), but deliveries already handed
                    // out may still be settled (a draining worker acks its last batches):
                    // the channel stays open until the link closes, which requeues the rest.
                    link.closed.cancelled().await;
                    drop(channel);
                    return;
                }
                Ended::Lost => {
                    if channel.status().connected() {
                        let _ = channel.close(200, "resubscribing").await;
                    }
                    tracing::warn!(queues = ?consumers, "broker subscription lost; subscribing again");
                }
            }
        }
        match open::<T>(&link, &consumers, prefetch).await {
            Ok(o) => {
                tracing::info!(queues = ?consumers, "broker subscription restored");
                opened = Some(o);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot subscribe to the broker");
                tokio::select! {
                    () = link.closed.cancelled() => return,
                    () = all_closed(&senders) => return,
                    () = tokio::time::sleep(backoff) => {},
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

/// Move deliveries from the channel's consumers to the subscribers until something ends.
async fn pump<T>(
    link: &Link,
    streams: Vec<DeliveryStream<T>>,
    senders: &[mpsc::Sender<Item<T>>],
) -> Ended
where
    T: Send + 'static,
{
    // Each consumer's end is marked, since `select_all` alone would only end when all had.
    let mut merged = stream::select_all(
        streams.into_iter().enumerate().map(|(i, s)| s.map(move |d| (i, Some(d))).chain(stream::iter([(i, None)]))),
    );
    loop {
        let next = tokio::select! {
            () = link.closed.cancelled() => return Ended::Closed,
            () = all_closed(senders) => return Ended::Abandoned,
            next = merged.next() => next,
        };
        match next {
            Some((i, Some(Ok(delivery)))) => {
                // A subscriber that went away drops this delivery unsettled; it is
                // requeued when the channel closes.
                if senders[i].send(Ok(delivery)).await.is_err() {
                    return Ended::Abandoned;
                }
            }
            Some((_, Some(Err(e)))) => {
                tracing::warn!(error = %e, "broker consumer failed");
                return Ended::Lost;
            }
            // A consumer cancelled by the broker (queue deleted, node restarted).
            Some((_, None)) | None => return Ended::Lost,
        }
    }
}

/// Resolves once every subscriber dropped its stream.
async fn all_closed<M>(senders: &[mpsc::Sender<M>]) {
    futures::future::join_all(senders.iter().map(mpsc::Sender::closed)).await;
}
