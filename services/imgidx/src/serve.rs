//! `imgidx serve`: API, workers and aggregator in one process, sharing one vector
//! store (the embedded index can only be opened by one process) and one encoder.
//!
//! On embedded defaults (no `broker.url`, no `jobs.url`, no `vectors.qdrant_url`) it
//! needs nothing installed: an in-process queue, SQLite and Qdrant Edge under
//! `data_dir`. The in-process queue starts empty, so on start every unfinished item of
//! an unfinished job is queued again from the job store. With RabbitMQ configured the
//! queue is durable and the periodic reconcile of the distributed mode runs instead.

use std::fs::File;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;

use imgidx_api::{ApiDeps, QueryEngine};
use imgidx_shared::broker::{Broker, MemoryBroker};
use imgidx_shared::config::Settings;
use imgidx_shared::embed::{DecodeBudget, VisionEncoder};
use imgidx_shared::health::HealthBoard;
use imgidx_shared::jobs::JobStore;
use imgidx_shared::metrics::MetricsRegistry;
use imgidx_shared::objects::Objects;
use imgidx_shared::{reconcile, retention};
use imgidx_shared::service;
use imgidx_shared::shutdown::Shutdown;
use imgidx_worker::metrics::WorkerMetrics;
use imgidx_worker::{Isolation, WorkerDeps};

/// Where the brokers of the roles come from.
enum Queue {
    /// One in-process queue shared by every role.
    Memory(Arc<MemoryBroker>),
    /// RabbitMQ: one connection per role, named after it in the management console.
    Rabbit,
}

impl Queue {
    async fn broker(&self, settings: &Settings, role: &str) -> anyhow::Result<Arc<dyn Broker>> {
        Ok(match self {
            Queue::Memory(b) => b.clone(),
            Queue::Rabbit => service::broker(settings, role).await?,
        })
    }
}

pub async fn run(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create the data directory {}", settings.data_dir.display()))?;
    let _lock = lock_data_dir(&settings)?;
    let listener = tokio::net::TcpListener::bind(&settings.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.api.listen))?;
    // Queries run on the first device; each device gets worker pipelines of its own.
    let first_device = settings.model.devices().first().copied().flatten();
    let (dir, model, limits) = (settings.model.dir.clone(), settings.model.on_device(first_device), settings.worker.clone());
    // One decode memory budget for the whole process: worker pipelines and queries.
    let budget = DecodeBudget::from_settings(&settings.worker);
    let query_budget = budget.clone();
    let (encoder, engine) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let encoder = Arc::new(VisionEncoder::load(&dir, &model)?);
        let engine = QueryEngine::load(&dir, &model, &limits, Some(encoder.clone()), query_budget)?;
        Ok((encoder, engine))
    })
    .await??;
    let manifest = encoder.manifest().clone();
    let jobs = service::job_store(&settings).await?;
    let collections =
        imgidx_api::open_collections(&settings, jobs.as_ref(), &manifest.name, manifest.embedding_dim).await?;
    let objects = Objects::open(&settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tagger = imgidx_worker::load_tagger(&settings).await?;
    // One set of loaded models per device, for every worker pipeline on it.
    let devices = imgidx_worker::devices::load_pipelines(&settings, &budget, Some(encoder), tagger).await?;
    let queries = Arc::new(imgidx_api::query_engines(&settings, engine, budget.clone()));
    let node = settings.node_name();
    let queue = match settings.broker.url.as_deref().filter(|u| !u.is_empty()) {
        None => {
            let b = &settings.broker;
            Queue::Memory(Arc::new(MemoryBroker::new(b.memory_capacity, b.prefetch, b.event_prefetch, b.delivery_limit)))
        }
        Some(_) => Queue::Rabbit,
    };
    tracing::info!(
        data_dir = %settings.data_dir.display(),
        model = %manifest.name,
        queue = if matches!(queue, Queue::Memory(_)) { "in-process" } else { "rabbitmq" },
        workers = settings.serve.workers,
        "serve starting"
    );

    let mut tasks = tokio::task::JoinSet::new();
    let mut brokers = Vec::new();
    // The aggregator stops only once every worker has drained, so the events of their
    // last batches are applied now rather than redone after the next start.
    let workers_running = tokio_util::task::TaskTracker::new();
    // One crash domain and one health board for the whole process.
    let (isolation, health) = (Isolation::default(), HealthBoard::default());
    // One registry for every role: the API's /metrics shows them all.
    let registry = MetricsRegistry::default();
    let worker_metrics = WorkerMetrics::new(&registry);
    let aggregator_shutdown = Shutdown::new();
    let decode_pool = imgidx_worker::decode_pool(&settings.worker);
    let pipelines = devices.iter().flat_map(|d| (0..settings.serve.workers.max(1)).map(move |i| (d, i)));
    for (i, (device, _)) in pipelines.enumerate() {
        let broker = queue.broker(&settings, &format!("worker-{i}")).await?;
        brokers.push(broker.clone());
        let deps = WorkerDeps {
            broker,
            collections: collections.clone(),
            initial_collection: settings.vectors.collection.clone(),
            jobs: jobs.clone(),
            models: device.models.clone(),
            budget: budget.clone(),
            decode_pool: decode_pool.clone(),
            isolation: isolation.clone(),
            health: health.clone(),
            metrics: worker_metrics.clone(),
            objects: objects.clone(),
            fetch: settings.ingest.fetch_limits(),
        };
        let (w, prefetch, s) = (device.settings.clone(), settings.broker.prefetch, shutdown.clone());
        let tag = format!("{node}.worker-{}-{i}", std::process::id());
        let worker = async move { imgidx_worker::serve(&w, prefetch, deps, &tag, s).await.map(|_| ()).map_err(anyhow::Error::from) };
        tasks.spawn(workers_running.track_future(worker));
    }
    workers_running.close();
    let (s, agg_stop) = (shutdown.clone(), aggregator_shutdown.clone());
    tasks.spawn(async move {
        s.cancelled().await;
        workers_running.wait().await;
        agg_stop.cancel();
        Ok(())
    });
    let agg_broker = queue.broker(&settings, "aggregator").await?;
    brokers.push(agg_broker.clone());
    let agg = imgidx_aggregator::AggregatorDeps {
        broker: agg_broker.clone(),
        jobs: jobs.clone(),
        metrics: imgidx_aggregator::AggregatorMetrics::new(&registry),
    };
    let (a, s) = (settings.aggregator.clone(), aggregator_shutdown.clone());
    let tag = format!("{node}.aggregator-{}", std::process::id());
    tasks.spawn(async move { imgidx_aggregator::serve(&a, agg, &tag, s).await.map_err(anyhow::Error::from) });

    let api_broker = queue.broker(&settings, "api").await?;
    brokers.push(api_broker.clone());
    let deps = ApiDeps {
        jobs: jobs.clone(),
        collections,
        initial_collection: settings.vectors.collection.clone(),
        broker: api_broker,
        model_name: manifest.name.clone(),
        embedding_dim: manifest.embedding_dim,
        queries: Some(queries),
        health,
        metrics: registry,
        uploads: imgidx_api::Uploads { objects, limits: settings.ingest.clone() },
    };
    let (api, s) = (settings.api.clone(), shutdown.clone());
    tasks.spawn(async move { imgidx_api::serve(&api, deps, listener, s).await.map_err(anyhow::Error::from) });

    let (j, s, keep) = (jobs.clone(), shutdown.clone(), retention::Retention::from_settings(&settings));
    tasks.spawn(async move {
        retention::run_periodic(j, keep, s).await;
        Ok(())
    });
    match queue {
        Queue::Memory(_) => {
            let (j, b, s) = (jobs.clone(), agg_broker.clone(), shutdown.clone());
            tasks.spawn(async move { requeue_unfinished(j, b, s).await });
        }
        Queue::Rabbit => {
            let when = reconcile::Periodic::from_settings(&settings.jobs);
            let (j, b, s) = (jobs.clone(), agg_broker.clone(), shutdown.clone());
            tasks.spawn(async move {
                reconcile::run_periodic(j, b, when, s).await;
                Ok(())
            });
        }
    }

    // One role failing takes the others down: a half-running node would look healthy.
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        let outcome = done.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = outcome {
            tracing::error!(error = %e, "a role stopped; shutting down");
            shutdown.cancel();
            aggregator_shutdown.cancel();
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    for b in brokers {
        b.close().await;
    }
    result
}

/// The in-process queue starts empty: queue every pending item of an unfinished job again.
async fn requeue_unfinished(jobs: Arc<dyn JobStore>, broker: Arc<dyn Broker>, shutdown: Shutdown) -> anyhow::Result<()> {
    let n = match reconcile::requeue_stale(jobs.as_ref(), broker.as_ref(), Utc::now(), &shutdown).await {
        Ok(n) => n,
        // Stopping before all was queued loses nothing: it stays pending for the next start.
        Err(_) if shutdown.is_cancelled() => return Ok(()),
        Err(e) => return Err(anyhow::Error::from(e).context("queueing the unfinished work of earlier runs")),
    };
    if n > 0 {
        tracing::info!(requeued = n, "queued the unfinished items of earlier runs again");
    }
    Ok(())
}

/// One `serve` per data directory: the embedded index and the in-process queue's
/// recovery assume they are alone. The lock goes with the process, however it ends.
fn lock_data_dir(settings: &Settings) -> anyhow::Result<File> {
    let path = settings.data_dir.join("serve.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another imgidx serve is already using the data directory {} (stop it, or pass another --data-dir)",
            settings.data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}
