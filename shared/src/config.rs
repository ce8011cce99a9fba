//! Layered configuration: built-in defaults < config file (`--config FILE`) <
//! environment (`IMGIDX__SECTION__KEY`). Every key is documented in
//! `docs/configuration.md`; unknown keys are errors so typos never pass silently.

use crate::embed::PreprocessMode;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod ingest;

pub use ingest::{BatchSettings, IngestSettings, ObjectSettings, TagsSettings};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where embedded backends keep their files (vector index, job database, models).
    /// Default: the platform's data directory (`$XDG_DATA_HOME/imgidx`, else
    /// `~/.local/share/imgidx` on Linux).
    pub data_dir: PathBuf,
    /// Seconds a stopping process (SIGTERM/SIGINT) may take to drain; then it exits, and
    /// what it still held is redelivered by the broker or queued again by the reconcile.
    /// A second signal exits at once.
    pub shutdown_timeout_secs: u64,
    pub api: ApiSettings,
    pub broker: BrokerSettings,
    pub jobs: JobStoreSettings,
    pub vectors: VectorSettings,
    pub model: ModelSettings,
    pub worker: WorkerSettings,
    pub aggregator: AggregatorSettings,
    pub serve: ServeSettings,
    pub log: LogSettings,
    pub ingest: IngestSettings,
    pub objects: ObjectSettings,
    pub batch: BatchSettings,
    pub tags: TagsSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    pub listen: String,
    /// Most paths one `add-images` request may carry.
    pub max_paths_per_request: usize,
    /// When non-empty, only paths that resolve (symlinks followed) under one of these are accepted.
    pub allowed_roots: Vec<PathBuf>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How many finished jobs `GET /api/v1/index/status` lists.
    pub recent_jobs: usize,
    /// Largest `top_k` a query may ask for.
    pub max_top_k: usize,
    /// Query texts whose vectors are kept, per model (0: none).
    pub query_cache_entries: usize,
    /// Most searches one `POST /api/v1/query/batch` may carry.
    pub max_batch_queries: usize,
    /// `relevance: "auto"` keeps results scoring this many robust standard deviations
    /// above the median of the query's scores over a sample of the collection.
    pub relevance_sigmas: f32,
    /// Where `copy_results: true` puts a query's result files (`<dir>/<query id>/`);
    /// `<data_dir>/results` when unset.
    pub results_dir: Option<PathBuf>,
    /// API keys accepted in `X-API-Key` or `Authorization: Bearer` (full access). With
    /// none here and no `api_keys_file`, the API is open to anyone who can reach it.
    pub api_keys: Vec<String>,
    /// File of key digests, one per line: `sha256:<hex> [read|write] [name]`
    /// (`imgidx keys new` prints such a line); `#` starts a comment.
    pub api_keys_file: Option<PathBuf>,
    /// Requests per minute allowed per key (per client address when anonymous); 0: no limit.
    pub rate_limit_per_minute: u32,
    /// Host names (with or without port) accepted in the `Host` header besides loopback
    /// names, when listening on a loopback address (refusing others stops DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Origins allowed to call the API from a browser (CORS); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Longest time, in seconds, one request may take (body read included): 408 after it.
    pub request_timeout_secs: u64,
    /// Longest wait, in seconds, for a client to send a request's headers.
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay open with nothing sent either way before it is closed.
    pub idle_timeout_secs: u64,
    /// Requests handled at once; more are refused at once with 503 `overloaded`.
    pub max_concurrent_requests: usize,
    /// Open client connections; more wait to be accepted.
    pub max_connections: usize,
    /// Directory walks (`POST /api/v1/index/trigger`) this process runs at once; more
    /// wait until one ends (or another API process takes them).
    pub max_concurrent_scans: usize,
    /// Seconds a walk may go without a heartbeat before another API process (or this
    /// one, restarted) takes it over and walks the directory again.
    pub scan_lease_secs: u64,
    /// URLs told of every job's end (completed, failed, cancelled), besides the
    /// `webhook_url` a request names. Needs `webhook_secret`.
    pub webhook_urls: Vec<String>,
    /// The Standard Webhooks secret deliveries are signed with: `whsec_` and the key in
    /// base64 (as Svix and the Standard Webhooks libraries take it), or any other string,
    /// whose bytes are the key. Without it, webhooks are off.
    pub webhook_secret: Option<String>,
    /// Allow webhook URLs on loopback, private and link-local addresses (off: only public
    /// addresses, so a client cannot make the server call into its own network).
    pub webhook_allow_private: bool,
    /// Seconds one delivery attempt may take (connect, send, answer).
    pub webhook_timeout_secs: u64,
    /// Hours a delivery is retried (with growing waits) before it is given up.
    pub webhook_retry_hours: u64,
    /// Most collections the catalog may hold (each keeps files and memory open).
    pub max_collections: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8000".into(),
            max_paths_per_request: 10_000,
            allowed_roots: Vec::new(),
            max_body_bytes: 16 * 1024 * 1024,
            recent_jobs: 10,
            max_top_k: 1000,
            query_cache_entries: 1024,
            max_batch_queries: 64,
            relevance_sigmas: 3.0,
            results_dir: None,
            api_keys: Vec::new(),
            api_keys_file: None,
            rate_limit_per_minute: 0,
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            request_timeout_secs: 60,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_concurrent_requests: 256,
            max_connections: 1024,
            max_concurrent_scans: 2,
            scan_lease_secs: 30,
            webhook_urls: Vec::new(),
            webhook_secret: None,
            webhook_allow_private: false,
            webhook_timeout_secs: 10,
            webhook_retry_hours: 24,
            max_collections: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSettings {
    /// AMQP URL of RabbitMQ. Unset: `imgidx serve` uses its in-process queue; the
    /// distributed roles (`api`, `worker`, `aggregator`) require it.
    pub url: Option<String>,
    /// Prefix of every queue and exchange name, so several deployments (or test runs) can share a vhost.
    pub queue_prefix: String,
    /// Unacknowledged task deliveries a worker may hold per priority queue.
    pub prefetch: u16,
    /// Deliveries of one task before the broker dead-letters it (reported failed). Only a
    /// far backstop: workers decide `retries_exhausted` from `worker.max_attempts`, and a
    /// worker crash hands every task it had prefetched back with its delivery count raised.
    pub delivery_limit: u32,
    /// Unacknowledged events the aggregator may hold.
    pub event_prefetch: u16,
    /// Seconds to wait for a publisher confirm before the publish counts as failed.
    pub confirm_timeout_secs: u64,
    /// PEM file of CA certificates for an `amqps://` URL, besides the system's.
    pub tls_ca_file: Option<PathBuf>,
    /// Longest wait, in seconds, between attempts to subscribe again after the broker
    /// connection was lost (the wait starts at 250 ms and doubles).
    pub reconnect_max_secs: u64,
    /// Most messages the in-process queue (`serve` without `url`) holds; publishes beyond
    /// it are refused (the API answers 503 and queues nothing) rather than growing memory.
    pub memory_capacity: usize,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            url: None,
            queue_prefix: "imgidx".into(),
            prefetch: 64,
            delivery_limit: 100,
            event_prefetch: 512,
            confirm_timeout_secs: 30,
            tls_ca_file: None,
            reconnect_max_secs: 30,
            memory_capacity: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobStoreSettings {
    /// `postgres://...` for PostgreSQL, `sqlite:PATH` for a SQLite file; unset: SQLite at
    /// `<data_dir>/jobs.sqlite3`.
    pub url: Option<String>,
    /// Most pooled connections (PostgreSQL).
    pub pool_size: usize,
    /// PEM file of CA certificates for PostgreSQL TLS, besides the system's. Setting it
    /// requires TLS; so does `sslmode=require` in the URL. The server is always verified.
    pub tls_ca_file: Option<PathBuf>,
    /// Reconcile: pending items queued longer ago than this are queued again (when the task
    /// queues hold no waiting messages), so a lost task never leaves a job running forever.
    /// 0 turns the periodic reconcile off.
    pub requeue_after_secs: u64,
    /// Seconds between reconcile passes (run by the aggregator).
    pub reconcile_interval_secs: u64,
    /// Reconcile: an active job whose tasks were never confirmed published this long after
    /// it was created (the API died between its commit and its publish) is published,
    /// whatever the queue depth.
    pub publish_grace_secs: u64,
    /// Finished jobs (completed, failed, cancelled) and their items are deleted this many
    /// days after they finished; 0 keeps them forever.
    pub retention_days: u64,
}

impl Default for JobStoreSettings {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 16,
            tls_ca_file: None,
            requeue_after_secs: 3600,
            reconcile_interval_secs: 60,
            publish_grace_secs: 30,
            retention_days: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VectorSettings {
    /// gRPC URL of a Qdrant server (e.g. `http://127.0.0.1:6334`); embedded Qdrant Edge when unset.
    pub qdrant_url: Option<String>,
    pub qdrant_api_key: Option<String>,
    /// Collection name (Qdrant server) holding the image points.
    pub collection: String,
    /// Directory of the embedded index; `<data_dir>/vectors` when unset.
    pub edge_path: Option<PathBuf>,
    /// Directory holding the embedded indexes of collections made through the API, one
    /// subdirectory each; `<data_dir>/collections` when unset.
    pub edge_collections_dir: Option<PathBuf>,
    /// Embedded store: points a collection holds before its HNSW index is built (in the
    /// background, once indexing goes idle); 0: never (exact search only).
    pub index_threshold: usize,
    /// HNSW graph degree, and the beam width building it (embedded store).
    pub hnsw_m: usize,
    pub hnsw_ef_construct: usize,
    /// Beam width of an indexed search (embedded store): higher is more exact and slower.
    /// 0: by the collection's size, one per thousand points within 128..=1024 (what kept
    /// recall@10 at or above 0.95 from 100k to 1M vectors in `imgidx bench search`).
    pub hnsw_ef: usize,
    /// Threads one index build uses; 0: half this machine's cores (at least one), so
    /// searches keep the rest.
    pub index_threads: usize,
    /// `int8`: new embedded collections also keep scalar-quantized vectors (a quarter of the
    /// memory per comparison), searched first and rescored with the originals.
    pub quantization: Quantization,
}

/// Vector quantization of the embedded store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    #[default]
    None,
    Int8,
}

impl Default for VectorSettings {
    fn default() -> Self {
        Self {
            qdrant_url: None,
            qdrant_api_key: None,
            collection: "images".into(),
            edge_path: None,
            edge_collections_dir: None,
            index_threshold: 20_000,
            hnsw_m: 16,
            hnsw_ef_construct: 100,
            hnsw_ef: 0,
            index_threads: 0,
            quantization: Quantization::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    #[default]
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// Model directory holding `manifest.json` and the ONNX graphs; default
    /// `<models_dir>/clip-vit-b-32`, where `imgidx models fetch clip-vit-b-32` puts it.
    pub dir: PathBuf,
    pub execution_provider: ExecutionProvider,
    /// CUDA device ordinal when `execution_provider = "cuda"` (and `cuda_devices` is empty).
    pub cuda_device: i32,
    /// CUDA devices a worker runs one pipeline on each (model session, batches, inference),
    /// all fed from one queue and one decode pool; empty: just `cuda_device`. The API's
    /// queries use the first.
    pub cuda_devices: Vec<i32>,
    /// ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose.
    pub intra_threads: usize,
    /// Path of `libonnxruntime.so`; falls back to the `ORT_DYLIB_PATH` environment variable.
    pub ort_dylib_path: Option<PathBuf>,
    /// Base URL of the Hugging Face hub (or a mirror of it) that `imgidx models fetch` downloads from.
    pub hub_url: String,
    /// Where `imgidx models fetch` installs models (one directory each); `<data_dir>/models` when unset.
    /// Collections made for another model than `dir`'s, and model switches, load theirs from here.
    pub models_dir: Option<PathBuf>,
    /// Models besides `dir`'s kept loaded at once (workers and search); the one used least
    /// recently is unloaded when another is needed.
    pub max_loaded: usize,
}

impl ModelSettings {
    /// The devices a worker runs a pipeline on: None once on CPU, each CUDA device otherwise.
    pub fn devices(&self) -> Vec<Option<i32>> {
        match self.execution_provider {
            ExecutionProvider::Cpu => vec![None],
            ExecutionProvider::Cuda if self.cuda_devices.is_empty() => vec![Some(self.cuda_device)],
            ExecutionProvider::Cuda => self.cuda_devices.iter().copied().map(Some).collect(),
        }
    }

    /// These settings with `device` as the one CUDA device (unchanged for None: CPU).
    pub fn on_device(&self, device: Option<i32>) -> Self {
        let mut on = self.clone();
        if let Some(d) = device {
            on.cuda_device = d;
            on.cuda_devices = vec![d];
        }
        on
    }
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            execution_provider: ExecutionProvider::Cpu,
            cuda_device: 0,
            cuda_devices: Vec::new(),
            intra_threads: 0,
            ort_dylib_path: None,
            hub_url: "https://huggingface.co".into(),
            models_dir: None,
            max_loaded: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Most images per inference batch (on CUDA with `auto_batch_size`, the probe's
    /// starting point is replaced by what device memory allows).
    pub batch_size: usize,
    /// On CUDA, size batches from the device memory free at start (measured with test
    /// runs, see README "GPU"), up to `max_batch_size`; off: `batch_size` as set.
    pub auto_batch_size: bool,
    /// Largest batch the CUDA probe may choose.
    pub max_batch_size: usize,
    /// Share of the device memory free at start the probed batches may use.
    pub batch_memory_fraction: f64,
    /// Longest wait, in milliseconds, for a batch to fill before running it part-full.
    pub batch_wait_ms: u64,
    /// Threads that decode and preprocess images; 0 means one per core.
    pub decode_threads: usize,
    /// Images with more pixels than this are rejected without decoding them.
    pub max_image_pixels: u64,
    /// Files larger than this many bytes are rejected without reading them.
    pub max_file_bytes: u64,
    /// Memory budget of decoding, in MiB, shared by everything that decodes in the process
    /// (worker pipelines and API queries); 0 derives it: a quarter of physical memory.
    pub decode_memory_mb: u64,
    /// Name in consumer tags and events; the host name when unset.
    pub name: Option<String>,
    /// Attempts at one image before it is reported `retries_exhausted`. An attempt is
    /// counted when the image's batch enters decode, so only crashes (or shutdowns)
    /// while it was being worked on use one up; outages and prefetching never do.
    pub max_attempts: u32,
    /// How long an image whose file may come back (EIO, ESTALE, no file descriptors left,
    /// its directory missing as under an unmounted share) is tried again before it is
    /// reported failed; 0 reports it at once.
    pub file_retry_secs: u64,
    /// Index an image whose bytes an indexed point of its collection and model has already
    /// with that point's vector, without decode or inference (see README, "Reuse").
    pub reuse_vectors: bool,
    /// Address (`host:port`) of this worker's Prometheus `/metrics`; off when unset.
    /// `imgidx serve` has none of its own: the API's `/metrics` shows every role.
    pub metrics_listen: Option<String>,
    /// `exact`: Pillow's pipeline bit for bit, as CLIP was trained with; `fast`: JPEG
    /// decoded at a reduced DCT scale (libturbojpeg) and SIMD resizing, the same crop
    /// (queries by image are preprocessed the same way).
    pub preprocess: PreprocessMode,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            batch_size: 32,
            auto_batch_size: true,
            max_batch_size: 1024,
            batch_memory_fraction: 0.7,
            batch_wait_ms: 50,
            decode_threads: 0,
            max_image_pixels: 100_000_000,
            max_file_bytes: 256 * 1024 * 1024,
            decode_memory_mb: 0,
            name: None,
            max_attempts: 5,
            file_retry_secs: 60,
            reuse_vectors: true,
            metrics_listen: None,
            preprocess: PreprocessMode::Exact,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregatorSettings {
    /// Most events applied in one job-store transaction.
    pub max_batch: usize,
    /// Longest wait, in milliseconds, to fill an event batch.
    pub batch_wait_ms: u64,
    /// Address (`host:port`) of the aggregator's Prometheus `/metrics`; off when unset.
    pub metrics_listen: Option<String>,
}

impl Default for AggregatorSettings {
    fn default() -> Self {
        Self { max_batch: 256, batch_wait_ms: 20, metrics_listen: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeSettings {
    /// Worker pipelines `imgidx serve` runs in its process (`--workers`).
    pub workers: usize,
}

/// How the services log (to stderr; the level comes from `RUST_LOG`, default `info`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the span fields (`request_id`, …), for log shippers.
    Json,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self { workers: 1 }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::new(),
            shutdown_timeout_secs: 30,
            api: ApiSettings::default(),
            broker: BrokerSettings::default(),
            jobs: JobStoreSettings::default(),
            vectors: VectorSettings::default(),
            model: ModelSettings::default(),
            worker: WorkerSettings::default(),
            aggregator: AggregatorSettings::default(),
            serve: ServeSettings::default(),
            log: LogSettings::default(),
            ingest: IngestSettings::default(),
            objects: ObjectSettings::default(),
            batch: BatchSettings::default(),
            tags: TagsSettings::default(),
        }
    }
}
/// Least explicit decode budget: below it, ordinary photos would decode one at a time.
pub const MIN_DECODE_MEMORY_MB: u64 = 64;

/// Environment variable prefix and separator: `IMGIDX__WORKER__BATCH_SIZE=64`.
pub const ENV_PREFIX: &str = "IMGIDX";
pub const ENV_SEPARATOR: &str = "__";

impl Settings {
    /// Defaults, then `file` when given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, None)
    }

    /// As [`Settings::load`], with the environment given explicitly (tests).
    pub fn load_from(
        file: Option<&Path>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).required(true));
        }
        let mut environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .list_separator(",")
            .with_list_parse_key("api.allowed_roots")
            .with_list_parse_key("api.api_keys")
            .with_list_parse_key("api.allowed_hosts")
            .with_list_parse_key("api.cors_origins")
            .with_list_parse_key("api.webhook_urls")
            .with_list_parse_key("model.cuda_devices")
            .try_parsing(true);
        if let Some(env) = env {
            environment = environment.source(Some(env));
        }
        let mut settings: Settings = builder.add_source(environment).build()?.try_deserialize()?;
        if settings.data_dir.as_os_str().is_empty() {
            settings.data_dir = default_data_dir();
        }
        if settings.model.dir.as_os_str().is_empty() {
            settings.model.dir = settings.default_model_dir();
        }
        if settings.api.results_dir.is_none() {
            settings.api.results_dir = Some(settings.default_results_dir());
        }
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.worker.batch_size == 0 || self.worker.max_batch_size == 0 {
            return bad("worker.batch_size and worker.max_batch_size must be at least 1");
        }
        if !(self.worker.batch_memory_fraction > 0.0 && self.worker.batch_memory_fraction <= 1.0) {
            return bad("worker.batch_memory_fraction must be above 0 and at most 1");
        }
        if self.model.cuda_devices.iter().any(|d| *d < 0) {
            return bad("model.cuda_devices are device ordinals (0, 1, ...)");
        }
        let mut devices = self.model.cuda_devices.clone();
        devices.sort_unstable();
        devices.dedup();
        if devices.len() != self.model.cuda_devices.len() {
            return bad("model.cuda_devices names a device twice");
        }
        if self.broker.prefetch == 0 || self.broker.event_prefetch == 0 {
            return bad("broker.prefetch and broker.event_prefetch must be at least 1");
        }
        if self.worker.max_attempts == 0 {
            return bad("worker.max_attempts must be at least 1");
        }
        if self.broker.delivery_limit == 0 {
            return bad("broker.delivery_limit must be at least 1");
        }
        if self.api.max_top_k == 0 {
            return bad("api.max_top_k must be at least 1");
        }
        if self.vectors.hnsw_m < 4 || self.vectors.hnsw_ef_construct < 4 {
            return bad("vectors.hnsw_m and vectors.hnsw_ef_construct must be at least 4");
        }
        if self.api.max_batch_queries == 0 {
            return bad("api.max_batch_queries must be at least 1");
        }
        if !(self.api.relevance_sigmas.is_finite() && self.api.relevance_sigmas > 0.0) {
            return bad("api.relevance_sigmas must be a number above 0");
        }
        if self.api.max_paths_per_request == 0 {
            return bad("api.max_paths_per_request must be at least 1");
        }
        if self.ingest.max_files == 0 || self.ingest.max_image_bytes == 0 {
            return bad("ingest.max_files and ingest.max_image_bytes must be at least 1");
        }
        if let Some(url) = &self.objects.url {
            if !url.starts_with("s3://") {
                return bad("objects.url must be s3://bucket or s3://bucket/prefix (or unset: a local directory)");
            }
        }
        if self.serve.workers == 0 {
            return bad("serve.workers must be at least 1");
        }
        if self.broker.memory_capacity == 0 {
            return bad("broker.memory_capacity must be at least 1");
        }
        if self.aggregator.max_batch == 0 {
            return bad("aggregator.max_batch must be at least 1");
        }
        if self.api.request_timeout_secs == 0 || self.api.header_read_timeout_secs == 0 || self.api.idle_timeout_secs == 0 {
            return bad("api.request_timeout_secs, header_read_timeout_secs and idle_timeout_secs must be at least 1");
        }
        if self.api.max_concurrent_requests == 0 || self.api.max_connections == 0 {
            return bad("api.max_concurrent_requests and api.max_connections must be at least 1");
        }
        if self.api.max_concurrent_scans == 0 || self.api.scan_lease_secs == 0 {
            return bad("api.max_concurrent_scans and api.scan_lease_secs must be at least 1");
        }
        if self.api.api_keys.iter().any(|k| k.trim().len() < 16) {
            return bad("api.api_keys entries must be at least 16 characters (imgidx keys new makes one)");
        }
        if !self.api.webhook_urls.is_empty() && self.api.webhook_secret.as_deref().is_none_or(str::is_empty) {
            return bad("api.webhook_urls needs api.webhook_secret (deliveries are signed)");
        }
        if self.api.max_collections == 0 {
            return bad("api.max_collections must be at least 1 (the initial collection counts)");
        }
        if self.api.webhook_timeout_secs == 0 || self.api.webhook_retry_hours == 0 {
            return bad("api.webhook_timeout_secs and api.webhook_retry_hours must be at least 1");
        }
        if self.api.allowed_roots.iter().any(|r| !r.is_absolute()) {
            return bad("api.allowed_roots entries must be absolute paths");
        }
        if self.worker.decode_memory_mb != 0 && self.worker.decode_memory_mb < MIN_DECODE_MEMORY_MB {
            return bad(&format!(
                "worker.decode_memory_mb must be at least {MIN_DECODE_MEMORY_MB} (or 0: a quarter of the machine's memory)"
            ));
        }
        Ok(())
    }

    /// Where the job store lives, from `jobs.url`.
    pub fn job_store_location(&self) -> Result<JobStoreLocation, ConfigError> {
        match self.jobs.url.as_deref() {
            None | Some("") => Ok(JobStoreLocation::Sqlite(self.data_dir.join("jobs.sqlite3"))),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(JobStoreLocation::Postgres(url.to_string()))
            }
            Some(url) => match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
                Some(path) if !path.is_empty() => Ok(JobStoreLocation::Sqlite(PathBuf::from(path))),
                _ => Err(ConfigError::Invalid(format!(
                    "jobs.url {url:?} is neither postgres://... nor sqlite:PATH"
                ))),
            },
        }
    }

    /// Directory of the embedded vector index.
    /// `<data_dir>/results`, where `copy_results` puts files unless `api.results_dir` says otherwise.
    pub fn default_results_dir(&self) -> PathBuf {
        self.data_dir.join("results")
    }

    pub fn edge_path(&self) -> PathBuf {
        self.vectors.edge_path.clone().unwrap_or_else(|| self.data_dir.join("vectors"))
    }

    /// Directory of the local object store.
    pub fn objects_dir(&self) -> PathBuf {
        self.objects.local_dir.clone().unwrap_or_else(|| self.data_dir.join("objects"))
    }

    pub fn edge_collections_dir(&self) -> PathBuf {
        self.vectors.edge_collections_dir.clone().unwrap_or_else(|| self.data_dir.join("collections"))
    }

    /// Directory `imgidx models fetch` installs models into.
    /// Where the default model lives when `model.dir` is not set.
    pub fn default_model_dir(&self) -> PathBuf {
        self.models_dir().join(DEFAULT_MODEL)
    }

    pub fn models_dir(&self) -> PathBuf {
        self.model.models_dir.clone().unwrap_or_else(|| self.data_dir.join("models"))
    }

    /// Name used in consumer tags: configured name, else the host name.
    pub fn node_name(&self) -> String {
        self.worker.name.clone().unwrap_or_else(|| {
            hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "node".into())
        })
    }
}

/// The model `model.dir` defaults to (under `models_dir`).
pub const DEFAULT_MODEL: &str = "clip-vit-b-32";

/// Which job store `jobs.url` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStoreLocation {
    Postgres(String),
    Sqlite(PathBuf),
}

/// The platform's per-user data directory for imgidx; `./imgidx-data` when there is none
/// (no home directory, e.g. some service accounts).
fn default_data_dir() -> PathBuf {
    dirs::data_dir().map(|d| d.join("imgidx")).unwrap_or_else(|| PathBuf::from("imgidx-data"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn defaults_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("imgidx.toml");
        std::fs::write(&file, "[worker]\nbatch_size = 8\nbatch_wait_ms = 7\n").unwrap();
        let s = Settings::load_from(Some(&file), env(&[("IMGIDX__WORKER__BATCH_SIZE", "16")])).unwrap();
        assert_eq!(s.worker.batch_size, 16, "env beats file");
        assert_eq!(s.worker.batch_wait_ms, 7, "file beats default");
        assert_eq!(s.broker.prefetch, BrokerSettings::default().prefetch);
    }

    #[test]
    fn env_lists_and_options() {
        let s = Settings::load_from(
            None,
            env(&[
                ("IMGIDX__API__ALLOWED_ROOTS", "/srv/a,/srv/b"),
                ("IMGIDX__VECTORS__QDRANT_URL", "http://127.0.0.1:6334"),
            ]),
        )
        .unwrap();
        assert_eq!(s.api.allowed_roots, vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")]);
        assert_eq!(s.vectors.qdrant_url.as_deref(), Some("http://127.0.0.1:6334"));
    }

    #[test]
    fn cuda_devices_give_one_pipeline_each() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(s.model.devices(), vec![None], "CPU: one pipeline, no device");
        let cuda = [("IMGIDX__MODEL__EXECUTION_PROVIDER", "cuda"), ("IMGIDX__MODEL__CUDA_DEVICE", "3")];
        let s = Settings::load_from(None, env(&cuda)).unwrap();
        assert_eq!(s.model.devices(), vec![Some(3)]);
        let s = Settings::load_from(None, env(&[cuda[0], ("IMGIDX__MODEL__CUDA_DEVICES", "0,1,2")])).unwrap();
        assert_eq!(s.model.devices(), vec![Some(0), Some(1), Some(2)]);
        let on = s.model.on_device(Some(2));
        assert_eq!((on.cuda_device, on.devices()), (2, vec![Some(2)]));
        assert!(Settings::load_from(None, env(&[("IMGIDX__MODEL__CUDA_DEVICES", "0,0")])).is_err());
        assert!(Settings::load_from(None, env(&[("IMGIDX__MODEL__CUDA_DEVICES", "-1")])).is_err());
        assert!(Settings::load_from(None, env(&[("IMGIDX__WORKER__BATCH_MEMORY_FRACTION", "1.5")])).is_err());
    }

    #[test]
    fn data_dir_and_job_store_location() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert!(s.data_dir.ends_with("imgidx") || s.data_dir.ends_with("imgidx-data"), "{:?}", s.data_dir);
        assert_eq!(s.job_store_location().unwrap(), JobStoreLocation::Sqlite(s.data_dir.join("jobs.sqlite3")));
        assert_eq!(s.broker.url, None, "serve's in-process queue by default");
        let s = Settings::load_from(
            None,
            env(&[("IMGIDX__DATA_DIR", "/srv/imgidx"), ("IMGIDX__JOBS__URL", "postgres://u@h/db")]),
        )
        .unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/srv/imgidx"));
        assert_eq!(s.job_store_location().unwrap(), JobStoreLocation::Postgres("postgres://u@h/db".into()));
        let s = Settings::load_from(None, env(&[("IMGIDX__JOBS__URL", "sqlite:/tmp/j.db")])).unwrap();
        assert_eq!(s.job_store_location().unwrap(), JobStoreLocation::Sqlite("/tmp/j.db".into()));
        let s = Settings::load_from(None, env(&[("IMGIDX__JOBS__URL", "mysql://x")])).unwrap();
        assert!(s.job_store_location().is_err());
    }

    #[test]
    fn models_dir_defaults_under_data_dir() {
        let s = Settings::load_from(None, env(&[("IMGIDX__DATA_DIR", "/srv/imgidx")])).unwrap();
        assert_eq!(s.models_dir(), PathBuf::from("/srv/imgidx/models"));
        assert_eq!(s.model.dir, PathBuf::from("/srv/imgidx/models/clip-vit-b-32"));
        assert_eq!(s.model.hub_url, "https://huggingface.co");
        let s = Settings::load_from(
            None,
            env(&[("IMGIDX__MODEL__MODELS_DIR", "/models"), ("IMGIDX__MODEL__HUB_URL", "http://mirror:8080")]),
        )
        .unwrap();
        assert_eq!(s.models_dir(), PathBuf::from("/models"));
        assert_eq!(s.model.hub_url, "http://mirror:8080");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(Settings::load_from(None, env(&[("IMGIDX__WORKER__BATCHSIZE", "1")])).is_err());
        assert!(Settings::load_from(None, env(&[("IMGIDX__WORKER__BATCH_SIZE", "0")])).is_err());
        assert!(Settings::load_from(None, env(&[("IMGIDX__API__ALLOWED_ROOTS", "rel/path")])).is_err());
    }

    #[test]
    fn decode_memory_is_derived_by_default_and_bounded_below() {
        assert_eq!(Settings::load_from(None, env(&[])).unwrap().worker.decode_memory_mb, 0, "0: derived");
        let s = Settings::load_from(None, env(&[("IMGIDX__WORKER__DECODE_MEMORY_MB", "2048")])).unwrap();
        assert_eq!(s.worker.decode_memory_mb, 2048);
        let err = Settings::load_from(None, env(&[("IMGIDX__WORKER__DECODE_MEMORY_MB", "8")])).unwrap_err();
        assert!(err.to_string().contains("worker.decode_memory_mb"), "{err}");
    }
}
