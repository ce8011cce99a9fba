use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use imgidx_shared::time::rfc3339;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::target::Target;

#[derive(Serialize, utoipa::ToSchema)]
pub struct IndexStats {
    pub model_name: String,
    pub embedding_dim: usize,
    pub total_images: u64,
    pub num_failed: u64,
    pub last_updated: Option<String>,
    pub index_size_mb: f64,
    /// The same in bytes, by part, as seed 002 reports it.
    pub index_size_bytes: IndexSizeBytes,
    /// The collection these figures are of (`num_failed` and `last_updated` are server-wide).
    pub collection: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IndexSizeBytes {
    /// The vector index (with its payloads).
    pub vectors: u64,
    pub total: u64,
}

/// Figures come from the stores themselves, never from counters that could drift.
pub async fn index_stats(state: &AppState, target: &Target) -> Result<IndexStats, ApiError> {
    let d = &state.deps;
    let (total, size, failed, last) =
        tokio::try_join!(
            async { target.store.count().await.map_err(ApiError::from) },
            async { target.store.size_bytes().await.map_err(ApiError::from) },
            async { d.jobs.failed_image_count().await.map_err(ApiError::from) },
            async { d.jobs.last_update().await.map_err(ApiError::from) },
        )?;
    Ok(IndexStats {
        model_name: target.record.model.clone(),
        embedding_dim: target.record.dim,
        total_images: total,
        num_failed: failed,
        last_updated: last.map(rfc3339),
        index_size_mb: (size as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0,
        index_size_bytes: IndexSizeBytes { vectors: size, total: size },
        collection: target.record.name.clone(),
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Collection whose figures to give; the selected one when absent.
    collection: Option<String>,
}

/// Index statistics.
#[utoipa::path(
    get,
    path = "/api/v1/index/stats",
    tag = "search",
    params(StatsQuery),
    responses(
        (status = 200, description = "The index: model, size, counts", body = IndexStats),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
        (status = 422, description = "`validation_error`: a bad query string", body = ErrorBody),
    )
)]
pub async fn stats(
    State(state): State<AppState>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<IndexStats>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::Validation(format!("invalid query: {e}")))?;
    let target = Target::open(&state.deps, q.collection.as_deref()).await?;
    Ok(Json(index_stats(&state, &target).await?))
}
