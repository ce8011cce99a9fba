//! RabbitMQ backend (lapin): confirmed persistent publishes, manual acks,
//! bounded prefetch, quorum queues with dead-lettering. The connection and the
//! consumers are re-established when lost (`link.rs`, `subscription.rs`).

mod consume;
mod link;
mod subscription;
mod topology;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde::Serialize;

pub use topology::Names;

use super::{Broker, BrokerError, DeliveryStream, PriorityStreams, ProgressStream, QueueDepth, QueueKind};
use crate::config::BrokerSettings;
use crate::messages::{CompletionEvent, ImageTask, Priority, ProgressEvent, DeadEvent};
use link::{unavailable, Link, Live};

/// Persistent delivery mode: messages survive a broker restart.
const PERSISTENT: u8 = 2;
/// Progress updates a watcher's queue holds at most; older ones are dropped.
const PROGRESS_QUEUE_CAP: i64 = 1000;
/// Longest a health check waits for a (re)connection.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

pub struct RabbitBroker {
    link: Arc<Link>,
}

impl RabbitBroker {
    /// Messages ready (not yet delivered) in `queues`, summed. A passive declare reports
    /// the ready count; a short-lived channel keeps a failure (which closes the channel)
    /// away from the publisher's.
    async fn ready_messages(&self, queues: &[String]) -> Result<u64, BrokerError> {
        let live = self.link.live().await?;
        let channel = live.connection.create_channel().await.map_err(unavailable)?;
        let mut waiting = 0u64;
        for name in queues {
            let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
            let queue = channel.queue_declare(name, options, FieldTable::default()).await.map_err(unavailable)?;
            waiting += u64::from(queue.message_count());
        }
        let _ = channel.close(200, "counted").await;
        Ok(waiting)
    }

    /// Connect and declare the topology; a broker that cannot be reached now fails
    /// the caller (a misconfiguration shows at start). Later losses are reconnected.
    /// `connection_name` shows in the management console's connection list.
    pub async fn connect(settings: &BrokerSettings, connection_name: &str) -> Result<Self, BrokerError> {
        let Some(url) = settings.url.as_deref().filter(|u| !u.is_empty()) else {
            return Err(BrokerError::Unavailable(
                "broker.url is not set: the distributed roles need RabbitMQ (set IMGIDX__BROKER__URL, \
                 e.g. amqp://guest:guest@127.0.0.1:5672/%2f); only `imgidx serve` runs without it"
                    .into(),
            ));
        };
        let ca_pem = match &settings.tls_ca_file {
            None => None,
            Some(_) if !url.starts_with("amqps://") => {
                return Err(BrokerError::Other(
                    "broker.tls_ca_file is set but broker.url is not amqps://: TLS would not be used".into(),
                ))
            }
            Some(path) => {
                Some(crate::tls::read_ca_file(path).map_err(|e| BrokerError::Other(format!("broker.tls_ca_file {e}")))?.pem)
            }
        };
        let link = Arc::new(Link::new(url.to_string(), ca_pem, connection_name.to_string(), settings.clone()));
        link.live().await?;
        Ok(Self { link })
    }

    pub fn names(&self) -> &Names {
        &self.link.names
    }

    /// Publish JSON messages and wait until the broker confirmed every one (or time out).
    /// A publish that fails because the connection was lost is made once more on a new
    /// one: a duplicate is harmless (tasks and events are idempotent), a loss is not.
    async fn publish_confirmed<T: Serialize>(
        &self,
        exchange: &str,
        routing_key: &str,
        messages: &[T],
    ) -> Result<(), BrokerError> {
        let live = self.link.live().await?;
        match publish_on(&live, exchange, routing_key, messages, self.confirm_timeout()).await {
            Err(BrokerError::Unavailable(e)) => {
                tracing::warn!(error = %e, routing_key, "publish failed on a lost connection; publishing again");
                self.link.invalidate(&live).await;
                let live = self.link.live().await?;
                publish_on(&live, exchange, routing_key, messages, self.confirm_timeout()).await
            }
            other => other,
        }
    }

    fn confirm_timeout(&self) -> Duration {
        Duration::from_secs(self.link.settings.confirm_timeout_secs)
    }

    /// Consumers (queue, tag) sharing one channel with `prefetch` each, resubscribed when lost.
    async fn consume<T>(
        &self,
        consumers: Vec<(String, String)>,
        prefetch: u16,
    ) -> Result<Vec<DeliveryStream<T>>, BrokerError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        subscription::subscribe(self.link.clone(), consumers, prefetch).await
    }

    async fn consume_one<T>(&self, queue: String, tag: &str, prefetch: u16) -> Result<DeliveryStream<T>, BrokerError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let mut streams = self.consume(vec![(queue, tag.to_string())], prefetch).await?;
        streams.pop().ok_or_else(|| BrokerError::Other("subscription returned no stream".into()))
    }
}

async fn publish_on<T: Serialize>(
    live: &Live,
    exchange: &str,
    routing_key: &str,
    messages: &[T],
    timeout: Duration,
) -> Result<(), BrokerError> {
    let mut pending = Vec::with_capacity(messages.len());
    for message in messages {
        let body = serde_json::to_vec(message).map_err(|e| BrokerError::Other(e.to_string()))?;
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type("application/json".into());
        // mandatory: an unroutable message comes back instead of vanishing.
        let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
        let confirm = live
            .publisher
            .basic_publish(exchange, routing_key, options, &body, properties)
            .await
            .map_err(unavailable)?;
        pending.push(confirm);
    }
    let confirmations = tokio::time::timeout(timeout, futures::future::try_join_all(pending))
        .await
        .map_err(|_| BrokerError::NotConfirmed(format!("no confirm within {timeout:?}")))?
        .map_err(unavailable)?;
    for confirmation in confirmations {
        match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => {}
            Confirmation::Ack(Some(returned)) => {
                return Err(BrokerError::NotConfirmed(format!(
                    "message to {routing_key:?} was unroutable: {}",
                    returned.reply_text
                )))
            }
            Confirmation::Nack(_) => {
                return Err(BrokerError::NotConfirmed(format!("broker refused a message to {routing_key:?}")))
            }
        }
    }
    Ok(())
}

impl Drop for RabbitBroker {
    /// A broker dropped without `close` still ends its subscriptions' tasks.
    fn drop(&mut self) {
        self.link.closed.cancel();
    }
}

#[async_trait]
impl Broker for RabbitBroker {
    async fn publish_tasks(&self, priority: Priority, tasks: &[ImageTask]) -> Result<(), BrokerError> {
        self.publish_confirmed("", &self.names().task_queue(priority), tasks).await
    }

    async fn consume_tasks(&self, tag: &str) -> Result<PriorityStreams, BrokerError> {
        // One channel: its prefetch bounds each priority consumer separately.
        let consumers =
            Priority::DESCENDING.iter().map(|p| (self.names().task_queue(*p), format!("{tag}.{}", p.as_str()))).collect();
        let streams = self.consume(consumers, self.link.settings.prefetch).await?;
        Ok(PriorityStreams { streams: Priority::DESCENDING.into_iter().zip(streams).collect() })
    }

    async fn waiting_tasks(&self) -> Result<u64, BrokerError> {
        let queues: Vec<String> = Priority::DESCENDING.iter().map(|p| self.names().task_queue(*p)).collect();
        self.ready_messages(&queues).await
    }

    async fn waiting_events(&self) -> Result<u64, BrokerError> {
        self.ready_messages(&[self.names().event_queue()]).await
    }

    async fn publish_events(&self, events: &[CompletionEvent]) -> Result<(), BrokerError> {
        self.publish_confirmed("", &self.names().event_queue(), events).await
    }

    async fn consume_events(&self, tag: &str) -> Result<DeliveryStream<CompletionEvent>, BrokerError> {
        self.consume_one(self.names().event_queue(), tag, self.link.settings.event_prefetch).await
    }

    async fn dead_letter_event(&self, dead: &DeadEvent) -> Result<(), BrokerError> {
        self.publish_confirmed("", &self.names().dead_event_queue(), std::slice::from_ref(dead)).await
    }

    async fn consume_dead_tasks(&self, tag: &str) -> Result<DeliveryStream<ImageTask>, BrokerError> {
        self.consume_one(self.names().dead_queue(), tag, self.link.settings.event_prefetch).await
    }

    async fn publish_progress(&self, event: &ProgressEvent) -> Result<(), BrokerError> {
        // A fanout exchange with no bound queue is normal (nobody watching): not mandatory.
        let body = serde_json::to_vec(event).map_err(|e| BrokerError::Other(e.to_string()))?;
        let properties = BasicProperties::default().with_content_type("application/json".into());
        let live = self.link.live().await?;
        live.publisher
            .basic_publish(&self.names().progress_exchange(), "", BasicPublishOptions::default(), &body, properties)
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn queue_depths(&self) -> Result<Vec<QueueDepth>, BrokerError> {
        let names = self.names();
        let live = self.link.live().await?;
        let channel = live.connection.create_channel().await.map_err(unavailable)?;
        let mut out = Vec::with_capacity(QueueKind::ALL.len());
        for kind in QueueKind::ALL {
            let name = match kind {
                QueueKind::Tasks(p) => names.task_queue(p),
                QueueKind::DeadTasks => names.dead_queue(),
                QueueKind::Events => names.event_queue(),
                QueueKind::DeadEvents => names.dead_event_queue(),
            };
            let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
            let declared = channel.queue_declare(&name, options, FieldTable::default()).await.map_err(unavailable)?;
            out.push(QueueDepth {
                queue: kind.name(),
                messages: u64::from(declared.message_count()),
                consumers: Some(u64::from(declared.consumer_count())),
            });
        }
        let _ = channel.close(200, "counted").await;
        Ok(out)
    }

    /// A queue of its own (server-named, exclusive: gone with the connection), bound to
    /// the fanout, consumed without acks and capped, so a watcher that falls behind loses
    /// the oldest updates instead of piling them up in the broker.
    async fn subscribe_progress(&self) -> Result<ProgressStream, BrokerError> {
        let live = self.link.live().await?;
        let channel = live.connection.create_channel().await.map_err(unavailable)?;
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongLongInt(PROGRESS_QUEUE_CAP));
        let declare = QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() };
        let queue = channel.queue_declare("", declare, args).await.map_err(unavailable)?;
        let name = queue.name().as_str().to_string();
        channel
            .queue_bind(&name, &self.names().progress_exchange(), "", QueueBindOptions::default(), FieldTable::default())
            .await
            .map_err(unavailable)?;
        let consume = BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() };
        let consumer =
            channel.basic_consume(&name, "progress-watch", consume, FieldTable::default()).await.map_err(unavailable)?;
        // The channel lives as long as the stream.
        Ok(Box::pin(futures::stream::unfold((consumer, channel), |(mut consumer, channel)| async move {
            loop {
                match consumer.next().await? {
                    Ok(delivery) => match serde_json::from_slice(&delivery.data) {
                        Ok(event) => return Some((event, (consumer, channel))),
                        Err(e) => tracing::debug!(error = %e, "unreadable progress update skipped"),
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, "progress subscription lost");
                        return None;
                    }
                }
            }
        })))
    }

    async fn healthy(&self) -> bool {
        // Reconnects if needed: healthy means the broker can be used now. Bounded, so a
        // health probe answers even while the broker host does not.
        tokio::time::timeout(HEALTH_TIMEOUT, self.link.live()).await.is_ok_and(|r| r.is_ok())
    }

    async fn close(&self) {
        self.link.close().await;
    }
}
