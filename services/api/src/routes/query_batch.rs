//! `POST /api/v1/query/batch`: many searches in one request, answered in order. Each is
//! a JSON query as `POST /api/v1/query` takes it (text, image path or combined; no
//! upload, no `copy_results`). Their texts are embedded together, once each, through the
//! text cache (seed 002's query caching), then the searches run a few at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::query::{answer, searched, subject_of, wants_copies, QueryRequest, QueryResponse, Search};
use crate::error::{ApiError, ErrorBody};
use crate::query_engine::QueryEngine;
use crate::state::AppState;
use crate::target::Target;

/// Searches of one batch running at once.
const CONCURRENT_SEARCHES: usize = 4;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryBatchRequest {
    /// The searches, 1 to `api.max_batch_queries` (default 64), each a `POST /api/v1/query` JSON body.
    searches: Vec<QueryRequest>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct QueryBatchResponse {
    /// One answer per search, in the order given.
    responses: Vec<QueryResponse>,
    query_time_seconds: f64,
}

/// Answer many searches in one request.
#[utoipa::path(
    post,
    path = "/api/v1/query/batch",
    tag = "search",
    request_body = QueryBatchRequest,
    responses(
        (status = 200, description = "One answer per search, in order", body = QueryBatchResponse),
        (status = 404, description = "`image_not_found`, `collection_not_found`: the message names the search (`searches[i]: …`)", body = ErrorBody),
        (status = 409, description = "`collection_model_mismatch`", body = ErrorBody),
        (status = 422, description = "`validation_error` (naming the search), or a search's image cannot be used", body = ErrorBody),
    )
)]
pub async fn query_batch(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<QueryBatchResponse>, ApiError> {
    let started = Instant::now();
    let batch: QueryBatchRequest = super::json_body::parse(&body)?;
    let max = state.settings.max_batch_queries;
    if batch.searches.is_empty() || batch.searches.len() > max {
        return Err(ApiError::Validation(format!("searches: 1 to {max} (got {})", batch.searches.len())));
    }
    let mut searches = Vec::with_capacity(batch.searches.len());
    for (i, mut req) in batch.searches.into_iter().enumerate() {
        let search = checked(&state, &mut req).map_err(|e| e.in_search(i))?;
        searches.push(search);
    }
    // Each collection once: its record, store and model's engine.
    let mut opened: HashMap<Option<String>, (Target, Arc<QueryEngine>)> = HashMap::new();
    for (i, search) in searches.iter().enumerate() {
        if !opened.contains_key(&search.collection) {
            let found = searched(&state, search.collection.as_deref()).await.map_err(|e| e.in_search(i))?;
            opened.insert(search.collection.clone(), found);
        }
    }
    warm_texts(&opened, &searches).await?;
    let opened = &opened;
    let state = &state;
    let responses = futures::stream::iter(searches.into_iter().enumerate())
        .map(|(i, search)| async move {
            let (target, engine) = opened
                .get(&search.collection)
                .ok_or_else(|| ApiError::Internal("batch search: collection not opened".into()))?;
            answer(state, target, engine, search, Instant::now()).await.map_err(|e| e.in_search(i))
        })
        .buffered(CONCURRENT_SEARCHES)
        .try_collect()
        .await?;
    Ok(Json(QueryBatchResponse { responses, query_time_seconds: started.elapsed().as_secs_f64() }))
}

fn checked(state: &AppState, req: &mut QueryRequest) -> Result<Search, ApiError> {
    if wants_copies(req) {
        return Err(ApiError::Validation("copy_results is not available in a batch: use POST /api/v1/query".into()));
    }
    let subject = subject_of(req)?;
    Search::checked(subject, req, state.settings.max_top_k)
}

/// Embeds every text of the batch, per model, in as few encoder calls as it takes; the
/// searches then find their vectors in the cache.
async fn warm_texts(
    opened: &HashMap<Option<String>, (Target, Arc<QueryEngine>)>,
    searches: &[Search],
) -> Result<(), ApiError> {
    let mut per_model: HashMap<&str, (&Arc<QueryEngine>, Vec<String>)> = HashMap::new();
    for search in searches {
        let texts = search.texts();
        if texts.is_empty() {
            continue;
        }
        if let Some((target, engine)) = opened.get(&search.collection) {
            per_model.entry(target.record.model.as_str()).or_insert_with(|| (engine, Vec::new())).1.extend(texts);
        }
    }
    for (engine, texts) in per_model.into_values() {
        engine.embed_texts(texts).await?;
    }
    Ok(())
}
