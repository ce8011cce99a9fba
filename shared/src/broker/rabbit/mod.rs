//! RabbitMQ backend (lapin): confirmed persistent publishes, manual acks,
//! bounded prefetch, quorum queues with dead-lettering.

mod topology;

use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use topology::Names;

use super::{Acker, Broker, BrokerError, Delivery, DeliveryStream, PriorityStreams};
use crate::config::BrokerSettings;
use crate::messages::{CompletionEvent, ImageTask, Priority, ProgressEvent};

/// Persistent delivery mode: messages survive a broker restart.
const PERSISTENT: u8 = 2;

pub struct RabbitBroker {
    connection: Connection,
    /// Channel in confirm mode shared by all publishers (lapin orders confirms per channel).
    publisher: Channel,
    names: Names,
    settings: BrokerSettings,
}

fn unavailable(e: lapin::Error) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

impl RabbitBroker {
    /// Connect, declare the topology and open the publishing channel.
    /// `connection_name` shows in the management console's connection list.
    pub async fn connect(settings: &BrokerSettings, connection_name: &str) -> Result<Self, BrokerError> {
        let props = ConnectionProperties::default().with_connection_name(connection_name.into());
        let Some(url) = settings.url.as_deref().filter(|u| !u.is_empty()) else {
            return Err(BrokerError::Unavailable(
                "broker.url is not set: the distributed roles need RabbitMQ (set IMGIDX__BROKER__URL, \
                 e.g. amqp://guest:guest@127.0.0.1:5672/%2f); only `imgidx serve` runs without it"
                    .into(),
            ));
        };
        let connection = Connection::connect(url, props).await.map_err(unavailable)?;
        let names = Names::new(&settings.queue_prefix);
        let setup = connection.create_channel().await.map_err(unavailable)?;
        topology::declare(&setup, &names, settings.delivery_limit).await.map_err(unavailable)?;
        let _ = setup.close(200, "topology declared").await;
        let publisher = connection.create_channel().await.map_err(unavailable)?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await.map_err(unavailable)?;
        Ok(Self { connection, publisher, names, settings: settings.clone() })
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Publish JSON messages and wait until the broker confirmed every one (or time out).
    async fn publish_confirmed<T: Serialize>(
        &self,
        exchange: &str,
        routing_key: &str,
        messages: &[T],
    ) -> Result<(), BrokerError> {
        let mut pending = Vec::with_capacity(messages.len());
        for message in messages {
            let body = serde_json::to_vec(message).map_err(|e| BrokerError::Other(e.to_string()))?;
            let properties = BasicProperties::default()
                .with_delivery_mode(PERSISTENT)
                .with_content_type("application/json".into());
            // mandatory: an unroutable message comes back instead of vanishing.
            let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
            let confirm = self
                .publisher
                .basic_publish(exchange, routing_key, options, &body, properties)
                .await
                .map_err(unavailable)?;
            pending.push(confirm);
        }
        let timeout = Duration::from_secs(self.settings.confirm_timeout_secs);
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

    /// A consumer on its own channel with bounded prefetch.
    async fn consume<T>(&self, queue: &str, tag: &str, prefetch: u16) -> Result<DeliveryStream<T>, BrokerError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let channel = self.connection.create_channel().await.map_err(unavailable)?;
        channel.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(unavailable)?;
        consume_on(&channel, queue, tag).await
    }
}

async fn consume_on<T>(channel: &Channel, queue: &str, tag: &str) -> Result<DeliveryStream<T>, BrokerError>
where
    T: DeserializeOwned + Send + 'static,
{
    let consumer = channel
        .basic_consume(queue, tag, BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(unavailable)?;
    let queue = queue.to_string();
    let stream = consumer.map_err(unavailable).filter_map(move |delivery| {
        let queue = queue.clone();
        async move {
            match delivery {
                Err(e) => Some(Err(e)),
                Ok(d) => match serde_json::from_slice::<T>(&d.data) {
                    Ok(message) => Some(Ok(Delivery {
                        message,
                        previous_deliveries: topology::previous_deliveries(&d.properties),
                        acker: Box::new(RabbitAcker(d.acker)),
                    })),
                    Err(e) => {
                        // Unparseable messages can never succeed: dead-letter (or drop, where the
                        // queue has no dead-letter exchange) so they don't loop.
                        tracing::error!(queue = %queue, error = %e, body = %String::from_utf8_lossy(&d.data), "rejecting malformed message");
                        let _ = d.acker.reject(BasicRejectOptions { requeue: false }).await;
                        None
                    }
                },
            }
        }
    });
    Ok(Box::pin(stream))
}

struct RabbitAcker(lapin::acker::Acker);

#[async_trait]
impl Acker for RabbitAcker {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.0.ack(BasicAckOptions::default()).await.map_err(unavailable)
    }

    async fn retry(self: Box<Self>) -> Result<(), BrokerError> {
        self.0.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await.map_err(unavailable)
    }
}

#[async_trait]
impl Broker for RabbitBroker {
    async fn publish_tasks(&self, priority: Priority, tasks: &[ImageTask]) -> Result<(), BrokerError> {
        self.publish_confirmed("", &self.names.task_queue(priority), tasks).await
    }

    async fn consume_tasks(&self, tag: &str) -> Result<PriorityStreams, BrokerError> {
        // One channel: its prefetch bounds each priority consumer separately.
        let channel = self.connection.create_channel().await.map_err(unavailable)?;
        channel.basic_qos(self.settings.prefetch, BasicQosOptions::default()).await.map_err(unavailable)?;
        let mut streams = Vec::with_capacity(3);
        for p in Priority::DESCENDING {
            let stream = consume_on(&channel, &self.names.task_queue(p), &format!("{tag}.{}", p.as_str())).await?;
            streams.push((p, stream));
        }
        Ok(PriorityStreams { streams })
    }

    async fn waiting_tasks(&self) -> Result<u64, BrokerError> {
        // A passive declare reports the ready count; a short-lived channel keeps a failure
        // (which closes the channel) away from the publisher's.
        let channel = self.connection.create_channel().await.map_err(unavailable)?;
        let mut waiting = 0u64;
        for p in Priority::DESCENDING {
            let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
            let queue = channel
                .queue_declare(&self.names.task_queue(p), options, FieldTable::default())
                .await
                .map_err(unavailable)?;
            waiting += u64::from(queue.message_count());
        }
        let _ = channel.close(200, "counted").await;
        Ok(waiting)
    }

    async fn publish_events(&self, events: &[CompletionEvent]) -> Result<(), BrokerError> {
        self.publish_confirmed("", &self.names.event_queue(), events).await
    }

    async fn consume_events(&self, tag: &str) -> Result<DeliveryStream<CompletionEvent>, BrokerError> {
        self.consume(&self.names.event_queue(), tag, self.settings.event_prefetch).await
    }

    async fn consume_dead_tasks(&self, tag: &str) -> Result<DeliveryStream<ImageTask>, BrokerError> {
        self.consume(&self.names.dead_queue(), tag, self.settings.event_prefetch).await
    }

    async fn publish_progress(&self, event: &ProgressEvent) -> Result<(), BrokerError> {
        // A fanout exchange with no bound queue is normal (nobody watching): not mandatory.
        let body = serde_json::to_vec(event).map_err(|e| BrokerError::Other(e.to_string()))?;
        let properties = BasicProperties::default().with_content_type("application/json".into());
        self.publisher
            .basic_publish(&self.names.progress_exchange(), "", BasicPublishOptions::default(), &body, properties)
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn healthy(&self) -> bool {
        self.connection.status().connected()
    }

    async fn close(&self) {
        if self.connection.status().connected() {
            let _ = self.connection.close(200, "shutting down").await;
        }
    }
}
