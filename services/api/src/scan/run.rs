//! One walk, from the first chunk to the end of its job's scan: queue what is new or
//! changed, prune what is gone, finish. Any store or broker error ends the walk without
//! giving its lease back: the lease expires and the walk starts over (here or in
//! another API process), which repeats nothing that matters (see `jobs/scan.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use uuid::Uuid;

use imgidx_shared::broker::BrokerError;
use imgidx_shared::jobs::{JobRecord, JobStoreError, NewItem, ScanChunk, ScanCounts};
use imgidx_shared::messages::ImageTask;
use imgidx_shared::vectors::VectorStoreError;

use super::walk::{self, Chunk, WalkOptions};
use super::{Scanner, Walk};
use crate::freshness::{indexed_stamps, is_current};
use crate::target::{JobTargetError, Target};

/// Images per chunk: one claim, one stamp lookup and one publish each.
const CHUNK_IMAGES: usize = 500;
/// Chunks waiting between the walk and the queueing: the walk stays this close.
const CHUNKS_AHEAD: usize = 2;
/// Points checked per page when pruning.
const PRUNE_PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub(super) enum WalkError {
    #[error(transparent)]
    Jobs(#[from] JobStoreError),
    #[error(transparent)]
    Vectors(#[from] VectorStoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Target(#[from] JobTargetError),
    #[error("{0}")]
    Task(String),
}

pub(super) enum Ended {
    Finished(Box<JobRecord>),
    /// Cancelled, or taken over by another process.
    Stopped,
    Shutdown,
}

pub(super) async fn run(scanner: &Scanner, walk: Walk) {
    match drive(scanner, &walk).await {
        Ok(Ended::Finished(job)) => {
            tracing::info!(job_id = walk.job_id, images = job.total_images, status = job.status.as_str(), "scan: walk finished")
        }
        Ok(Ended::Stopped) => tracing::info!(job_id = walk.job_id, "scan: walk stopped (job cancelled or walk taken over)"),
        Ok(Ended::Shutdown) => {
            if let Err(e) = scanner.deps.jobs.release_scan(&walk.job_id, &walk.owner).await {
                tracing::warn!(job_id = walk.job_id, error = %e, "scan: could not give the lease back at shutdown");
            }
        }
        Err(e) => tracing::warn!(
            job_id = walk.job_id,
            error = %e,
            lease_secs = scanner.lease.as_secs(),
            "scan: walk interrupted; it starts over once its lease expires"
        ),
    }
}

async fn drive(scanner: &Scanner, walk: &Walk) -> Result<Ended, WalkError> {
    if let Some(source) = walk.spec.source_collection() {
        return super::copy::drive(scanner, walk, source).await;
    }
    let target = Target::of_job(&scanner.deps, walk.spec.collection.as_deref()).await?;
    let (tx, mut rx) = mpsc::channel::<Chunk>(CHUNKS_AHEAD);
    let options = WalkOptions {
        recursive: walk.spec.recursive,
        roots: scanner.roots.to_vec(),
        chunk_images: CHUNK_IMAGES,
        // Well inside the lease, so a walk through files that are not images stays alive.
        chunk_interval: (scanner.lease / 4).clamp(Duration::from_millis(100), Duration::from_secs(2)),
    };
    let dir = PathBuf::from(&walk.spec.dir);
    // Ends by itself once `rx` is dropped (on any early return).
    let walker = tokio::task::spawn_blocking(move || walk::walk(&dir, &options, &tx));
    let mut counts = ScanCounts::default();
    loop {
        let chunk = tokio::select! {
            () = scanner.shutdown.cancelled() => return Ok(Ended::Shutdown),
            chunk = rx.recv() => chunk,
        };
        let Some(chunk) = chunk else { break };
        counts = chunk.counts;
        if !queue(scanner, walk, &target, chunk).await? {
            return Ok(Ended::Stopped);
        }
    }
    // The channel also closes when the walk panicked: that walk is not finished.
    walker.await.map_err(|e| WalkError::Task(format!("the directory walk failed: {e}")))?;
    if walk.spec.prune_missing && !prune(scanner, walk, &target, &mut counts).await? {
        return Ok(Ended::Stopped);
    }
    finish(scanner, walk, &counts).await
}

/// Ends the walk's scan: its job completes once its items are done.
pub(super) async fn finish(scanner: &Scanner, walk: &Walk, counts: &ScanCounts) -> Result<Ended, WalkError> {
    Ok(match scanner.deps.jobs.finish_scan(&walk.job_id, &walk.owner, counts).await? {
        Some(job) => {
            // Ended here (nothing was left pending): no event will say so to watchers.
            if !job.status.is_active() {
                announce(scanner, &job).await;
            }
            Ended::Finished(Box::new(job))
        }
        None => Ended::Stopped,
    })
}

/// Best effort, as every live update.
async fn announce(scanner: &Scanner, job: &JobRecord) {
    if let Err(e) = scanner.deps.broker.publish_progress(&job.progress_event()).await {
        tracing::debug!(job_id = job.job_id, error = %e, "progress not published");
    }
}

/// Adds a chunk's new and changed images to the job and publishes them; false when the
/// walk must stop.
async fn queue(scanner: &Scanner, walk: &Walk, target: &Target, chunk: Chunk) -> Result<bool, WalkError> {
    let candidates: Vec<NewItem> = chunk
        .images
        .into_iter()
        .map(|i| NewItem { point_id: target.point_id(&i.path), path: i.path, stamp: Some(i.stamp) })
        .collect();
    queue_items(scanner, walk, target, candidates, &chunk.counts, &HashMap::new()).await
}

/// Adds the candidates the target does not hold as they are to the job (all of them
/// with `force_reindex`) and publishes them, each URL image in `kept` to be read from the
/// object its bytes were kept in; false when the walk must stop.
pub(super) async fn queue_items(
    scanner: &Scanner,
    walk: &Walk,
    target: &Target,
    mut candidates: Vec<NewItem>,
    counts: &ScanCounts,
    kept: &HashMap<Uuid, String>,
) -> Result<bool, WalkError> {
    let deps = &scanner.deps;
    if !walk.spec.force_reindex && !candidates.is_empty() {
        let ids: Vec<Uuid> = candidates.iter().map(|c| c.point_id).collect();
        let indexed = indexed_stamps(target.store.as_ref(), &ids).await?;
        candidates.retain(|c| !is_current(c.stamp, indexed.get(&c.point_id)));
    }
    let ScanChunk::Added { publish, .. } = deps.jobs.add_scan_items(&walk.job_id, &walk.owner, &candidates, counts).await?
    else {
        return Ok(false);
    };
    if !publish.is_empty() {
        let tasks: Vec<ImageTask> = publish
            .iter()
            .map(|i| ImageTask {
                object_key: kept.get(&i.point_id).cloned(),
                ..i.task(&walk.job_id, Some(&target.physical), walk.request_id.as_deref())
            })
            .collect();
        deps.broker.publish_tasks(walk.priority, &tasks).await?;
    }
    Ok(true)
}

/// Deletes the points under the directory whose file is gone, counting them in
/// `counts.removed`; false when the walk must stop. A walk that met no file at all
/// prunes nothing: an empty mount point (a share not mounted) is not a deleted library.
async fn prune(scanner: &Scanner, walk: &Walk, target: &Target, counts: &mut ScanCounts) -> Result<bool, WalkError> {
    if counts.files_seen == 0 {
        tracing::warn!(job_id = walk.job_id, dir = walk.spec.dir, "scan: no file found, so nothing is pruned (is the share mounted?)");
        return Ok(true);
    }
    let deps = &scanner.deps;
    let mut from = None;
    loop {
        let page = target.store.paths_under(&walk.spec.dir, from, PRUNE_PAGE).await?;
        let (dir, recursive) = (PathBuf::from(&walk.spec.dir), walk.spec.recursive);
        let gone = tokio::task::spawn_blocking(move || {
            page.points
                .into_iter()
                .filter(|(_, path)| recursive || Path::new(path).parent() == Some(dir.as_path()))
                .filter(|(_, path)| matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound))
                .map(|(id, _)| id)
                .collect::<Vec<Uuid>>()
        })
        .await
        .map_err(|e| WalkError::Task(format!("checking files: {e}")))?;
        target.store.delete(&gone).await?;
        counts.removed += gone.len() as u64;
        // Renews the lease and shows the count while pruning goes on.
        if deps.jobs.add_scan_items(&walk.job_id, &walk.owner, &[], counts).await? == ScanChunk::Stopped {
            return Ok(false);
        }
        match page.next {
            Some(next) => from = Some(next),
            None => return Ok(true),
        }
    }
}
