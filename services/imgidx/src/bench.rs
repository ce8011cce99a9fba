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
use imgidx_shared::embed::{
    turbojpeg_available, BatchProbe, DecodeBudget, Models, PreprocessMode, Preprocessor, VisionEncoder,
};
use imgidx_shared::jobs::{JobStore, SqliteJobStore};
use imgidx_shared::objects::Objects;
use imgidx_shared::messages::{ImageTask, Priority};
use imgidx_shared::shutdown::Shutdown;
use imgidx_shared::vectors::{Collections, EdgeStore, VectorStore};
use imgidx_worker::metrics::WorkerMetrics;
use imgidx_worker::{WorkerDeps, WorkerModel};

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub image_size: u32,
    /// The CUDA device the model ran on; None on CPU.
    pub device: Option<i32>,
    pub batch_size: usize,
    /// How the batch size was chosen from device memory (CUDA with `worker.auto_batch_size`).
    pub batch_probe: Option<BatchProbe>,
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
    /// The pipeline again over the same files, every one now a copy of an indexed image
    /// (content-hash reuse: read and hash, no decode, no inference).
    pub reuse_images_per_s: f64,
    pub reuse_vs_pipeline: f64,
    /// One reuse lookup of bytes nothing indexed has (what every new image pays), in µs,
    /// and as a share of the pipeline's time per image.
    pub reuse_miss_lookup_us: f64,
    pub reuse_miss_vs_pipeline_per_image: f64,
    /// Where the pipeline's time went, per worker stage (the `imgidx_worker_stage_seconds`
    /// histogram's sums): per image for read and decode, per batch for the rest.
    pub stages: Vec<StageBreakdown>,
    /// The preprocess mode the pipeline ran (`worker.preprocess`).
    pub preprocess: PreprocessMode,
    /// `exact` against `fast` preprocessing on the same files.
    pub fast_vs_exact: PreprocessComparison,
}

/// Decode+preprocess rates of both modes on 1 thread and on the decode pool, and how
/// close `fast` stays to `exact` where it matters: the embeddings.
#[derive(Debug, Serialize)]
pub struct PreprocessComparison {
    /// Why fast mode had no libturbojpeg (it then decodes JPEG as exact does); None: it had.
    pub turbojpeg_missing: Option<String>,
    pub exact_1_thread: f64,
    pub fast_1_thread: f64,
    /// fast / exact on one thread: the speed-up per core.
    pub speedup_per_core: f64,
    pub exact_pool: f64,
    pub fast_pool: f64,
    pub speedup_pool: f64,
    /// Pool rate / 1-thread rate, per mode (linear scaling: the pool's thread count).
    pub exact_scaling: f64,
    pub fast_scaling: f64,
    /// Files whose embeddings were compared, and the cosine of fast's to exact's.
    pub compared: usize,
    pub mean_cosine: f64,
    pub min_cosine: f64,
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
    let model = settings.model.on_device(settings.model.devices().first().copied().flatten());
    let encoder = Arc::new(tokio::task::spawn_blocking(move || VisionEncoder::load(&model.dir, &model)).await??);
    let m = encoder.manifest().clone();
    // The batch size the worker would run at on this device (probed on CUDA).
    let (sized, batch_probe) = imgidx_worker::devices::sized(encoder.clone(), &settings.worker).await;
    let settings = &Settings { worker: sized, ..settings.clone() };
    let w = &settings.worker;
    let threads = match w.decode_threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    let exact = Preprocessor::new(m.image_size, m.mean, m.std, w.max_image_pixels, w.max_file_bytes);
    let fast = exact.clone().with_mode(PreprocessMode::Fast);
    let pre = exact.clone().with_mode(w.preprocess);
    let count = args.count.max(w.batch_size);
    eprintln!("bench: {} ({}px), batch {}, {} decode threads, {count} images from {} files", m.name, m.image_size, w.batch_size, threads, files.len());

    let decode = decode_rate(&pre, &files, count, threads)?;
    eprintln!("bench: decode+preprocess {decode:.1} images/s");
    let model_rate = model_rate(&encoder, &pre, &files, w.batch_size, count)?;
    eprintln!("bench: model {model_rate:.1} images/s");
    let stage_metrics = WorkerMetrics::default();
    let dir = tempfile::tempdir()?;
    let vectors: Arc<dyn VectorStore> = Arc::new(EdgeStore::open(&dir.path().join("vectors"))?);
    vectors.ensure_collection(m.embedding_dim).await?;
    let run = Pipeline { settings, encoder: encoder.clone(), files: &files, count, vectors: vectors.clone(), dir: dir.path() };
    let pipeline = run.rate(&stage_metrics, false).await?;
    eprintln!("bench: pipeline {pipeline:.1} images/s");
    // The same files again: each is now a copy of an indexed image.
    let reuse = run.rate(&WorkerMetrics::default(), true).await?;
    eprintln!("bench: pipeline over copies of indexed images {reuse:.1} images/s");
    let miss_us = miss_lookup_us(vectors.as_ref(), &m.name, MISS_LOOKUPS).await?;
    eprintln!("bench: reuse lookup of new bytes {miss_us:.1} µs");

    let fast_vs_exact = compare_modes(&encoder, &exact, &fast, &files, count, threads)?;
    let bound_overlapped = decode.min(model_rate);
    let bound_shared_cpu = 1.0 / (1.0 / decode + 1.0 / model_rate);
    let report = BenchReport {
        model: m.name.clone(),
        image_size: m.image_size,
        device: encoder.device(),
        batch_size: w.batch_size,
        batch_probe,
        decode_threads: threads,
        images: count,
        decode_images_per_s: decode,
        model_images_per_s: model_rate,
        pipeline_images_per_s: pipeline,
        bound_overlapped,
        bound_shared_cpu,
        pipeline_vs_overlapped: pipeline / bound_overlapped,
        pipeline_vs_shared_cpu: pipeline / bound_shared_cpu,
        reuse_images_per_s: reuse,
        reuse_vs_pipeline: reuse / pipeline,
        reuse_miss_lookup_us: miss_us,
        reuse_miss_vs_pipeline_per_image: miss_us / 1e6 * pipeline,
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
        preprocess: w.preprocess,
        fast_vs_exact,
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

/// Most files whose embeddings `compare_modes` compares.
const COMPARED_FILES: usize = 64;

fn compare_modes(
    encoder: &VisionEncoder,
    exact: &Preprocessor,
    fast: &Preprocessor,
    files: &[PathBuf],
    count: usize,
    threads: usize,
) -> anyhow::Result<PreprocessComparison> {
    let turbojpeg_missing = turbojpeg_available().err();
    // Modes in turn, so a busy machine slows both alike.
    let exact_1 = decode_rate(exact, files, count, 1)?;
    let fast_1 = decode_rate(fast, files, count, 1)?;
    let exact_pool = decode_rate(exact, files, count, threads)?;
    let fast_pool = decode_rate(fast, files, count, threads)?;
    eprintln!("bench: fast preprocess {fast_1:.1} vs exact {exact_1:.1} images/s on 1 thread, {fast_pool:.1} vs {exact_pool:.1} on {threads}");
    let mut cosines = Vec::new();
    for file in files.iter().take(COMPARED_FILES) {
        let a = encoder.embed(&exact.load_path(file)?.tensor, 1)?;
        let b = encoder.embed(&fast.load_path(file)?.tensor, 1)?;
        if let (Some(a), Some(b)) = (a.first(), b.first()) {
            cosines.push(cosine(a, b));
        }
    }
    let mean = cosines.iter().sum::<f64>() / cosines.len().max(1) as f64;
    let min = cosines.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(PreprocessComparison {
        turbojpeg_missing,
        exact_1_thread: exact_1,
        fast_1_thread: fast_1,
        speedup_per_core: fast_1 / exact_1,
        exact_pool,
        fast_pool,
        speedup_pool: fast_pool / exact_pool,
        exact_scaling: exact_pool / exact_1,
        fast_scaling: fast_pool / fast_1,
        compared: cosines.len(),
        mean_cosine: mean,
        min_cosine: min,
    })
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(f64::MIN_POSITIVE)
}

/// Embed full batches of real preprocessed images (one warm-up batch first), each staged
/// as the worker stages its batches (into pinned memory on CUDA).
fn model_rate(encoder: &VisionEncoder, pre: &Preprocessor, files: &[PathBuf], batch: usize, count: usize) -> anyhow::Result<f64> {
    let images: Vec<Vec<f32>> =
        (0..batch.min(files.len())).map(|i| pre.load_path(&files[i]).map(|p| p.tensor)).collect::<Result<_, _>>()?;
    let run = || -> anyhow::Result<()> {
        let mut staged = encoder.batch(batch)?;
        for i in 0..batch {
            staged.push(&images[i % images.len()])?;
        }
        encoder.embed_batch(staged)?;
        Ok(())
    };
    run()?;
    let batches = count.div_ceil(batch);
    let start = Instant::now();
    for _ in 0..batches {
        run()?;
    }
    Ok((batches * batch) as f64 / start.elapsed().as_secs_f64())
}

/// The real worker, fed `count` tasks, timed until the last completion event.
/// Lookups timed for the cost of a reuse miss.
const MISS_LOOKUPS: usize = 1000;

/// Mean time of one reuse lookup for bytes no point has.
async fn miss_lookup_us(vectors: &dyn VectorStore, model: &str, n: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    for i in 0..n {
        // Not a SHA-256 any file has: the all-hex index, padded.
        if vectors.reusable(&format!("{i:064x}"), model).await?.is_some() {
            bail!("a made-up content hash was found");
        }
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// The worker pipeline over `count` tasks cycling through `files`, into `vectors`.
struct Pipeline<'a> {
    settings: &'a Settings,
    encoder: Arc<VisionEncoder>,
    files: &'a [PathBuf],
    count: usize,
    vectors: Arc<dyn VectorStore>,
    /// Where its job store goes.
    dir: &'a Path,
}

impl Pipeline<'_> {
    /// Images per second, with content-hash reuse on or off.
    async fn rate(&self, stages: &WorkerMetrics, reuse: bool) -> anyhow::Result<f64> {
        let (settings, files, count) = (self.settings, self.files, self.count);
        pipeline_rate(settings, self.encoder.clone(), files, count, stages, self.vectors.clone(), self.dir, reuse).await
    }
}

#[allow(clippy::too_many_arguments)] // one call site, `Pipeline::rate`
async fn pipeline_rate(
    settings: &Settings,
    encoder: Arc<VisionEncoder>,
    files: &[PathBuf],
    count: usize,
    stages: &WorkerMetrics,
    vectors: Arc<dyn VectorStore>,
    dir: &Path,
    reuse: bool,
) -> anyhow::Result<f64> {
    let limit = u32::MAX;
    let broker = MemoryBroker::new(count * 2 + 16, settings.broker.prefetch, settings.broker.event_prefetch, limit);
    let tasks: Vec<ImageTask> = (0..count)
        .map(|i| {
            let path = files[i % files.len()].to_string_lossy().into_owned();
            ImageTask {
                job_id: "bench".into(),
                point_id: uuid::Uuid::new_v4(),
                path,
                stamp: None,
                request_id: None,
                collection: None,
                object_key: None,
            }
        })
        .collect();
    broker.publish_tasks(Priority::Normal, &tasks).await?;
    let mut events = broker.consume_events("bench").await?;
    let budget = DecodeBudget::from_settings(&settings.worker);
    let name = encoder.manifest().name.clone();
    // The tasks belong to no job, so the job store only answers that (as it would in use, one round trip a batch).
    let jobs: Arc<dyn JobStore> = Arc::new(SqliteJobStore::open(&dir.join("jobs.sqlite3"))?);
    let deps = WorkerDeps {
        broker: Arc::new(broker.clone()),
        collections: Arc::new(Collections::single("bench", vectors)),
        initial_collection: "bench".into(),
        jobs,
        // The pipeline's own cost: tagging adds one dot product per label and image.
        models: Arc::new(Models::only(&name, Arc::new(WorkerModel::new(encoder, None, &settings.worker, budget.clone())))),
        budget,
        decode_pool: imgidx_worker::decode_pool(&settings.worker),
        isolation: Default::default(),
        health: Default::default(),
        metrics: stages.clone(),
        objects: Objects::local(&dir.join("objects")).map_err(|e| anyhow::anyhow!(e.to_string()))?,
        fetch: settings.ingest.fetch_limits(),
    };
    let shutdown = Shutdown::new();
    let (s, mut w, p) = (shutdown.clone(), settings.worker.clone(), settings.broker.prefetch);
    // The tasks cycle through the files: with reuse on, repeats would time the cache.
    w.reuse_vectors = reuse;
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
    if let Some(p) = &r.batch_probe {
        println!(
            "batch size probed on CUDA device {}: {:.1} MiB per image, {} of {} MiB free, {} halvings",
            r.device.unwrap_or_default(),
            p.bytes_per_image as f64 / f64::from(1 << 20),
            p.free_bytes >> 20,
            p.total_bytes >> 20,
            p.halvings
        );
    }
    println!("{:<28}{:>12}", "decode+preprocess", format!("{:.1}/s", r.decode_images_per_s));
    println!("{:<28}{:>12}", "model (bare)", format!("{:.1}/s", r.model_images_per_s));
    println!("{:<28}{:>12}", "pipeline (end to end)", format!("{:.1}/s", r.pipeline_images_per_s));
    println!("pipeline / min(decode, model)        = {:.2}", r.pipeline_vs_overlapped);
    println!("pipeline / shared-CPU bound 1/(1/d+1/m) = {:.2}", r.pipeline_vs_shared_cpu);
    println!("{:<28}{:>12}   = {:.2} x pipeline", "pipeline, all copies", format!("{:.1}/s", r.reuse_images_per_s), r.reuse_vs_pipeline);
    println!(
        "{:<28}{:>12}   = {:.4} of the pipeline's time per image",
        "reuse lookup, new bytes",
        format!("{:.1} µs", r.reuse_miss_lookup_us),
        r.reuse_miss_vs_pipeline_per_image
    );
    let c = &r.fast_vs_exact;
    println!(
        "preprocess fast vs exact: {:.2}x per core ({:.1} vs {:.1}/s), {:.2}x on {} threads; scaling exact {:.2}, fast {:.2}; \
         embedding cosine mean {:.4}, min {:.4} over {} files{}",
        c.speedup_per_core,
        c.fast_1_thread,
        c.exact_1_thread,
        c.speedup_pool,
        r.decode_threads,
        c.exact_scaling,
        c.fast_scaling,
        c.mean_cosine,
        c.min_cosine,
        c.compared,
        c.turbojpeg_missing.as_ref().map(|w| format!(" (no libturbojpeg: {w})")).unwrap_or_default()
    );
    println!("pipeline time by worker stage (read, decode: per image on the decode pool; the rest per batch):");
    for s in &r.stages {
        println!("  {:<16}{:>8} x {:>9.2} ms = {:>8.2} s", s.stage, s.count, s.mean_ms, s.seconds);
    }
}
