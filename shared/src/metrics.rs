//! Prometheus metrics. One registry per process, built by whoever wires the process
//! and passed to each service (no global recorder): `imgidx serve` hands the same one
//! to all its roles, so its `/metrics` shows everything. The families themselves live
//! with the code they measure (`imgidx_worker::metrics`, …); this module holds the
//! registry, the text encoding, the shared bucket layouts, and the small endpoint the
//! worker and the aggregator serve on `metrics_listen`.

use std::sync::{Arc, Mutex, PoisonError};

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// What Prometheus expects of the text it scrapes (OpenMetrics 1.0, which it reads natively).
pub const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The process's registry; cheap to clone. A default one is registered nowhere else,
/// which is what tests and tools that expose no metrics use.
#[derive(Clone, Default)]
pub struct MetricsRegistry {
    inner: Arc<Mutex<Registry>>,
}

impl MetricsRegistry {
    /// Adds a metric (`name` without the `imgidx_` prefix, which is added; the encoder
    /// ends `help` with its own full stop).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.lock().register(format!("imgidx_{name}"), help.trim_end_matches('.'), metric);
    }

    /// Every registered metric, as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.lock());
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Durations from 1 ms to about 66 s, doubling: per-image stages, batches, requests.
pub fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Shares from 0.1 to 1 in tenths: how full batches are.
pub fn ratio_histogram() -> Histogram {
    Histogram::new((1..=10).map(|i| f64::from(i) / 10.0))
}

/// Serves `GET /metrics` on `listener` until `shutdown` (a worker's or aggregator's
/// `metrics_listen`). Anything else is 404.
pub async fn serve_endpoint(listener: TcpListener, registry: MetricsRegistry, shutdown: Shutdown) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move { ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], registry.encode()).into_response() }
        }),
    );
    tracing::info!(addr = %listener.local_addr()?, "metrics endpoint listening");
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[tokio::test]
    async fn the_endpoint_serves_the_registry_as_openmetrics() {
        let registry = MetricsRegistry::default();
        let counter = Counter::<u64>::default();
        registry.register("things", "Things counted.", counter.clone());
        counter.inc_by(3);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let server = tokio::spawn(serve_endpoint(listener, registry, shutdown.clone()));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("application/openmetrics-text"), "{answer}");
        assert!(answer.contains("# TYPE imgidx_things counter\n"), "{answer}");
        assert!(answer.contains("imgidx_things_total 3\n"), "{answer}");
        assert!(answer.trim_end().ends_with("# EOF"), "{answer}");
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
