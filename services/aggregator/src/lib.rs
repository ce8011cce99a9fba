//! Progress aggregator: applies completion events (and tasks that exhausted their
//! retries) to the job store idempotently, then publishes progress on the fanout.

mod apply;
mod batch;
pub mod metrics;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use imgidx_shared::broker::{Broker, DeliveryStream};
use imgidx_shared::config::{AggregatorSettings, Settings};
use imgidx_shared::jobs::{Applied, JobStore};
use imgidx_shared::messages::{CompletionEvent, FailureKind, ImageDone, ImageTask, Outcome, ProgressEvent};
use imgidx_shared::metrics::MetricsRegistry;
use imgidx_shared::{reconcile, retention};

pub use metrics::AggregatorMetrics;
use imgidx_shared::service::{self, ServiceError};
use imgidx_shared::shutdown::Shutdown;

/// On stop, events already waiting are still applied (in `imgidx serve` the workers
/// stop first, so their last events are waiting), until none arrives for this long…
const DRAIN_QUIET: Duration = Duration::from_millis(250);
/// …or for at most this long, however busy a fleet keeps the queue.
const DRAIN_MAX: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct AggregatorDeps {
    pub broker: Arc<dyn Broker>,
    pub jobs: Arc<dyn JobStore>,
    pub metrics: AggregatorMetrics,
}

pub async fn run(settings: Settings, shutdown: Shutdown) -> Result<(), ServiceError> {
    let jobs = service::job_store(&settings).await?;
    let broker = service::broker(&settings, "aggregator").await?;
    let tag = format!("{}.aggregator-{}", settings.node_name(), std::process::id());
    let when = reconcile::Periodic::from_settings(&settings.jobs);
    let reconcile = tokio::spawn(reconcile::run_periodic(jobs.clone(), broker.clone(), when, shutdown.clone()));
    let retention = tokio::spawn(retention::run_periodic(jobs.clone(), retention::Retention::from_settings(&settings), shutdown.clone()));
    let registry = MetricsRegistry::default();
    let deps = AggregatorDeps { broker: broker.clone(), jobs, metrics: AggregatorMetrics::new(&registry) };
    let endpoint = match &settings.aggregator.metrics_listen {
        Some(addr) => Some(service::metrics_endpoint(addr, registry, shutdown.clone()).await?),
        None => None,
    };
    let result = serve(&settings.aggregator, deps, &tag, shutdown.clone()).await;
    // A failed serve must stop the reconcile too, or `run` would never return.
    shutdown.cancel();
    let _ = reconcile.await;
    let _ = retention.await;
    if let Some(endpoint) = endpoint {
        let _ = endpoint.await;
    }
    broker.close().await;
    result
}

pub async fn serve(
    settings: &AggregatorSettings,
    deps: AggregatorDeps,
    tag: &str,
    shutdown: Shutdown,
) -> Result<(), ServiceError> {
    let events = deps.broker.consume_events(&format!("{tag}.events")).await?;
    let dead = deps.broker.consume_dead_tasks(&format!("{tag}.dead")).await?;
    tracing::info!(aggregator = tag, "aggregator consuming");
    let (a, b) = tokio::join!(
        apply_loop(settings, &deps, events, |e| e, shutdown.clone()),
        apply_loop(settings, &deps, dead, retries_exhausted, shutdown.clone()),
    );
    a.and(b)
}

/// A task the broker dead-lettered after its delivery limit becomes a failure event.
fn retries_exhausted(task: ImageTask) -> CompletionEvent {
    CompletionEvent {
        job_id: task.job_id,
        point_id: task.point_id,
        path: task.path,
        outcome: Outcome::Failed {
            kind: FailureKind::RetriesExhausted,
            reason: "gave up after repeated transient failures".into(),
        },
        worker: "dead-letter".into(),
        request_id: task.request_id,
        finished_at_ms: None,
        from_cache: false,
        object_key: None,
    }
}

async fn apply_loop<T, F>(
    settings: &AggregatorSettings,
    deps: &AggregatorDeps,
    mut stream: DeliveryStream<T>,
    to_event: F,
    shutdown: Shutdown,
) -> Result<(), ServiceError>
where
    T: Clone,
    F: Fn(T) -> CompletionEvent,
{
    let wait = Duration::from_millis(settings.batch_wait_ms);
    while let Some(batch) = batch::next_batch(&mut stream, settings.max_batch, wait, &shutdown).await? {
        if !apply::apply_batch(deps, batch, &to_event, &shutdown).await {
            break;
        }
    }
    drain(settings, deps, &mut stream, &to_event, &shutdown).await;
    Ok(())
}

/// Applies what is already waiting once a stop was asked for, so it is not redone
/// after the restart; stops at the first quiet gap, the first failure, or `DRAIN_MAX`.
async fn drain<T, F>(
    settings: &AggregatorSettings,
    deps: &AggregatorDeps,
    stream: &mut DeliveryStream<T>,
    to_event: &F,
    stopped: &Shutdown,
) where
    T: Clone,
    F: Fn(T) -> CompletionEvent,
{
    let wait = Duration::from_millis(settings.batch_wait_ms);
    let until = tokio::time::Instant::now() + DRAIN_MAX;
    // Never cancelled: the stop was asked for already, and `next_batch` would return at
    // once on that token; the drain's own bounds are the quiet gap and `DRAIN_MAX`.
    // Applying gets the cancelled one, so a job store that is down ends the drain.
    let running = Shutdown::new();
    while tokio::time::Instant::now() < until {
        let next = tokio::time::timeout(DRAIN_QUIET, batch::next_batch(stream, settings.max_batch, wait, &running));
        let Ok(Ok(Some(batch))) = next.await else { break };
        if !apply::apply_batch(deps, batch, to_event, stopped).await {
            break;
        }
    }
}

/// The events that finished an item (each item once, in event order): what the job
/// store counted of `events`, for the live updates and the metrics.
pub(crate) fn finished_events<'a>(applied: &Applied, events: &'a [CompletionEvent]) -> Vec<&'a CompletionEvent> {
    let by_item: HashMap<_, &CompletionEvent> = events.iter().map(|e| ((e.job_id.as_str(), e.point_id), e)).collect();
    applied.finished.iter().filter_map(|key| by_item.get(&(key.job_id.as_str(), key.point_id)).copied()).collect()
}

/// Live progress is best effort: watchers can always read the job store. Each changed
/// job's update names the images `finished` (see [`finished_events`]) finished of it.
pub(crate) async fn publish_progress(deps: &AggregatorDeps, applied: &Applied, finished: &[&CompletionEvent]) {
    let mut images: HashMap<&str, Vec<ImageDone>> = HashMap::new();
    for e in finished {
        images.entry(e.job_id.as_str()).or_default().push(ImageDone { path: e.path.clone(), outcome: e.outcome.clone() });
    }
    for job in &applied.jobs {
        let event =
            ProgressEvent { images: images.remove(job.job_id.as_str()).unwrap_or_default(), ..job.progress_event() };
        if let Err(e) = deps.broker.publish_progress(&event).await {
            tracing::debug!(error = %e, job_id = %job.job_id, "progress not published");
        }
        if !job.status.is_active() {
            tracing::info!(job_id = %job.job_id, status = job.status.as_str(), processed = job.processed_images, failed = job.failed_images, "job finished");
        }
    }
}
