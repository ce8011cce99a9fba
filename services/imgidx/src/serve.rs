//! `imgidx serve`: API, workers and aggregator in one process, sharing one vector
//! store (the embedded index can only be opened by one process) and one encoder.

use std::sync::Arc;

use imgidx_api::ApiDeps;
use imgidx_shared::config::Settings;
use imgidx_shared::embed::VisionEncoder;
use imgidx_shared::service;
use imgidx_shared::shutdown::Shutdown;
use imgidx_shared::vectors;
use imgidx_worker::WorkerDeps;

pub async fn run(settings: Settings, workers: usize, shutdown: Shutdown) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&settings.api.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.api.listen))?;
    let model = settings.model.clone();
    let encoder = Arc::new(tokio::task::spawn_blocking(move || VisionEncoder::load(&model.dir, &model)).await??);
    let manifest = encoder.manifest().clone();
    let jobs = service::job_store(&settings).await?;
    let vectors = vectors::open(&settings, manifest.embedding_dim).await?;
    let node = settings.node_name();

    let mut tasks = tokio::task::JoinSet::new();
    let mut brokers = Vec::new();
    for i in 0..workers.max(1) {
        let broker = service::broker(&settings, &format!("worker-{i}")).await?;
        brokers.push(broker.clone());
        let deps = WorkerDeps { broker, vectors: vectors.clone(), encoder: encoder.clone() };
        let (w, prefetch, s) = (settings.worker.clone(), settings.broker.prefetch, shutdown.clone());
        let tag = format!("{node}.worker-{}-{i}", std::process::id());
        tasks.spawn(async move { imgidx_worker::serve(&w, prefetch, deps, &tag, s).await.map(|_| ()) });
    }
    let agg_broker = service::broker(&settings, "aggregator").await?;
    brokers.push(agg_broker.clone());
    let agg = imgidx_aggregator::AggregatorDeps { broker: agg_broker, jobs: jobs.clone() };
    let (a, s) = (settings.aggregator.clone(), shutdown.clone());
    let tag = format!("{node}.aggregator-{}", std::process::id());
    tasks.spawn(async move { imgidx_aggregator::serve(&a, agg, &tag, s).await });

    let api_broker = service::broker(&settings, "api").await?;
    brokers.push(api_broker.clone());
    let deps = ApiDeps {
        jobs,
        vectors,
        broker: api_broker,
        model_name: manifest.name.clone(),
        embedding_dim: manifest.embedding_dim,
    };
    let (api, s) = (settings.api.clone(), shutdown.clone());
    tasks.spawn(async move { imgidx_api::serve(&api, deps, listener, s).await });

    // One role failing takes the others down: a half-running node would look healthy.
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        let outcome = done.map_err(anyhow::Error::from).and_then(|r| r.map_err(anyhow::Error::from));
        if let Err(e) = outcome {
            tracing::error!(error = %e, "a role stopped; shutting down");
            shutdown.cancel();
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
