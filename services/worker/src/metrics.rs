//! What a worker measures, per stage, so the bottleneck can be read off a dashboard
//! (see docs/operations.md): per image, reading the file and decoding+preprocessing it;
//! per batch, how long inference waited for the batch from stage 1, inference, the
//! upsert, and publishing the events plus the acks; and how full batches are.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use imgidx_shared::metrics::{ratio_histogram, seconds_histogram, MetricsRegistry};

type StageLabel = [(&'static str, &'static str); 1];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// One file read (stage 1, on the decode pool).
    Read,
    /// One image decoded and preprocessed (stage 1, on the decode pool).
    Decode,
    /// Inference idle, waiting for stage 1 to hand over the next batch.
    WaitForBatch,
    /// One batch through the model.
    Inference,
    /// One batch upserted durably.
    Upsert,
    /// One batch's completion events published and its tasks acked.
    PublishAck,
}

impl Stage {
    pub const ALL: [Stage; 6] =
        [Stage::Read, Stage::Decode, Stage::WaitForBatch, Stage::Inference, Stage::Upsert, Stage::PublishAck];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Decode => "decode",
            Stage::WaitForBatch => "wait_for_batch",
            Stage::Inference => "inference",
            Stage::Upsert => "upsert",
            Stage::PublishAck => "publish_ack",
        }
    }

    fn label(self) -> StageLabel {
        [("stage", self.name())]
    }
}

/// One stage's time so far (what `imgidx bench` prints).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageTotal {
    pub stage: Stage,
    /// Images (read, decode) or batches (the rest) measured.
    pub count: u64,
    pub seconds: f64,
}

/// Shared by every pipeline of the process; cheap to clone.
#[derive(Clone)]
pub struct WorkerMetrics {
    stages: Family<StageLabel, Histogram, fn() -> Histogram>,
    batch_fill: Histogram,
    /// Per stage (in `Stage::ALL` order): count and nanoseconds, for [`totals`](Self::totals).
    totals: Arc<[(AtomicU64, AtomicU64); 6]>,
}

impl Default for WorkerMetrics {
    /// Registered nowhere: measured, never shown.
    fn default() -> Self {
        Self {
            stages: Family::new_with_constructor(seconds_histogram),
            batch_fill: ratio_histogram(),
            totals: Arc::new(Default::default()),
        }
    }
}

impl WorkerMetrics {
    pub fn new(registry: &MetricsRegistry) -> Self {
        let m = Self::default();
        // Every stage shows from the start, at zero: a dashboard needs no data to draw it.
        for stage in Stage::ALL {
            drop(m.stages.get_or_create(&stage.label()));
        }
        registry.register(
            "worker_stage_seconds",
            "Time per worker stage: read and decode per image, the rest per batch.",
            m.stages.clone(),
        );
        registry.register(
            "worker_batch_fill_ratio",
            "Tasks per batch over worker.batch_size, as the batch is taken from the queue.",
            m.batch_fill.clone(),
        );
        m
    }

    pub fn observe(&self, stage: Stage, took: Duration) {
        self.stages.get_or_create(&stage.label()).observe(took.as_secs_f64());
        let (count, nanos) = &self.totals[stage as usize];
        count.fetch_add(1, Ordering::Relaxed);
        nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Every stage's time so far.
    pub fn totals(&self) -> Vec<StageTotal> {
        Stage::ALL
            .iter()
            .map(|&stage| {
                let (count, nanos) = &self.totals[stage as usize];
                let seconds = nanos.load(Ordering::Relaxed) as f64 / 1e9;
                StageTotal { stage, count: count.load(Ordering::Relaxed), seconds }
            })
            .collect()
    }

    /// Runs `f`, counting its time under `stage`.
    pub fn time<T>(&self, stage: Stage, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        self.observe(stage, started.elapsed());
        out
    }

    pub fn batch_taken(&self, tasks: usize, batch_size: usize) {
        self.batch_fill.observe(tasks as f64 / batch_size.max(1) as f64);
    }
}
