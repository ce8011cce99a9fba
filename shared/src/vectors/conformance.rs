//! Behaviour every `VectorStore` backend must show; run by each backend's tests.
//! Collections are expected to be created (`ensure_collection(dim)`) and empty unless stated.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod collections;

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::{ImagePayload, Point, SearchFilter, VectorStore, VectorStoreError};
use crate::messages::FileStamp;

/// Deterministic unit vector for `seed`: reproducible tests without a rand dependency.
pub fn unit_vector(dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let raw: Vec<f32> = (0..dim)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect();
    normalise(raw)
}

pub fn normalise(v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

pub fn payload(path: &str, size: u64, mtime_ns: i64) -> ImagePayload {
    let file_name = path.rsplit('/').next().unwrap_or(path).to_string();
    ImagePayload {
        path: path.into(),
        file_name,
        size,
        mtime: "2024-05-01T12:00:00Z".into(),
        mtime_ns,
        width: 640,
        height: 480,
        format: "jpeg".into(),
        model: "test-clip".into(),
        indexed_at: "2024-05-02T12:00:00Z".into(),
        job_id: "job-1".into(),
        sha256: String::new(),
        object_key: String::new(),
        tags: Vec::new(),
    }
}

pub fn point_id(path: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, path.as_bytes())
}

/// Point `i`: lives in `/photos/a`, `/photos/ab` or `/photos/a/deep` by `i % 3`, so a prefix
/// of `/photos/a` must match the first and third groups but not `/photos/ab`.
pub fn point(dim: usize, i: u64) -> Point {
    let path = match i % 3 {
        0 => format!("/photos/a/img{i}.jpg"),
        1 => format!("/photos/ab/img{i}.jpg"),
        _ => format!("/photos/a/deep/img{i}.jpg"),
    };
    Point {
        id: point_id(&path),
        vector: unit_vector(dim, i),
        payload: payload(&path, 1000 + i, 1_700_000_000_000_000_000 + i as i64),
    }
}

pub fn points(dim: usize, n: u64) -> Vec<Point> {
    (0..n).map(|i| point(dim, i)).collect()
}

/// The store holds exactly `points` (count, stamps, payloads via self-search).
pub async fn expect_contents(store: &dyn VectorStore, points: &[Point]) {
    assert_eq!(store.count().await.expect("count"), points.len() as u64);
    let ids: Vec<Uuid> = points.iter().map(|p| p.id).collect();
    let stamps = store.stamps(&ids).await.expect("stamps");
    let expected: HashMap<Uuid, FileStamp> = points.iter().map(|p| (p.id, p.payload.stamp())).collect();
    assert_eq!(stamps, expected);
    for p in points.iter().take(3) {
        let hits = store.search(&p.vector, 1, &SearchFilter::default()).await.expect("search");
        assert_eq!(hits.first().map(|h| (&h.id, &h.payload)), Some((&p.id, &p.payload)));
    }
}

pub async fn ensure_collection_idempotent_and_mismatch(store: &dyn VectorStore, dim: usize) {
    store.ensure_collection(dim).await.expect("create");
    store.ensure_collection(dim).await.expect("second call is a no-op");
    let err = store.ensure_collection(dim + 1).await.expect_err("other dim must fail");
    assert!(matches!(err, VectorStoreError::Mismatch(_)), "{err:?}");
    assert_eq!(store.count().await.expect("count"), 0);
}

pub async fn upsert_count_and_stamps(store: &dyn VectorStore, dim: usize) {
    let pts = points(dim, 25);
    store.upsert(pts.clone()).await.expect("upsert");
    store.upsert(Vec::new()).await.expect("empty upsert is a no-op");
    assert_eq!(store.count().await.expect("count"), 25);

    let missing = point_id("/nowhere/x.jpg");
    let stamps = store.stamps(&[pts[3].id, missing, pts[7].id]).await.expect("stamps");
    assert_eq!(stamps.len(), 2, "missing ids are absent: {stamps:?}");
    assert_eq!(stamps.get(&pts[3].id), Some(&pts[3].payload.stamp()));
    assert_eq!(stamps.get(&pts[7].id), Some(&pts[7].payload.stamp()));
    assert!(store.stamps(&[]).await.expect("no ids").is_empty());
    assert!(store.size_bytes().await.expect("size") > 0);
    assert!(store.healthy().await);
}

pub async fn search_orders_by_cosine(store: &dyn VectorStore, dim: usize) {
    let pts = points(dim, 30);
    store.upsert(pts.clone()).await.expect("upsert");
    let query = &pts[11];
    let hits = store.search(&query.vector, 10, &SearchFilter::default()).await.expect("search");
    assert_eq!(hits.len(), 10);
    assert_eq!(hits[0].id, query.id, "the point itself is the best match");
    assert!((hits[0].score - 1.0).abs() < 1e-4, "self score {}", hits[0].score);
    assert_eq!(hits[0].payload, query.payload, "payload comes back without dirs");
    for pair in hits.windows(2) {
        assert!(pair[0].score >= pair[1].score, "descending scores: {hits:?}");
    }
    // Scores are cosine similarities: check one against a direct computation.
    let other = pts.iter().find(|p| p.id == hits[4].id).expect("hit is a stored point");
    let cosine: f32 = other.vector.iter().zip(&query.vector).map(|(a, b)| a * b).sum();
    assert!((hits[4].score - cosine).abs() < 1e-4, "{} vs {cosine}", hits[4].score);
    assert!(store.search(&query.vector, 0, &SearchFilter::default()).await.expect("k=0").is_empty());
}

pub async fn search_path_prefix(store: &dyn VectorStore, dim: usize) {
    let pts = points(dim, 30);
    store.upsert(pts.clone()).await.expect("upsert");
    let query = &pts[1]; // lives in /photos/ab
    let all = SearchFilter::default();
    for prefix in ["/photos/a", "/photos/a/"] {
        let filter = SearchFilter { path_prefix: Some(prefix.into()), ..all.clone() };
        let hits = store.search(&query.vector, 100, &filter).await.expect("search");
        assert_eq!(hits.len(), 20, "groups /photos/a and /photos/a/deep, not /photos/ab");
        assert!(hits.iter().all(|h| h.payload.path.starts_with("/photos/a/")), "{hits:?}");
    }
    let deep = SearchFilter { path_prefix: Some("/photos/a/deep".into()), ..all.clone() };
    let hits = store.search(&query.vector, 100, &deep).await.expect("search");
    assert_eq!(hits.len(), 10);
    let root = SearchFilter { path_prefix: Some("/".into()), ..all.clone() };
    assert_eq!(store.search(&query.vector, 100, &root).await.expect("search").len(), 30);
    let none = SearchFilter { path_prefix: Some("/elsewhere".into()), ..all };
    assert!(store.search(&query.vector, 100, &none).await.expect("search").is_empty());
}

/// Tag filters are the store's: every listed tag must be on the image, with a path prefix too.
pub async fn search_tags(store: &dyn VectorStore, dim: usize) {
    let mut pts = points(dim, 30);
    for (i, p) in pts.iter_mut().enumerate() {
        p.payload.tags = match i % 5 {
            0 | 1 => vec!["beach".into(), "dog".into()],
            2 | 3 => vec!["beach".into()],
            _ => Vec::new(),
        };
    }
    store.upsert(pts.clone()).await.expect("upsert");
    let search = |tags: &[&str], prefix: Option<&str>| SearchFilter {
        tags: tags.iter().map(|t| t.to_string()).collect(),
        path_prefix: prefix.map(str::to_owned),
        ..SearchFilter::default()
    };
    let hits = store.search(&pts[0].vector, 100, &search(&["beach"], None)).await.expect("search");
    assert_eq!(hits.len(), 24);
    assert!(hits.iter().all(|h| h.payload.tags.contains(&"beach".to_string())), "{hits:?}");
    let both = store.search(&pts[0].vector, 100, &search(&["beach", "dog"], None)).await.expect("search");
    assert_eq!(both.len(), 12);
    assert_eq!(both[0].payload.tags, ["beach", "dog"], "tags come back in order");
    let under = store.search(&pts[0].vector, 100, &search(&["dog"], Some("/photos/a/deep"))).await.expect("search");
    assert!(!under.is_empty() && under.len() < 12 && under.iter().all(|h| h.payload.path.starts_with("/photos/a/deep/")), "{under:?}");
    assert!(store.search(&pts[0].vector, 100, &search(&["cat"], None)).await.expect("search").is_empty());
}

pub async fn search_min_score(store: &dyn VectorStore, dim: usize) {
    let pts = points(dim, 30);
    store.upsert(pts.clone()).await.expect("upsert");
    let query = &pts[5];
    let all = store.search(&query.vector, 30, &SearchFilter::default()).await.expect("search");
    assert_eq!(all.len(), 30);
    let threshold = all[6].score; // random unit vectors: scores spread over [-1, 1]
    let filter = SearchFilter { min_score: Some(threshold), ..SearchFilter::default() };
    let hits = store.search(&query.vector, 30, &filter).await.expect("search");
    let expected = all.iter().filter(|h| h.score >= threshold).count();
    assert!(expected < 30, "threshold must exclude something");
    assert_eq!(hits.len(), expected);
    assert!(hits.iter().all(|h| h.score >= threshold));
}

/// The stored vector comes back as it was written (cosine stores normalise; these are
/// unit vectors already), and a missing point has none.
pub async fn vector_of_a_point(store: &dyn VectorStore, dim: usize) {
    let pts = points(dim, 5);
    store.upsert(pts.clone()).await.expect("upsert");
    for p in &pts {
        let got = store.vector(p.id).await.expect("vector").expect("stored point has its vector");
        assert_eq!(got.len(), dim);
        let dist: f32 = got.iter().zip(&p.vector).map(|(a, b)| (a - b).abs()).sum();
        assert!(dist < 1e-4, "{got:?} vs {:?}", p.vector);
    }
    assert_eq!(store.vector(point_id("/nowhere/x.jpg")).await.expect("vector of a missing point"), None);
    // Searching with it finds the point itself first.
    let again = store.vector(pts[2].id).await.expect("vector").expect("present");
    let hits = store.search(&again, 1, &SearchFilter::default()).await.expect("search");
    assert_eq!(hits[0].id, pts[2].id);
    assert!((hits[0].score - 1.0).abs() < 1e-4);
}

pub async fn upsert_replaces(store: &dyn VectorStore, dim: usize) {
    let pts = points(dim, 10);
    store.upsert(pts.clone()).await.expect("upsert");
    let mut changed = pts[4].clone();
    changed.payload.size = 77;
    changed.payload.mtime_ns = 42;
    changed.payload.job_id = "job-2".into();
    changed.vector = unit_vector(dim, 999);
    store.upsert(vec![changed.clone()]).await.expect("re-upsert");
    assert_eq!(store.count().await.expect("count"), 10, "same id replaces");
    let stamps = store.stamps(&[changed.id]).await.expect("stamps");
    assert_eq!(stamps.get(&changed.id), Some(&FileStamp { size: 77, mtime_ns: 42 }));
    let hits = store.search(&changed.vector, 1, &SearchFilter::default()).await.expect("search");
    assert_eq!(hits[0].id, changed.id, "new vector is the one searched");
    assert_eq!(hits[0].payload, changed.payload);
}

pub async fn wrong_dim_vectors_rejected(store: &dyn VectorStore, dim: usize) {
    let mut bad = point(dim, 1);
    bad.vector = unit_vector(dim + 2, 1);
    let err = store.upsert(vec![bad]).await.expect_err("wrong dim upsert");
    assert!(matches!(err, VectorStoreError::Mismatch(_)), "{err:?}");
    let err = store.search(&unit_vector(dim + 2, 1), 3, &SearchFilter::default()).await.expect_err("wrong dim search");
    assert!(matches!(err, VectorStoreError::Mismatch(_)), "{err:?}");
    assert_eq!(store.count().await.expect("count"), 0);
}

/// Several tasks upsert disjoint batches at once while others read; nothing is lost.
pub async fn concurrent_upserts(store: Arc<dyn VectorStore>, dim: usize) {
    let tasks = 8u64;
    let per_task = 15u64;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            for chunk in 0..3 {
                let start = t * per_task + chunk * 5;
                let batch: Vec<Point> = (start..start + 5).map(|i| point(dim, i)).collect();
                store.upsert(batch).await.expect("upsert");
                store.count().await.expect("count while writing");
                store.search(&unit_vector(dim, t), 3, &SearchFilter::default()).await.expect("search while writing");
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    expect_contents(store.as_ref(), &points(dim, tasks * per_task)).await;
}

/// Paths under a directory come in pages that lose and repeat nothing; deleting some
/// removes exactly those, and ids never stored are ignored.
pub async fn paths_under_and_delete(store: &dyn VectorStore, dim: usize) {
    let pts = points(dim, 30);
    store.upsert(pts.clone()).await.expect("upsert");
    let all_pages = |dir: &'static str| async move {
        let (mut seen, mut from, mut pages) = (Vec::new(), None, 0);
        loop {
            let page = store.paths_under(dir, from, 7).await.expect("paths_under");
            assert!(page.points.len() <= 7);
            seen.extend(page.points);
            pages += 1;
            match page.next {
                Some(next) => from = Some(next),
                None => break,
            }
            assert!(pages < 20, "paging ends");
        }
        seen
    };
    let under_a = all_pages("/photos/a").await;
    let mut expected: Vec<(Uuid, String)> =
        pts.iter().filter(|p| p.payload.path.starts_with("/photos/a/")).map(|p| (p.id, p.payload.path.clone())).collect();
    expected.sort();
    let mut got = under_a.clone();
    got.sort();
    assert_eq!(got, expected, "/photos/a and /photos/a/deep, not /photos/ab, each once");
    assert_eq!(all_pages("/").await.len(), 30);
    assert!(all_pages("/elsewhere").await.is_empty());
    assert!(store.paths_under("/photos", None, 0).await.expect("limit 0").points.is_empty());

    let gone: Vec<Uuid> = pts.iter().filter(|p| p.payload.path.starts_with("/photos/a/deep/")).map(|p| p.id).collect();
    let mut delete = gone.clone();
    delete.push(point_id("/never/stored.jpg"));
    store.delete(&delete).await.expect("delete");
    store.delete(&[]).await.expect("empty delete is a no-op");
    assert_eq!(store.count().await.expect("count"), 30 - gone.len() as u64);
    assert!(store.stamps(&gone).await.expect("stamps").is_empty());
    assert!(all_pages("/photos/a/deep").await.is_empty());
    assert_eq!(all_pages("/photos/a").await.len(), 10);
}

/// A point is found by its content hash and model, and no more once hashes are forgotten.
pub async fn reuse_by_content_hash(store: &dyn VectorStore, dim: usize) {
    let hash = |c: char| c.to_string().repeat(64);
    let mut points: Vec<Point> = (0..3).map(|i| point(dim, i)).collect();
    points[0].payload.sha256 = hash('a');
    points[1].payload.sha256 = hash('b');
    points[1].payload.model = "other-model".into();
    store.upsert(points.clone()).await.unwrap();

    let found = store.reusable(&hash('a'), "test-clip").await.unwrap().expect("same content, same model");
    let close = found.vector.iter().zip(&points[0].vector).all(|(a, b)| (a - b).abs() < 1e-6);
    assert!(close, "the stored vector");
    assert_eq!((found.width, found.height, found.format.as_str()), (640, 480, "jpeg"));
    assert_eq!(store.reusable(&hash('b'), "test-clip").await.unwrap(), None, "another model's vector is not reused");
    assert_eq!(store.reusable(&hash('c'), "test-clip").await.unwrap(), None);

    store.forget_hashes().await.unwrap();
    assert_eq!(store.reusable(&hash('a'), "test-clip").await.unwrap(), None, "forgotten");
    assert_eq!(store.count().await.unwrap(), 3, "points stay");
    let hits = store.search(&points[0].vector, 1, &SearchFilter::default()).await.unwrap();
    assert_eq!((hits[0].payload.path.as_str(), hits[0].payload.sha256.as_str()), (points[0].payload.path.as_str(), ""));
}

/// Whole points come in pages that lose and repeat nothing, with their vectors and
/// payloads as stored; a lookup by ids returns exactly the stored ones.
pub async fn whole_points_in_pages(store: &dyn VectorStore, dim: usize) {
    let pts = points(dim, 17);
    store.upsert(pts.clone()).await.expect("upsert");
    let (mut seen, mut from) = (Vec::new(), None);
    for _ in 0..10 {
        let page = store.points_page(from, 5).await.expect("points_page");
        assert!(page.points.len() <= 5);
        seen.extend(page.points);
        match page.next {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    let mut expected = pts.clone();
    expected.sort_by_key(|p| p.id);
    seen.sort_by_key(|p| p.id);
    assert_eq!(seen.len(), expected.len());
    for (got, want) in seen.iter().zip(&expected) {
        assert_eq!((got.id, &got.payload), (want.id, &want.payload));
        let drift: f32 = got.vector.iter().zip(&want.vector).map(|(a, b)| (a - b).abs()).sum();
        assert!(drift < 1e-3, "vector of {} comes back as stored", got.id);
    }
    assert!(store.points_page(None, 0).await.expect("limit 0").points.is_empty());

    let missing = point_id("/nowhere/x.jpg");
    let mut some = store.points(&[pts[2].id, missing, pts[9].id]).await.expect("points");
    some.sort_by_key(|p| p.id);
    let mut want = vec![pts[2].id, pts[9].id];
    want.sort();
    assert_eq!(some.iter().map(|p| p.id).collect::<Vec<_>>(), want);
    assert!(store.points(&[]).await.expect("no ids").is_empty());
}

/// Every payload filter is applied by the store while it searches: a short page is full
/// of matches when enough match (a filter applied to the results afterwards would leave
/// it short), and pages are disjoint slices of one ranking.
pub async fn search_filters_and_pages(store: &dyn VectorStore, dim: usize) {
    const BASE_NS: i64 = 1_700_000_000_000_000_000;
    let mut pts = points(dim, 40);
    for (i, p) in pts.iter_mut().enumerate() {
        let n = i as u32;
        p.payload.format = ["jpeg", "png", "heic", "dng"][i % 4].into();
        p.payload.width = 100 * (n % 10 + 1);
        p.payload.height = 50 * (n % 8 + 1);
        p.payload.mtime_ns = BASE_NS + i as i64 * 1_000_000_000;
        p.payload.indexed_at = format!("2024-05-{:02}T12:00:00Z", i % 28 + 1);
    }
    store.upsert(pts.clone()).await.expect("upsert");
    let query = &pts[7].vector;
    let day = |d: u32, h: u32| chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2024, 5, d, h, 0, 0).unwrap();
    type Check = fn(&ImagePayload) -> bool;
    let cases: Vec<(&str, SearchFilter, Check)> = vec![
        ("formats", SearchFilter { formats: vec!["png".into(), "heic".into()], ..Default::default() }, |p| {
            p.format == "png" || p.format == "heic"
        }),
        ("min_width", SearchFilter { min_width: Some(700), ..Default::default() }, |p| p.width >= 700),
        ("min_height", SearchFilter { min_height: Some(300), ..Default::default() }, |p| p.height >= 300),
        (
            "mtime",
            SearchFilter {
                mtime_ns: super::Bounds { from: Some(BASE_NS + 10_000_000_000), to: Some(BASE_NS + 19_000_000_000) },
                ..Default::default()
            },
            |p| (BASE_NS + 10_000_000_000..=BASE_NS + 19_000_000_000).contains(&p.mtime_ns),
        ),
        (
            "indexed_at",
            SearchFilter { indexed_at: super::Bounds { from: Some(day(10, 0)), to: Some(day(15, 23)) }, ..Default::default() },
            |p| ("2024-05-10".."2024-05-16").contains(&&p.indexed_at[..10]),
        ),
        (
            "together",
            SearchFilter { formats: vec!["jpeg".into()], min_width: Some(500), ..Default::default() },
            |p| p.format == "jpeg" && p.width >= 500,
        ),
    ];
    for (name, filter, passes) in cases {
        let expected = pts.iter().filter(|p| passes(&p.payload)).count();
        assert!((4..40).contains(&expected), "{name}: the fixture must keep some and drop some ({expected})");
        let all = store.search(query, 100, &filter).await.expect("search");
        assert_eq!(all.len(), expected, "{name}");
        assert!(all.iter().all(|h| passes(&h.payload)), "{name}: {all:?}");
        let page = store.search(query, 3, &filter).await.expect("search");
        let ids = |hits: &[super::ScoredImage]| hits.iter().map(|h| h.id).collect::<Vec<_>>();
        assert_eq!(ids(&page), ids(&all[..3]), "{name}: a short page is full of matches, best first");
        let next = store.search(query, 3, &SearchFilter { offset: 3, ..filter.clone() }).await.expect("search");
        assert_eq!(ids(&next), ids(&all[3..6.min(all.len())]), "{name}: the next page follows on");
    }
    // Unfiltered: pages of 7 cover the ranking once, in order.
    let ranking = store.search(query, 40, &SearchFilter::default()).await.expect("search");
    let mut paged = Vec::new();
    for page in 0..6 {
        let filter = SearchFilter { offset: page * 7, ..SearchFilter::default() };
        paged.extend(store.search(query, 7, &filter).await.expect("search").into_iter().map(|h| h.id));
    }
    assert_eq!(paged, ranking.iter().map(|h| h.id).collect::<Vec<_>>());
    let past = SearchFilter { offset: 40, ..SearchFilter::default() };
    assert!(store.search(query, 7, &past).await.expect("search").is_empty(), "past the end");
}
