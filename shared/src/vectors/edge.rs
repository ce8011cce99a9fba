//! Qdrant Edge embedded in-process: one shard directory holding one unnamed dense vector.
//!
//! `EdgeShard` is synchronous, so every call runs on tokio's blocking pool (`spawn_blocking`)
//! and never stalls the async runtime. Readers run concurrently; writers are serialised by
//! `Inner::writes` (see there).
//!
//! Durability: Edge 0.7.2 writes each update to a WAL but does not fsync it, and `EdgeShard::load`
//! never replays the WAL: data survives a restart only once the segments are flushed. So every
//! `upsert` ends with `EdgeShard::flush()` (WAL + all segments, synced) before returning. A flush
//! costs tens of milliseconds against well under one for the update itself, so concurrent
//! upserts share flushes (group commit): one flush covers every update applied before it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{
    AnyVariants, Condition, CountRequest, CreateIndex, DateTimeWrapper, DeletePayloadOp, Distance, EdgeConfig, EdgeShard,
    EdgeVectorParams, PayloadOps, FieldCondition, FieldIndexOperations, Filter, JsonPath, Match, MatchAny, NamedQuery,
    OperationError, Range,
    Payload, PayloadFieldSchema, PayloadSchemaType, PointId, PointInsertOperations,
    PointOperations, PointStructPersisted, QueryEnum, QueryRequest, ScoringQuery, ScrollRequest, SearchParams,
    UpdateOperation,
    VectorInternal, VectorStructInternal, WithPayloadInterface, WithVector, DEFAULT_VECTOR_NAME,
};

use super::payload::{
    self, IndexKind, DIRS_KEY, FORMAT_KEY, HASH_KEY, HEIGHT_KEY, INDEXED_KEY, INDEXES, MODEL_KEY, MTIME_KEY, PATH_KEY,
    REUSE_KEYS, STAMP_KEYS, TAGS_KEY, WIDTH_KEY,
};
use super::edge_index::{compact_wal, EdgeTuning, INDEX_IDLE};
use super::*;
use crate::collections::Distance as Metric;

/// File Edge persists its configuration in; its presence means a shard exists at the path.
const EDGE_CONFIG_FILE: &str = "edge_config.json";

/// Shares one shard across API handlers and workers; cheap to clone.
#[derive(Clone)]
pub struct EdgeStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Set once: at `open` for an existing shard, else by the first `ensure_collection`.
    shard: OnceLock<EdgeShard>,
    /// Serialises writers (updates, flushes, creation): `EdgeShard::flush` panics instead of
    /// waiting when an update holds the WAL lock, and the shard must be created only once.
    writes: Mutex<WriteLog>,
    /// How the shard is indexed and searched.
    tuning: EdgeTuning,
    /// The background index build (see `edge_index.rs`).
    indexer: Mutex<Indexer>,
}

#[derive(Default)]
struct Indexer {
    /// When the last write was applied.
    last_write: Option<Instant>,
    /// A build thread is running (or waiting for writes to stop).
    running: bool,
    /// Builds that optimised something, since open.
    builds: u64,
}

/// Where the shard's index stands (`imgidx bench search`, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStatus {
    pub points: usize,
    /// Points whose vectors are in an HNSW index.
    pub indexed: usize,
    pub segments: usize,
    /// A background build is running or waiting for writes to stop.
    pub building: bool,
    /// Background builds that optimised something since the store was opened.
    pub builds: u64,
}

/// Update sequence numbers, for group commit.
#[derive(Default)]
struct WriteLog {
    /// Updates applied to the shard so far.
    applied: u64,
    /// `applied` as of the last completed flush: updates up to it are durable.
    flushed: u64,
}

impl EdgeStore {
    /// Whether a shard has been made at `path`.
    pub fn exists_at(path: &Path) -> bool {
        path.join(EDGE_CONFIG_FILE).is_file()
    }

    /// Load the shard at `path` if one exists there; otherwise `ensure_collection` creates it.
    pub fn open(path: &Path) -> Result<Self, VectorStoreError> {
        Self::open_tuned(path, EdgeTuning::default())
    }

    /// As [`open`](Self::open), indexing and searching as `tuning` says (an existing shard
    /// takes its HNSW and optimiser settings; quantization applies to new shards).
    pub fn open_tuned(path: &Path, tuning: EdgeTuning) -> Result<Self, VectorStoreError> {
        let shard = OnceLock::new();
        if Self::exists_at(path) {
            match compact_wal(path) {
                Ok(0) => {}
                Ok(n) => tracing::info!(path = %path.display(), removed = n, "compacted the WAL"),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "WAL not compacted"),
            }
            let loaded = EdgeShard::load(path, None).map_err(edge_err)?;
            let dim = vector_dim(&loaded.config())?;
            loaded.set_hnsw_config(tuning.hnsw()).map_err(edge_err)?;
            loaded.set_optimizers_config(tuning.optimizers(dim)).map_err(edge_err)?;
            // A shard made before an index was added to `INDEXES` gets it now.
            let indexed = loaded.info().payload_schema;
            let missing: Vec<_> = INDEXES.iter().filter(|(key, _)| !indexed.keys().any(|k| k.to_string() == *key)).collect();
            for (key, kind) in &missing {
                loaded.update(index_operation(key, *kind)?).map_err(edge_err)?;
            }
            if !missing.is_empty() {
                loaded.flush();
            }
            let _ = shard.set(loaded);
        }
        let inner =
            Inner { path: path.to_path_buf(), shard, writes: Mutex::default(), tuning, indexer: Mutex::default() };
        let store = Self { inner: Arc::new(inner) };
        // A shard left unindexed (a build cut short by a restart) is built now.
        store.wrote();
        Ok(store)
    }

    /// Searches comparing the query with every vector (the baseline an indexed search's
    /// recall is measured against).
    pub async fn search_exact(&self, vector: &[f32], top_k: usize, filter: &SearchFilter) -> Result<Vec<ScoredImage>, VectorStoreError> {
        let (vector, filter) = (vector.to_vec(), filter.clone());
        self.blocking(move |inner| {
            let params = inner.tuning.search_params(true, inner.tuning.ef_for(0));
            inner.search(vector, top_k, filter, params)
        })
        .await
    }

    /// Searches through the index with beam width `ef` instead of `vectors.hnsw_ef`
    /// (`imgidx bench search` sweeps it).
    pub async fn search_with_ef(
        &self,
        vector: &[f32],
        top_k: usize,
        filter: &SearchFilter,
        ef: usize,
    ) -> Result<Vec<ScoredImage>, VectorStoreError> {
        let (vector, filter) = (vector.to_vec(), filter.clone());
        self.blocking(move |inner| inner.search(vector, top_k, filter, inner.tuning.search_params(false, ef))).await
    }

    /// Where the index stands.
    pub fn index_status(&self) -> Result<IndexStatus, VectorStoreError> {
        let info = self.inner.shard()?.info();
        let indexer = self.inner.lock_indexer();
        Ok(IndexStatus {
            points: info.points_count,
            indexed: info.indexed_vectors_count,
            segments: info.segments_count,
            building: indexer.running,
            builds: indexer.builds,
        })
    }

    /// Builds the index now, in this thread (blocking), whatever the threshold; whether
    /// anything was optimised.
    pub fn index_now(&self) -> Result<bool, VectorStoreError> {
        self.inner.optimize()
    }

    /// Notes a write; past the threshold, starts the background build unless one runs.
    fn wrote(&self) {
        let mut indexer = self.inner.lock_indexer();
        indexer.last_write = Some(Instant::now());
        if indexer.running || !self.inner.tuning.background || self.inner.tuning.index_threshold == 0 {
            return;
        }
        let Ok(shard) = self.inner.shard() else { return };
        let info = shard.info();
        if info.points_count < self.inner.tuning.index_threshold || info.indexed_vectors_count >= info.points_count {
            return;
        }
        indexer.running = true;
        let inner = Arc::clone(&self.inner);
        let started = std::thread::Builder::new().name("edge-index".into()).spawn(move || inner.index_when_idle());
        if let Err(e) = started {
            tracing::warn!(error = %e, "could not start the index build");
            indexer.running = false;
        }
    }

    /// Run `f` on the blocking pool so the shard's synchronous I/O never blocks the runtime.
    async fn blocking<T, F>(&self, f: F) -> Result<T, VectorStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, VectorStoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| VectorStoreError::Other(format!("edge task failed: {e}")))?
    }
}

impl Inner {
    fn shard(&self) -> Result<&EdgeShard, VectorStoreError> {
        self.shard
            .get()
            .ok_or_else(|| VectorStoreError::Other("edge collection not created (call ensure_collection)".into()))
    }

    fn lock_writes(&self) -> MutexGuard<'_, WriteLog> {
        // A writer that panicked mid-flush left `flushed` behind, which only costs a later flush.
        self.writes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_indexer(&self) -> MutexGuard<'_, Indexer> {
        self.indexer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The build thread: waits until writes have stopped for [`INDEX_IDLE`], optimises,
    /// and again while writes came in during a build.
    fn index_when_idle(self: Arc<Self>) {
        loop {
            let since = {
                let mut indexer = self.lock_indexer();
                match indexer.last_write.map(|t| t.elapsed()) {
                    Some(quiet) if quiet < INDEX_IDLE => Some(INDEX_IDLE - quiet),
                    _ => {
                        // Quiet: build, and note when, to know whether writes came meanwhile.
                        indexer.last_write = None;
                        None
                    }
                }
            };
            if let Some(wait) = since {
                std::thread::sleep(wait);
                continue;
            }
            let started = Instant::now();
            match self.optimize() {
                Ok(true) => {
                    self.lock_indexer().builds += 1;
                    tracing::info!(path = %self.path.display(), took = ?started.elapsed(), "embedded index optimised");
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(path = %self.path.display(), error = %e, "embedded index build failed"),
            }
            let mut indexer = self.lock_indexer();
            if indexer.last_write.is_none() {
                indexer.running = false;
                return;
            }
        }
    }

    /// Edge's optimisers, run to the end (blocking); then the result is flushed.
    fn optimize(&self) -> Result<bool, VectorStoreError> {
        let shard = self.shard()?;
        let optimized = shard.optimize().map_err(edge_err)?;
        if optimized {
            let _writes = self.lock_writes();
            flush(shard)?;
        }
        Ok(optimized)
    }

    fn ensure_shape(&self, dim: usize, distance: Metric) -> Result<(), VectorStoreError> {
        let _writes = self.lock_writes();
        if let Some(shard) = self.shard.get() {
            return check_shape(&shard.config(), dim, distance);
        }
        fs::create_dir_all(&self.path)
            .map_err(|e| VectorStoreError::Other(format!("create {}: {e}", self.path.display())))?;
        let shard = EdgeShard::new(&self.path, new_config(dim, distance, &self.tuning)).map_err(edge_err)?;
        for (key, kind) in INDEXES {
            shard.update(index_operation(key, kind)?).map_err(edge_err)?;
        }
        shard.flush();
        let _ = self.shard.set(shard);
        Ok(())
    }

    fn upsert(&self, points: Vec<Point>) -> Result<(), VectorStoreError> {
        let shard = self.shard()?;
        let dim = vector_dim(&shard.config())?;
        let points = points.iter().map(|p| to_edge_point(p, dim)).collect::<Result<Vec<_>, _>>()?;
        let operation =
            UpdateOperation::PointOperation(PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)));
        self.apply_durably(shard, operation)
    }

    /// Applies one update and returns once it is flushed (group commit, see the module doc).
    fn apply_durably(&self, shard: &EdgeShard, operation: UpdateOperation) -> Result<(), VectorStoreError> {
        let seq = {
            let mut log = self.lock_writes();
            shard.update(operation).map_err(edge_err)?;
            log.applied += 1;
            log.applied
        };
        // Load does not replay the WAL: only flushed segments survive a restart. Writers that
        // queued up meanwhile are covered by whichever of them flushes first.
        let mut log = self.lock_writes();
        if log.flushed < seq {
            let covered = log.applied;
            flush(shard)?;
            log.flushed = covered;
        }
        Ok(())
    }

    fn stamps(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, FileStamp>, VectorStoreError> {
        let point_ids: Vec<PointId> = ids.iter().copied().map(PointId::Uuid).collect();
        let fields = STAMP_KEYS.iter().map(|k| json_path(k)).collect::<Result<Vec<_>, _>>()?;
        let records = self
            .shard()?
            .retrieve(&point_ids, Some(WithPayloadInterface::Fields(fields)), Some(WithVector::Bool(false)))
            .map_err(edge_err)?;
        records
            .into_iter()
            .map(|r| Ok((uuid_of(r.id)?, payload::stamp_from_json(&r.payload.unwrap_or_default().0)?)))
            .collect()
    }

    fn vector(&self, id: Uuid) -> Result<Option<Vec<f32>>, VectorStoreError> {
        let records = self
            .shard()?
            .retrieve(&[PointId::Uuid(id)], Some(WithPayloadInterface::Bool(false)), Some(WithVector::Bool(true)))
            .map_err(edge_err)?;
        let Some(record) = records.into_iter().next() else {
            return Ok(None);
        };
        dense(record.vector, record.id).map(Some)
    }

    fn reusable(&self, sha256: &str, model: &str) -> Result<Option<Reusable>, VectorStoreError> {
        let both = [(HASH_KEY, sha256), (MODEL_KEY, model)]
            .into_iter()
            .map(|(k, v)| Ok(Condition::Field(FieldCondition::new_match(json_path(k)?, Match::from(v.to_owned())))))
            .collect::<Result<Vec<_>, VectorStoreError>>()?;
        let request = ScrollRequest {
            offset: None,
            limit: Some(1),
            filter: Some(Filter { must: Some(both), ..Default::default() }),
            with_payload: Some(WithPayloadInterface::Fields(
                REUSE_KEYS.iter().map(|k| json_path(k)).collect::<Result<_, _>>()?,
            )),
            with_vector: WithVector::Bool(true),
            order_by: None,
        };
        let (records, _) = self.shard()?.scroll(request).map_err(edge_err)?;
        let Some(record) = records.into_iter().next() else {
            return Ok(None);
        };
        let (width, height, format) = payload::reuse_facts(&record.payload.unwrap_or_default().0)?;
        Ok(Some(Reusable { vector: dense(record.vector, record.id)?, width, height, format }))
    }

    fn forget_hashes(&self) -> Result<(), VectorStoreError> {
        let shard = self.shard()?;
        // The empty filter matches every point.
        let op = DeletePayloadOp { keys: vec![json_path(HASH_KEY)?], points: None, filter: Some(Filter::default()) };
        self.apply_durably(shard, UpdateOperation::PayloadOperation(PayloadOps::DeletePayload(op)))
    }

    fn search(
        &self,
        vector: Vec<f32>,
        top_k: usize,
        filter: SearchFilter,
        params: SearchParams,
    ) -> Result<Vec<ScoredImage>, VectorStoreError> {
        let shard = self.shard()?;
        let config = shard.config();
        check_query_dim(vector.len(), vector_dim(&config)?)?;
        let distance = metric_of(&config)?;
        let request = QueryRequest {
            prefetches: vec![],
            query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
                query: VectorInternal::Dense(vector),
                using: None,
            }))),
            filter: search_filter(&filter)?,
            score_threshold: filter.min_score.map(|min| OrderedFloat(payload::score_threshold(distance, min))),
            // A shard leaves the offset to a collection above it (which Edge has not):
            // rank `offset + top_k` and skip here.
            limit: top_k.saturating_add(filter.offset),
            offset: 0,
            params: Some(params),
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(true),
        };
        let hits = shard.query(request).map_err(edge_err)?;
        hits.into_iter()
            .skip(filter.offset)
            .take(top_k)
            .map(|hit| {
                let payload = payload::from_json(hit.payload.unwrap_or_default().0)?;
                Ok(ScoredImage { id: uuid_of(hit.id)?, score: distance.to_cosine(hit.score), payload })
            })
            .collect()
    }

    fn delete(&self, ids: &[Uuid]) -> Result<(), VectorStoreError> {
        let shard = self.shard()?;
        let ids = ids.iter().copied().map(PointId::Uuid).collect();
        self.apply_durably(shard, UpdateOperation::PointOperation(PointOperations::DeletePoints { ids }))
    }

    fn paths_under(&self, dir: &str, from: Option<Uuid>, limit: usize) -> Result<PathPage, VectorStoreError> {
        let request = ScrollRequest {
            offset: from.map(PointId::Uuid),
            limit: Some(limit),
            filter: dirs_filter(Some(dir))?,
            with_payload: Some(WithPayloadInterface::Fields(vec![json_path(PATH_KEY)?])),
            with_vector: WithVector::Bool(false),
            order_by: None,
        };
        let (records, next) = self.shard()?.scroll(request).map_err(edge_err)?;
        let points = records
            .into_iter()
            .map(|r| Ok((uuid_of(r.id)?, payload::path_from_json(&r.payload.unwrap_or_default().0)?)))
            .collect::<Result<_, VectorStoreError>>()?;
        Ok(PathPage { points, next: next.map(uuid_of).transpose()? })
    }

    fn points_page(&self, from: Option<Uuid>, limit: usize) -> Result<PointPage, VectorStoreError> {
        let request = ScrollRequest {
            offset: from.map(PointId::Uuid),
            limit: Some(limit),
            filter: None,
            with_payload: Some(WithPayloadInterface::Bool(true)),
            with_vector: WithVector::Bool(true),
            order_by: None,
        };
        let (records, next) = self.shard()?.scroll(request).map_err(edge_err)?;
        let points = records
            .into_iter()
            .map(|r| whole_point(r.id, r.vector, r.payload))
            .collect::<Result<_, VectorStoreError>>()?;
        Ok(PointPage { points, next: next.map(uuid_of).transpose()? })
    }

    fn points(&self, ids: &[Uuid]) -> Result<Vec<Point>, VectorStoreError> {
        let point_ids: Vec<PointId> = ids.iter().copied().map(PointId::Uuid).collect();
        let records = self
            .shard()?
            .retrieve(&point_ids, Some(WithPayloadInterface::Bool(true)), Some(WithVector::Bool(true)))
            .map_err(edge_err)?;
        records.into_iter().map(|r| whole_point(r.id, r.vector, r.payload)).collect()
    }

    fn count(&self) -> Result<u64, VectorStoreError> {
        let n = self.shard()?.count(CountRequest { filter: None, exact: true }).map_err(edge_err)?;
        Ok(n as u64)
    }
}

#[async_trait]
impl VectorStore for EdgeStore {
    async fn ensure_shape(&self, dim: usize, distance: Metric) -> Result<(), VectorStoreError> {
        self.blocking(move |inner| inner.ensure_shape(dim, distance)).await
    }

    async fn attach(&self, dim: usize) -> Result<(), VectorStoreError> {
        let Some(shard) = self.inner.shard.get() else {
            return Err(VectorStoreError::NotFound(format!("no edge shard at {}", self.inner.path.display())));
        };
        let config = shard.config();
        check_shape(&config, dim, metric_of(&config)?)
    }

    async fn upsert(&self, points: Vec<Point>) -> Result<(), VectorStoreError> {
        if points.is_empty() {
            return Ok(());
        }
        self.blocking(move |inner| inner.upsert(points)).await?;
        self.wrote();
        Ok(())
    }

    async fn stamps(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, FileStamp>, VectorStoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids = ids.to_vec();
        self.blocking(move |inner| inner.stamps(&ids)).await
    }

    async fn vector(&self, id: Uuid) -> Result<Option<Vec<f32>>, VectorStoreError> {
        self.blocking(move |inner| inner.vector(id)).await
    }

    async fn reusable(&self, sha256: &str, model: &str) -> Result<Option<Reusable>, VectorStoreError> {
        let (sha256, model) = (sha256.to_owned(), model.to_owned());
        self.blocking(move |inner| inner.reusable(&sha256, &model)).await
    }

    async fn forget_hashes(&self) -> Result<(), VectorStoreError> {
        self.blocking(|inner| inner.forget_hashes()).await
    }

    async fn search(
        &self,
        vector: &[f32],
        top_k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<ScoredImage>, VectorStoreError> {
        if top_k == 0 {
            return Ok(Vec::new());
        }
        let (vector, filter) = (vector.to_vec(), filter.clone());
        self.blocking(move |inner| {
            let ef = inner.tuning.ef_for(usize::try_from(inner.count()?).unwrap_or(usize::MAX));
            inner.search(vector, top_k, filter, inner.tuning.search_params(false, ef))
        })
        .await
    }

    async fn paths_under(&self, dir: &str, from: Option<Uuid>, limit: usize) -> Result<PathPage, VectorStoreError> {
        if limit == 0 {
            return Ok(PathPage::default());
        }
        let dir = dir.to_owned();
        self.blocking(move |inner| inner.paths_under(&dir, from, limit)).await
    }

    async fn points_page(&self, from: Option<Uuid>, limit: usize) -> Result<PointPage, VectorStoreError> {
        if limit == 0 {
            return Ok(PointPage::default());
        }
        self.blocking(move |inner| inner.points_page(from, limit)).await
    }

    async fn points(&self, ids: &[Uuid]) -> Result<Vec<Point>, VectorStoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.blocking(move |inner| inner.points(&ids)).await
    }

    async fn delete(&self, ids: &[Uuid]) -> Result<(), VectorStoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        self.blocking(move |inner| inner.delete(&ids)).await?;
        self.wrote();
        Ok(())
    }

    async fn count(&self) -> Result<u64, VectorStoreError> {
        self.blocking(|inner| inner.count()).await
    }

    async fn size_bytes(&self) -> Result<u64, VectorStoreError> {
        self.blocking(|inner| {
            dir_size(&inner.path).map_err(|e| VectorStoreError::Other(format!("size of {}: {e}", inner.path.display())))
        })
        .await
    }

    async fn healthy(&self) -> bool {
        self.inner.shard.get().is_some()
    }
}

fn new_config(dim: usize, distance: Metric, tuning: &EdgeTuning) -> EdgeConfig {
    let mut vector = EdgeVectorParams::builder(dim, edge_distance(distance));
    if let Some(q) = tuning.quantization_config() {
        vector = vector.quantization_config(q);
    }
    EdgeConfig::builder()
        .vector(DEFAULT_VECTOR_NAME, vector.build())
        .hnsw_config(tuning.hnsw())
        .optimizers(tuning.optimizers(dim))
        .build()
}

/// `EdgeShard::flush`, which panics (`try_lock`/`try_read` then `expect`) when an
/// optimisation holds the segments for the moment it swaps one in: tried again shortly.
fn flush(shard: &EdgeShard) -> Result<(), VectorStoreError> {
    const TRIES: u32 = 200;
    for _ in 0..TRIES {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.flush())).is_ok() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Err(VectorStoreError::Other("the embedded store could not flush (its segments stayed locked)".into()))
}

fn edge_distance(distance: Metric) -> Distance {
    match distance {
        Metric::Cosine => Distance::Cosine,
        Metric::Dot => Distance::Dot,
        Metric::Euclid => Distance::Euclid,
    }
}

/// How the shard compares vectors (one of the distances collections are made with).
fn metric_of(config: &EdgeConfig) -> Result<Metric, VectorStoreError> {
    let distance = config.vectors.get(DEFAULT_VECTOR_NAME).map(|v| v.distance);
    Metric::ALL
        .into_iter()
        .find(|m| Some(edge_distance(*m)) == distance)
        .ok_or_else(|| VectorStoreError::Mismatch(format!("edge shard uses {distance:?} distance")))
}

/// Dimension of the shard's unnamed vector.
fn vector_dim(config: &EdgeConfig) -> Result<usize, VectorStoreError> {
    config
        .vectors
        .get(DEFAULT_VECTOR_NAME)
        .map(|v| v.size)
        .ok_or_else(|| VectorStoreError::Mismatch("edge shard has no unnamed dense vector".into()))
}

fn check_shape(config: &EdgeConfig, dim: usize, distance: Metric) -> Result<(), VectorStoreError> {
    let Some(params) = config.vectors.get(DEFAULT_VECTOR_NAME) else {
        return Err(VectorStoreError::Mismatch("edge shard has no unnamed dense vector".into()));
    };
    if params.size != dim || params.distance != edge_distance(distance) {
        return Err(VectorStoreError::Mismatch(format!(
            "edge shard holds {}-dim {:?} vectors, expected {dim}-dim {}",
            params.size,
            params.distance,
            distance.as_str()
        )));
    }
    Ok(())
}

fn check_query_dim(got: usize, dim: usize) -> Result<(), VectorStoreError> {
    if got != dim {
        return Err(VectorStoreError::Mismatch(format!("vector has {got} dims, collection has {dim}")));
    }
    Ok(())
}

/// The unnamed dense vector of a record: `Single`, or `Named` under the default name.
fn dense(vector: Option<VectorStructInternal>, id: PointId) -> Result<Vec<f32>, VectorStoreError> {
    match vector {
        Some(VectorStructInternal::Single(v)) => Ok(v),
        Some(VectorStructInternal::Named(mut named)) => match named.remove(DEFAULT_VECTOR_NAME) {
            Some(VectorInternal::Dense(v)) => Ok(v),
            _ => Err(VectorStoreError::Mismatch(format!("point {id:?} has no unnamed dense vector"))),
        },
        _ => Err(VectorStoreError::Mismatch(format!("point {id:?} has no unnamed dense vector"))),
    }
}

/// The payload index on `key`: filters and reuse lookups use it instead of a payload scan.
fn index_operation(key: &str, kind: IndexKind) -> Result<UpdateOperation, VectorStoreError> {
    let schema = match kind {
        IndexKind::Keyword => PayloadSchemaType::Keyword,
        IndexKind::Integer => PayloadSchemaType::Integer,
        IndexKind::Datetime => PayloadSchemaType::Datetime,
    };
    Ok(UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(CreateIndex {
        field_name: json_path(key)?,
        field_schema: Some(PayloadFieldSchema::FieldType(schema)),
    })))
}

/// Every restriction of `filter`, all of which must hold.
fn search_filter(filter: &SearchFilter) -> Result<Option<Filter>, VectorStoreError> {
    let mut must = Vec::new();
    if let Some(dir) = filter.path_prefix.as_deref().and_then(payload::prefix_dir) {
        must.push(FieldCondition::new_match(json_path(DIRS_KEY)?, Match::from(dir)));
    }
    for tag in &filter.tags {
        must.push(FieldCondition::new_match(json_path(TAGS_KEY)?, Match::from(tag.clone())));
    }
    if !filter.formats.is_empty() {
        let any = AnyVariants::Strings(filter.formats.iter().cloned().collect());
        must.push(FieldCondition::new_match(json_path(FORMAT_KEY)?, Match::Any(MatchAny { any })));
    }
    let at_least = |n: u32| Range { gte: Some(OrderedFloat(f64::from(n))), ..Range::default() };
    if let Some(w) = filter.min_width {
        must.push(FieldCondition::new_range(json_path(WIDTH_KEY)?, at_least(w)));
    }
    if let Some(h) = filter.min_height {
        must.push(FieldCondition::new_range(json_path(HEIGHT_KEY)?, at_least(h)));
    }
    if !filter.mtime_ns.is_open() {
        // Nanoseconds as f64 keep 1/4 µs at today's dates: finer than any file system's clock.
        let bound = |t: Option<i64>| t.map(|t| OrderedFloat(t as f64));
        let range = Range { gte: bound(filter.mtime_ns.from), lte: bound(filter.mtime_ns.to), ..Range::default() };
        must.push(FieldCondition::new_range(json_path(MTIME_KEY)?, range));
    }
    if !filter.indexed_at.is_open() {
        let range = Range {
            gte: filter.indexed_at.from.map(DateTimeWrapper),
            lte: filter.indexed_at.to.map(DateTimeWrapper),
            gt: None,
            lt: None,
        };
        must.push(FieldCondition::new_datetime_range(json_path(INDEXED_KEY)?, range));
    }
    let must: Vec<Condition> = must.into_iter().map(Condition::Field).collect();
    Ok((!must.is_empty()).then(|| Filter { must: Some(must), ..Default::default() }))
}

fn dirs_filter(prefix: Option<&str>) -> Result<Option<Filter>, VectorStoreError> {
    let Some(dir) = prefix.and_then(payload::prefix_dir) else {
        return Ok(None);
    };
    let condition = FieldCondition::new_match(json_path(DIRS_KEY)?, Match::from(dir));
    Ok(Some(Filter::new_must(Condition::Field(condition))))
}

fn to_edge_point(point: &Point, dim: usize) -> Result<PointStructPersisted, VectorStoreError> {
    check_query_dim(point.vector.len(), dim)?;
    Ok(PointStructPersisted {
        id: PointId::Uuid(point.id),
        vector: VectorStructInternal::Single(point.vector.clone()).into(),
        payload: Some(Payload(payload::to_json(&point.payload)?)),
    })
}

fn json_path(key: &str) -> Result<JsonPath, VectorStoreError> {
    key.parse().map_err(|_| VectorStoreError::Other(format!("invalid payload key {key}")))
}

/// A stored record as a [`Point`] (it was read with its vector and whole payload).
fn whole_point(id: PointId, vector: Option<VectorStructInternal>, payload: Option<Payload>) -> Result<Point, VectorStoreError> {
    Ok(Point { id: uuid_of(id)?, vector: dense(vector, id)?, payload: payload::from_json(payload.unwrap_or_default().0)? })
}

fn uuid_of(id: PointId) -> Result<Uuid, VectorStoreError> {
    match id {
        PointId::Uuid(uuid) => Ok(uuid),
        PointId::NumId(n) => Err(VectorStoreError::Other(format!("unexpected numeric point id {n}"))),
    }
}

/// Bytes allocated on disk under `path` (files only). Uses allocated blocks on Unix because
/// Edge preallocates sparse mmap files whose apparent length overstates their real cost.
fn dir_size(path: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(path)? {
        // An index build swaps segments in and out: what vanished meanwhile counts nothing.
        let sized = entry.and_then(|entry| {
            let meta = entry.metadata()?; // does not follow symlinks
            if meta.is_dir() {
                dir_size(&entry.path())
            } else if meta.is_file() {
                Ok(allocated_bytes(&meta))
            } else {
                Ok(0)
            }
        });
        match sized {
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

#[cfg(unix)]
fn allocated_bytes(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blocks() * 512
}

#[cfg(not(unix))]
fn allocated_bytes(meta: &fs::Metadata) -> u64 {
    meta.len()
}

fn edge_err(e: OperationError) -> VectorStoreError {
    VectorStoreError::Other(format!("qdrant edge: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::conformance as suite;
    use super::*;

    const DIM: usize = 8;

    async fn new_store(dir: &tempfile::TempDir) -> EdgeStore {
        let store = EdgeStore::open(&dir.path().join("vectors")).expect("open");
        store.ensure_collection(DIM).await.expect("ensure_collection");
        store
    }

    #[tokio::test]
    async fn ensure_collection_idempotent_and_mismatch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EdgeStore::open(&dir.path().join("vectors")).expect("open");
        assert!(!store.healthy().await, "no shard before ensure_collection");
        suite::ensure_collection_idempotent_and_mismatch(&store, DIM).await;
        assert!(store.healthy().await);
        drop(store);
        // The dim check also holds for a shard loaded from disk.
        let reopened = EdgeStore::open(&dir.path().join("vectors")).expect("reopen");
        let err = reopened.ensure_collection(DIM + 1).await.expect_err("dim mismatch");
        assert!(matches!(err, VectorStoreError::Mismatch(_)), "{err:?}");
    }

    #[tokio::test]
    async fn upsert_count_and_stamps() {
        let dir = tempfile::tempdir().expect("tempdir");
        suite::upsert_count_and_stamps(&new_store(&dir).await, DIM).await;
    }

    #[tokio::test]
    async fn reuse_by_content_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        suite::reuse_by_content_hash(&new_store(&dir).await, DIM).await;
    }

    fn collections(dir: &tempfile::TempDir) -> Collections {
        let backend = EdgeCollections::new("images", dir.path().join("vectors"), dir.path().join("collections"));
        Collections::new(Box::new(backend))
    }

    #[tokio::test]
    async fn collections_are_made_opened_aliased_and_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A shard is opened by one process only (Edge locks its WAL): one `Collections`.
        let a = collections(&dir);
        suite::collections::collections_are_made_opened_aliased_and_dropped(&a, &a, "t", DIM).await;
        assert!(!dir.path().join("collections").join("t-a__1").exists(), "dropped from disk");
        assert!(dir.path().join("collections").join("t-dot__1").join(EDGE_CONFIG_FILE).is_file());
    }

    #[tokio::test]
    async fn an_existing_collection_of_another_size_is_a_mismatch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = collections(&dir);
        suite::collections::an_existing_collection_of_another_size_is_a_mismatch(&a, &a, "t", DIM).await;
        drop(a);
        // And so is a shard loaded from disk.
        let err = collections(&dir).open("t-a__1", DIM + 1, None).await.err().expect("other size");
        assert!(matches!(err, VectorStoreError::Mismatch(_)), "{err:?}");
    }

    #[tokio::test]
    async fn the_initial_collection_lives_where_it_always_did() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = collections(&dir).open("images", DIM, Some(Metric::Cosine)).await.expect("initial");
        store.upsert(vec![suite::point(DIM, 0)]).await.expect("upsert");
        assert!(dir.path().join("vectors").join(EDGE_CONFIG_FILE).is_file());
        // A name that is not a collection name never leaves the collections directory.
        let err = collections(&dir).open("../escape__1", DIM, Some(Metric::Cosine)).await.err().expect("bad name");
        assert!(matches!(err, VectorStoreError::Other(_)), "{err:?}");
        assert!(!dir.path().join("escape__1").exists());
    }

    #[tokio::test]
    async fn search_orders_by_cosine() {
        let dir = tempfile::tempdir().expect("tempdir");
        suite::search_orders_by_cosine(&new_store(&dir).await, DIM).await;
    }

    #[tokio::test]
    async fn search_path_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        suite::search_path_prefix(&new_store(&dir).await, DIM).await;
    }

    #[tokio::test]
    async fn search_tags() {
        let dir = tempfile::tempdir().expect("tempdir");
        suite::search_tags(&new_store(&dir).await, DIM).await;
    }

    #[tokio::test]
    async fn search_filters_and_pages() {
        let dir = tempfile::tempdir().expect("tempdir");
        suite::search_filters_and_pages(&new_store(&dir).await, DIM).await;
    }

    #[tokio::test]
    async fn a_shard_from_before_an_index_gets_it_when_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shard");
        std::fs::create_dir_all(&path).expect("dir");
        let shard = EdgeShard::new(&path, new_config(DIM, Metric::Cosine, &EdgeTuning::default())).expect("shard");
        shard.update(index_operation(DIRS_KEY, IndexKind::Keyword).expect("op")).expect("index");
        shard.flush();
        drop(shard);
        let store = EdgeStore::open(&path).expect("open");
        let indexed = store.inner.shard.get().expect("loaded").info().payload_schema;
        for (key, _) in INDEXES {
            assert!(indexed.keys().any(|k| k.to_string() == key), "{key} is indexed: {indexed:?}");
        }
    }

    #[tokio::test]
    async fn paths_under_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        suite::paths_under_and_delete(&new_store(&dir).await, DIM).await;
    }

    #[tokio::test]
    async fn search_min_score() {
        let dir = tempfile::tempdir().expect("tempdir");
        suite::search_min_score(&new_store(&dir).await, DIM).await;
    }

    #[tokio::test]
    async fn whole_points_in_pages() {
        let dir = tempfile::tempdir().expect("tempdir");
        suite::whole_points_in_pages(&new_store(&dir).await, DIM).await;
    }

    #[tokio::test]
    async fn vector_of_a_point() {
        let dir = tempfile::tempdir().expect("tempdir");
        suite::vector_of_a_point(&new_store(&dir).await, DIM).await;
    }

    #[tokio::test]
    async fn upsert_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        suite::upsert_replaces(&new_store(&dir).await, DIM).await;
    }

    #[tokio::test]
    async fn wrong_dim_vectors_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        suite::wrong_dim_vectors_rejected(&new_store(&dir).await, DIM).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_upserts() {
        let dir = tempfile::tempdir().expect("tempdir");
        suite::concurrent_upserts(Arc::new(new_store(&dir).await), DIM).await;
    }

    #[tokio::test]
    async fn persists_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vectors");
        let points = suite::points(DIM, 20);
        {
            let store = new_store(&dir).await;
            store.upsert(points.clone()).await.expect("upsert");
        }
        let store = EdgeStore::open(&path).expect("reopen");
        assert!(store.healthy().await, "existing shard is loaded at open");
        store.ensure_collection(DIM).await.expect("same dim is fine");
        suite::expect_contents(&store, &points).await;
        assert!(store.size_bytes().await.expect("size") > 0);
    }

    /// Edge locks its WAL directory: a second store on the same path fails instead of corrupting
    /// it, which is why one process must share one `EdgeStore`.
    #[tokio::test]
    async fn second_open_of_a_live_shard_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = new_store(&dir).await;
        assert!(EdgeStore::open(&dir.path().join("vectors")).is_err());
        drop(store);
        assert!(EdgeStore::open(&dir.path().join("vectors")).is_ok(), "lock released on drop");
    }

    /// Durability must not depend on a clean shutdown: a clone of the store kept alive (so Edge's
    /// flush-on-drop never runs) while a second process-like instance reads the directory.
    #[tokio::test]
    async fn upsert_durable_without_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = new_store(&dir).await;
        let points = suite::points(DIM, 10);
        store.upsert(points.clone()).await.expect("upsert");
        let copy = tempfile::tempdir().expect("tempdir");
        copy_dir(&dir.path().join("vectors"), copy.path()).expect("copy shard files");
        let from_disk = EdgeStore::open(copy.path()).expect("open copy");
        suite::expect_contents(&from_disk, &points).await;
        drop(store);
    }

    /// Cost probe, not a check: `cargo test -p imgidx-shared edge_flush_cost -- --ignored --nocapture`.
    /// Times update vs flush for 512-dim points and shows how the (never truncated) WAL grows.
    #[test]
    #[ignore]
    fn edge_flush_cost() {
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = Inner {
            path: dir.path().to_path_buf(),
            shard: OnceLock::new(),
            writes: Mutex::default(),
            tuning: EdgeTuning::default(),
            indexer: Mutex::default(),
        };
        inner.ensure_shape(512, Metric::Cosine).expect("create");
        let shard = inner.shard().expect("shard");
        for batch in [1u64, 32] {
            let (mut update, mut flush) = (Duration::ZERO, Duration::ZERO);
            let rounds = 50;
            for r in 0..rounds {
                let points: Vec<_> = (0..batch)
                    .map(|i| to_edge_point(&suite::point(512, r * batch + i + batch * 1000), 512).expect("point"))
                    .collect();
                let op = UpdateOperation::PointOperation(PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)));
                let t = Instant::now();
                shard.update(op).expect("update");
                update += t.elapsed();
                let t = Instant::now();
                shard.flush();
                flush += t.elapsed();
            }
            println!(
                "batch {batch}: update {:?}/op, flush {:?}/op",
                update / rounds as u32,
                flush / rounds as u32
            );
        }
        let wal = dir_size(&dir.path().join("wal")).expect("wal size");
        let total = dir_size(dir.path()).expect("size");
        println!("after {} points: wal {wal} B allocated, shard total {total} B", 50 * 33);
    }

    fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
        fs::create_dir_all(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            let target = to.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                copy_dir(&entry.path(), &target)?;
            } else {
                fs::copy(entry.path(), target)?;
            }
        }
        Ok(())
    }

    /// A build runs beside searches and upserts: both go on, and stay right, while it runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_index_build_does_not_block_searches_or_upserts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dim = 32;
        // No background build: this test starts one itself.
        let tuning = EdgeTuning { index_threshold: 5_000, background: false, ..EdgeTuning::default() };
        let store = EdgeStore::open_tuned(&dir.path().join("vectors"), tuning).expect("open");
        store.ensure_collection(dim).await.expect("ensure");
        let all: Vec<Point> = (0..20_000).map(|i| suite::point(dim, i)).collect();
        for chunk in all.chunks(2_000) {
            store.upsert(chunk.to_vec()).await.expect("upsert");
        }
        assert_eq!(store.index_status().expect("status").indexed, 0, "nothing indexed yet");
        let building = store.clone();
        let build = tokio::task::spawn_blocking(move || building.index_now());
        let (mut searches, mut upserts) = (0u64, 0u64);
        while !build.is_finished() {
            let q = &all[(searches * 7919 % 20_000) as usize];
            let hits = store.search(&q.vector, 1, &SearchFilter::default()).await.expect("search during the build");
            assert_eq!(hits.first().map(|h| h.id), Some(q.id), "a stored vector finds itself");
            searches += 1;
            if searches % 20 == 0 {
                store.upsert(vec![suite::point(dim, 20_000 + upserts)]).await.expect("upsert during the build");
                upserts += 1;
            }
        }
        assert!(build.await.expect("join").expect("build"), "the build optimised");
        assert!(searches >= 10 && upserts >= 1, "{searches} searches, {upserts} upserts ran during the build");
        let status = store.index_status().expect("status");
        assert!(status.indexed >= 20_000, "{status:?}");
        assert_eq!(store.count().await.expect("count"), 20_000 + upserts);
        // Indexed search agrees with exact search on what it finds best.
        for q in all.iter().step_by(997) {
            let exact = store.search_exact(&q.vector, 5, &SearchFilter::default()).await.expect("exact");
            let indexed = store.search(&q.vector, 5, &SearchFilter::default()).await.expect("indexed");
            assert_eq!(exact[0].id, indexed[0].id);
        }
    }

    /// Past the threshold, the build starts by itself once writes stop, and survives a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_threshold_the_index_builds_once_writes_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dim = 16;
        let path = dir.path().join("vectors");
        let tuning = EdgeTuning { index_threshold: 3_000, ..EdgeTuning::default() };
        let store = EdgeStore::open_tuned(&path, tuning.clone()).expect("open");
        store.ensure_collection(dim).await.expect("ensure");
        store.upsert((0..2_000).map(|i| suite::point(dim, i)).collect()).await.expect("upsert");
        assert!(!store.index_status().expect("status").building, "under the threshold");
        store.upsert((2_000..4_000).map(|i| suite::point(dim, i)).collect()).await.expect("upsert");
        assert!(store.index_status().expect("status").building, "past it: waiting for writes to stop");
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        while store.index_status().expect("status").building {
            assert!(Instant::now() < deadline, "the build never ended");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let status = store.index_status().expect("status");
        assert!(status.builds >= 1 && status.indexed >= 3_000, "{status:?}");
        drop(store);
        let reopened = EdgeStore::open_tuned(&path, tuning).expect("reopen");
        let status = reopened.index_status().expect("status");
        assert!(status.indexed >= 3_000 && status.points == 4_000, "the index is on disk: {status:?}");
    }

}
