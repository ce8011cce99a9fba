//! Seed 002's job management: `GET /api/v1/index/jobs?status=&priority=&limit=&cursor=`
//! lists jobs newest first (keyset pages), and `POST /api/v1/index/jobs/{job_id}/cancel`
//! stops one: its pending images are not embedded, and it ends `cancelled`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use imgidx_shared::jobs::{CancelOutcome, JobCursor, JobQuery, JobStatus};
use imgidx_shared::messages::Priority;

use super::add_images_request::parse_priority;
use super::paging::{given, parse_limit};
use super::status::JobSummary;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Everything arrives as text, so every bad value is one 422 with a clear message.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only jobs in this state: queued, running, completed, failed, cancelled.
    #[param(value_type = Option<String>, example = "running")]
    status: Option<String>,
    /// Only jobs of this priority.
    #[param(value_type = Option<Priority>)]
    priority: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobsBody {
    jobs: Vec<JobSummary>,
    /// Jobs matching the filters, on every page together.
    total: u64,
    /// Pass back as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// List jobs, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/index/jobs",
    tag = "jobs",
    params(JobsQuery),
    responses(
        (status = 200, description = "Jobs, newest first", body = JobsBody),
        (status = 422, description = "`validation_error`: a bad status, priority, limit or cursor", body = ErrorBody),
    )
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Json<JobsBody>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::Validation(format!("invalid query: {e}")))?;
    let page = state.deps.jobs.list_jobs(&parse_query(query)?).await?;
    Ok(Json(JobsBody {
        jobs: page.jobs.into_iter().map(JobSummary::from).collect(),
        total: page.total,
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

fn parse_query(q: JobsQuery) -> Result<JobQuery, ApiError> {
    let status = match given(q.status.as_deref()) {
        None => None,
        Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
            let names: Vec<String> = JobStatus::ALL.iter().map(|s| format!("{:?}", s.as_str())).collect();
            ApiError::Validation(format!("status must be one of {} (got {s:?})", names.join(", ")))
        })?),
    };
    let priority = given(q.priority.as_deref()).map(parse_priority).transpose()?;
    let after = match given(q.cursor.as_deref()) {
        None => None,
        Some(c) => Some(JobCursor::decode(c).ok_or_else(|| {
            ApiError::Validation("cursor is malformed: pass back the next_cursor of a previous page".into())
        })?),
    };
    Ok(JobQuery { status, priority, after, limit: parse_limit(q.limit.as_deref())? })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CancelBody {
    #[serde(flatten)]
    job: JobSummary,
    message: String,
}

/// Cancel a queued or running job.
#[utoipa::path(
    post,
    path = "/api/v1/index/jobs/{job_id}/cancel",
    tag = "jobs",
    params(("job_id" = String, Path, description = "The job's id")),
    request_body(content = Object, description = "Empty (`{}`); the Content-Type must be application/json"),
    responses(
        (status = 200, description = "Cancelled: its pending images will not be embedded", body = CancelBody),
        (status = 404, description = "`job_not_found`", body = ErrorBody),
        (status = 409, description = "`job_finished`: the job has ended already", body = ErrorBody),
    )
)]
pub async fn cancel_job(State(state): State<AppState>, Path(job_id): Path<String>) -> Result<Json<CancelBody>, ApiError> {
    match state.deps.jobs.cancel_job(&job_id).await? {
        CancelOutcome::Cancelled(job) => {
            let pending = job.pending_images();
            tracing::info!(job_id, pending, "job cancelled");
            // Watchers learn of the end now, not at their next look at the store.
            if let Err(e) = state.deps.broker.publish_progress(&job.progress_event()).await {
                tracing::debug!(job_id, error = %e, "progress not published");
            }
            let message = format!("Cancelled: {pending} images not processed yet will not be embedded");
            Ok(Json(CancelBody { job: JobSummary::from(job), message }))
        }
        CancelOutcome::AlreadyFinished(job) => Err(ApiError::JobFinished { job_id, status: job.status.as_str() }),
        CancelOutcome::Unknown => Err(ApiError::JobNotFound(job_id)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use imgidx_shared::messages::Priority;

    use super::*;

    fn query(status: Option<&str>, priority: Option<&str>, cursor: Option<&str>) -> JobsQuery {
        JobsQuery { status: status.map(Into::into), priority: priority.map(Into::into), limit: None, cursor: cursor.map(Into::into) }
    }

    #[test]
    fn filters_are_checked() {
        let q = parse_query(query(Some("cancelled"), Some("high"), None)).unwrap();
        assert_eq!((q.status, q.priority, q.limit), (Some(JobStatus::Cancelled), Some(Priority::High), 100));
        assert_eq!(parse_query(query(Some(""), Some(""), Some(""))).unwrap(), JobQuery { limit: 100, ..Default::default() });
        assert!(matches!(parse_query(query(Some("done"), None, None)), Err(ApiError::Validation(m)) if m.contains("\"cancelled\"")));
        assert!(matches!(parse_query(query(None, Some("urgent"), None)), Err(ApiError::Validation(m)) if m.contains("urgent")));
        assert!(matches!(parse_query(query(None, None, Some("nope"))), Err(ApiError::Validation(m)) if m.contains("cursor")));
    }
}
