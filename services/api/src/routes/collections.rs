//! Collections (seed 003): create, list, delete and select named collections, each bound
//! to the model whose vectors it holds. See `imgidx_shared::collections` for how names map
//! to the vector store.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use imgidx_shared::collections::{check_name, CollectionRecord, Distance};
use imgidx_shared::jobs::{AddCollection, RemoveCollection};
use imgidx_shared::time::rfc3339;

use super::json_body;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::target;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollectionRequest {
    /// 1 to 64 characters of a-z, 0-9, `-` and `_`, starting with a letter or digit, without `__`.
    collection_name: String,
    /// Must be the model's embedding size when given.
    vector_size: Option<usize>,
    /// `Cosine` (default), `Dot` or `Euclid`; scores are reported as cosine similarity whatever it is.
    #[schema(value_type = Option<String>, example = "Cosine")]
    distance: Option<String>,
    /// The model whose vectors it will hold: this server's own (the default), or one
    /// installed in `model.models_dir`.
    model: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectCollectionRequest {
    collection_name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Collection)]
pub struct CollectionBody {
    name: String,
    model: String,
    vector_size: usize,
    distance: Distance,
    /// Requests that name no collection use the selected one.
    is_selected: bool,
    created_at: String,
    /// Points in it; absent when its index could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    points: Option<u64>,
    /// Bytes its index takes; absent when it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    size_bytes: Option<u64>,
    /// The model switch under way, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    switching: Option<SwitchBody>,
    /// A completed model switch left the previous generation (its vectors of the old
    /// model), kept until `DELETE /api/v1/collections/{name}/previous`.
    has_previous: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CollectionsBody {
    collections: Vec<CollectionBody>,
    /// The selected collection's name.
    selected: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CollectionMessage {
    collection_name: String,
    message: String,
}

impl CollectionMessage {
    pub(super) fn new(collection_name: String, message: String) -> Self {
        Self { collection_name, message }
    }
}

/// A model switch under way (`POST /api/v1/collections/{name}/reembed`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct SwitchBody {
    /// The model the collection is switching to; searches use `model` until it completes.
    model: String,
    vector_size: usize,
    /// The job that embeds every image again.
    job_id: String,
    started_at: String,
}

/// List the collections.
#[utoipa::path(
    get,
    path = "/api/v1/collections",
    tag = "collections",
    responses((status = 200, description = "Every collection, by name, with its size", body = CollectionsBody))
)]
pub async fn list_collections(State(state): State<AppState>) -> Result<Json<CollectionsBody>, ApiError> {
    let (records, selected) = tokio::try_join!(
        async { state.deps.jobs.collections().await.map_err(ApiError::from) },
        target::selected(&state.deps),
    )?;
    let bodies = join_all(records.into_iter().map(|r| {
        let state = &state;
        let selected = &selected;
        async move {
            let (points, size_bytes) = figures(state, &r).await;
            CollectionBody { points, size_bytes, ..collection_body(r, selected) }
        }
    }))
    .await;
    Ok(Json(CollectionsBody { collections: bodies, selected }))
}

/// Points and bytes of a collection, each None when its index cannot be read.
async fn figures(state: &AppState, r: &CollectionRecord) -> (Option<u64>, Option<u64>) {
    let store = match state.deps.collections.open(&r.physical, r.dim, None).await {
        Ok(store) => store,
        Err(e) => {
            tracing::warn!(collection = r.name, error = %e, "collection index unreadable");
            return (None, None);
        }
    };
    let (points, size) = tokio::join!(store.count(), store.size_bytes());
    (points.ok(), size.ok())
}

fn collection_body(r: CollectionRecord, selected: &str) -> CollectionBody {
    CollectionBody {
        switching: r.next.map(|n| SwitchBody {
            model: n.model,
            vector_size: n.dim,
            job_id: n.job_id,
            started_at: rfc3339(n.started_at),
        }),
        has_previous: r.previous.is_some(),
        is_selected: r.name == selected,
        model: r.model,
        vector_size: r.dim,
        distance: r.distance,
        created_at: rfc3339(r.created_at),
        points: None,
        size_bytes: None,
        name: r.name,
    }
}

/// Create a collection.
#[utoipa::path(
    post,
    path = "/api/v1/collections",
    tag = "collections",
    request_body = CreateCollectionRequest,
    responses(
        (status = 201, description = "Created, empty", body = CollectionBody),
        (status = 409, description = "`collection_exists`, or `collection_limit` (`vectors.max_collections`)", body = ErrorBody),
        (status = 422, description = "`validation_error`: a bad name, a `vector_size` or `model` this server does not make, an unknown `distance`", body = ErrorBody),
    )
)]
pub async fn create_collection(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CollectionBody>), ApiError> {
    let body = body.map_err(|_| ApiError::PayloadTooLarge(state.settings.max_body_bytes))?;
    let request: CreateCollectionRequest = json_body::parse(&body)?;
    let record = checked_record(&state, request)?;
    match state.deps.jobs.add_collection(&record, state.settings.max_collections).await? {
        AddCollection::Added => {}
        AddCollection::Exists(_) => return Err(ApiError::CollectionExists(record.name)),
        AddCollection::Full => return Err(ApiError::CollectionLimit(state.settings.max_collections)),
    }
    // The name is now ours, and so its physical name: anything left there by a delete
    // whose drop failed is stale.
    if let Err(e) = make_index(&state, &record).await {
        if let Err(undo) = state.deps.jobs.remove_collection(&record.name).await {
            tracing::error!(collection = record.name, error = %undo, "could not take back a collection whose index failed");
        }
        return Err(e);
    }
    tracing::info!(collection = record.name, physical = record.physical, model = record.model, "collection created");
    let selected = target::selected(&state.deps).await?;
    Ok((StatusCode::CREATED, Json(CollectionBody { points: Some(0), size_bytes: None, ..collection_body(record, &selected) })))
}

fn checked_record(state: &AppState, request: CreateCollectionRequest) -> Result<CollectionRecord, ApiError> {
    let deps = &state.deps;
    check_name(&request.collection_name).map_err(|e| ApiError::Validation(e.to_string()))?;
    let model = request.model.unwrap_or_else(|| deps.model_name.clone());
    let dim = super::reembed::dim_of(state, &model)?;
    if let Some(size) = request.vector_size.filter(|s| *s != dim) {
        return Err(ApiError::Validation(format!(
            "vector_size {size} does not match model {model:?}, which makes {dim}-dim vectors"
        )));
    }
    let distance = match request.distance.as_deref() {
        None => Distance::Cosine,
        Some(d) => Distance::parse(d).ok_or_else(|| {
            ApiError::Validation(format!("distance must be one of \"Cosine\", \"Dot\", \"Euclid\" (got {d:?})"))
        })?,
    };
    Ok(CollectionRecord::new(&request.collection_name, &model, dim, distance, Utc::now()))
}

/// The collection's index, new and empty, under its alias.
async fn make_index(state: &AppState, record: &CollectionRecord) -> Result<(), ApiError> {
    let collections = &state.deps.collections;
    collections.drop_collection(&record.physical).await?;
    collections.open(&record.physical, record.dim, Some(record.distance)).await?;
    collections.set_alias(&record.name, &record.physical).await?;
    Ok(())
}

/// Delete a collection and its points.
#[utoipa::path(
    delete,
    path = "/api/v1/collections/{collection_name}",
    tag = "collections",
    params(("collection_name" = String, Path, description = "The collection")),
    responses(
        (status = 200, description = "Deleted, with its points", body = CollectionMessage),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
        (status = 409, description = "`collection_in_use`: it is the selected collection, or jobs still write into it", body = ErrorBody),
    )
)]
pub async fn delete_collection(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<CollectionMessage>, ApiError> {
    let record = match state.deps.jobs.remove_collection(&name).await? {
        RemoveCollection::Removed(record) => record,
        RemoveCollection::Missing => return Err(ApiError::CollectionNotFound(name)),
        RemoveCollection::Selected => {
            return Err(ApiError::CollectionInUse(format!(
                "collection {name} is the selected collection; select another one first"
            )))
        }
        RemoveCollection::Busy { active_jobs } => {
            return Err(ApiError::CollectionInUse(format!(
                "{active_jobs} queued or running jobs write into collection {name}; cancel them or let them finish"
            )))
        }
    };
    // Out of the catalog already: what cannot be dropped now is only disk space, and a
    // collection made later under this name drops it first (see `create_collection`).
    let collections = &state.deps.collections;
    let mut message = format!("Collection {name} deleted");
    let next = record.next.as_ref().map(|n| &n.physical);
    for physical in std::iter::once(&record.physical).chain(record.previous.as_ref()).chain(next) {
        if let Err(e) = collections.drop_collection(physical).await {
            tracing::error!(collection = name, physical, error = %e, "could not delete a collection's index");
            message = format!("Collection {name} deleted; its index could not be removed yet and takes disk space");
        }
    }
    if let Err(e) = collections.remove_alias(&name).await {
        tracing::warn!(collection = name, error = %e, "could not remove the collection's alias");
    }
    tracing::info!(collection = name, "collection deleted");
    Ok(Json(CollectionMessage { collection_name: name, message }))
}

/// Select the collection requests use when they name none.
#[utoipa::path(
    post,
    path = "/api/v1/collections/select",
    tag = "collections",
    request_body = SelectCollectionRequest,
    responses(
        (status = 200, description = "Selected, for every API process of this server", body = CollectionMessage),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
        (status = 422, description = "`validation_error`: no `collection_name`, or another field", body = ErrorBody),
    )
)]
pub async fn select_collection(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CollectionMessage>, ApiError> {
    let body = body.map_err(|_| ApiError::PayloadTooLarge(state.settings.max_body_bytes))?;
    let request: SelectCollectionRequest = json_body::parse(&body)?;
    let name = request.collection_name;
    if !state.deps.jobs.select_collection(&name).await? {
        return Err(ApiError::CollectionNotFound(name));
    }
    tracing::info!(collection = name, "collection selected");
    Ok(Json(CollectionMessage { message: format!("Collection {name} selected"), collection_name: name }))
}
