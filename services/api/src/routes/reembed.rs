//! Model switches without downtime: `POST /api/v1/collections/{name}/reembed {model}`
//! fills a new generation of the collection with another model's vectors, as an ordinary
//! job (a scan that reads the collection, `scan/copy.rs`), while searches keep being
//! answered from the current one; `crate::switches` moves the collection over once the job
//! completes. `DELETE /api/v1/collections/{name}/previous` drops the generation it left.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use imgidx_shared::collections::{CollectionRecord, NextGeneration};
use imgidx_shared::ids::new_job_id;
use imgidx_shared::jobs::{BeginSwitch, ForgetPrevious, ScanOpened, ScanSpec};
use imgidx_shared::messages::Priority;

use super::collections::CollectionMessage;
use super::json_body;
use crate::error::{ApiError, ErrorBody};
use crate::http::request_id::RequestId;
use crate::scan::{Scanner, Walk};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReembedRequest {
    /// The model to embed the collection with from now on: this server's own, or one
    /// installed in `model.models_dir` (as `<models_dir>/<model>/manifest.json`).
    model: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReembedResponse {
    collection_name: String,
    /// The model it is switching to.
    model: String,
    /// The model searches use until the switch completes.
    current_model: String,
    /// The job that embeds every image again; its progress is the switch's.
    job_id: String,
    status_url: String,
    message: String,
}

/// Re-embed a collection with another model, searches answered meanwhile.
#[utoipa::path(
    post,
    path = "/api/v1/collections/{collection_name}/reembed",
    tag = "collections",
    params(("collection_name" = String, Path, description = "The collection")),
    request_body = ReembedRequest,
    responses(
        (status = 202, description = "The switch's job is queued; searches use the current model until it completes, then the new one", body = ReembedResponse),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
        (status = 409, description = "`collection_switching`: a switch is under way already; `collection_in_use`: jobs still write into it", body = ErrorBody),
        (status = 422, description = "`validation_error`: a model not served here, or the one the collection holds already", body = ErrorBody),
    )
)]
pub async fn reembed_collection(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ReembedResponse>), ApiError> {
    let body = body.map_err(|_| ApiError::PayloadTooLarge(state.settings.max_body_bytes))?;
    let ReembedRequest { model } = json_body::parse(&body)?;
    let record = state.deps.jobs.collection(&name).await?.ok_or_else(|| ApiError::CollectionNotFound(name.clone()))?;
    if model == record.model {
        return Err(ApiError::Validation(format!("collection {name} holds vectors of model {model} already")));
    }
    let dim = dim_of(&state, &model)?;
    let now = Utc::now();
    let next = NextGeneration { physical: record.next_physical(), model, dim, job_id: new_job_id(now), started_at: now };
    match state.deps.jobs.begin_switch(&name, &next).await? {
        BeginSwitch::Started(_) => {}
        BeginSwitch::Missing => return Err(ApiError::CollectionNotFound(name)),
        BeginSwitch::Switching(other) => {
            return Err(ApiError::CollectionSwitching { collection: name, model: other.model, job_id: other.job_id })
        }
        BeginSwitch::Busy { active_jobs } => {
            return Err(ApiError::CollectionInUse(format!(
                "{active_jobs} queued or running jobs write into collection {name}; switch its model once they finish"
            )))
        }
    }
    // The catalog holds the switch now: no other request makes or drops this generation.
    let request_id = request_id.map(|Extension(RequestId(id))| id);
    if let Err(e) = start(&state, &record, &next, request_id).await {
        if let Err(undo) = state.deps.jobs.abandon_switch(&name, &next.job_id).await {
            tracing::error!(collection = name, error = %undo, "could not take back a switch that did not start");
        } else if let Err(undo) = state.deps.collections.drop_collection(&next.physical).await {
            tracing::warn!(collection = name, error = %undo, "could not drop the index of a switch that did not start");
        }
        return Err(e);
    }
    tracing::info!(collection = name, from = record.model, to = next.model, job_id = next.job_id, "model switch started");
    Ok((
        StatusCode::ACCEPTED,
        Json(ReembedResponse {
            message: format!(
                "Re-embedding collection {name} with model {}; searches use {} until the job completes",
                next.model, record.model
            ),
            status_url: format!("/api/v1/index/status/{}", next.job_id),
            collection_name: name,
            model: next.model,
            current_model: record.model,
            job_id: next.job_id,
        }),
    ))
}

/// The vector size of `model`, which this server must serve.
pub(super) fn dim_of(state: &AppState, model: &str) -> Result<usize, ApiError> {
    let deps = &state.deps;
    if model == deps.model_name {
        return Ok(deps.embedding_dim);
    }
    let Some(queries) = &deps.queries else {
        return Err(ApiError::Validation(format!("model {model:?} is not served here: this server serves {:?} only", deps.model_name)));
    };
    match queries.manifest(model) {
        Ok(Some(manifest)) => Ok(manifest.embedding_dim),
        Ok(None) => Ok(deps.embedding_dim),
        Err(e) => Err(ApiError::Validation(e.to_string())),
    }
}

/// Makes the next generation's index, empty, and queues the job that fills it.
async fn start(
    state: &AppState,
    record: &CollectionRecord,
    next: &NextGeneration,
    request_id: Option<String>,
) -> Result<(), ApiError> {
    let collections = &state.deps.collections;
    // Left by a switch whose index could not be dropped when it was abandoned.
    collections.drop_collection(&next.physical).await?;
    collections.open(&next.physical, next.dim, Some(record.distance)).await?;
    let spec = ScanSpec::of_collection(&record.physical, &next.physical);
    let owner = Scanner::new_owner();
    match state.deps.jobs.open_scan(&next.job_id, Priority::Normal, &spec, &owner).await? {
        ScanOpened::Created => {}
        ScanOpened::Running { job_id } => {
            return Err(ApiError::Internal(format!("job {job_id} re-embeds into {} already", next.physical)))
        }
    }
    let walk = Walk { job_id: next.job_id.clone(), priority: Priority::Normal, spec, owner, request_id };
    state.scanner.start_or_defer(walk).await;
    Ok(())
}

/// Drop the generation a completed model switch left.
#[utoipa::path(
    delete,
    path = "/api/v1/collections/{collection_name}/previous",
    tag = "collections",
    params(("collection_name" = String, Path, description = "The collection")),
    responses(
        (status = 200, description = "The previous generation and its points are deleted", body = CollectionMessage),
        (status = 404, description = "`collection_not_found`, or `previous_not_found`: no switch left one", body = ErrorBody),
    )
)]
pub async fn delete_previous(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<CollectionMessage>, ApiError> {
    let physical = match state.deps.jobs.forget_previous(&name).await? {
        ForgetPrevious::Forgotten(physical) => physical,
        ForgetPrevious::Missing => return Err(ApiError::CollectionNotFound(name)),
        ForgetPrevious::NoPrevious => return Err(ApiError::NoPreviousGeneration(name)),
    };
    let collections = &state.deps.collections;
    let message = match collections.drop_collection(&physical).await {
        Ok(()) => {
            // On a Qdrant server the initial collection's name was its previous generation's
            // own: only now can the name become an alias of the current one.
            if let Ok(Some(record)) = state.deps.jobs.collection(&name).await {
                if let Err(e) = collections.set_alias(&name, &record.physical).await {
                    tracing::warn!(collection = name, error = %e, "could not point the collection's alias at its current generation");
                }
            }
            format!("The previous generation of collection {name} is deleted")
        }
        Err(e) => {
            tracing::error!(collection = name, physical, error = %e, "could not delete a previous generation's index");
            format!("The previous generation of collection {name} is forgotten; its index could not be removed yet and takes disk space")
        }
    };
    tracing::info!(collection = name, physical, "previous generation deleted");
    Ok(Json(CollectionMessage::new(name, message)))
}
