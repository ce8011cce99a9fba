//! `GET /api/v1/index/status/{job_id}/items?state=&limit=&cursor=`: each image of a
//! job with its outcome, in keyset pages (by point id, never OFFSET), so a client can
//! find out which images failed and why.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use imgidx_shared::jobs::{ItemRecord, ItemState};
use imgidx_shared::time::rfc3339;

use super::paging::{given, parse_limit};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Everything arrives as text, so every bad value is one 422 with a clear message.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemsQuery {
    /// Only images in this state: pending, indexed, failed.
    #[param(value_type = Option<String>, example = "failed")]
    state: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ItemsBody {
    job_id: String,
    items: Vec<ItemBody>,
    /// Pass back as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = JobItem)]
pub struct ItemBody {
    path: String,
    /// pending, indexed or failed.
    #[schema(value_type = String, example = "indexed")]
    state: &'static str,
    /// Stable failure code; null unless failed.
    reason: Option<String>,
    /// What went wrong, for people; null unless failed.
    message: Option<String>,
    /// How many times a worker started on it.
    attempts: u32,
    finished_at: Option<String>,
    /// Indexed with the vector of an indexed image with the same bytes (no inference).
    from_cache: bool,
}

impl From<ItemRecord> for ItemBody {
    fn from(i: ItemRecord) -> Self {
        Self {
            path: i.path,
            state: i.state.as_str(),
            reason: i.failure_kind,
            message: i.reason,
            attempts: i.attempts,
            finished_at: i.finished_at.map(rfc3339),
            from_cache: i.from_cache,
        }
    }
}

/// What the query asks for, checked.
#[derive(Debug, PartialEq)]
struct Filter {
    state: Option<ItemState>,
    limit: usize,
    after: Option<Uuid>,
}

/// A job's images and their outcome.
#[utoipa::path(
    get,
    path = "/api/v1/index/status/{job_id}/items",
    tag = "jobs",
    params(("job_id" = String, Path, description = "The job's id"), ItemsQuery),
    responses(
        (status = 200, description = "The job's images with their outcome, by point id", body = ItemsBody),
        (status = 404, description = "`job_not_found`", body = ErrorBody),
        (status = 422, description = "`validation_error`: a bad state, limit or cursor", body = ErrorBody),
    )
)]
pub async fn job_items(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    query: Result<Query<ItemsQuery>, QueryRejection>,
) -> Result<Json<ItemsBody>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::Validation(format!("invalid query: {e}")))?;
    let filter = parse_filter(query)?;
    if state.deps.jobs.job(&job_id).await?.is_none() {
        return Err(ApiError::JobNotFound(job_id));
    }
    let page = state.deps.jobs.job_items(&job_id, filter.state, filter.after, filter.limit).await?;
    Ok(Json(ItemsBody {
        job_id,
        items: page.items.into_iter().map(ItemBody::from).collect(),
        next_cursor: page.next_after.map(encode_cursor),
    }))
}

fn parse_filter(q: ItemsQuery) -> Result<Filter, ApiError> {
    let state = match given(q.state.as_deref()) {
        None => None,
        Some(s) => Some(ItemState::parse(s).ok_or_else(|| {
            ApiError::Validation(format!("state must be one of \"pending\", \"indexed\", \"failed\" (got {s:?})"))
        })?),
    };
    let limit = parse_limit(q.limit.as_deref())?;
    let after = match given(q.cursor.as_deref()) {
        None => None,
        Some(c) => Some(decode_cursor(c).ok_or_else(|| {
            ApiError::Validation("cursor is malformed: pass back the next_cursor of a previous page".into())
        })?),
    };
    Ok(Filter { state, limit, after })
}

/// The cursor is opaque to clients; today it is the last point id of the page, in hex.
fn encode_cursor(after: Uuid) -> String {
    after.simple().to_string()
}

fn decode_cursor(cursor: &str) -> Option<Uuid> {
    if cursor.len() != 32 || !cursor.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Uuid::try_parse(cursor).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn query(state: Option<&str>, limit: Option<&str>, cursor: Option<&str>) -> ItemsQuery {
        ItemsQuery { state: state.map(Into::into), limit: limit.map(Into::into), cursor: cursor.map(Into::into) }
    }

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(parse_filter(ItemsQuery::default()).unwrap(), Filter { state: None, limit: 100, after: None });
        let f = parse_filter(query(Some("failed"), Some("1000"), None)).unwrap();
        assert_eq!((f.state, f.limit), (Some(ItemState::Failed), 1000));
        for bad in ["0", "1001", "-1", "ten", ""] {
            assert!(matches!(parse_filter(query(None, Some(bad), None)), Err(ApiError::Validation(m)) if m.contains("limit")), "{bad}");
        }
        assert!(matches!(parse_filter(query(Some("done"), None, None)), Err(ApiError::Validation(m)) if m.contains("done")));
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let id = Uuid::from_u128(0xabc);
        let f = parse_filter(query(None, None, Some(&encode_cursor(id)))).unwrap();
        assert_eq!(f.after, Some(id));
        for bad in ["xyz", "00000000-0000-0000-0000-000000000abc", &"g".repeat(32), &"0".repeat(31)] {
            assert!(matches!(parse_filter(query(None, None, Some(bad))), Err(ApiError::Validation(m)) if m.contains("cursor")), "{bad}");
        }
    }
}
