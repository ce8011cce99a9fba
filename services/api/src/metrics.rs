//! What the API measures: requests by route, method and status with their latency
//! (`http/metrics.rs` records them), and, read at each scrape, jobs by state and the
//! broker's queues (`routes/metrics.rs`).

use std::sync::atomic::AtomicI64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use imgidx_shared::metrics::{seconds_histogram, MetricsRegistry};

type RequestLabels = [(&'static str, String); 3];
type RouteLabel = [(&'static str, String); 1];
type OneLabel = [(&'static str, &'static str); 1];

#[derive(Clone)]
pub struct ApiMetrics {
    pub registry: MetricsRegistry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
    pub jobs: Family<OneLabel, Gauge<i64, AtomicI64>>,
    pub queue_messages: Family<OneLabel, Gauge<i64, AtomicI64>>,
    pub queue_consumers: Family<OneLabel, Gauge<i64, AtomicI64>>,
}

impl ApiMetrics {
    pub fn new(registry: MetricsRegistry) -> Self {
        let m = Self {
            registry,
            requests: Family::default(),
            latency: Family::new_with_constructor(seconds_histogram),
            jobs: Family::default(),
            queue_messages: Family::default(),
            queue_consumers: Family::default(),
        };
        m.registry.register("http_requests", "HTTP requests answered, by route template, method and status.", m.requests.clone());
        m.registry.register("http_request_duration_seconds", "Time to answer an HTTP request (to its headers), by route.", m.latency.clone());
        m.registry.register("jobs", "Jobs in the job store, by status (read at scrape).", m.jobs.clone());
        m.registry.register("queue_messages", "Messages ready in each broker queue (read at scrape).", m.queue_messages.clone());
        m.registry.register(
            "queue_consumers",
            "Consumers on each broker queue (read at scrape; RabbitMQ only).",
            m.queue_consumers.clone(),
        );
        m
    }

    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests.get_or_create(&[("route", route.to_string()), ("method", method.to_string()), ("status", status.to_string())]).inc();
        self.latency.get_or_create(&[("route", route.to_string())]).observe(seconds);
    }
}
