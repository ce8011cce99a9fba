//! Message broker: task queues (one per priority), the completion-event queue,
//! the dead-letter queue and the progress fanout. Production: RabbitMQ (`rabbit/`);
//! embedded: an in-process queue with the same semantics (`memory.rs`).

mod memory;
mod rabbit;

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

pub use memory::MemoryBroker;
pub use rabbit::{Names as QueueNames, RabbitBroker};

use crate::messages::{CompletionEvent, DeadEvent, ImageTask, Priority, ProgressEvent};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("broker did not confirm the publish: {0}")]
    NotConfirmed(String),
    #[error("broker error: {0}")]
    Other(String),
}

/// Settles one delivery. Dropping it unsettled leaves the message to the broker,
/// which redelivers it when the consumer's channel closes.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Done: remove the message.
    async fn ack(self: Box<Self>) -> Result<(), BrokerError>;
    /// Transient failure: put it back for another try (counts against the delivery limit).
    async fn retry(self: Box<Self>) -> Result<(), BrokerError>;
}

/// One message taken from a queue, with what is needed to settle it.
pub struct Delivery<T> {
    pub message: T,
    /// How many times this message was delivered before (0 on first delivery).
    pub previous_deliveries: u32,
    pub acker: Box<dyn Acker>,
}

impl<T> Delivery<T> {
    pub async fn ack(self) -> Result<(), BrokerError> {
        self.acker.ack().await
    }

    pub async fn retry(self) -> Result<(), BrokerError> {
        self.acker.retry().await
    }
}

/// A message that could not be parsed is not a delivery; consumers see it as an error
/// and the broker implementation dead-letters it so it is never lost nor redelivered forever.
pub type DeliveryStream<T> = Pin<Box<dyn Stream<Item = Result<Delivery<T>, BrokerError>> + Send>>;

/// Live progress updates from the moment of subscribing: best effort (a subscriber that
/// falls behind misses some), and the stream ends when the broker connection is lost.
pub type ProgressStream = Pin<Box<dyn Stream<Item = ProgressEvent> + Send>>;

/// One queue as an operator sees it, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// Its [`QueueKind::name`].
    pub queue: &'static str,
    /// Messages ready to be delivered.
    pub messages: u64,
    /// Consumers attached, where the broker tells (RabbitMQ does; the in-process queue does not).
    pub consumers: Option<u64>,
}

/// The queues every backend has, as operators name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    Tasks(Priority),
    DeadTasks,
    Events,
    DeadEvents,
}

impl QueueKind {
    pub const ALL: [QueueKind; 6] = [
        QueueKind::Tasks(Priority::High),
        QueueKind::Tasks(Priority::Normal),
        QueueKind::Tasks(Priority::Low),
        QueueKind::DeadTasks,
        QueueKind::Events,
        QueueKind::DeadEvents,
    ];

    /// `tasks.high`, `tasks.normal`, `tasks.low`, `tasks.dead`, `events`, `events.dead`.
    pub fn name(self) -> &'static str {
        match self {
            QueueKind::Tasks(Priority::High) => "tasks.high",
            QueueKind::Tasks(Priority::Normal) => "tasks.normal",
            QueueKind::Tasks(Priority::Low) => "tasks.low",
            QueueKind::DeadTasks => "tasks.dead",
            QueueKind::Events => "events",
            QueueKind::DeadEvents => "events.dead",
        }
    }
}

/// Task deliveries, one stream per priority level, highest first.
pub struct PriorityStreams {
    pub streams: Vec<(Priority, DeliveryStream<ImageTask>)>,
}

#[async_trait]
pub trait Broker: Send + Sync {
    /// Publish tasks on the queue of their priority; returns once the broker confirmed every one.
    async fn publish_tasks(&self, priority: Priority, tasks: &[ImageTask]) -> Result<(), BrokerError>;
    /// Consume all task queues. `tag` names the consumer in the management console.
    async fn consume_tasks(&self, tag: &str) -> Result<PriorityStreams, BrokerError>;
    /// Messages waiting (not yet delivered) in the task queues, all priorities together.
    async fn waiting_tasks(&self) -> Result<u64, BrokerError>;
    /// Completion events waiting (not yet delivered) to be applied.
    async fn waiting_events(&self) -> Result<u64, BrokerError>;
    /// Publish completion events; returns once the broker confirmed every one.
    async fn publish_events(&self, events: &[CompletionEvent]) -> Result<(), BrokerError>;
    async fn consume_events(&self, tag: &str) -> Result<DeliveryStream<CompletionEvent>, BrokerError>;
    /// Set an event that cannot be applied aside, on the dead-event queue; returns once confirmed.
    async fn dead_letter_event(&self, dead: &DeadEvent) -> Result<(), BrokerError>;
    /// Tasks that exhausted their delivery limit.
    async fn consume_dead_tasks(&self, tag: &str) -> Result<DeliveryStream<ImageTask>, BrokerError>;
    /// Best-effort live progress for watchers (not durable).
    async fn publish_progress(&self, event: &ProgressEvent) -> Result<(), BrokerError>;
    /// Every queue's depth (see [`QueueDepth`]), in [`QueueKind::ALL`] order.
    async fn queue_depths(&self) -> Result<Vec<QueueDepth>, BrokerError>;
    /// Watch the progress fanout (see [`ProgressStream`]).
    async fn subscribe_progress(&self) -> Result<ProgressStream, BrokerError>;
    /// Whether the broker connection is up.
    async fn healthy(&self) -> bool;
    /// Close channels and the connection; unsettled deliveries go back to their queues.
    async fn close(&self);
}
