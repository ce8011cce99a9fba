//! Duplicates and curation (seed 003): background duplicate analyses, archiving exact
//! duplicates or a selection into a folder beside the images, and restoring an archive.
//!
//! Analyses run in API processes under a lease kept in the job store, as directory walks
//! do: any API process on the same stores takes over an analysis whose process died, and
//! runs it again from the start (an analysis only reads, so a repeat is harmless).

mod analyse;
pub mod archive;
pub mod manifest;
pub mod moves;
pub mod report;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use imgidx_shared::jobs::{AnalysisOutcome, AnalysisSpec};
use imgidx_shared::shutdown::Shutdown;

pub use analyse::keeping_order;
use analyse::{AnalysisError, Lease};

use crate::error::ApiError;
use crate::state::ApiDeps;
use crate::target::Target;

/// Analyses one process runs at once (each reads the whole collection).
const MAX_ANALYSES: usize = 2;
/// Longest wait between two looks for analyses to take over.
const MAX_RESUME_EVERY: Duration = Duration::from_secs(5);
/// Longest wait, at shutdown, for analyses to stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Analyses {
    deps: ApiDeps,
    lease: Duration,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: Shutdown,
}

impl Analyses {
    pub fn new(deps: ApiDeps, lease: Duration, shutdown: Shutdown) -> Self {
        Self { deps, lease, slots: Arc::new(Semaphore::new(MAX_ANALYSES)), tracker: TaskTracker::new(), shutdown }
    }

    /// Records a new analysis of `target` and starts it (or leaves it for a free slot).
    pub async fn start(self: &Arc<Self>, target: &Target, threshold: f32) -> Result<String, ApiError> {
        let task_id = format!("dup_{}", Uuid::new_v4().simple());
        let owner = new_owner();
        let spec = AnalysisSpec { collection: target.physical.clone(), threshold };
        self.deps.jobs.create_analysis(&task_id, &spec, &owner).await?;
        self.spawn(task_id.clone(), spec, owner);
        Ok(task_id)
    }

    fn spawn(self: &Arc<Self>, task_id: String, spec: AnalysisSpec, owner: String) {
        let this = Arc::clone(self);
        let span = tracing::info_span!("duplicates", task_id);
        self.tracker.spawn(
            async move {
                // Waits for a slot while holding the lease; a full process makes an
                // analysis wait, not fail (a stop ends the wait).
                let slot = tokio::select! {
                    () = this.shutdown.cancelled() => return,
                    slot = Arc::clone(&this.slots).acquire_owned() => slot,
                };
                let Ok(_slot) = slot else { return };
                tokio::select! {
                    () = this.shutdown.cancelled() => {}
                    () = this.run(&task_id, &spec, &owner) => {}
                }
            }
            .instrument(span),
        );
    }

    async fn run(&self, task_id: &str, spec: &AnalysisSpec, owner: &str) {
        let lease = Lease { jobs: self.deps.jobs.as_ref(), task_id, owner };
        let outcome = match Target::of_job(&self.deps, Some(&spec.collection)).await {
            Ok(target) => analyse::analyse(target.store.as_ref(), spec.threshold, &lease).await,
            Err(e) => {
                self.finish(task_id, owner, AnalysisOutcome::Failed(format!("the collection cannot be read: {e}"))).await;
                return;
            }
        };
        let outcome = match outcome {
            Ok(report) => match serde_json::to_value(&report) {
                Ok(report) => {
                    tracing::info!(exact = report["exact_groups"].as_array().map_or(0, Vec::len), "duplicate analysis done");
                    AnalysisOutcome::Completed(report)
                }
                Err(e) => AnalysisOutcome::Failed(format!("the report could not be written: {e}")),
            },
            Err(AnalysisError::LeaseLost) => {
                tracing::info!("duplicate analysis taken over by another process; stopping");
                return;
            }
            // The stores may be back soon: leave the lease to expire, so it runs again.
            Err(e @ (AnalysisError::Jobs(_) | AnalysisError::Vectors(imgidx_shared::vectors::VectorStoreError::Unavailable(_)))) => {
                tracing::warn!(error = %e, "duplicate analysis stopped; it runs again once its lease expires");
                return;
            }
            Err(e) => AnalysisOutcome::Failed(e.to_string()),
        };
        self.finish(task_id, owner, outcome).await;
    }

    async fn finish(&self, task_id: &str, owner: &str, outcome: AnalysisOutcome) {
        if let Err(e) = self.deps.jobs.finish_analysis(task_id, owner, &outcome).await {
            tracing::warn!(error = %e, "duplicate analysis: could not record its end; it runs again once its lease expires");
        }
    }

    /// Until shutdown: takes over analyses whose lease expired.
    pub async fn resume_loop(self: Arc<Self>) {
        let every = (self.lease / 3).clamp(Duration::from_millis(200), MAX_RESUME_EVERY);
        loop {
            if self.slots.available_permits() > 0 {
                let owner = new_owner();
                match self.deps.jobs.claim_stale_analysis(&owner, self.lease).await {
                    Ok(Some(stale)) => {
                        tracing::info!(task_id = stale.task_id, "duplicates: taking the analysis over");
                        self.spawn(stale.task_id, stale.spec, owner);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "duplicates: could not look for analyses to take over"),
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// After shutdown: waits (bounded) for analyses to stop.
    pub async fn drain(&self) {
        self.tracker.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.tracker.wait()).await.is_err() {
            tracing::warn!("duplicates: analyses still running at shutdown; another process takes them over");
        }
    }
}

/// A fresh lease token: which process and which run.
fn new_owner() -> String {
    format!("api-{}-{}", std::process::id(), Uuid::new_v4().simple())
}
