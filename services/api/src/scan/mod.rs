//! Directory triggers (`POST /api/v1/index/trigger`): walks that feed a job while they
//! run. The job store holds each walk's lease (see `shared/src/jobs/scan.rs`); this
//! module runs walks in this process, at most
//! `api.max_concurrent_scans` at once, and takes over walks whose lease expired — a
//! walk whose API process died, or one that waited for a free slot. So any API process
//! on the same stores can run any walk, and a crash costs a walk started over, not a
//! job stuck `running`.

mod copy;
mod run;
mod walk;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use imgidx_shared::jobs::ScanSpec;
use imgidx_shared::messages::Priority;
use imgidx_shared::shutdown::Shutdown;

use crate::state::ApiDeps;

/// Longest wait between two looks for walks to take over.
const MAX_RESUME_EVERY: Duration = Duration::from_secs(5);
/// Longest wait, at shutdown, for walks to give their leases back.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// One walk to run: a job's scan, under the lease `owner`.
#[derive(Debug, Clone)]
pub struct Walk {
    pub job_id: String,
    pub priority: Priority,
    pub spec: ScanSpec,
    pub owner: String,
    /// The trigger's `x-request-id`, carried in its tasks (None for a walk taken over).
    pub request_id: Option<String>,
}

/// Runs this process's walks.
pub struct Scanner {
    deps: ApiDeps,
    roots: Arc<Vec<PathBuf>>,
    lease: Duration,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: Shutdown,
}

impl Scanner {
    pub fn new(deps: ApiDeps, roots: Arc<Vec<PathBuf>>, max_walks: usize, lease: Duration, shutdown: Shutdown) -> Self {
        let slots = Arc::new(Semaphore::new(max_walks.max(1)));
        Self { deps, roots, lease, slots, tracker: TaskTracker::new(), shutdown }
    }

    /// A fresh lease token: which process and which walk.
    pub fn new_owner() -> String {
        format!("api-{}-{}", std::process::id(), Uuid::new_v4().simple())
    }

    /// Starts `walk` now if a slot is free; otherwise gives its lease back so that this
    /// process (or another) takes it over once a slot frees.
    pub async fn start_or_defer(self: &Arc<Self>, walk: Walk) {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => self.spawn(walk, slot),
            Err(_) => {
                tracing::info!(job_id = walk.job_id, "scan: every walk slot is busy; the walk waits its turn");
                if let Err(e) = self.deps.jobs.release_scan(&walk.job_id, &walk.owner).await {
                    tracing::warn!(job_id = walk.job_id, error = %e, "scan: could not give the lease back; it expires instead");
                }
            }
        }
    }

    fn spawn(self: &Arc<Self>, walk: Walk, slot: OwnedSemaphorePermit) {
        let scanner = Arc::clone(self);
        let span = tracing::info_span!("scan", job_id = walk.job_id, dir = walk.spec.dir);
        self.tracker.spawn(
            async move {
                run::run(&scanner, walk).await;
                drop(slot);
            }
            .instrument(span),
        );
    }

    /// Until shutdown: takes over walks whose lease expired, as slots allow.
    pub async fn resume_loop(self: Arc<Self>) {
        let every = (self.lease / 3).clamp(Duration::from_millis(200), MAX_RESUME_EVERY);
        loop {
            self.resume_stale().await;
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    async fn resume_stale(self: &Arc<Self>) {
        let free = self.slots.available_permits();
        if free == 0 {
            return;
        }
        let owner = Self::new_owner();
        let leases = match self.deps.jobs.claim_stale_scans(self.lease, &owner, free).await {
            Ok(leases) => leases,
            Err(e) => {
                tracing::warn!(error = %e, "scan: could not look for walks to take over");
                return;
            }
        };
        for lease in leases {
            tracing::info!(job_id = lease.job_id, dir = lease.spec.dir, "scan: taking the walk over");
            let walk = Walk {
                job_id: lease.job_id,
                priority: lease.priority,
                spec: lease.spec,
                owner: owner.clone(),
                request_id: None,
            };
            self.start_or_defer(walk).await;
        }
    }

    /// After shutdown: waits (bounded) for walks to stop and give their leases back.
    pub async fn drain(&self) {
        self.tracker.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.tracker.wait()).await.is_err() {
            tracing::warn!("scan: walks still running at shutdown; their leases expire and another process resumes them");
        }
    }
}
