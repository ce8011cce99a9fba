//! PLACEHOLDER: replaced by the qdrant-client backend.
use super::*;
pub struct QdrantStore;
impl QdrantStore {
    pub fn connect(_url: &str, _key: Option<&str>, _collection: &str) -> Result<Self, VectorStoreError> {
        Err(VectorStoreError::Other("not built yet".into()))
    }
}
#[async_trait]
impl VectorStore for QdrantStore {
    async fn ensure_collection(&self, _dim: usize) -> Result<(), VectorStoreError> { unimplemented!() }
    async fn upsert(&self, _points: Vec<Point>) -> Result<(), VectorStoreError> { unimplemented!() }
    async fn stamps(&self, _ids: &[Uuid]) -> Result<HashMap<Uuid, FileStamp>, VectorStoreError> { unimplemented!() }
    async fn search(&self, _v: &[f32], _k: usize, _f: &SearchFilter) -> Result<Vec<ScoredImage>, VectorStoreError> { unimplemented!() }
    async fn count(&self) -> Result<u64, VectorStoreError> { unimplemented!() }
    async fn size_bytes(&self) -> Result<u64, VectorStoreError> { unimplemented!() }
    async fn healthy(&self) -> bool { unimplemented!() }
}
