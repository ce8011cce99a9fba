//! Which files the index holds already, unchanged: what add-images and a directory
//! scan leave out of a job.

use std::collections::HashMap;

use uuid::Uuid;

use imgidx_shared::messages::FileStamp;
use imgidx_shared::vectors::{VectorStore, VectorStoreError};

/// Most point ids asked of the vector store in one call.
const STAMP_LOOKUP_CHUNK: usize = 1024;

/// The stamps the index holds for those of `ids` it has.
pub async fn indexed_stamps(vectors: &dyn VectorStore, ids: &[Uuid]) -> Result<HashMap<Uuid, FileStamp>, VectorStoreError> {
    let mut all = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(STAMP_LOOKUP_CHUNK) {
        all.extend(vectors.stamps(chunk).await?);
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
