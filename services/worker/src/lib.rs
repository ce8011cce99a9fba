//! Worker: pulls image tasks in priority order, batches them, preprocesses on a
//! bounded CPU pool while the previous batch is in inference, embeds with the CLIP
//! vision encoder, upserts into the vector store, publishes completion events, acks.

mod finish;
mod inbox;
mod prepare;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use imgidx_shared::broker::Broker;
use imgidx_shared::config::{Settings, WorkerSettings};
use imgidx_shared::embed::{DecodeBudget, Preprocessor, VisionEncoder};
use imgidx_shared::service::{self, ServiceError};
use imgidx_shared::shutdown::Shutdown;
use imgidx_shared::vectors::{self, VectorStore};

use finish::Finisher;
use inbox::Inbox;
use prepare::prepare_batch;

/// Longest pause after a transient failure before taking the next batch.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct WorkerDeps {
    pub broker: Arc<dyn Broker>,
    pub vectors: Arc<dyn VectorStore>,
    pub encoder: Arc<VisionEncoder>,
    /// Decode memory budget, shared with whatever else decodes in this process.
    pub budget: DecodeBudget,
}

/// What a worker did before it stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerReport {
    pub indexed: u64,
    pub failed: u64,
    pub batches: u64,
}

/// Build the backends from configuration and work until `shutdown`.
pub async fn run(settings: Settings, shutdown: Shutdown) -> Result<WorkerReport, ServiceError> {
    let model = settings.model.clone();
    let encoder = tokio::task::spawn_blocking(move || VisionEncoder::load(&model.dir, &model))
        .await
        .map_err(|e| ServiceError::Other(e.to_string()))??;
    let vectors = vectors::open(&settings, encoder.manifest().embedding_dim).await?;
    let broker = service::broker(&settings, "worker").await?;
    let tag = format!("{}.worker-{}", settings.node_name(), std::process::id());
    let budget = DecodeBudget::from_settings(&settings.worker);
    let deps = WorkerDeps { broker: broker.clone(), vectors, encoder: Arc::new(encoder), budget };
    let result = serve(&settings.worker, settings.broker.prefetch, deps, &tag, shutdown).await;
    // Closing returns whatever we still hold to the queues.
    broker.close().await;
    result
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
    let mut inbox = Inbox::start(streams, usize::from(prefetch), shutdown.clone());
    let manifest = deps.encoder.manifest().clone();
    let preprocessor = Arc::new(Preprocessor::new(
        manifest.image_size,
        manifest.mean,
        manifest.std,
        settings.max_image_pixels,
        settings.max_file_bytes,
    )
    .with_budget(deps.budget.clone()));
    let threads = match settings.decode_threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    let pool = Arc::new(Semaphore::new(threads));
    let decode_memory_mb = deps.budget.total_bytes() >> 20;
    tracing::info!(worker = tag, batch_size = settings.batch_size, decode_threads = threads, decode_memory_mb, "worker consuming");

    // Capacity 1: at most one prepared batch waits while another is in inference.
    let (tx, mut rx) = mpsc::channel(1);
    let (batch_size, wait) = (settings.batch_size, Duration::from_millis(settings.batch_wait_ms));
    let stage1_shutdown = shutdown.clone();
    let stage1 = tokio::spawn(async move {
        while let Some(batch) = inbox.next_batch(batch_size, wait, &stage1_shutdown).await {
            let prepared = prepare_batch(batch, preprocessor.clone(), pool.clone()).await;
            if tx.send(prepared).await.is_err() {
                break;
            }
        }
    });

    let finisher = Finisher { broker: deps.broker, vectors: deps.vectors, encoder: deps.encoder, worker: tag.to_string() };
    let mut report = WorkerReport::default();
    let mut backoff = Duration::from_millis(500);
    // Runs until stage 1 stops (shutdown or closed streams) and every prepared batch is settled.
    while let Some(batch) = rx.recv().await {
        report.batches += 1;
        match finisher.finish(batch).await {
            Ok(counts) => {
                report.indexed += counts.indexed;
                report.failed += counts.failed;
                backoff = Duration::from_millis(500);
            }
            Err(e) => {
                tracing::warn!(worker = tag, error = %e, retry_in = ?backoff, "batch returned to the queue");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {},
                    () = shutdown.cancelled() => {},
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    let _ = stage1.await;
    tracing::info!(worker = tag, ?report, "worker stopped");
    Ok(report)
}
