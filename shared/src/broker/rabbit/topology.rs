//! Queue and exchange names, and their declaration. Everything is durable;
//! work queues are quorum queues (replicated, with a delivery limit).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Connection, ExchangeKind};

use crate::messages::Priority;

/// Routing key under which dead-lettered tasks reach the dead queue.
const DEAD_ROUTING_KEY: &str = "dead";
/// Routing key under which events past their delivery limit reach the dead-event queue.
const DEAD_EVENT_ROUTING_KEY: &str = "dead-event";
/// Deliveries of one event before RabbitMQ sets it aside. A backstop only: the
/// aggregator holds events through a job-store outage instead of returning them, and
/// sets a poison event aside itself, with its error, after a few tries.
const EVENT_DELIVERY_LIMIT: i32 = 50;

/// All names derived from one prefix, so deployments and test runs never share state.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_string() }
    }

    /// RabbitMQ 3.10 quorum queues have no message priorities, so each level has its own queue.
    pub fn task_queue(&self, p: Priority) -> String {
        format!("{}.tasks.{}", self.prefix, p.as_str())
    }
    pub fn dead_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }
    pub fn dead_queue(&self) -> String {
        format!("{}.tasks.dead", self.prefix)
    }
    pub fn event_queue(&self) -> String {
        format!("{}.events", self.prefix)
    }
    pub fn dead_event_queue(&self) -> String {
        format!("{}.events.dead", self.prefix)
    }
    pub fn progress_exchange(&self) -> String {
        format!("{}.progress", self.prefix)
    }
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    args
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }
}

/// Quorum queue arguments: past `limit` deliveries a message goes to the dead-letter
/// exchange under `routing_key`.
fn dead_lettering(names: &Names, limit: i32, routing_key: &str) -> FieldTable {
    let mut args = quorum_args();
    args.insert("x-delivery-limit".into(), AMQPValue::LongInt(limit));
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(names.dead_exchange().into()));
    args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(routing_key.into()));
    // At-least-once dead-lettering (quorum queues, 3.10+) so a dead message is never
    // dropped in transit; it requires reject-publish overflow.
    args.insert("x-dead-letter-strategy".into(), AMQPValue::LongString("at-least-once".into()));
    args.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
    args
}

/// Declares a queue with `args`. A queue that already exists with other arguments (an
/// older deployment, another `broker.delivery_limit`) makes RabbitMQ refuse the declare
/// and close the channel: then it is used as it is, with a warning, rather than
/// failing every connection. Changing its arguments means deleting it (when empty) or a
/// policy; docs/configuration.md says how.
async fn declare_queue(connection: &Connection, name: &str, args: FieldTable) -> lapin::Result<()> {
    let channel = connection.create_channel().await?;
    match channel.queue_declare(name, durable(), args).await {
        Ok(_) => {
            let _ = channel.close(200, "declared").await;
            Ok(())
        }
        Err(refused) => {
            let probe = connection.create_channel().await?;
            let passive = QueueDeclareOptions { passive: true, ..durable() };
            probe.queue_declare(name, passive, FieldTable::default()).await.map_err(|_| refused.clone())?;
            let _ = probe.close(200, "declared").await;
            tracing::warn!(queue = name, error = %refused, "the queue exists with other arguments; using it as it is");
            Ok(())
        }
    }
}

/// Declare every queue and exchange (idempotent: same arguments each time).
pub async fn declare(connection: &Connection, names: &Names, delivery_limit: u32) -> lapin::Result<()> {
    let channel = &connection.create_channel().await?;
    let exchange_opts = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    channel
        .exchange_declare(&names.dead_exchange(), ExchangeKind::Direct, exchange_opts, FieldTable::default())
        .await?;
    channel.queue_declare(&names.dead_queue(), durable(), quorum_args()).await?;
    channel
        .queue_bind(
            &names.dead_queue(),
            &names.dead_exchange(),
            DEAD_ROUTING_KEY,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    for p in Priority::DESCENDING {
        // A task that keeps crashing its workers is dead-lettered after this many
        // deliveries instead of looping forever; the aggregator reports it failed.
        let limit = delivery_limit.min(i32::MAX as u32) as i32;
        declare_queue(connection, &names.task_queue(p), dead_lettering(names, limit, DEAD_ROUTING_KEY)).await?;
    }

    channel.queue_declare(&names.dead_event_queue(), durable(), quorum_args()).await?;
    channel
        .queue_bind(
            &names.dead_event_queue(),
            &names.dead_exchange(),
            DEAD_EVENT_ROUTING_KEY,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    declare_queue(connection, &names.event_queue(), dead_lettering(names, EVENT_DELIVERY_LIMIT, DEAD_EVENT_ROUTING_KEY))
        .await?;
    channel
        .exchange_declare(&names.progress_exchange(), ExchangeKind::Fanout, exchange_opts, FieldTable::default())
        .await?;
    let _ = channel.close(200, "topology declared").await;
    Ok(())
}

/// `x-delivery-count` header set by quorum queues on redelivery.
pub fn previous_deliveries(properties: &lapin::BasicProperties) -> u32 {
    let key: ShortString = "x-delivery-count".into();
    properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(&key).cloned())
        .and_then(|v| match v {
            AMQPValue::LongLongInt(n) => u32::try_from(n).ok(),
            AMQPValue::LongInt(n) => u32::try_from(n).ok(),
            AMQPValue::LongUInt(n) => Some(n),
            AMQPValue::ShortInt(n) => u32::try_from(n).ok(),
            AMQPValue::ShortUInt(n) => Some(u32::from(n)),
            _ => None,
        })
        .unwrap_or(0)
}
