//! Test harness for end-to-end tests: a whole imgidx deployment (API, workers,
//! aggregator) in the test process against the real RabbitMQ and PostgreSQL that
//! `tests/run.sh` starts, with fresh names (queue prefix, database) per cluster so
//! runs never share state. The vector store is embedded and shared in-process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use imgidx_api::{ApiDeps, QueryEngine};
use imgidx_shared::broker::{Broker, RabbitBroker};
use imgidx_shared::config::Settings;
use imgidx_shared::embed::{Models, VisionEncoder};
use imgidx_shared::jobs::{JobStore, PostgresJobStore};
use imgidx_shared::metrics::MetricsRegistry;
use imgidx_shared::objects::Objects;
use imgidx_shared::shutdown::Shutdown;
use imgidx_shared::vectors::{Collections, VectorStore};
use imgidx_worker::metrics::WorkerMetrics;
use imgidx_worker::{WorkerDeps, WorkerModel, WorkerReport};

/// Where the services the tests need are (exported by `tests/run.sh`).
#[derive(Clone, Debug)]
pub struct Services {
    pub amqp_url: String,
    pub pg_admin_url: String,
    pub mgmt_url: Option<String>,
    /// RabbitMQ's TLS listener, and the CA of both test servers' certificate.
    pub amqps_url: Option<String>,
    pub tls_ca_file: Option<PathBuf>,
}

/// The running services, or None to skip. With `IMGIDX_REQUIRE_SERVICES=1` (set by
/// `tests/run.sh`) a missing service is a failure, never a silent skip.
pub fn services() -> Option<Services> {
    let amqp = std::env::var("IMGIDX_TEST_AMQP_URL").ok();
    let pg = std::env::var("IMGIDX_TEST_PG_URL").ok();
    match (amqp, pg) {
        (Some(amqp_url), Some(pg_admin_url)) => {
            Some(Services {
                amqp_url,
                pg_admin_url,
                mgmt_url: std::env::var("IMGIDX_TEST_RABBIT_MGMT_URL").ok(),
                amqps_url: std::env::var("IMGIDX_TEST_AMQPS_URL").ok(),
                tls_ca_file: std::env::var_os("IMGIDX_TEST_TLS_CA_FILE").map(PathBuf::from),
            })
        }
        _ if std::env::var("IMGIDX_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("IMGIDX_TEST_AMQP_URL and IMGIDX_TEST_PG_URL must be set: run tests/run.sh")
        }
        _ => {
            eprintln!("skipping: RabbitMQ/PostgreSQL not configured (run tests/run.sh)");
            None
        }
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn tiny_model_dir() -> PathBuf {
    repo_root().join("tests/fixtures/models/tiny-clip")
}

/// The sample TIFF holds 64-bit float samples, which no 8-bit pipeline decodes:
/// it is always reported failed (`unreadable`).
pub const UNDECODABLE_SAMPLE: &str = "multipage_rgb.tif";

/// The decodable sample images (scikit-image, BSD), copied into a fresh directory the
/// test may modify.
pub fn sample_images(dir: &Path) -> Vec<PathBuf> {
    let src = repo_root().join("tests/fixtures/images");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ["png", "jpg", "gif"].contains(&ext) {
            let dest = dir.join(path.file_name().unwrap());
            std::fs::copy(&path, &dest).unwrap();
            out.push(dest);
        }
    }
    out.sort();
    out
}

/// `copies` copies of each sample image, under distinct names.
pub fn many_images(dir: &Path, copies: usize) -> Vec<PathBuf> {
    let originals_dir = dir.join("originals");
    std::fs::create_dir_all(&originals_dir).unwrap();
    let originals = sample_images(&originals_dir);
    let mut out = Vec::new();
    for c in 0..copies {
        for src in &originals {
            let dest = dir.join(format!("{c:04}-{}", src.file_name().unwrap().to_string_lossy()));
            std::fs::copy(src, &dest).unwrap();
            out.push(dest);
        }
    }
    out
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Settings for one isolated cluster: fresh queue prefix and database.
#[allow(clippy::field_reassign_with_default)] // a few nested fields out of many defaults
pub fn cluster_settings(svc: &Services, data_dir: &Path) -> Settings {
    let mut s = Settings::default();
    s.data_dir = data_dir.to_path_buf();
    s.broker.url = Some(svc.amqp_url.clone());
    s.broker.queue_prefix = unique("t");
    s.broker.prefetch = 8;
    s.broker.delivery_limit = 3;
    s.jobs.url = Some(replace_db(&svc.pg_admin_url, &unique("imgidx_test")));
    s.jobs.pool_size = 4;
    s.model.dir = tiny_model_dir();
    s.worker.batch_size = 4;
    s.worker.batch_wait_ms = 20;
    s.worker.decode_threads = 2;
    s
}

fn replace_db(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{db}")
}

pub struct Cluster {
    pub settings: Settings,
    pub base_url: String,
    pub http: reqwest::Client,
    pub jobs: Arc<dyn JobStore>,
    /// The initial collection's store.
    pub vectors: Arc<dyn VectorStore>,
    pub collections: Arc<Collections>,
    pub encoder: Arc<VisionEncoder>,
    shutdown: Shutdown,
    api: JoinHandle<()>,
    aggregator: JoinHandle<()>,
    workers: Vec<Worker>,
    brokers: Vec<Arc<dyn Broker>>,
    /// Every role's metrics, as `imgidx serve` has them: the API's `/metrics` shows it.
    pub registry: MetricsRegistry,
    worker_metrics: WorkerMetrics,
    /// Where uploads go (the API's and the workers').
    pub objects: Objects,
}

pub struct Worker {
    pub tag: String,
    shutdown: Shutdown,
    handle: JoinHandle<WorkerReport>,
    broker: Arc<dyn Broker>,
}

impl Worker {
    /// Graceful stop: drain, then close the connection.
    pub async fn stop(self) -> WorkerReport {
        self.shutdown.cancel();
        let report = self.handle.await.unwrap();
        self.broker.close().await;
        report
    }

    /// Whether it stopped by itself (a panic: the crash a test planted).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Crash: the task dies wherever it is and its connection drops without acks.
    pub async fn crash(self) {
        self.handle.abort();
        let _ = self.handle.await;
        self.broker.close().await;
    }
}

/// Query encoders sharing the cluster's vision encoder.
pub async fn query_engine(settings: &Settings, encoder: &Arc<VisionEncoder>) -> Arc<QueryEngine> {
    let (model, limits, encoder) = (settings.model.clone(), settings.worker.clone(), encoder.clone());
    let budget = imgidx_shared::embed::DecodeBudget::from_settings(&limits);
    let engine = tokio::task::spawn_blocking(move || QueryEngine::load(&model.dir, &model, &limits, Some(encoder), budget));
    Arc::new(engine.await.unwrap().unwrap())
}

/// Connection names end in `@<queue prefix>`, so a test can find its cluster's
/// connections in the management API.
async fn connect_broker(settings: &Settings, role: &str) -> Arc<dyn Broker> {
    let name = format!("{role}@{}", settings.broker.queue_prefix);
    Arc::new(RabbitBroker::connect(&settings.broker, &name).await.unwrap())
}

impl Cluster {
    /// API + aggregator (+ `workers` workers) on fresh names.
    pub async fn start(settings: Settings, workers: usize) -> Cluster {
        let model = settings.model.clone();
        let encoder = Arc::new(
            tokio::task::spawn_blocking(move || VisionEncoder::load(&model.dir, &model)).await.unwrap().unwrap(),
        );
        let (url, ca) = (settings.jobs.url.as_deref().unwrap(), settings.jobs.tls_ca_file.as_deref());
        let jobs: Arc<dyn JobStore> =
            Arc::new(PostgresJobStore::connect_with_ca(url, settings.jobs.pool_size, ca).await.unwrap());
        let (model_name, dim) = (encoder.manifest().name.clone(), encoder.manifest().embedding_dim);
        let collections = imgidx_api::open_collections(&settings, jobs.as_ref(), &model_name, dim).await.unwrap();
        let vectors = collections.open(&settings.vectors.collection, dim, None).await.unwrap();
        let objects = Objects::open(&settings).unwrap();
        let shutdown = Shutdown::new();
        let registry = MetricsRegistry::default();
        let worker_metrics = WorkerMetrics::new(&registry);

        let api_broker = connect_broker(&settings, "test-api").await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let deps = ApiDeps {
            jobs: jobs.clone(),
            collections: collections.clone(),
            initial_collection: settings.vectors.collection.clone(),
            broker: api_broker.clone(),
            model_name: encoder.manifest().name.clone(),
            embedding_dim: encoder.manifest().embedding_dim,
            queries: Some(Arc::new(Models::only(&encoder.manifest().name, query_engine(&settings, &encoder).await))),
            health: Default::default(),
            metrics: registry.clone(),
            uploads: imgidx_api::Uploads { objects: objects.clone(), limits: settings.ingest.clone() },
        };
        let api_settings = settings.api.clone();
        let s = shutdown.clone();
        let api = tokio::spawn(async move { imgidx_api::serve(&api_settings, deps, listener, s).await.unwrap() });

        let agg_broker = connect_broker(&settings, "test-aggregator").await;
        let agg_deps = imgidx_aggregator::AggregatorDeps {
            broker: agg_broker.clone(),
            jobs: jobs.clone(),
            metrics: imgidx_aggregator::AggregatorMetrics::new(&registry),
        };
        let agg_settings = settings.aggregator.clone();
        let s = shutdown.clone();
        let aggregator = tokio::spawn(async move {
            imgidx_aggregator::serve(&agg_settings, agg_deps, "test.aggregator", s).await.unwrap()
        });

        let mut cluster = Cluster {
            settings,
            base_url,
            http: reqwest::Client::new(),
            jobs,
            vectors,
            collections,
            encoder,
            shutdown,
            api,
            aggregator,
            workers: Vec::new(),
            brokers: vec![api_broker, agg_broker],
            registry,
            worker_metrics,
            objects,
        };
        for i in 0..workers {
            let w = cluster.spawn_worker(&format!("test-host.w{i}"), cluster.settings.worker.clone()).await;
            cluster.workers.push(w);
        }
        cluster
    }

    /// A worker with its own connection, as a separate node would have.
    pub async fn spawn_worker(&self, tag: &str, worker_settings: imgidx_shared::config::WorkerSettings) -> Worker {
        self.spawn_worker_in(tag, worker_settings, self.collections.clone()).await
    }

    /// As `spawn_worker`, writing the initial collection to the given store (fault injection).
    pub async fn spawn_worker_with(
        &self,
        tag: &str,
        worker_settings: imgidx_shared::config::WorkerSettings,
        vectors: Arc<dyn VectorStore>,
    ) -> Worker {
        let collections = Arc::new(Collections::single(&self.settings.vectors.collection, vectors));
        self.spawn_worker_in(tag, worker_settings, collections).await
    }

    async fn spawn_worker_in(
        &self,
        tag: &str,
        worker_settings: imgidx_shared::config::WorkerSettings,
        collections: Arc<Collections>,
    ) -> Worker {
        let broker = connect_broker(&self.settings, tag).await;
        let budget = imgidx_shared::embed::DecodeBudget::from_settings(&worker_settings);
        let deps = WorkerDeps {
            broker: broker.clone(),
            collections,
            initial_collection: self.settings.vectors.collection.clone(),
            jobs: self.jobs.clone(),
            models: Arc::new(Models::only(
                &self.encoder.manifest().name,
                Arc::new(WorkerModel::new(self.encoder.clone(), None, &worker_settings, budget.clone())),
            )),
            budget,
            decode_pool: imgidx_worker::decode_pool(&worker_settings),
            isolation: Default::default(),
            health: Default::default(),
            metrics: self.worker_metrics.clone(),
            objects: self.objects.clone(),
            fetch: self.settings.ingest.fetch_limits(),
        };
        let shutdown = Shutdown::new();
        let s = shutdown.clone();
        let prefetch = self.settings.broker.prefetch;
        let t = tag.to_string();
        let handle = tokio::spawn(async move { imgidx_worker::serve(&worker_settings, prefetch, deps, &t, s).await.unwrap() });
        Worker { tag: tag.to_string(), shutdown, handle, broker }
    }

    pub fn add_worker(&mut self, worker: Worker) {
        self.workers.push(worker);
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(format!("{}{path}", self.base_url)).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.base_url)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn add_images(&self, paths: &[PathBuf], priority: &str) -> (u16, Value) {
        let paths: Vec<String> = paths.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        self.post("/api/v1/index/add-images", json!({ "image_paths": paths, "priority": priority })).await
    }

    /// Waits for the job and checks that it completed with all `n` images indexed, none
    /// failed, and one point per image in the store (which holds only this job's).
    pub async fn wait_all_indexed(&self, job_id: &str, n: u64, timeout: Duration) -> Value {
        let done = self.wait_job(job_id, timeout).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["progress"]["processed_images"], n, "{done}");
        assert_eq!(done["progress"]["failed_images"], 0, "{done}");
        assert_eq!(self.vectors.count().await.unwrap(), n);
        done
    }

    /// Poll the job's status until it is completed or failed.
    pub async fn wait_job(&self, job_id: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (code, body) = self.get(&format!("/api/v1/index/status/{job_id}")).await;
            assert_eq!(code, 200, "{body}");
            if body["status"] == "completed" || body["status"] == "failed" {
                return body;
            }
            assert!(tokio::time::Instant::now() < deadline, "job {job_id} did not finish: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stop workers gracefully (their reports, in start order), then the rest.
    pub async fn stop(self) -> Vec<(String, WorkerReport)> {
        let mut reports = Vec::new();
        for w in self.workers {
            let tag = w.tag.clone();
            reports.push((tag, w.stop().await));
        }
        self.shutdown.cancel();
        let _ = self.api.await;
        let _ = self.aggregator.await;
        for b in self.brokers {
            b.close().await;
        }
        reports
    }
}

/// GET a RabbitMQ management API resource (guest credentials, loopback only).
pub async fn management_get(mgmt_url: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{mgmt_url}/api/{path}"))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Poll a management API resource until `pick` accepts it (the API learns of new
/// connections and consumers, and refreshes queue counts, with a delay of seconds).
/// `pick` says what it saw when it refuses, for the failure message.
pub async fn management_poll<R>(mgmt_url: &str, path: &str, mut pick: impl FnMut(&Value) -> Result<R, String>) -> R {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match pick(&management_get(mgmt_url, path).await) {
            Ok(r) => return r,
            Err(seen) => assert!(tokio::time::Instant::now() < deadline, "management API {path}: {seen}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The management API's records of the `expected` connections whose client-given name
/// ends in `@<queue_prefix>`, once it lists them all.
pub async fn management_connections(mgmt_url: &str, queue_prefix: &str, expected: usize) -> Vec<Value> {
    let suffix = format!("@{queue_prefix}");
    management_poll(mgmt_url, "connections", |all| {
        let ours: Vec<Value> = all
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["client_properties"]["connection_name"].as_str().is_some_and(|n| n.ends_with(&suffix)))
            .cloned()
            .collect();
        if ours.len() == expected {
            Ok(ours)
        } else {
            Err(format!("expected {expected} connections, listed {ours:?}"))
        }
    })
    .await
}

/// Wait until the consumer tags on the queues of `queue_prefix` satisfy `done`.
pub async fn wait_for_consumer_tags(mgmt_url: &str, queue_prefix: &str, done: impl Fn(&[String]) -> bool) {
    let queues = format!("{queue_prefix}.");
    management_poll(mgmt_url, "consumers", |consumers| {
        let tags: Vec<String> = consumers
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["queue"]["name"].as_str().is_some_and(|q| q.starts_with(&queues)))
            .filter_map(|c| c["consumer_tag"].as_str().map(str::to_string))
            .collect();
        if done(&tags) {
            Ok(())
        } else {
            Err(format!("consumer tags {tags:?}"))
        }
    })
    .await
}

/// `value`, or None (after saying why) to skip a test that needs `what`; with
/// `IMGIDX_REQUIRE_SERVICES=1` (tests/run.sh) a missing service fails instead.
pub fn or_skip<T>(value: Option<T>, what: &str) -> Option<T> {
    if value.is_none() {
        assert_ne!(std::env::var("IMGIDX_REQUIRE_SERVICES").as_deref(), Ok("1"), "{what} is not configured");
        eprintln!("skipping: {what} is not configured (run tests/run.sh)");
    }
    value
}

/// Force-close (as an operator would in the management console) the `expected`
/// connections of the cluster with this queue prefix.
pub async fn management_close_connections(mgmt_url: &str, queue_prefix: &str, expected: usize) {
    for connection in management_connections(mgmt_url, queue_prefix, expected).await {
        let name = connection["name"].as_str().unwrap();
        let encoded: String = name
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        let r = reqwest::Client::new()
            .delete(format!("{mgmt_url}/api/connections/{encoded}"))
            .basic_auth("guest", Some("guest"))
            .header("X-Reason", "test: connection loss")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "closing {name}: {}", r.status());
    }
}
