//! Qdrant server over gRPC (`qdrant-client`): one collection with one unnamed dense vector.
//!
//! Writes use `wait(true)`, so an upsert returns once the server has applied it (its WAL is
//! persisted before it acknowledges).

use std::collections::HashMap as StdHashMap;
use std::sync::{Arc, OnceLock};

use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::vector_output::Vector as VectorKind;
use qdrant_client::qdrant::vectors_config::Config as VectorsConfigKind;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeletePayloadPointsBuilder,
    DeletePointsBuilder,
    DatetimeRange, Distance, FieldType, Filter, GetPointsBuilder, PayloadIncludeSelector, PointId, PointStruct,
    PointsIdsList, Query, Range,
    QueryPointsBuilder,
    ScrollPointsBuilder, UpsertPointsBuilder, Value, VectorParams, VectorParamsBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};

use super::payload::{
    self, IndexKind, DIRS_KEY, FORMAT_KEY, HASH_KEY, HEIGHT_KEY, INDEXED_KEY, INDEXES, MODEL_KEY, MTIME_KEY, PATH_KEY,
    REUSE_KEYS, STAMP_KEYS, TAGS_KEY, WIDTH_KEY,
};
use super::*;
use crate::collections::Distance as Metric;

/// Points per upsert request: keeps each gRPC message far below the server's size limit.
const UPSERT_CHUNK: usize = 256;
/// Points sampled to estimate the average stored payload size in `size_bytes`.
const PAYLOAD_SAMPLE: u32 = 64;

pub struct QdrantStore {
    client: Arc<Qdrant>,
    collection: String,
    /// Vector size, known once `ensure_shape` has checked the collection.
    dim: OnceLock<usize>,
    /// How the collection compares vectors, known once `ensure_shape` has checked it.
    distance: OnceLock<Metric>,
}

/// A client of the server at `url`; no request is made until the first call (so this never blocks).
pub(super) fn client(url: &str, api_key: Option<&str>) -> Result<Qdrant, VectorStoreError> {
    Qdrant::from_url(url)
        .api_key(api_key)
        // The compatibility check does a blocking health call and prints to stdout.
        .skip_compatibility_check()
        .build()
        .map_err(map_err)
}

impl QdrantStore {
    /// Build the client; no request is made until the first call (so this never blocks).
    pub fn connect(url: &str, api_key: Option<&str>, collection: &str) -> Result<Self, VectorStoreError> {
        Ok(Self::with_client(Arc::new(client(url, api_key)?), collection))
    }

    /// A store of `collection` on a client shared with other collections.
    pub fn with_client(client: Arc<Qdrant>, collection: &str) -> Self {
        Self { client, collection: collection.to_string(), dim: OnceLock::new(), distance: OnceLock::new() }
    }

    /// Size of the existing collection's unnamed vector, checked to use `distance`; `None`
    /// when the collection does not exist.
    async fn existing_dim(&self, distance: Metric) -> Result<Option<usize>, VectorStoreError> {
        if !self.client.collection_exists(&self.collection).await.map_err(map_err)? {
            return Ok(None);
        }
        let params = self.vector_params().await?;
        if params.distance != qdrant_distance(distance) as i32 {
            return Err(VectorStoreError::Mismatch(format!(
                "collection {} does not use {} distance",
                self.collection,
                distance.as_str()
            )));
        }
        Ok(Some(params.size as usize))
    }

    async fn vector_params(&self) -> Result<VectorParams, VectorStoreError> {
        let info = self.client.collection_info(&self.collection).await.map_err(map_err)?;
        let config = info
            .result
            .and_then(|i| i.config)
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config);
        match config {
            Some(VectorsConfigKind::Params(params)) => Ok(params),
            _ => Err(VectorStoreError::Mismatch(format!(
                "collection {} has no single unnamed vector",
                self.collection
            ))),
        }
    }

    async fn create(&self, dim: usize, distance: Metric) -> Result<(), VectorStoreError> {
        let request = CreateCollectionBuilder::new(&self.collection)
            .vectors_config(VectorParamsBuilder::new(dim as u64, qdrant_distance(distance)));
        match self.client.create_collection(request).await {
            Ok(_) => Ok(()),
            // Another process may have created it between our check and create; verify below.
            Err(e) if self.client.collection_exists(&self.collection).await.unwrap_or(false) => {
                tracing::debug!("create collection raced: {e}");
                Ok(())
            }
            Err(e) => Err(map_err(e)),
        }
    }

    /// The payload indexes filters and reuse lookups use (`payload::INDEXES`); creating an
    /// existing index is a no-op, so a collection made before one was added gets it here.
    async fn ensure_indexes(&self) -> Result<(), VectorStoreError> {
        for (key, kind) in INDEXES {
            let field = match kind {
                IndexKind::Keyword => FieldType::Keyword,
                IndexKind::Integer => FieldType::Integer,
                IndexKind::Datetime => FieldType::Datetime,
            };
            let request = CreateFieldIndexCollectionBuilder::new(&self.collection, key, field).wait(true);
            self.client.create_field_index(request).await.map_err(map_err)?;
        }
        Ok(())
    }

    fn dim(&self) -> Result<usize, VectorStoreError> {
        self.dim
            .get()
            .copied()
            .ok_or_else(|| VectorStoreError::Other("collection not checked (call ensure_collection)".into()))
    }

    fn check_dim(&self, got: usize) -> Result<(), VectorStoreError> {
        let dim = self.dim()?;
        if got != dim {
            return Err(VectorStoreError::Mismatch(format!("vector has {got} dims, collection has {dim}")));
        }
        Ok(())
    }

    /// Average serialized payload size over a small sample of points (0 when empty).
    async fn average_payload_bytes(&self) -> Result<u64, VectorStoreError> {
        let request = ScrollPointsBuilder::new(&self.collection).limit(PAYLOAD_SAMPLE).with_payload(true);
        let sample = self.client.scroll(request).await.map_err(map_err)?.result;
        if sample.is_empty() {
            return Ok(0);
        }
        let n = sample.len();
        let total: usize = sample
            .into_iter()
            .map(|p| serde_json::Value::Object(json_map(p.payload)).to_string().len())
            .sum();
        Ok((total / n) as u64)
    }
}

#[async_trait]
impl VectorStore for QdrantStore {
    async fn ensure_shape(&self, dim: usize, distance: Metric) -> Result<(), VectorStoreError> {
        match self.existing_dim(distance).await? {
            Some(existing) if existing != dim => {
                return Err(VectorStoreError::Mismatch(format!(
                    "collection {} holds {existing}-dim vectors, expected {dim}",
                    self.collection
                )));
            }
            Some(_) => {}
            None => {
                self.create(dim, distance).await?;
                // Re-read: if another process won a creation race with another dim, catch it.
                if self.existing_dim(distance).await? != Some(dim) {
                    return Err(VectorStoreError::Mismatch(format!("collection {} has another dim", self.collection)));
                }
            }
        }
        self.ensure_indexes().await?;
        let _ = self.dim.set(dim);
        let _ = self.distance.set(distance);
        Ok(())
    }

    async fn attach(&self, dim: usize) -> Result<(), VectorStoreError> {
        if !self.client.collection_exists(&self.collection).await.map_err(map_err)? {
            return Err(VectorStoreError::NotFound(format!("collection {} does not exist", self.collection)));
        }
        let params = self.vector_params().await?;
        let distance = Metric::ALL
            .into_iter()
            .find(|m| qdrant_distance(*m) as i32 == params.distance)
            .ok_or_else(|| VectorStoreError::Mismatch(format!("collection {} uses an unsupported distance", self.collection)))?;
        if params.size as usize != dim {
            return Err(VectorStoreError::Mismatch(format!(
                "collection {} holds {}-dim vectors, expected {dim}",
                self.collection, params.size
            )));
        }
        // A collection made before an index was added to `INDEXES` gets it now.
        self.ensure_indexes().await?;
        let _ = self.dim.set(dim);
        let _ = self.distance.set(distance);
        Ok(())
    }

    async fn upsert(&self, points: Vec<Point>) -> Result<(), VectorStoreError> {
        if points.is_empty() {
            return Ok(());
        }
        let points = points
            .into_iter()
            .map(|p| {
                self.check_dim(p.vector.len())?;
                let payload = Payload::from(payload::to_json(&p.payload)?);
                Ok(PointStruct::new(p.id.to_string(), p.vector, payload))
            })
            .collect::<Result<Vec<_>, VectorStoreError>>()?;
        let request = UpsertPointsBuilder::new(&self.collection, points).wait(true);
        self.client.upsert_points_chunked(request, UPSERT_CHUNK).await.map_err(map_err)?;
        Ok(())
    }

    async fn stamps(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, FileStamp>, VectorStoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let point_ids: Vec<PointId> = ids.iter().map(|id| PointId::from(id.to_string())).collect();
        let request = GetPointsBuilder::new(&self.collection, point_ids)
            .with_payload(PayloadIncludeSelector::new(STAMP_KEYS.map(String::from).to_vec()))
            .with_vectors(false);
        let found = self.client.get_points(request).await.map_err(map_err)?.result;
        found
            .into_iter()
            .map(|p| Ok((uuid_of(p.id)?, payload::stamp_from_json(&json_map(p.payload))?)))
            .collect()
    }

    async fn vector(&self, id: Uuid) -> Result<Option<Vec<f32>>, VectorStoreError> {
        let request = GetPointsBuilder::new(&self.collection, vec![PointId::from(id.to_string())])
            .with_payload(false)
            .with_vectors(true);
        let Some(point) = self.client.get_points(request).await.map_err(map_err)?.result.into_iter().next() else {
            return Ok(None);
        };
        match point.vectors.and_then(|v| v.get_vector()) {
            Some(VectorKind::Dense(dense)) => Ok(Some(dense.data)),
            _ => Err(VectorStoreError::Mismatch(format!("point {id} has no unnamed dense vector"))),
        }
    }

    async fn reusable(&self, sha256: &str, model: &str) -> Result<Option<Reusable>, VectorStoreError> {
        let filter = Filter::must([
            Condition::matches(HASH_KEY, sha256.to_string()),
            Condition::matches(MODEL_KEY, model.to_string()),
        ]);
        let request = ScrollPointsBuilder::new(&self.collection)
            .filter(filter)
            .limit(1)
            .with_payload(PayloadIncludeSelector::new(REUSE_KEYS.map(String::from).to_vec()))
            .with_vectors(true);
        let Some(point) = self.client.scroll(request).await.map_err(map_err)?.result.into_iter().next() else {
            return Ok(None);
        };
        let Some(VectorKind::Dense(dense)) = point.vectors.and_then(|v| v.get_vector()) else {
            return Err(VectorStoreError::Mismatch(format!("a point of {} has no unnamed dense vector", self.collection)));
        };
        let (width, height, format) = payload::reuse_facts(&json_map(point.payload))?;
        Ok(Some(Reusable { vector: dense.data, width, height, format }))
    }

    async fn forget_hashes(&self) -> Result<(), VectorStoreError> {
        // The empty filter selects every point.
        let request = DeletePayloadPointsBuilder::new(&self.collection, vec![HASH_KEY.to_string()])
            .points_selector(Filter::default())
            .wait(true);
        self.client.delete_payload(request).await.map_err(map_err)?;
        Ok(())
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
        self.check_dim(vector.len())?;
        let mut request = QueryPointsBuilder::new(&self.collection)
            .query(Query::new_nearest(vector.to_vec()))
            .limit(top_k as u64)
            .offset(filter.offset as u64)
            .with_payload(true);
        if let Some(filter) = search_filter(filter) {
            request = request.filter(filter);
        }
        let distance = self.distance.get().copied().unwrap_or_default();
        if let Some(min) = filter.min_score {
            request = request.score_threshold(payload::score_threshold(distance, min));
        }
        let hits = self.client.query(request).await.map_err(map_err)?.result;
        hits.into_iter()
            .map(|hit| {
                let payload = payload::from_json(json_map(hit.payload))?;
                Ok(ScoredImage { id: uuid_of(hit.id)?, score: distance.to_cosine(hit.score), payload })
            })
            .collect()
    }

    async fn paths_under(&self, dir: &str, from: Option<Uuid>, limit: usize) -> Result<PathPage, VectorStoreError> {
        if limit == 0 {
            return Ok(PathPage::default());
        }
        let mut request = ScrollPointsBuilder::new(&self.collection)
            .limit(u32::try_from(limit).unwrap_or(u32::MAX))
            .with_payload(PayloadIncludeSelector::new(vec![PATH_KEY.to_string()]))
            .with_vectors(false);
        if let Some(filter) = dirs_filter(Some(dir)) {
            request = request.filter(filter);
        }
        if let Some(from) = from {
            request = request.offset(PointId::from(from.to_string()));
        }
        let response = self.client.scroll(request).await.map_err(map_err)?;
        let points = response
            .result
            .into_iter()
            .map(|p| Ok((uuid_of(p.id)?, payload::path_from_json(&json_map(p.payload))?)))
            .collect::<Result<_, VectorStoreError>>()?;
        let next = response.next_page_offset.map(|id| uuid_of(Some(id))).transpose()?;
        Ok(PathPage { points, next })
    }

    async fn points_page(&self, from: Option<Uuid>, limit: usize) -> Result<PointPage, VectorStoreError> {
        if limit == 0 {
            return Ok(PointPage::default());
        }
        let mut request = ScrollPointsBuilder::new(&self.collection)
            .limit(u32::try_from(limit).unwrap_or(u32::MAX))
            .with_payload(true)
            .with_vectors(true);
        if let Some(from) = from {
            request = request.offset(PointId::from(from.to_string()));
        }
        let response = self.client.scroll(request).await.map_err(map_err)?;
        let points = response
            .result
            .into_iter()
            .map(|p| whole_point(p.id, p.vectors, p.payload))
            .collect::<Result<_, VectorStoreError>>()?;
        let next = response.next_page_offset.map(|id| uuid_of(Some(id))).transpose()?;
        Ok(PointPage { points, next })
    }

    async fn points(&self, ids: &[Uuid]) -> Result<Vec<Point>, VectorStoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<PointId> = ids.iter().map(|id| PointId::from(id.to_string())).collect();
        let request = GetPointsBuilder::new(&self.collection, ids).with_payload(true).with_vectors(true);
        let response = self.client.get_points(request).await.map_err(map_err)?;
        response.result.into_iter().map(|p| whole_point(p.id, p.vectors, p.payload)).collect()
    }

    async fn delete(&self, ids: &[Uuid]) -> Result<(), VectorStoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<PointId> = ids.iter().map(|id| PointId::from(id.to_string())).collect();
        let request = DeletePointsBuilder::new(&self.collection).points(PointsIdsList { ids }).wait(true);
        self.client.delete_points(request).await.map_err(map_err)?;
        Ok(())
    }

    async fn count(&self) -> Result<u64, VectorStoreError> {
        let request = CountPointsBuilder::new(&self.collection).exact(true);
        let response = self.client.count(request).await.map_err(map_err)?;
        Ok(response.result.map(|r| r.count).unwrap_or(0))
    }

    /// Estimate: points × (dim × 4 bytes of f32 vector + average JSON payload size of a sample).
    /// It counts raw data only: the server's HNSW graph, payload indexes, WAL, replicas and
    /// quantized copies are not included, so the real footprint is larger.
    async fn size_bytes(&self) -> Result<u64, VectorStoreError> {
        let info = self.client.collection_info(&self.collection).await.map_err(map_err)?;
        let points = info.result.and_then(|i| i.points_count).unwrap_or(0);
        if points == 0 {
            return Ok(0);
        }
        let dim = self.vector_params().await?.size;
        Ok(points * (dim * 4 + self.average_payload_bytes().await?))
    }

    async fn healthy(&self) -> bool {
        self.client.health_check().await.is_ok()
    }
}

/// Every restriction of `filter`, all of which must hold (as the embedded store's).
fn search_filter(filter: &SearchFilter) -> Option<Filter> {
    let mut must: Vec<Condition> =
        filter.path_prefix.as_deref().and_then(payload::prefix_dir).map(|dir| Condition::matches(DIRS_KEY, dir)).into_iter().collect();
    must.extend(filter.tags.iter().map(|t| Condition::matches(TAGS_KEY, t.clone())));
    if !filter.formats.is_empty() {
        must.push(Condition::matches(FORMAT_KEY, filter.formats.clone()));
    }
    let at_least = |n: u32| Range { gte: Some(f64::from(n)), ..Range::default() };
    must.extend(filter.min_width.map(|w| Condition::range(WIDTH_KEY, at_least(w))));
    must.extend(filter.min_height.map(|h| Condition::range(HEIGHT_KEY, at_least(h))));
    if !filter.mtime_ns.is_open() {
        let bound = |t: Option<i64>| t.map(|t| t as f64);
        let range = Range { gte: bound(filter.mtime_ns.from), lte: bound(filter.mtime_ns.to), ..Range::default() };
        must.push(Condition::range(MTIME_KEY, range));
    }
    if !filter.indexed_at.is_open() {
        let at = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos().try_into().unwrap_or(0) })
        };
        let range = DatetimeRange { gte: at(filter.indexed_at.from), lte: at(filter.indexed_at.to), ..DatetimeRange::default() };
        must.push(Condition::datetime_range(INDEXED_KEY, range));
    }
    (!must.is_empty()).then(|| Filter::must(must))
}

/// Points under a directory: a keyword match on `dirs` (see `payload.rs`); None for the root.
fn dirs_filter(prefix: Option<&str>) -> Option<Filter> {
    prefix.and_then(payload::prefix_dir).map(|dir| Filter::must([Condition::matches(DIRS_KEY, dir)]))
}

fn json_map(payload: StdHashMap<String, Value>) -> serde_json::Map<String, serde_json::Value> {
    Payload::from(payload).into()
}

/// A point read with its vector and whole payload, as a [`Point`].
fn whole_point(
    id: Option<PointId>,
    vectors: Option<qdrant_client::qdrant::VectorsOutput>,
    payload: StdHashMap<String, Value>,
) -> Result<Point, VectorStoreError> {
    let id = uuid_of(id)?;
    let Some(VectorKind::Dense(dense)) = vectors.and_then(|v| v.get_vector()) else {
        return Err(VectorStoreError::Mismatch(format!("point {id} has no unnamed dense vector")));
    };
    Ok(Point { id, vector: dense.data, payload: payload::from_json(json_map(payload))? })
}

fn uuid_of(id: Option<PointId>) -> Result<Uuid, VectorStoreError> {
    match id.and_then(|id| id.point_id_options) {
        Some(PointIdOptions::Uuid(s)) => {
            Uuid::parse_str(&s).map_err(|e| VectorStoreError::Other(format!("bad point id {s}: {e}")))
        }
        other => Err(VectorStoreError::Other(format!("unexpected point id {other:?}"))),
    }
}

/// gRPC status codes (fixed by the gRPC spec) that mean "try again later".
mod grpc_code {
    pub const CANCELLED: i32 = 1;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const ABORTED: i32 = 10;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
}

fn qdrant_distance(distance: Metric) -> Distance {
    match distance {
        Metric::Cosine => Distance::Cosine,
        Metric::Dot => Distance::Dot,
        Metric::Euclid => Distance::Euclid,
    }
}

/// Transport trouble and server overload are `Unavailable` (worth retrying); the rest is `Other`.
pub(super) fn map_err(e: QdrantError) -> VectorStoreError {
    let transient = match &e {
        QdrantError::ResponseError { status } | QdrantError::ResourceExhaustedError { status, .. } => {
            is_transient(i32::from(status.code()), status.message())
        }
        QdrantError::Io(_) => true,
        _ => false,
    };
    if transient {
        VectorStoreError::Unavailable(e.to_string())
    } else {
        VectorStoreError::Other(e.to_string())
    }
}

fn is_transient(code: i32, message: &str) -> bool {
    use grpc_code::*;
    match code {
        CANCELLED | DEADLINE_EXCEEDED | RESOURCE_EXHAUSTED | ABORTED | UNAVAILABLE => true,
        // qdrant-client reports a failed connect as Internal "Failed to connect to ...".
        INTERNAL => message.starts_with("Failed to connect"),
        _ => false,
    }
}

/// These run against a real server only when `QDRANT_URL` is set (e.g. `http://127.0.0.1:6334`,
/// optional `QDRANT_API_KEY`); otherwise they print a skip line and pass. Each test uses a fresh
/// random collection and deletes it afterwards, even when the test fails.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::future::Future;
    use std::panic::AssertUnwindSafe;
    use std::sync::Arc;

    use futures::FutureExt;

    use super::super::conformance as suite;
    use super::*;

    const DIM: usize = 8;

    fn server() -> Option<(String, Option<String>)> {
        let url = std::env::var("QDRANT_URL").ok().filter(|u| !u.is_empty())?;
        Some((url, std::env::var("QDRANT_API_KEY").ok().filter(|k| !k.is_empty())))
    }

    fn connect(url: &str, key: Option<&str>, collection: &str) -> QdrantStore {
        QdrantStore::connect(url, key, collection).expect("client")
    }

    /// Run `body` on a fresh collection (created with `DIM` unless `create` is false), then drop it.
    async fn with_collection<F, Fut>(test: &str, create: bool, body: F)
    where
        F: FnOnce(Arc<QdrantStore>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let Some((url, key)) = server() else {
            println!("skipping qdrant server test {test}: QDRANT_URL not set");
            return;
        };
        let collection = format!("imgidx_test_{}", Uuid::new_v4().simple());
        let store = Arc::new(connect(&url, key.as_deref(), &collection));
        if create {
            store.ensure_collection(DIM).await.expect("ensure_collection");
        }
        let outcome = AssertUnwindSafe(body(Arc::clone(&store))).catch_unwind().await;
        let deleted = store.client.delete_collection(&collection).await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
        deleted.expect("delete test collection");
    }

    #[tokio::test]
    async fn ensure_collection_idempotent_and_mismatch() {
        with_collection("ensure_collection", false, |store| async move {
            suite::ensure_collection_idempotent_and_mismatch(store.as_ref(), DIM).await;
            let info = store.client.collection_info(&store.collection).await.expect("info");
            let schema = info.result.expect("info result").payload_schema;
            for key in [DIRS_KEY, HASH_KEY, TAGS_KEY] {
                assert_eq!(schema.get(key).map(|s| s.data_type), Some(qdrant_client::qdrant::PayloadSchemaType::Keyword as i32), "{key}");
            }
        })
        .await;
    }

    /// Runs a `Collections` suite test on the server under a fresh prefix, dropping what it made.
    async fn with_collections<F, Fut>(test: &str, body: F)
    where
        F: FnOnce(Arc<Collections>, Arc<Collections>, String) -> Fut,
        Fut: Future<Output = ()>,
    {
        let Some((url, key)) = server() else {
            println!("skipping qdrant server test {test}: QDRANT_URL not set");
            return;
        };
        let make = || Arc::new(Collections::new(Box::new(QdrantCollections::connect(&url, key.as_deref()).expect("client"))));
        let (a, b) = (make(), make());
        let prefix = format!("t{}", Uuid::new_v4().simple());
        let outcome = AssertUnwindSafe(body(Arc::clone(&a), b, prefix.clone())).catch_unwind().await;
        let _ = a.remove_alias(&format!("{prefix}-a")).await;
        for physical in suite::collections::names(&prefix) {
            let _ = a.drop_collection(&physical).await;
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    #[tokio::test]
    async fn collections_are_made_opened_aliased_and_dropped() {
        with_collections("collections", |a, b, prefix| async move {
            suite::collections::collections_are_made_opened_aliased_and_dropped(&a, &b, &prefix, DIM).await;
        })
        .await;
    }

    #[tokio::test]
    async fn an_existing_collection_of_another_size_is_a_mismatch() {
        with_collections("collection_mismatch", |a, b, prefix| async move {
            suite::collections::an_existing_collection_of_another_size_is_a_mismatch(&a, &b, &prefix, DIM).await;
        })
        .await;
    }

    #[tokio::test]
    async fn an_alias_names_its_collection() {
        with_collections("alias", |a, _b, prefix| async move {
            let physical = suite::collections::names(&prefix).remove(0);
            let store = a.open(&physical, DIM, Some(Metric::Cosine)).await.expect("make");
            store.upsert(vec![suite::point(DIM, 0)]).await.expect("upsert");
            let alias = format!("{prefix}-a");
            a.set_alias(&alias, &physical).await.expect("alias");
            // Read through the alias as a dashboard or another client would.
            let Some((url, key)) = server() else { return };
            let through_alias = connect(&url, key.as_deref(), &alias);
            assert_eq!(through_alias.count().await.expect("count through the alias"), 1);
            // A model switch points the alias at the next generation: one request, no gap.
            let next = suite::collections::names(&prefix).remove(1);
            let next_store = a.open(&next, DIM, Some(Metric::Cosine)).await.expect("make the next one");
            next_store.upsert(vec![suite::point(DIM, 1), suite::point(DIM, 2)]).await.expect("upsert");
            a.set_alias(&alias, &next).await.expect("move the alias");
            assert_eq!(through_alias.count().await.expect("count through the moved alias"), 2);
            a.remove_alias(&alias).await.expect("remove the alias");
        })
        .await;
    }

    #[tokio::test]
    async fn reuse_by_content_hash() {
        with_collection("reuse_by_content_hash", true, |s| async move {
            suite::reuse_by_content_hash(s.as_ref(), DIM).await;
        })
        .await;
    }

    #[tokio::test]
    async fn upsert_count_and_stamps() {
        with_collection("upsert_count_and_stamps", true, |s| async move {
            suite::upsert_count_and_stamps(s.as_ref(), DIM).await;
        })
        .await;
    }

    #[tokio::test]
    async fn search_orders_by_cosine() {
        with_collection("search_orders_by_cosine", true, |s| async move {
            suite::search_orders_by_cosine(s.as_ref(), DIM).await;
        })
        .await;
    }

    #[tokio::test]
    async fn search_path_prefix() {
        with_collection("search_path_prefix", true, |s| async move {
            suite::search_path_prefix(s.as_ref(), DIM).await;
        })
        .await;
    }

    #[tokio::test]
    async fn search_tags() {
        with_collection("search_tags", true, |s| async move {
            suite::search_tags(s.as_ref(), DIM).await;
        })
        .await;
    }

    #[tokio::test]
    async fn search_filters_and_pages() {
        with_collection("search_filters_and_pages", true, |s| async move {
            suite::search_filters_and_pages(s.as_ref(), DIM).await;
        })
        .await;
    }

    #[tokio::test]
    async fn paths_under_and_delete() {
        with_collection("paths_under_and_delete", true, |s| async move {
            suite::paths_under_and_delete(s.as_ref(), DIM).await;
        })
        .await;
    }

    #[tokio::test]
    async fn search_min_score() {
        with_collection("search_min_score", true, |s| async move {
            suite::search_min_score(s.as_ref(), DIM).await;
        })
        .await;
    }

    #[tokio::test]
    async fn whole_points_in_pages() {
        with_collection("whole_points_in_pages", true, |s| async move {
            suite::whole_points_in_pages(s.as_ref(), DIM).await;
        })
        .await;
    }

    #[tokio::test]
    async fn vector_of_a_point() {
        with_collection("vector_of_a_point", true, |s| async move {
            suite::vector_of_a_point(s.as_ref(), DIM).await;
        })
        .await;
    }

    #[tokio::test]
    async fn upsert_replaces() {
        with_collection("upsert_replaces", true, |s| async move {
            suite::upsert_replaces(s.as_ref(), DIM).await;
        })
        .await;
    }

    #[tokio::test]
    async fn wrong_dim_vectors_rejected() {
        with_collection("wrong_dim_vectors_rejected", true, |s| async move {
            suite::wrong_dim_vectors_rejected(s.as_ref(), DIM).await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_upserts() {
        with_collection("concurrent_upserts", true, |s| async move {
            suite::concurrent_upserts(s, DIM).await;
        })
        .await;
    }

    /// Data written through one client is there for a new one (the server's equivalent of reopen).
    #[tokio::test]
    async fn visible_to_a_new_client() {
        with_collection("visible_to_a_new_client", true, |s| async move {
            let points = suite::points(DIM, 20);
            s.upsert(points.clone()).await.expect("upsert");
            let (url, key) = server().expect("server");
            let other = connect(&url, key.as_deref(), &s.collection);
            other.ensure_collection(DIM).await.expect("existing collection, same dim");
            suite::expect_contents(&other, &points).await;
            let size = other.size_bytes().await.expect("size");
            assert!(size >= 20 * DIM as u64 * 4, "estimate covers the vectors at least: {size}");
        })
        .await;
    }

    /// Needs no server: an unreachable address must read as `Unavailable` (retryable).
    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        let store = connect("http://127.0.0.1:9", None, "imgidx_unreachable");
        assert!(!store.healthy().await);
        let err = store.ensure_collection(DIM).await.expect_err("nothing listens on port 9");
        assert!(matches!(err, VectorStoreError::Unavailable(_)), "{err:?}");
    }
}
