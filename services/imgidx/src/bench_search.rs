//! `imgidx bench search`: the embedded store's search cost as collections grow. For each
//! size it fills a scratch collection with synthetic unit vectors, clustered as image
//! embeddings are (not uniform), and measures in one run: search p50/p99 comparing with
//! every vector (exact) and through the HNSW index, recall@k of the indexed search against
//! the exact one, the index build time, and memory and disk per million vectors; with
//! `--quantization int8` also for a scalar-quantized collection.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use uuid::Uuid;

use imgidx_shared::config::{Quantization, Settings};
use imgidx_shared::vectors::{EdgeStore, EdgeTuning, ImagePayload, Point, SearchFilter, VectorStore};

/// Points per upsert while filling.
const FILL_CHUNK: usize = 5_000;
/// Segments of at least this many points get an HNSW index.
const INDEX_FROM: usize = 1_000;

pub struct SearchBenchArgs {
    pub sizes: Vec<usize>,
    pub dim: usize,
    pub queries: usize,
    pub top_k: usize,
    pub clusters: usize,
    pub quantization: Vec<Quantization>,
    /// Beam widths to search the index with (`vectors.hnsw_ef`, by size when 0, when empty).
    pub efs: Vec<usize>,
    /// Where the scratch collections go (removed after); a temporary directory when unset.
    pub dir: Option<PathBuf>,
    pub report: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct SearchBenchReport {
    pub dim: usize,
    pub queries: usize,
    pub top_k: usize,
    pub clusters: usize,
    pub hnsw_m: usize,
    pub hnsw_ef_construct: usize,
    pub hnsw_ef: usize,
    pub index_threads: usize,
    pub runs: Vec<SearchRun>,
}

#[derive(Debug, Serialize)]
pub struct SearchRun {
    pub vectors: usize,
    pub quantization: &'static str,
    pub fill_seconds: f64,
    pub index_seconds: f64,
    pub exact_p50_ms: f64,
    pub exact_p99_ms: f64,
    /// The index searched with each beam width.
    pub indexed: Vec<IndexedSearch>,
    /// Growth of this process's resident memory while filling and indexing, per million vectors.
    pub memory_mib_per_million: f64,
    /// The collection's directory once reopened (which compacts its WAL), per million vectors.
    pub disk_mib_per_million: f64,
    /// The same before the reopen, with the WAL of the whole fill.
    pub disk_mib_per_million_before_compaction: f64,
}

pub async fn run(settings: &Settings, args: SearchBenchArgs) -> anyhow::Result<SearchBenchReport> {
    anyhow::ensure!(args.dim > 0 && args.queries > 0 && args.top_k > 0 && args.clusters > 0, "dim, queries, top-k and clusters must be positive");
    let base = EdgeTuning::from_settings(&settings.vectors);
    let mut runs = Vec::new();
    for &size in &args.sizes {
        for &quantization in &args.quantization {
            // Every segment indexed, and built when this bench says (not in the background).
            let tuning = EdgeTuning { index_threshold: INDEX_FROM, background: false, quantization, ..base.clone() };
            let run = one_run(&args, size, tuning).await.with_context(|| format!("{size} vectors"))?;
            print_run(&run);
            runs.push(run);
        }
    }
    let report = SearchBenchReport {
        dim: args.dim,
        queries: args.queries,
        top_k: args.top_k,
        clusters: args.clusters,
        hnsw_m: base.hnsw_m,
        hnsw_ef_construct: base.hnsw_ef_construct,
        hnsw_ef: base.hnsw_ef,
        index_threads: base.index_threads,
        runs,
    };
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

async fn one_run(args: &SearchBenchArgs, size: usize, tuning: EdgeTuning) -> anyhow::Result<SearchRun> {
    let scratch = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let quantization = match tuning.quantization {
        Quantization::None => "none",
        Quantization::Int8 => "int8",
    };
    let rss_before = resident_bytes();
    let path = scratch.path().join("vectors");
    let store = EdgeStore::open_tuned(&path, tuning.clone())?;
    store.ensure_collection(args.dim).await?;
    let mut data = Clustered::new(args.dim, args.clusters, 42);
    let started = Instant::now();
    let mut filled = 0;
    while filled < size {
        let n = FILL_CHUNK.min(size - filled);
        let points = (filled..filled + n).map(|i| point(i, data.next())).collect();
        store.upsert(points).await?;
        filled += n;
    }
    let fill_seconds = started.elapsed().as_secs_f64();
    // Queries: new vectors from the same clusters, as a query is not one of the images.
    let queries: Vec<Vec<f32>> = (0..args.queries).map(|_| data.next()).collect();
    let filter = SearchFilter::default();
    let mut exact_times = Vec::with_capacity(queries.len());
    let mut exact_ids = Vec::with_capacity(queries.len());
    for q in &queries {
        let t = Instant::now();
        let hits = store.search_exact(q, args.top_k, &filter).await?;
        exact_times.push(t.elapsed());
        exact_ids.push(hits.into_iter().map(|h| h.id).collect::<Vec<_>>());
    }
    let started = Instant::now();
    let building = store.clone();
    tokio::task::spawn_blocking(move || building.index_now()).await??;
    let index_seconds = started.elapsed().as_secs_f64();
    let (exact_p50, exact_p99) = (percentile(&mut exact_times, 0.50), percentile(&mut exact_times, 0.99));
    let efs = if args.efs.is_empty() { vec![tuning.ef_for(size)] } else { args.efs.clone() };
    let mut indexed = Vec::with_capacity(efs.len());
    for ef in efs {
        let mut times = Vec::with_capacity(queries.len());
        let mut recall = 0.0;
        for (q, truth) in queries.iter().zip(&exact_ids) {
            let t = Instant::now();
            let hits = store.search_with_ef(q, args.top_k, &filter, ef).await?;
            times.push(t.elapsed());
            let found = hits.iter().filter(|h| truth.contains(&h.id)).count();
            recall += found as f64 / truth.len().max(1) as f64;
        }
        let (p50, p99) = (percentile(&mut times, 0.50), percentile(&mut times, 0.99));
        indexed.push(IndexedSearch {
            hnsw_ef: ef,
            p50_ms: p50,
            p99_ms: p99,
            speedup_p50: exact_p50 / p50.max(1e-6),
            recall_at_k: recall / queries.len() as f64,
        });
    }
    let per_million = 1e6 / size as f64 / (1024.0 * 1024.0);
    let memory = resident_bytes().saturating_sub(rss_before) as f64 * per_million;
    let disk_before = store.size_bytes().await? as f64 * per_million;
    drop(store);
    let reopened = EdgeStore::open_tuned(&path, tuning)?;
    let disk = reopened.size_bytes().await? as f64 * per_million;
    Ok(SearchRun {
        vectors: size,
        quantization,
        fill_seconds,
        index_seconds,
        exact_p50_ms: exact_p50,
        exact_p99_ms: exact_p99,
        indexed,
        memory_mib_per_million: memory,
        disk_mib_per_million: disk,
        disk_mib_per_million_before_compaction: disk_before,
    })
}

fn print_run(r: &SearchRun) {
    println!(
        "{:>9} vectors, quantization {:<4}: exact p50 {:.2} ms p99 {:.2} ms | index build {:.1} s, fill {:.1} s | \
         {:.0} MiB RAM, {:.0} MiB disk ({:.0} before WAL compaction) per million",
        r.vectors,
        r.quantization,
        r.exact_p50_ms,
        r.exact_p99_ms,
        r.index_seconds,
        r.fill_seconds,
        r.memory_mib_per_million,
        r.disk_mib_per_million,
        r.disk_mib_per_million_before_compaction
    );
    for i in &r.indexed {
        println!(
            "{:>9}   indexed, hnsw_ef {:>4}: p50 {:.2} ms p99 {:.2} ms ({:.1}x exact) | recall@k {:.3}",
            "", i.hnsw_ef, i.p50_ms, i.p99_ms, i.speedup_p50, i.recall_at_k
        );
    }
}

#[derive(Debug, Serialize)]
pub struct IndexedSearch {
    pub hnsw_ef: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// exact p50 / indexed p50.
    pub speedup_p50: f64,
    /// Mean share of the exact top k the indexed search also returns.
    pub recall_at_k: f64,
}

/// Unit vectors around `clusters` random centres, each cluster as tight as CLIP image
/// embeddings of one subject tend to be (cosine to its centre about 0.8).
struct Clustered {
    centres: Vec<Vec<f32>>,
    noise: f32,
    rng: StdRng,
}

impl Clustered {
    fn new(dim: usize, clusters: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let centres = (0..clusters).map(|_| unit((0..dim).map(|_| gaussian(&mut rng)).collect())).collect();
        // Noise of total length 0.75 against a unit centre: cosine ≈ 1 / sqrt(1 + 0.75²) = 0.8.
        Self { centres, noise: 0.75 / (dim as f32).sqrt(), rng }
    }

    fn next(&mut self) -> Vec<f32> {
        let c = self.rng.random_range(0..self.centres.len());
        let noise = self.noise;
        let v = self.centres[c].iter().map(|x| x + noise * gaussian(&mut self.rng)).collect();
        unit(v)
    }
}

/// A standard normal sample (Box-Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn point(i: usize, vector: Vec<f32>) -> Point {
    let path = format!("/bench/{i}.jpg");
    Point {
        id: Uuid::new_v5(&Uuid::NAMESPACE_URL, path.as_bytes()),
        vector,
        payload: ImagePayload {
            file_name: format!("{i}.jpg"),
            path,
            size: 0,
            mtime: "2026-01-01T00:00:00Z".into(),
            mtime_ns: 0,
            width: 640,
            height: 480,
            format: "jpeg".into(),
            model: "bench".into(),
            indexed_at: "2026-01-01T00:00:00Z".into(),
            job_id: "bench".into(),
            sha256: String::new(),
            object_key: String::new(),
            tags: Vec::new(),
        },
    }
}

/// Milliseconds at quantile `q` (nearest rank).
pub(crate) fn percentile(times: &mut [Duration], q: f64) -> f64 {
    times.sort_unstable();
    let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len().max(1)) - 1;
    times.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// This process's resident memory (Linux `/proc/self/statm`); 0 elsewhere.
fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .unwrap_or(0);
    pages * 4096
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn clusters_are_tight_and_apart() {
        let mut data = Clustered::new(512, 4, 1);
        let v = data.next();
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
        let best = data.centres.iter().map(|c| c.iter().zip(&v).map(|(a, b)| a * b).sum::<f32>()).fold(f32::MIN, f32::max);
        assert!((0.7..0.9).contains(&best), "cosine to its centre {best}");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut t: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut t, 0.5), 50.0);
        assert_eq!(percentile(&mut t, 0.99), 99.0);
    }
}
