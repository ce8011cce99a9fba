//! What the aggregator measures: images finished (each once, as the job store counts
//! them), failures by reason, events applied, and how long events took from the
//! worker's finish to being applied (the lag a dashboard watches for a backlog).

use chrono::Utc;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use imgidx_shared::messages::{CompletionEvent, Outcome};
use imgidx_shared::metrics::{seconds_histogram, MetricsRegistry};

type ReasonLabel = [(&'static str, &'static str); 1];

#[derive(Clone)]
pub struct AggregatorMetrics {
    indexed: Counter,
    failed: Family<ReasonLabel, Counter>,
    applied: Counter,
    lag: Histogram,
}

impl Default for AggregatorMetrics {
    /// Registered nowhere: counted, never shown.
    fn default() -> Self {
        Self { indexed: Counter::default(), failed: Family::default(), applied: Counter::default(), lag: seconds_histogram() }
    }
}

impl AggregatorMetrics {
    pub fn new(registry: &MetricsRegistry) -> Self {
        let m = Self::default();
        registry.register("images_indexed", "Images indexed (each counted once, when its event is applied).", m.indexed.clone());
        registry.register("images_failed", "Images that failed, by reason.", m.failed.clone());
        registry.register("events_applied", "Completion events applied to the job store (duplicates included).", m.applied.clone());
        registry.register(
            "event_lag_seconds",
            "From a worker finishing an image to its event being applied.",
            m.lag.clone(),
        );
        m
    }

    /// Counts what one applied batch did: `events` as received, `finished` those that
    /// finished an item (see `finished_events`).
    pub fn applied(&self, events: &[CompletionEvent], finished: &[&CompletionEvent]) {
        self.applied.inc_by(events.len() as u64);
        let now_ms = Utc::now().timestamp_millis();
        for at in events.iter().filter_map(|e| e.finished_at_ms) {
            self.lag.observe((now_ms - at).max(0) as f64 / 1000.0);
        }
        for e in finished {
            match &e.outcome {
                Outcome::Indexed => self.indexed.inc(),
                Outcome::Failed { kind, .. } => self.failed.get_or_create(&[("reason", kind.as_str())]).inc(),
            };
        }
    }
}
