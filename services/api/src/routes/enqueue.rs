//! The step add-images and retry share: create a job over the candidates no active
//! job holds, publish its tasks, and answer only once both are durable. If publishing
//! fails the job is failed (its claims released) and the client gets 503: nothing
//! looks queued that is not. Once the broker confirmed the tasks the job is marked
//! published; a job left unmarked (this process died in between) is published by the
//! reconcile after `jobs.publish_grace_secs`.

use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use tracing::Instrument;

use imgidx_shared::ids::new_job_id;
use imgidx_shared::jobs::NewItem;
use imgidx_shared::messages::{ImageTask, Priority};

use super::add_images::AddImagesResponse;
use crate::error::ApiError;
use crate::state::AppState;

/// What a request asks to queue: `images_count` distinct images, `unchanged` of them
/// already indexed and current, the rest as `candidates`.
pub(crate) struct Submission {
    pub priority: Priority,
    pub images_count: usize,
    pub unchanged: usize,
    pub candidates: Vec<NewItem>,
    /// The request's `x-request-id`, carried in every task.
    pub request_id: Option<String>,
    /// URLs to tell when the job ends (checked already).
    pub webhooks: Vec<String>,
    /// Physical collection the job writes into (None: the initial collection).
    pub collection: Option<String>,
}

/// Creates the job and publishes its tasks; 200 with job `"none"` when nothing could
/// be claimed (no job is created then). Runs as a task of its own: a request that times
/// out or whose client goes away must not stop between the commit and the publish.
pub(crate) async fn create_and_publish(
    state: &AppState,
    submission: Submission,
) -> Result<(StatusCode, Json<AddImagesResponse>), ApiError> {
    let state = state.clone();
    // In the request's span, so its logs carry the request id.
    tokio::spawn(async move { commit_and_publish(&state, submission).await }.instrument(tracing::Span::current()))
        .await
        .map_err(|e| ApiError::Internal(format!("queueing task: {e}")))?
}

async fn commit_and_publish(
    state: &AppState,
    submission: Submission,
) -> Result<(StatusCode, Json<AddImagesResponse>), ApiError> {
    let Submission { priority, images_count, unchanged, candidates, request_id, webhooks, collection } = submission;
    let job_id = new_job_id(Utc::now());
    // Before the job: a job that exists always has its deliveries (see jobs/webhooks.rs).
    state.webhooks.register(state.deps.jobs.as_ref(), &job_id, &webhooks).await?;
    let started = std::time::Instant::now();
    let claimed = state.deps.jobs.create_job_in(&job_id, priority, collection.as_deref(), &candidates).await?;
    let committing = started.elapsed();
    let already_queued = candidates.len() - claimed.len();
    if claimed.is_empty() {
        return Ok(nothing_to_do(images_count, unchanged, already_queued));
    }

    let tasks: Vec<ImageTask> =
        claimed.iter().map(|i| i.task(&job_id, collection.as_deref(), request_id.as_deref())).collect();
    publish_job(state, &job_id, priority, &tasks).await?;
    let publishing = started.elapsed() - committing;
    tracing::info!(job_id, new = tasks.len(), unchanged, already_queued, priority = priority.as_str(), ?committing, ?publishing, "job queued");

    let new = claimed.len();
    let mut message = format!("Queued {new} new images for indexing");
    if already_queued > 0 {
        message.push_str(&format!(" ({already_queued} already queued by another job)"));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(AddImagesResponse {
            job_id,
            status: "queued",
            images_count,
            new_images_count: new,
            already_indexed_count: images_count - new,
            already_queued_count: already_queued,
            message,
        }),
    ))
}

/// Publishes the tasks of the job just created. If the broker fails, the job is failed
/// (its claims released): nothing may look queued that is not.
pub(crate) async fn publish_job(
    state: &AppState,
    job_id: &str,
    priority: Priority,
    tasks: &[ImageTask],
) -> Result<(), ApiError> {
    if let Err(e) = state.deps.broker.publish_tasks(priority, tasks).await {
        let message = "could not queue the images: the task queue is unavailable";
        if let Err(store_err) = state.deps.jobs.fail_job(job_id, message).await {
            tracing::error!(job_id, error = %store_err, "could not mark unqueued job failed");
        }
        return Err(e.into());
    }
    // Failing to record it costs a duplicate publish by the reconcile after its grace
    // period (harmless: the same point is replaced), not the job.
    if let Err(e) = state.deps.jobs.mark_published(&[job_id.to_string()]).await {
        tracing::warn!(job_id, error = %e, "could not record that the job's tasks were published; the reconcile will publish them again");
    }
    Ok(())
}

pub(crate) fn nothing_to_do(
    images_count: usize,
    unchanged: usize,
    already_queued: usize,
) -> (StatusCode, Json<AddImagesResponse>) {
    let message = if already_queued == 0 {
        "All images already indexed".to_string()
    } else {
        format!("No new images: {unchanged} already indexed, {already_queued} already queued by another job")
    };
    (
        StatusCode::OK,
        Json(AddImagesResponse {
            job_id: "none".into(),
            status: "completed",
            images_count,
            new_images_count: 0,
            already_indexed_count: images_count,
            already_queued_count: already_queued,
            message,
        }),
    )
}
