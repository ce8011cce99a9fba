//! In-process broker with the RabbitMQ backend's semantics, for one-machine use
//! (`imgidx serve`) and benchmarks: a queue per priority, per-consumer prefetch,
//! manual acks, requeue on retry or when an unsettled delivery is dropped (as on a
//! closed channel), a delivery limit followed by dead-lettering, and a bound on
//! queued messages (publishes beyond it are refused, like `reject-publish`).
//! Not durable: after a restart, unfinished work is requeued from the job store.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::{broadcast, Notify};

use super::{Acker, Broker, BrokerError, Delivery, DeliveryStream, PriorityStreams, ProgressStream, QueueDepth, QueueKind};
use crate::messages::{CompletionEvent, DeadEvent, ImageTask, Priority, ProgressEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueueId {
    Task(Priority),
    Events,
    Dead,
    DeadEvents,
}

struct Message {
    body: Vec<u8>,
    deliveries: u32,
}

#[derive(Default)]
struct Queues {
    tasks_high: VecDeque<Message>,
    tasks_normal: VecDeque<Message>,
    tasks_low: VecDeque<Message>,
    events: VecDeque<Message>,
    dead: VecDeque<Message>,
    dead_events: VecDeque<Message>,
    closed: bool,
}

impl Queues {
    fn get(&mut self, q: QueueId) -> &mut VecDeque<Message> {
        match q {
            QueueId::Task(Priority::High) => &mut self.tasks_high,
            QueueId::Task(Priority::Normal) => &mut self.tasks_normal,
            QueueId::Task(Priority::Low) => &mut self.tasks_low,
            QueueId::Events => &mut self.events,
            QueueId::Dead => &mut self.dead,
            QueueId::DeadEvents => &mut self.dead_events,
        }
    }

    fn len(&self) -> usize {
        self.tasks_high.len()
            + self.tasks_normal.len()
            + self.tasks_low.len()
            + self.events.len()
            + self.dead.len()
            + self.dead_events.len()
    }
}

struct Shared {
    queues: Mutex<Queues>,
    /// Woken whenever a message becomes available or a consumer's in-flight count drops.
    changed: Notify,
    capacity: usize,
    delivery_limit: u32,
    progress: broadcast::Sender<ProgressEvent>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        // A panic while holding this lock cannot leave the queues half-updated (every
        // critical section is a single push or pop), so a poisoned lock is still sound.
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Put a returned message back at the head, or dead-letter it past the limit.
    fn requeue(&self, queue: QueueId, mut msg: Message) {
        msg.deliveries += 1;
        let mut q = self.lock();
        match queue {
            QueueId::Task(_) if msg.deliveries > self.delivery_limit => q.dead.push_back(msg),
            _ => q.get(queue).push_front(msg),
        }
        drop(q);
        self.changed.notify_waiters();
    }
}

#[derive(Clone)]
pub struct MemoryBroker {
    shared: Arc<Shared>,
    prefetch: usize,
    event_prefetch: usize,
}

impl MemoryBroker {
    /// `capacity`: most messages queued at once; `prefetch`: unsettled task deliveries per
    /// consumer and priority; `delivery_limit`: deliveries before a task is dead-lettered.
    pub fn new(capacity: usize, prefetch: u16, event_prefetch: u16, delivery_limit: u32) -> Self {
        let (progress, _) = broadcast::channel(1024);
        Self {
            shared: Arc::new(Shared {
                queues: Mutex::new(Queues::default()),
                changed: Notify::new(),
                capacity,
                delivery_limit,
                progress,
            }),
            prefetch: usize::from(prefetch.max(1)),
            event_prefetch: usize::from(event_prefetch.max(1)),
        }
    }

    /// Events set aside as unappliable (nobody consumes them here; they are for inspection).
    pub fn dead_events(&self) -> usize {
        self.shared.lock().dead_events.len()
    }

    /// Messages waiting (not delivered) in a task queue.
    pub fn queued_tasks(&self, priority: Priority) -> usize {
        self.shared.lock().get(QueueId::Task(priority)).len()
    }

    fn publish<T: serde::Serialize>(&self, queue: QueueId, messages: &[T]) -> Result<(), BrokerError> {
        let bodies = messages
            .iter()
            .map(|m| serde_json::to_vec(m).map_err(|e| BrokerError::Other(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut q = self.shared.lock();
        if q.closed {
            return Err(BrokerError::Unavailable("broker is closed".into()));
        }
        if q.len() + bodies.len() > self.shared.capacity {
            return Err(BrokerError::NotConfirmed(format!(
                "queue full ({} messages queued, capacity {})",
                q.len(),
                self.shared.capacity
            )));
        }
        q.get(queue).extend(bodies.into_iter().map(|body| Message { body, deliveries: 0 }));
        drop(q);
        self.shared.changed.notify_waiters();
        Ok(())
    }

    fn consume<T>(&self, queue: QueueId, prefetch: usize) -> DeliveryStream<T>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let shared = self.shared.clone();
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stream = futures::stream::unfold((), move |()| {
            let shared = shared.clone();
            let in_flight = in_flight.clone();
            async move {
                loop {
                    // Register for wake-ups before looking, so no notification is missed.
                    let notified = shared.changed.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    {
                        let mut q = shared.lock();
                        if q.closed {
                            return None;
                        }
                        if in_flight.load(std::sync::atomic::Ordering::Acquire) < prefetch {
                            if let Some(msg) = q.get(queue).pop_front() {
                                drop(q);
                                match serde_json::from_slice::<T>(&msg.body) {
                                    Ok(message) => {
                                        in_flight.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                                        let delivery = Delivery {
                                            message,
                                            previous_deliveries: msg.deliveries,
                                            acker: Box::new(MemoryAcker {
                                                shared: shared.clone(),
                                                queue,
                                                msg: Some(msg),
                                                in_flight: in_flight.clone(),
                                            }),
                                        };
                                        return Some((Ok(delivery), ()));
                                    }
                                    Err(e) => {
                                        tracing::error!(error = %e, "dropping malformed in-process message");
                                        continue;
                                    }
                                }
                            }
                        }
                    }
                    notified.await;
                }
            }
        });
        Box::pin(stream)
    }
}

struct MemoryAcker {
    shared: Arc<Shared>,
    queue: QueueId,
    /// Some until settled.
    msg: Option<Message>,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl MemoryAcker {
    fn release(&self) {
        self.in_flight.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        self.shared.changed.notify_waiters();
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), BrokerError> {
        self.msg = None;
        self.release();
        Ok(())
    }

    async fn retry(mut self: Box<Self>) -> Result<(), BrokerError> {
        if let Some(msg) = self.msg.take() {
            self.shared.requeue(self.queue, msg);
        }
        self.release();
        Ok(())
    }
}

impl Drop for MemoryAcker {
    /// An unsettled delivery dropped (its consumer died) goes back, as on a closed channel.
    fn drop(&mut self) {
        if let Some(msg) = self.msg.take() {
            self.shared.requeue(self.queue, msg);
            self.release();
        }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn waiting_tasks(&self) -> Result<u64, BrokerError> {
        let total: usize = Priority::DESCENDING.iter().map(|p| self.queued_tasks(*p)).sum();
        Ok(total as u64)
    }

    async fn waiting_events(&self) -> Result<u64, BrokerError> {
        Ok(self.shared.lock().get(QueueId::Events).len() as u64)
    }

    async fn publish_tasks(&self, priority: Priority, tasks: &[ImageTask]) -> Result<(), BrokerError> {
        self.publish(QueueId::Task(priority), tasks)
    }

    async fn consume_tasks(&self, _tag: &str) -> Result<PriorityStreams, BrokerError> {
        let streams =
            Priority::DESCENDING.iter().map(|&p| (p, self.consume(QueueId::Task(p), self.prefetch))).collect();
        Ok(PriorityStreams { streams })
    }

    async fn publish_events(&self, events: &[CompletionEvent]) -> Result<(), BrokerError> {
        self.publish(QueueId::Events, events)
    }

    async fn consume_events(&self, _tag: &str) -> Result<DeliveryStream<CompletionEvent>, BrokerError> {
        Ok(self.consume(QueueId::Events, self.event_prefetch))
    }

    async fn dead_letter_event(&self, dead: &DeadEvent) -> Result<(), BrokerError> {
        self.publish(QueueId::DeadEvents, std::slice::from_ref(dead))
    }

    async fn consume_dead_tasks(&self, _tag: &str) -> Result<DeliveryStream<ImageTask>, BrokerError> {
        Ok(self.consume(QueueId::Dead, self.event_prefetch))
    }

    async fn publish_progress(&self, event: &ProgressEvent) -> Result<(), BrokerError> {
        // No subscriber is not an error: nobody is watching.
        let _ = self.shared.progress.send(event.clone());
        Ok(())
    }

    async fn queue_depths(&self) -> Result<Vec<QueueDepth>, BrokerError> {
        let mut q = self.shared.lock();
        Ok(QueueKind::ALL
            .iter()
            .map(|&kind| {
                let id = match kind {
                    QueueKind::Tasks(p) => QueueId::Task(p),
                    QueueKind::DeadTasks => QueueId::Dead,
                    QueueKind::Events => QueueId::Events,
                    QueueKind::DeadEvents => QueueId::DeadEvents,
                };
                QueueDepth { queue: kind.name(), messages: q.get(id).len() as u64, consumers: None }
            })
            .collect())
    }

    async fn subscribe_progress(&self) -> Result<ProgressStream, BrokerError> {
        let rx = self.shared.progress.subscribe();
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, rx)),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "a progress watcher fell behind; updates skipped");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })))
    }

    async fn healthy(&self) -> bool {
        !self.shared.lock().closed
    }

    /// Ends every consumer stream; queued messages are discarded with the process.
    async fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_waiters();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use uuid::Uuid;

    fn task(i: u32) -> ImageTask {
        ImageTask {
            job_id: format!("j{i}"),
            point_id: Uuid::nil(),
            path: format!("/{i}"),
            stamp: None,
            request_id: None,
            collection: None,
            object_key: None,
        }
    }

    async fn next(s: &mut DeliveryStream<ImageTask>) -> Delivery<ImageTask> {
        tokio::time::timeout(std::time::Duration::from_secs(5), s.next()).await.unwrap().unwrap().unwrap()
    }

    #[tokio::test]
    async fn prefetch_bounds_unsettled_deliveries() {
        let b = MemoryBroker::new(100, 2, 2, 5);
        b.publish_tasks(Priority::Normal, &[task(1), task(2), task(3)]).await.unwrap();
        let mut streams = b.consume_tasks("t").await.unwrap().streams;
        let s = &mut streams[1].1;
        let d1 = next(s).await;
        let _d2 = next(s).await;
        assert!(tokio::time::timeout(std::time::Duration::from_millis(100), s.next()).await.is_err());
        d1.ack().await.unwrap();
        assert_eq!(next(s).await.message.path, "/3");
    }

    #[tokio::test]
    async fn retry_requeues_then_dead_letters_past_the_limit() {
        let b = MemoryBroker::new(100, 1, 1, 2);
        b.publish_tasks(Priority::High, &[task(1)]).await.unwrap();
        let mut streams = b.consume_tasks("t").await.unwrap().streams;
        let mut dead = b.consume_dead_tasks("d").await.unwrap();
        for expected_previous in 0..=2 {
            let d = next(&mut streams[0].1).await;
            assert_eq!(d.previous_deliveries, expected_previous);
            d.retry().await.unwrap();
        }
        let d = next(&mut dead).await;
        assert_eq!(d.message.path, "/1");
        assert_eq!(b.queued_tasks(Priority::High), 0);
    }

    #[tokio::test]
    async fn dropped_unsettled_delivery_returns_to_the_queue() {
        let b = MemoryBroker::new(100, 1, 1, 5);
        b.publish_tasks(Priority::Low, &[task(7)]).await.unwrap();
        let mut streams = b.consume_tasks("t").await.unwrap().streams;
        drop(next(&mut streams[2].1).await);
        assert_eq!(b.queued_tasks(Priority::Low), 1);
        let again = next(&mut streams[2].1).await;
        assert_eq!((again.message.path.as_str(), again.previous_deliveries), ("/7", 1));
    }

    #[tokio::test]
    async fn capacity_refuses_publishes_beyond_it() {
        let b = MemoryBroker::new(2, 1, 1, 5);
        b.publish_tasks(Priority::Low, &[task(1), task(2)]).await.unwrap();
        assert!(b.publish_tasks(Priority::Low, &[task(3)]).await.is_err());
    }
}
