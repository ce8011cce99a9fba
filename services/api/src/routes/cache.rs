//! `POST /api/v1/collections/cache/clear` (seed 003): forget a collection's content hashes,
//! so images met again are embedded again instead of reusing a stored vector.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::json_body;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::target::Target;

#[derive(Deserialize, Default, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ClearCacheRequest {
    /// The collection; the selected one when absent (seed 003 clears the active one).
    collection_name: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClearCacheResponse {
    collection_name: String,
    message: String,
}

/// Forget a collection's content hashes (its points and vectors stay).
#[utoipa::path(
    post,
    path = "/api/v1/collections/cache/clear",
    tag = "collections",
    params(ClearCacheRequest),
    request_body(content = Option<ClearCacheRequest>, description = "Optional (seed 003 sends no body); the collection may also be named in the query string"),
    responses(
        (status = 200, description = "Cleared: images are embedded again when next indexed", body = ClearCacheResponse),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
        (status = 422, description = "`validation_error`: an unknown field", body = ErrorBody),
    )
)]
pub async fn clear_cache(
    State(state): State<AppState>,
    query: Result<Query<ClearCacheRequest>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ClearCacheResponse>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::Validation(format!("invalid query: {e}")))?;
    let body = body.map_err(|_| ApiError::PayloadTooLarge(state.settings.max_body_bytes))?;
    let request: ClearCacheRequest = if body.iter().all(u8::is_ascii_whitespace) { Default::default() } else { json_body::parse(&body)? };
    let name = request.collection_name.or(query.collection_name);
    let target = Target::open(&state.deps, name.as_deref()).await?;
    target.store.forget_hashes().await?;
    tracing::info!(collection = target.record.name, "content-hash cache cleared");
    let message = format!(
        "Cache of collection {} cleared: images indexed from now on are embedded, not taken from the cache",
        target.record.name
    );
    Ok(Json(ClearCacheResponse { collection_name: target.record.name, message }))
}
