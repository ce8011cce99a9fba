//! `imgidx bench`: one run, three rates, so their ratios are honest:
//! decode+preprocess images/s (on the worker's CPU pool size), bare model images/s
//! at the configured batch size, and the whole worker pipeline images/s (in-process
//! broker with RabbitMQ's semantics, embedded Qdrant Edge, real files).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use serde::Serialize;

use imgidx_shared::broker::{Broker, MemoryBroker};
use imgidx_shared::config::Settings;
use imgidx_shared::embed::{DecodeBudget, Preprocessor, VisionEncoder};
use imgidx_shared::jobs::{JobStore, SqliteJobStore};
use imgidx_shared::messages::{ImageTask, Priority};
use imgidx_shared::shutdown::Shutdown;
use imgidx_shared::vectors::{Collections, EdgeStore, VectorStore};
use imgidx_worker::metrics::WorkerMetrics;
use imgidx_worker::WorkerDeps;

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub image_size: u32,
    pub batch_size: usize,
    pub decode_threads: usize,
    pub images: usize,
    pub decode_images_per_s: f64,
    pub model_images_per_s: f64,
    pub pipeline_images_per_s: f64,
    /// min(decode, model): the bound when decoding and inference run on separate resources (GPU).
    pub bound_overlapped: f64,
    /// 1/(1/decode + 1/model): the bound when both share the same CPU cores (CPU execution provider).
    pub bound_shared_cpu: f64,
    pub pipeline_vs_overlapped: f64,
    pub pipeline_vs_shared_cpu: f64,
    /// Where the pipeline's time went, per worker stage (the `imgidx_worker_stage_seconds`
    /// histogram's sums): per image for read and decode, per batch for the rest.
    pub stages: Vec<StageBreakdown>,
}

#[derive(Debug, Serialize)]
pub struct StageBreakdown {
    pub stage: &'static str,
    pub count: u64,
    pub seconds: f64,
    /// Milliseconds per image or per batch.
    pub mean_ms: f64,
}

pub struct BenchArgs {
    pub images_dir: PathBuf,
    pub count: usize,
    pub report: Option<PathBuf>,
}

pub async fn run(settings: &Settings, args: BenchArgs) -> anyhow::Result<BenchReport> {
    let files = image_files(&args.images_dir)?;
    let model = settings.model.clone();
    let encoder = Arc::new(tokio::task::spawn_blocking(move || VisionEncoder::load(&model.dir, &model)).await??);
    let m = encoder.manifest().clone();
    let w = &settings.worker;
    let threads = match w.decode_threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    let pre = Preprocessor::new(m.image_size, m.mean, m.std, w.max_image_pixels, w.max_file_bytes);
    let count = args.count.max(w.batch_size);
    eprintln!("bench: {} ({}px), batch {}, {} decode threads, {count} images from {} files", m.name, m.image_size, w.batch_size, threads, files.len());

    let decode = decode_rate(&pre, &files, count, threads)?;
    eprintln!("bench: decode+preprocess {decode:.1} images/s");
    let model_rate = model_rate(&encoder, &pre, &files, w.batch_size, count)?;
    eprintln!("bench: model {model_rate:.1} images/s");
    let stage_metrics = WorkerMetrics::default();
    let pipeline = pipeline_rate(settings, encoder.clone(), &files, count, &stage_metrics).await?;
    eprintln!("bench: pipeline {pipeline:.1} images/s");

    let bound_overlapped = decode.min(model_rate);
    let bound_shared_cpu = 1.0 / (1.0 / decode + 1.0 / model_rate);
    let report = BenchReport {
        model: m.name.clone(),
        image_size: m.image_size,
        batch_size: w.batch_size,
        decode_threads: threads,
        images: count,
        decode_images_per_s: decode,
        model_images_per_s: model_rate,
        pipeline_images_per_s: pipeline,
        bound_overlapped,
        bound_shared_cpu,
        pipeline_vs_overlapped: pipeline / bound_overlapped,
        pipeline_vs_shared_cpu: pipeline / bound_shared_cpu,
        stages: stage_metrics
            .totals()
            .into_iter()
            .map(|t| StageBreakdown {
                stage: t.stage.name(),
                count: t.count,
                seconds: t.seconds,
                mean_ms: if t.count == 0 { 0.0 } else { t.seconds * 1000.0 / t.count as f64 },
            })
            .collect(),
    };
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?).with_context(|| path.display().to_string())?;
    }
    Ok(report)
}

fn image_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    // Canonical, as the worker reads only canonical paths (the API resolves them).
    let dir = &dir.canonicalize().with_context(|| dir.display().to_string())?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            ["jpg", "jpeg", "png", "gif", "webp", "bmp"].contains(&ext.as_str())
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no images in {}", dir.display());
    }
    Ok(files)
}

/// Preprocess `count` images on `threads` threads, each taking every `threads`-th file.
fn decode_rate(pre: &Preprocessor, files: &[PathBuf], count: usize, threads: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    let failures: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..count).step_by(threads).filter(|i| pre.load_path(&files[i % files.len()]).is_err()).count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(count)).sum()
    });
    if failures > 0 {
        bail!("{failures} images failed to decode");
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

/// Embed full batches of real preprocessed images (one warm-up batch first).
fn model_rate(encoder: &VisionEncoder, pre: &Preprocessor, files: &[PathBuf], batch: usize, count: usize) -> anyhow::Result<f64> {
    let mut pixels = Vec::new();
    for i in 0..batch {
        pixels.extend_from_slice(&pre.load_path(&files[i % files.len()])?.tensor);
    }
    encoder.embed(&pixels, batch)?;
    let batches = count.div_ceil(batch);
    let start = Instant::now();
    for _ in 0..batches {
        encoder.embed(&pixels, batch)?;
    }
    Ok((batches * batch) as f64 / start.elapsed().as_secs_f64())
}

/// The real worker, fed `count` tasks, timed until the last completion event.
async fn pipeline_rate(
    settings: &Settings,
    encoder: Arc<VisionEncoder>,
    files: &[PathBuf],
    count: usize,
    stages: &WorkerMetrics,
) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let vectors: Arc<dyn VectorStore> = Arc::new(EdgeStore::open(dir.path())?);
    vectors.ensure_collection(encoder.manifest().embedding_dim).await?;
    let limit = u32::MAX;
    let broker = MemoryBroker::new(count * 2 + 16, settings.broker.prefetch, settings.broker.event_prefetch, limit);
    let tasks: Vec<ImageTask> = (0..count)
        .map(|i| {
            let path = files[i % files.len()].to_string_lossy().into_owned();
            ImageTask { job_id: "bench".into(), point_id: uuid::Uuid::new_v4(), path, stamp: None, request_id: None, collection: None }
        })
        .collect();
    broker.publish_tasks(Priority::Normal, &tasks).await?;
    let mut events = broker.consume_events("bench").await?;
    let budget = DecodeBudget::from_settings(&settings.worker);
    // The tasks belong to no job, so the job store only answers that (as it would in use, one round trip a batch).
    let jobs: Arc<dyn JobStore> = Arc::new(SqliteJobStore::open(&dir.path().join("jobs.sqlite3"))?);
    let deps = WorkerDeps {
        broker: Arc::new(broker.clone()),
        collections: Arc::new(Collections::single("bench", vectors)),
        initial_collection: "bench".into(),
        jobs,
        encoder,
        budget,
        isolation: Default::default(),
        health: Default::default(),
        metrics: stages.clone(),
    };
    let shutdown = Shutdown::new();
    let (s, mut w, p) = (shutdown.clone(), settings.worker.clone(), settings.broker.prefetch);
    // The tasks cycle through the files: reusing their vectors would time the cache, not the pipeline.
    w.reuse_vectors = false;
    let start = Instant::now();
    let worker = tokio::spawn(async move { imgidx_worker::serve(&w, p, deps, "bench", s).await });
    let mut seen = 0;
    while seen < count {
        let delivery = tokio::time::timeout(Duration::from_secs(600), events.next())
            .await
            .context("pipeline stalled")?
            .context("event stream ended")??;
        delivery.ack().await?;
        seen += 1;
    }
    let elapsed = start.elapsed();
    shutdown.cancel();
    let report = worker.await??;
    if report.failed > 0 {
        bail!("{} images failed in the pipeline", report.failed);
    }
    Ok(count as f64 / elapsed.as_secs_f64())
}

pub fn print(r: &BenchReport) {
    println!("model {} ({}px), batch {}, {} decode threads, {} images", r.model, r.image_size, r.batch_size, r.decode_threads, r.images);
    println!("{:<28}{:>12}", "decode+preprocess", format!("{:.1}/s", r.decode_images_per_s));
    println!("{:<28}{:>12}", "model (bare)", format!("{:.1}/s", r.model_images_per_s));
    println!("{:<28}{:>12}", "pipeline (end to end)", format!("{:.1}/s", r.pipeline_images_per_s));
    println!("pipeline / min(decode, model)        = {:.2}", r.pipeline_vs_overlapped);
    println!("pipeline / shared-CPU bound 1/(1/d+1/m) = {:.2}", r.pipeline_vs_shared_cpu);
    println!("pipeline time by worker stage (read, decode: per image on the decode pool; the rest per batch):");
    for s in &r.stages {
        println!("  {:<16}{:>8} x {:>9.2} ms = {:>8.2} s", s.stage, s.count, s.mean_ms, s.seconds);
    }
}
