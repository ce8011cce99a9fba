use axum::extract::State;
use axum::Json;
use serde::Serialize;

use imgidx_shared::time::rfc3339;

use crate::error::ApiError;
use crate::state::AppState;

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
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IndexSizeBytes {
    /// The vector index (with its payloads).
    pub vectors: u64,
    pub total: u64,
}

/// Figures come from the stores themselves, never from counters that could drift.
pub async fn index_stats(state: &AppState) -> Result<IndexStats, ApiError> {
    let d = &state.deps;
    let (total, size, failed, last) =
        tokio::try_join!(
            async { d.vectors.count().await.map_err(ApiError::from) },
            async { d.vectors.size_bytes().await.map_err(ApiError::from) },
            async { d.jobs.failed_image_count().await.map_err(ApiError::from) },
            async { d.jobs.last_update().await.map_err(ApiError::from) },
        )?;
    Ok(IndexStats {
        model_name: d.model_name.clone(),
        embedding_dim: d.embedding_dim,
        total_images: total,
        num_failed: failed,
        last_updated: last.map(rfc3339),
        index_size_mb: (size as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0,
        index_size_bytes: IndexSizeBytes { vectors: size, total: size },
    })
}

/// Index statistics.
#[utoipa::path(
    get,
    path = "/api/v1/index/stats",
    tag = "search",
    responses((status = 200, description = "The index: model, size, counts", body = IndexStats))
)]
pub async fn stats(State(state): State<AppState>) -> Result<Json<IndexStats>, ApiError> {
    Ok(Json(index_stats(&state).await?))
}
