//! One consumer on a channel: deliveries parsed into messages, with their ackers.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use serde::de::DeserializeOwned;

use super::link::unavailable;
use super::topology;
use crate::broker::{Acker, BrokerError, Delivery, DeliveryStream};

pub async fn consume_on<T>(channel: &Channel, queue: &str, tag: &str) -> Result<DeliveryStream<T>, BrokerError>
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
