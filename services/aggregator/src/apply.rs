//! Applying a batch of events and settling its deliveries. A job store that is down is
//! waited out with the batch held (returning it would only raise its delivery count);
//! a batch that fails while the store answers is applied event by event, and an event
//! that still fails after [`POISON_TRIES`] is set aside on the dead-event queue with its
//! error, so the events behind it, every other job's, go on.

use std::time::Duration;

use imgidx_shared::backoff::Backoff;
use imgidx_shared::broker::Delivery;
use imgidx_shared::messages::{CompletionEvent, DeadEvent};
use imgidx_shared::shutdown::Shutdown;

use crate::{finished_events, publish_progress, AggregatorDeps};

/// Tries of one event, while the job store answers, before it is set aside.
const POISON_TRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn new_backoff() -> Backoff {
    Backoff::new(FIRST_BACKOFF, MAX_BACKOFF)
}

/// Applies and settles `batch`; false when shutdown came while the job store was down
/// (what is not settled is left to the broker, to be delivered again).
pub async fn apply_batch<T, F>(deps: &AggregatorDeps, batch: Vec<Delivery<T>>, to_event: &F, shutdown: &Shutdown) -> bool
where
    T: Clone,
    F: Fn(T) -> CompletionEvent,
{
    let events: Vec<CompletionEvent> = batch.iter().map(|d| to_event(d.message.clone())).collect();
    let mut backoff = new_backoff();
    loop {
        match deps.jobs.apply_events(&events).await {
            Ok(applied) => {
                let finished = finished_events(&applied, &events);
                deps.metrics.applied(&events, &finished);
                publish_progress(deps, &applied, &finished).await;
                ack_all(batch).await;
                return true;
            }
            Err(e) if !deps.jobs.healthy().await => {
                tracing::warn!(error = %e, events = events.len(), retry_in = ?backoff.next(), "job store unavailable; holding the events");
                if !backoff.pause(shutdown).await {
                    return false;
                }
            }
            Err(e) => {
                if events.len() > 1 {
                    tracing::warn!(error = %e, events = events.len(), "a batch of events failed; applying them one by one");
                }
                for (delivery, event) in batch.into_iter().zip(events) {
                    if !apply_one(deps, delivery, event, shutdown).await {
                        return false;
                    }
                }
                return true;
            }
        }
    }
}

async fn apply_one<T>(deps: &AggregatorDeps, delivery: Delivery<T>, event: CompletionEvent, shutdown: &Shutdown) -> bool {
    let mut backoff = new_backoff();
    let mut tries = 0;
    loop {
        match deps.jobs.apply_events(std::slice::from_ref(&event)).await {
            Ok(applied) => {
                let finished = finished_events(&applied, std::slice::from_ref(&event));
                deps.metrics.applied(std::slice::from_ref(&event), &finished);
                publish_progress(deps, &applied, &finished).await;
                ack_all(vec![delivery]).await;
                return true;
            }
            // An outage is no fault of the event's: not counted.
            Err(e) if !deps.jobs.healthy().await => {
                tracing::warn!(error = %e, retry_in = ?backoff.next(), "job store unavailable; holding the event");
            }
            Err(e) => {
                tries += 1;
                if tries >= POISON_TRIES {
                    let dead = DeadEvent { event, error: e.to_string(), attempts: tries };
                    return set_aside(deps, delivery, dead, shutdown).await;
                }
            }
        }
        if !backoff.pause(shutdown).await {
            return false;
        }
    }
}

async fn set_aside<T>(deps: &AggregatorDeps, delivery: Delivery<T>, dead: DeadEvent, shutdown: &Shutdown) -> bool {
    let mut backoff = new_backoff();
    while let Err(e) = deps.broker.dead_letter_event(&dead).await {
        tracing::warn!(error = %e, retry_in = ?backoff.next(), "could not set an unappliable event aside; trying again");
        if !backoff.pause(shutdown).await {
            return false;
        }
    }
    tracing::error!(
        job_id = %dead.event.job_id,
        point_id = %dead.event.point_id,
        error = %dead.error,
        attempts = dead.attempts,
        "an event cannot be applied; set aside on the dead-event queue"
    );
    ack_all(vec![delivery]).await;
    true
}

async fn ack_all<T>(batch: Vec<Delivery<T>>) {
    for d in batch {
        if let Err(e) = d.ack().await {
            // Redelivery is harmless: applying an event twice counts once.
            tracing::warn!(error = %e, "could not settle event delivery");
        }
    }
}
