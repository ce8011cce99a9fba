//! Ends model switches (`routes/reembed.rs`). Every API process watches the collections
//! whose next generation a switch is filling. Once the switch's job has completed, the
//! first to notice completes the switch: the catalog makes the next generation current in
//! one step, so every search from then on is answered from it with its model, and none
//! meets a half-filled index; on a Qdrant server the collection's alias moves too. A job
//! that failed (nothing indexed) or was cancelled abandons the switch, and the next
//! generation is dropped. The catalog's steps are conditional on the switch's job, so
//! two processes never both do it.

use std::time::Duration;

use chrono::Utc;

use imgidx_shared::collections::NextGeneration;
use imgidx_shared::jobs::{JobStatus, JobStoreError};
use imgidx_shared::shutdown::Shutdown;

use crate::state::ApiDeps;

/// How often switches are looked at: the longest a completed job waits for its switch.
const EVERY: Duration = Duration::from_millis(500);
/// A switch whose job does not exist this long after it began was cut short between the
/// two steps that start it (the API process died).
const ORPHANED_AFTER: chrono::Duration = chrono::Duration::minutes(2);

/// Until shutdown.
pub async fn watch(deps: ApiDeps, shutdown: Shutdown) {
    loop {
        settle_all(&deps).await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

async fn settle_all(deps: &ApiDeps) {
    let records = match deps.jobs.collections().await {
        Ok(records) => records,
        Err(e) => {
            tracing::debug!(error = %e, "switches: could not read the catalog");
            return;
        }
    };
    for record in records {
        let Some(next) = &record.next else { continue };
        if let Err(e) = settle(deps, &record.name, next).await {
            tracing::warn!(collection = record.name, job_id = next.job_id, error = %e, "switches: could not settle a model switch");
        }
    }
}

async fn settle(deps: &ApiDeps, name: &str, next: &NextGeneration) -> Result<(), JobStoreError> {
    let Some(job) = deps.jobs.job(&next.job_id).await? else {
        if Utc::now() - next.started_at > ORPHANED_AFTER {
            abandon(deps, name, next, "its job was never created").await?;
        }
        return Ok(());
    };
    match job.status {
        JobStatus::Queued | JobStatus::Running => {
            warm(deps, &next.model).await;
            Ok(())
        }
        JobStatus::Completed => complete(deps, name, next).await,
        // An empty collection's switch has nothing to index, and nothing failed.
        JobStatus::Failed if job.total_images == 0 => complete(deps, name, next).await,
        JobStatus::Failed | JobStatus::Cancelled => abandon(deps, name, next, job.status.as_str()).await,
    }
}

/// Loads the next model's query engine before searches need it, so the first search
/// after the switch does not wait for it.
async fn warm(deps: &ApiDeps, model: &str) {
    if let Some(queries) = &deps.queries {
        if let Err(e) = queries.get(model).await {
            tracing::debug!(model, error = %e, "switches: the next model is not loaded for search yet");
        }
    }
}

async fn complete(deps: &ApiDeps, name: &str, next: &NextGeneration) -> Result<(), JobStoreError> {
    let Some(done) = deps.jobs.complete_switch(name, &next.job_id).await? else { return Ok(()) };
    tracing::info!(collection = name, physical = done.record.physical, model = done.record.model, "model switch completed");
    if let Err(e) = deps.collections.set_alias(name, &done.record.physical).await {
        // The initial collection on a Qdrant server: its name is still its previous
        // generation's, until `DELETE …/previous`.
        tracing::info!(collection = name, error = %e, "the collection's alias could not move yet");
    }
    if let Some(replaced) = done.replaced {
        if let Err(e) = deps.collections.drop_collection(&replaced).await {
            tracing::error!(collection = name, physical = replaced, error = %e, "could not delete a replaced generation's index");
        }
    }
    Ok(())
}

async fn abandon(deps: &ApiDeps, name: &str, next: &NextGeneration, why: &str) -> Result<(), JobStoreError> {
    let Some(physical) = deps.jobs.abandon_switch(name, &next.job_id).await? else { return Ok(()) };
    tracing::warn!(collection = name, job_id = next.job_id, why, "model switch abandoned; the collection keeps its model");
    if let Err(e) = deps.collections.drop_collection(&physical).await {
        tracing::error!(collection = name, physical, error = %e, "could not delete an abandoned generation's index");
    }
    Ok(())
}
