//! Seed 002's job management: `GET /api/v1/index/jobs?status=&priority=&limit=&cursor=`
//! lists jobs newest first (keyset pages), and `POST /api/v1/index/jobs/{job_id}/cancel`
//! stops one: its pending images are not embedded, and it ends `cancelled`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use imgidx_shared::jobs::{CancelOutcome, JobCursor, JobQuery, JobStatus};

use super::add_images_request::parse_priority;
use super::paging::{given, parse_limit};
use super::status::JobSummary;
use crate::error::ApiError;
use crate::state::AppState;

/// Everything arrives as text, so every bad value is one 422 with a clear message.
#[derive(Deserialize, Default)]
pub struct JobsQuery {
    status: Option<String>,
    priority: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct JobsBody {
    jobs: Vec<JobSummary>,
    /// Jobs matching the filters, on every page together.
    total: u64,
    /// Pass back as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

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

#[derive(Serialize)]
pub struct CancelBody {
    #[serde(flatten)]
    job: JobSummary,
    message: String,
}

/// 200 with the cancelled job; 409 `job_finished` when it had finished already.
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
