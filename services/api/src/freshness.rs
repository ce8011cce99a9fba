//! Which files the index holds already, unchanged: what add-images and a directory
//! scan leave out of a job.

use std::collections::HashMap;

use futures::StreamExt;
use uuid::Uuid;

use imgidx_shared::messages::FileStamp;
use imgidx_shared::vectors::{VectorStore, VectorStoreError};

/// Most point ids asked of the vector store in one call.
const STAMP_LOOKUP_CHUNK: usize = 1024;

/// Lookups of one request in flight at once (the embedded store answers each on the
/// blocking pool, a server on its own cores).
const CONCURRENT_LOOKUPS: usize = 4;

/// The stamps the index holds for those of `ids` it has.
pub async fn indexed_stamps(vectors: &dyn VectorStore, ids: &[Uuid]) -> Result<HashMap<Uuid, FileStamp>, VectorStoreError> {
    // Made up front: a closure inside the stream would make this future's type
    // higher-ranked, which axum's handlers cannot take.
    let pending: Vec<_> = ids.chunks(STAMP_LOOKUP_CHUNK).map(|chunk| vectors.stamps(chunk)).collect();
    let mut lookups = futures::stream::iter(pending).buffer_unordered(CONCURRENT_LOOKUPS);
    let mut all = HashMap::with_capacity(ids.len());
    while let Some(found) = lookups.next().await {
        all.extend(found?);
    }
    Ok(all)
}

/// Indexed and unchanged since: same size and mtime. A file we cannot stat is never
/// "current" — it is queued so the worker can report why it fails.
pub fn is_current(on_disk: Option<FileStamp>, indexed: Option<&FileStamp>) -> bool {
    matches!((on_disk, indexed), (Some(a), Some(b)) if a == *b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_detection_needs_both_stamps_equal() {
        let a = FileStamp { size: 1, mtime_ns: 2 };
        assert!(is_current(Some(a), Some(&a)));
        assert!(!is_current(Some(a), Some(&FileStamp { size: 1, mtime_ns: 3 })));
        assert!(!is_current(None, Some(&a)));
        assert!(!is_current(Some(a), None));
    }

}
