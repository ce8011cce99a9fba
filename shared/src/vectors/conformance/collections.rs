//! What `Collections` must do on every backend: make, open, alias and drop physical
//! collections, and report every distance's scores as cosine similarity.

use super::super::{Collections, Point, SearchFilter, VectorStoreError};
use super::{payload, point_id, unit_vector};
use crate::collections::{physical_name, Distance};

/// Physical names a test uses under `prefix` (fresh per run), for cleaning up.
pub fn names(prefix: &str) -> Vec<String> {
    ["a", "dot", "euclid"].iter().map(|n| physical_name(&format!("{prefix}-{n}"), 1)).collect()
}

fn points(dim: usize) -> Vec<Point> {
    (0..4)
        .map(|i| {
            let path = format!("/c/{i}.jpg");
            Point { id: point_id(&path), vector: unit_vector(dim, i), payload: payload(&path, 1, 1) }
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `a` and `b` are two `Collections` over one backend (two processes, as far as caching goes).
pub async fn collections_are_made_opened_aliased_and_dropped(a: &Collections, b: &Collections, prefix: &str, dim: usize) {
    let [plain, dotted, euclid] = <[String; 3]>::try_from(names(prefix)).unwrap();
    let err = a.open(&plain, dim, None).await.err().expect("missing collection");
    assert!(matches!(err, VectorStoreError::NotFound(_)), "{err:?}");

    a.open(&plain, dim, Some(Distance::Cosine)).await.unwrap().upsert(points(dim)).await.unwrap();
    assert_eq!(a.open(&plain, dim, None).await.unwrap().count().await.unwrap(), 4);
    assert_eq!(b.open(&plain, dim, None).await.unwrap().count().await.unwrap(), 4, "seen from another process");
    let err = b.open(&dotted, dim, None).await.err().expect("not made yet");
    assert!(matches!(err, VectorStoreError::NotFound(_)), "{err:?}");

    // Every distance ranks unit vectors alike and reports cosine similarity.
    let query = unit_vector(dim, 0);
    for (physical, distance) in [(&dotted, Distance::Dot), (&euclid, Distance::Euclid)] {
        let store = a.open(physical, dim, Some(distance)).await.unwrap();
        store.upsert(points(dim)).await.unwrap();
        let hits = store.search(&query, 4, &SearchFilter::default()).await.unwrap();
        let expected: Vec<f32> = points(dim).iter().map(|p| dot(&query, &p.vector)).collect();
        for hit in &hits {
            let i: usize = hit.payload.path.trim_start_matches("/c/").trim_end_matches(".jpg").parse().unwrap();
            assert!((hit.score - expected[i]).abs() < 1e-4, "{distance:?}: {} vs {}", hit.score, expected[i]);
        }
        assert_eq!(hits[0].payload.path, "/c/0.jpg", "{distance:?}");
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "{distance:?}: best first");
        let second = hits[1].score;
        let filter = SearchFilter { min_score: Some(second - 1e-3), ..Default::default() };
        assert_eq!(store.search(&query, 4, &filter).await.unwrap().len(), 2, "{distance:?}: min_score is cosine");
        // Opened elsewhere, the collection keeps its distance.
        let other = b.open(physical, dim, None).await.unwrap();
        assert!((other.search(&query, 1, &SearchFilter::default()).await.unwrap()[0].score - 1.0).abs() < 1e-4);
    }
    let reopened = Collections::open(b, &plain, dim, Some(Distance::Euclid)).await.is_ok();
    assert!(reopened, "an open collection is handed out as it is");

    a.set_alias(&format!("{prefix}-a"), &plain).await.unwrap();
    a.remove_alias(&format!("{prefix}-a")).await.unwrap();
    a.remove_alias(&format!("{prefix}-a")).await.unwrap();

    a.drop_collection(&plain).await.unwrap();
    a.drop_collection(&plain).await.unwrap();
    let err = a.open(&plain, dim, None).await.err().expect("dropped");
    assert!(matches!(err, VectorStoreError::NotFound(_)), "{err:?}");
    assert!(a.healthy().await);
}

/// An existing collection opened with another size of vector is a mismatch, not a new one.
pub async fn an_existing_collection_of_another_size_is_a_mismatch(a: &Collections, b: &Collections, prefix: &str, dim: usize) {
    let physical = &names(prefix)[0];
    a.open(physical, dim, Some(Distance::Cosine)).await.unwrap();
    let err = b.open(physical, dim + 1, None).await.err().expect("other size");
    assert!(matches!(err, VectorStoreError::Mismatch(_)), "{err:?}");
}
