//! Worker: pulls image tasks in priority order, batches them, preprocesses on a
//! bounded CPU pool while the previous batch is in inference, embeds with the CLIP
//! vision encoder, upserts into the vector store, publishes completion events, acks.
//! Attempts are charged where the work happens (`attempts.rs`); outages are waited
//! out with the batch held (`hold.rs`), and files that may come back are tried again
//! (`file_retry.rs`), never charged to the images.

mod attempts;
pub mod devices;
mod file_retry;
mod finish;
mod hold;
mod inbox;
mod isolate;
pub mod metrics;
mod model;
mod prepare;
mod read;
mod reuse;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use imgidx_shared::broker::Broker;
use imgidx_shared::config::{Settings, WorkerSettings};
use imgidx_shared::embed::{DecodeBudget, Tagger};
use imgidx_shared::health::HealthBoard;
use imgidx_shared::jobs::JobStore;
use imgidx_shared::metrics::MetricsRegistry;
use imgidx_shared::fetch::FetchLimits;
use imgidx_shared::objects::Objects;
use imgidx_shared::service::{self, ServiceError};
use imgidx_shared::shutdown::Shutdown;
use imgidx_shared::collections::Distance;
use imgidx_shared::vectors::{self, Collections};

pub use attempts::Isolation;
use attempts::{Alone, Guard};
use file_retry::FileRetry;
use finish::Finisher;
use hold::Hold;
use inbox::Inbox;
use metrics::{Stage, WorkerMetrics};
pub use model::{worker_models, WorkerModel, WorkerModels};
use model::ModelChoice;
use prepare::{prepare_batch, Prepared};
use read::Reader;
use reuse::Reuser;

#[derive(Clone)]
pub struct WorkerDeps {
    pub broker: Arc<dyn Broker>,
    /// The stores tasks upsert into (each names its collection).
    pub collections: Arc<Collections>,
    /// The collection of tasks that name none.
    pub initial_collection: String,
    /// Where attempts are counted.
    pub jobs: Arc<dyn JobStore>,
    /// The worker's own model (`model.dir`) and those it loads for tasks that name another.
    pub models: Arc<WorkerModels>,
    /// Decode memory budget, shared with whatever else decodes in this process.
    pub budget: DecodeBudget,
    /// Decode threads, shared by every pipeline of the process (see [`decode_pool`]).
    pub decode_pool: Arc<Semaphore>,
    /// Shared by every pipeline of the process (see `attempts.rs`).
    pub isolation: Isolation,
    /// Where a worker holding its batch through an outage says so (`/health`).
    pub health: HealthBoard,
    /// Stage timings, shared by every pipeline of the process.
    pub metrics: WorkerMetrics,
    /// Where uploaded images are, and downloaded ones go.
    pub objects: Objects,
    /// How images named by URL are fetched.
    pub fetch: FetchLimits,
}

/// What a worker did before it stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerReport {
    pub indexed: u64,
    pub failed: u64,
    pub batches: u64,
}

impl WorkerReport {
    fn add(self, other: Self) -> Self {
        Self {
            indexed: self.indexed + other.indexed,
            failed: self.failed + other.failed,
            batches: self.batches + other.batches,
        }
    }
}

/// Build the backends from configuration and work until `shutdown`: one pipeline per
/// device (`model.cuda_devices`), all on the same queue, stores and decode pool.
pub async fn run(settings: Settings, shutdown: Shutdown) -> Result<WorkerReport, ServiceError> {
    let tagger = load_tagger(&settings).await?;
    let budget = DecodeBudget::from_settings(&settings.worker);
    let pipelines = devices::load_pipelines(&settings, &budget, None, tagger).await?;
    let Some(first) = pipelines.first() else {
        return Err(ServiceError::Other("no device to run the worker on".into()));
    };
    let dim = first.models.default_model().dim();
    let collections = vectors::collections(&settings)?;
    let jobs = service::job_store(&settings).await?;
    // As before collections: a worker started before any API still finds the initial
    // collection. Once the catalog knows it, it is the catalog's (a model switch may have
    // replaced its first generation).
    if jobs.collection(&settings.vectors.collection).await?.is_none() {
        collections.open(&settings.vectors.collection, dim, Some(Distance::Cosine)).await?;
    }
    let objects = Objects::open(&settings).map_err(|e| ServiceError::Other(e.to_string()))?;
    let broker = service::broker(&settings, "worker").await?;
    let tag = format!("{}.worker-{}", settings.node_name(), std::process::id());
    let registry = MetricsRegistry::default();
    let deps = WorkerDeps {
        broker: broker.clone(),
        collections,
        initial_collection: settings.vectors.collection.clone(),
        jobs,
        models: first.models.clone(),
        budget,
        decode_pool: decode_pool(&settings.worker),
        isolation: Isolation::default(),
        health: HealthBoard::default(),
        metrics: WorkerMetrics::new(&registry),
        objects,
        fetch: settings.ingest.fetch_limits(),
    };
    let endpoint = match &settings.worker.metrics_listen {
        Some(addr) => Some(service::metrics_endpoint(addr, registry, shutdown.clone()).await?),
        None => None,
    };
    let prefetch = settings.broker.prefetch;
    let runs = pipelines.into_iter().map(|p| {
        let deps = WorkerDeps { models: p.models, ..deps.clone() };
        let tag = match p.device {
            Some(d) => format!("{tag}.cuda{d}"),
            None => tag.clone(),
        };
        let shutdown = shutdown.clone();
        async move { serve(&p.settings, prefetch, deps, &tag, shutdown).await }
    });
    let mut result = Ok(WorkerReport::default());
    for report in futures::future::join_all(runs).await {
        result = match (result, report) {
            (Ok(sum), Ok(r)) => Ok(sum.add(r)),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
    }
    if let Some(endpoint) = endpoint {
        let _ = endpoint.await;
    }
    // Closing returns whatever we still hold to the queues.
    broker.close().await;
    result
}

/// The permits that bound decoding in a process: `worker.decode_threads`, one per core
/// when 0. One pool for every pipeline, so several GPUs do not oversubscribe the cores.
pub fn decode_pool(settings: &WorkerSettings) -> Arc<Semaphore> {
    let threads = match settings.decode_threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    Arc::new(Semaphore::new(threads))
}

/// The tag vocabulary embedded with the model's text encoder (`tags.*`); None when tags
/// are off or the model has none.
pub async fn load_tagger(settings: &Settings) -> Result<Option<Arc<Tagger>>, ServiceError> {
    let (model, tags) = (settings.model.clone(), settings.tags.clone());
    let tagger = tokio::task::spawn_blocking(move || Tagger::load(&model.dir, &model, &tags))
        .await
        .map_err(|e| ServiceError::Other(e.to_string()))??;
    Ok(tagger.map(Arc::new))
}

/// Work with backends built elsewhere. `tag` names this worker's consumers.
pub async fn serve(
    settings: &WorkerSettings,
    prefetch: u16,
    deps: WorkerDeps,
    tag: &str,
    shutdown: Shutdown,
) -> Result<WorkerReport, ServiceError> {
    let streams = deps.broker.consume_tasks(tag).await?;
    let inbox = Inbox::start(streams, usize::from(prefetch), shutdown.clone());
    // Reading is the same for every model (the worker's limits); decoding is per model.
    let preprocessor = deps.models.default_model().preprocessor.clone();
    let pool = deps.decode_pool.clone();
    let threads = pool.available_permits();
    let decode_memory_mb = deps.budget.total_bytes() >> 20;
    tracing::info!(worker = tag, batch_size = settings.batch_size, decode_threads = threads, decode_memory_mb, "worker consuming");

    let hold = Hold { worker: tag.to_string(), health: deps.health.clone(), shutdown: shutdown.clone() };
    // Capacity 1: at most one prepared batch waits while another is in inference.
    let (tx, mut rx) = mpsc::channel(1);
    let reuser = settings.reuse_vectors.then(|| Reuser {
        collections: deps.collections.clone(),
        initial_collection: deps.initial_collection.clone(),
    });
    let stage1 = tokio::spawn(stage1(Stage1 {
        inbox,
        reuser,
        settings: settings.clone(),
        jobs: deps.jobs.clone(),
        isolation: deps.isolation.clone(),
        hold: hold.clone(),
        retry: FileRetry { budget: Duration::from_secs(settings.file_retry_secs), hold: hold.clone() },
        reader: Reader { preprocessor, objects: deps.objects.clone(), fetch: deps.fetch },
        choice: ModelChoice {
            jobs: deps.jobs.clone(),
            models: deps.models.clone(),
            initial_collection: deps.initial_collection.clone(),
        },
        pool,
        metrics: deps.metrics.clone(),
        tx,
    }));

    let metrics = deps.metrics.clone();
    let finisher = Finisher {
        broker: deps.broker,
        collections: deps.collections,
        initial_collection: deps.initial_collection,
        hold,
        metrics: deps.metrics,
    };
    let mut report = WorkerReport::default();
    // Runs until stage 1 stops (shutdown or closed streams) and every prepared batch is settled.
    loop {
        let waited = std::time::Instant::now();
        let Some((batch, guard)) = rx.recv().await else { break };
        metrics.observe(Stage::WaitForBatch, waited.elapsed());
        report.batches += 1;
        if let Some(counts) = finisher.finish(batch).await {
            report.indexed += counts.indexed;
            report.failed += counts.failed;
        }
        drop(guard);
    }
    let _ = stage1.await;
    tracing::info!(worker = tag, ?report, "worker stopped");
    Ok(report)
}

/// What stage 1 works with.
struct Stage1 {
    inbox: Inbox,
    /// None with `worker.reuse_vectors` off: every image is embedded.
    reuser: Option<Reuser>,
    settings: WorkerSettings,
    jobs: Arc<dyn JobStore>,
    isolation: Isolation,
    hold: Hold,
    retry: FileRetry,
    reader: Reader,
    choice: ModelChoice,
    pool: Arc<Semaphore>,
    metrics: WorkerMetrics,
    tx: mpsc::Sender<(Vec<Prepared>, Guard)>,
}

/// Takes batches, counts their attempts and decodes them: fresh images together, the
/// ones tried before each alone. Stops on shutdown or when stage 2 is gone.
async fn stage1(mut s: Stage1) {
    let (batch_size, wait) = (s.settings.batch_size, Duration::from_millis(s.settings.batch_wait_ms));
    let max_attempts = s.settings.max_attempts;
    let shutdown = s.hold.shutdown.clone();
    while let Some(tasks) = s.inbox.next_batch(batch_size, wait, &shutdown).await {
        s.metrics.batch_taken(tasks.len(), batch_size);
        let guard = s.isolation.shared().await;
        let Some(sorted) = attempts::sort(&*s.jobs, &s.hold, tasks, max_attempts).await else { return };
        attempts::ack_withdrawn(&s.hold.worker, sorted.withdrawn).await;
        let Some(mut batch) = prepare_batch(sorted.fresh, &s.reader, &s.choice, s.pool.clone(), &s.retry, s.reuser.as_ref(), &s.metrics).await else {
            return;
        };
        batch.extend(sorted.exhausted.into_iter().map(|(task, n)| Prepared::exhausted(task, n)));
        if batch.is_empty() {
            // Released before an image is tried alone: that waits for every guard.
            drop(guard);
        } else if s.tx.send((batch, guard)).await.is_err() {
            return;
        }
        for task in sorted.retried {
            let guard = s.isolation.alone().await;
            let Some(counted) = attempts::count_alone(&*s.jobs, &s.hold, &task, max_attempts).await else { return };
            let batch = match counted {
                Alone::Try(attempt) => {
                    tracing::info!(worker = %s.hold.worker, path = %task.message.path, attempt, "trying alone an image whose last attempt did not finish");
                    match prepare_batch(vec![task], &s.reader, &s.choice, s.pool.clone(), &s.retry, s.reuser.as_ref(), &s.metrics).await {
                        Some(batch) => batch,
                        None => return,
                    }
                }
                Alone::Exhausted(made) => vec![Prepared::exhausted(task, made)],
                Alone::Withdrawn => {
                    attempts::ack_withdrawn(&s.hold.worker, vec![task]).await;
                    continue;
                }
            };
            if s.tx.send((batch, guard)).await.is_err() {
                return;
            }
        }
    }
}
