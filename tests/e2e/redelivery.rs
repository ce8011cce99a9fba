//! Nothing is lost: a worker that dies holding unacknowledged tasks, and one stopped
//! mid-batch. [`FaultyStore`] injects the faults `outages.rs` uses too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use imgidx_shared::messages::FileStamp;
use imgidx_shared::vectors::{PathPage, Point, ScoredImage, SearchFilter, VectorStore, VectorStoreError};
use imgidx_tests::{cluster_settings, management_poll, sample_images, services, Cluster};

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dropped_mid_batch_loses_nothing() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = sample_images(dir.path());
    let n = images.len();
    let cluster = Cluster::start(cluster_settings(&svc, dir.path()), 0).await;
    let (code, body) = cluster.add_images(&images, "normal").await;
    assert_eq!(code, 202, "{body}");
    let job_id = body["job_id"].as_str().unwrap().to_string();

    // This worker waits to fill a huge batch, holding its prefetched tasks unacked.
    let mut slow = cluster.settings.worker.clone();
    slow.batch_size = 1000;
    slow.batch_wait_ms = 60_000;
    let doomed = cluster.spawn_worker("doomed", slow).await;
    let held = usize::from(cluster.settings.broker.prefetch).min(n);
    if let Some(mgmt) = &svc.mgmt_url {
        let queue = format!("queues/%2f/{}.tasks.normal", cluster.settings.broker.queue_prefix);
        management_poll(mgmt, &queue, |q| match q["messages_unacknowledged"].as_u64() {
            Some(unacked) if unacked == held as u64 => Ok(()),
            _ => Err(format!("doomed worker never held its tasks: {q}")),
        })
        .await;
    } else {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    doomed.crash().await;

    let w = cluster.spawn_worker("survivor", cluster.settings.worker.clone()).await;
    cluster.wait_all_indexed(&job_id, n as u64, WAIT).await;
    assert_eq!(w.stop().await.indexed, n as u64);
    cluster.stop().await;
}

/// Graceful stop mid-batch: the batch in flight is finished and acknowledged (not
/// handed to another worker to do again), what was only prefetched goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_mid_batch_finishes_it_and_hands_back_the_rest() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = sample_images(dir.path());
    let n = images.len() as u64;
    let cluster = Cluster::start(cluster_settings(&svc, dir.path()), 0).await;
    let (code, body) = cluster.add_images(&images, "normal").await;
    assert_eq!(code, 202, "{body}");
    let job_id = body["job_id"].as_str().unwrap().to_string();

    let slow = Arc::new(FaultyStore::new(cluster.vectors.clone(), Fault::Slow(Duration::from_millis(1500))));
    let begun = slow.writes_begun.clone();
    let draining = cluster.spawn_worker_with("draining", cluster.settings.worker.clone(), slow).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while begun.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the worker never started a write");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = draining.stop().await;
    assert!(first.indexed >= 1, "{first:?}");
    assert!(first.indexed < n, "stopped too late to test anything: {first:?}");

    let rest = cluster.spawn_worker("rest", cluster.settings.worker.clone()).await;
    let done = cluster.wait_job(&job_id, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"]["processed_images"], n, "{done}");
    let second = rest.stop().await;
    // Every image embedded exactly once: nothing the first worker finished came back.
    assert_eq!(first.indexed + second.indexed, n, "first {first:?}, second {second:?}");
    cluster.stop().await;
}

/// What a [`FaultyStore`] does to writes.
pub(crate) enum Fault {
    /// Every write fails until then (an outage), and works after.
    DownUntil(tokio::time::Instant),
    /// Every write takes this long before it is made.
    Slow(Duration),
    /// A write holding the image with this file name panics, taking its worker down
    /// (an image that crashes the worker: a decoder bug, an OOM).
    CrashOn(&'static str),
}

/// The shared store with a fault injected into writes; counts the writes begun.
pub(crate) struct FaultyStore {
    inner: Arc<dyn VectorStore>,
    fault: Fault,
    pub(crate) writes_begun: Arc<AtomicUsize>,
}

impl FaultyStore {
    pub(crate) fn new(inner: Arc<dyn VectorStore>, fault: Fault) -> Self {
        Self { inner, fault, writes_begun: Arc::new(AtomicUsize::new(0)) }
    }
}

#[async_trait::async_trait]
impl VectorStore for FaultyStore {
    async fn ensure_shape(&self, dim: usize, distance: imgidx_shared::collections::Distance) -> Result<(), VectorStoreError> {
        self.inner.ensure_shape(dim, distance).await
    }
    async fn attach(&self, dim: usize) -> Result<(), VectorStoreError> {
        self.inner.attach(dim).await
    }
    async fn reusable(&self, sha256: &str, model: &str) -> Result<Option<imgidx_shared::vectors::Reusable>, VectorStoreError> {
        self.inner.reusable(sha256, model).await
    }
    async fn forget_hashes(&self) -> Result<(), VectorStoreError> {
        self.inner.forget_hashes().await
    }
    async fn upsert(&self, points: Vec<Point>) -> Result<(), VectorStoreError> {
        self.writes_begun.fetch_add(1, Ordering::SeqCst);
        match self.fault {
            Fault::DownUntil(until) if tokio::time::Instant::now() < until => {
                Err(VectorStoreError::Unavailable("injected outage".into()))
            }
            Fault::DownUntil(_) => self.inner.upsert(points).await,
            Fault::Slow(delay) => {
                tokio::time::sleep(delay).await;
                self.inner.upsert(points).await
            }
            Fault::CrashOn(name) => {
                assert!(!points.iter().any(|p| p.payload.file_name == name), "planted crash on {name}");
                self.inner.upsert(points).await
            }
        }
    }
    async fn stamps(&self, ids: &[uuid::Uuid]) -> Result<HashMap<uuid::Uuid, FileStamp>, VectorStoreError> {
        self.inner.stamps(ids).await
    }
    async fn vector(&self, id: uuid::Uuid) -> Result<Option<Vec<f32>>, VectorStoreError> {
        self.inner.vector(id).await
    }
    async fn search(&self, v: &[f32], k: usize, f: &SearchFilter) -> Result<Vec<ScoredImage>, VectorStoreError> {
        self.inner.search(v, k, f).await
    }
    async fn paths_under(&self, dir: &str, from: Option<uuid::Uuid>, limit: usize) -> Result<PathPage, VectorStoreError> {
        self.inner.paths_under(dir, from, limit).await
    }
    async fn points_page(&self, from: Option<uuid::Uuid>, limit: usize) -> Result<imgidx_shared::vectors::PointPage, VectorStoreError> {
        self.inner.points_page(from, limit).await
    }
    async fn points(&self, ids: &[uuid::Uuid]) -> Result<Vec<Point>, VectorStoreError> {
        self.inner.points(ids).await
    }
    async fn delete(&self, ids: &[uuid::Uuid]) -> Result<(), VectorStoreError> {
        self.inner.delete(ids).await
    }
    async fn count(&self) -> Result<u64, VectorStoreError> {
        self.inner.count().await
    }
    async fn size_bytes(&self) -> Result<u64, VectorStoreError> {
        self.inner.size_bytes().await
    }
    async fn healthy(&self) -> bool {
        match self.fault {
            Fault::DownUntil(until) if tokio::time::Instant::now() < until => false,
            _ => self.inner.healthy().await,
        }
    }
}
