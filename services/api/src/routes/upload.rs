//! `POST /api/v1/ingest/upload` (seed 003): images sent as multipart `files` are kept in
//! the object store under their content hash, then queued as add-images queues paths.
//! Each file is streamed into the store before the next is read, so a request holds one
//! file in memory at a time; nothing is queued unless every file was stored.

use std::collections::HashSet;

use axum::extract::multipart::MultipartError;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;

use imgidx_shared::jobs::NewItem;
use imgidx_shared::messages::{FileStamp, Priority};
use imgidx_shared::sources::{clean_name, object_path};

use super::add_images::AddImagesResponse;
use super::enqueue::{create_and_publish, nothing_to_do, Submission};
use crate::error::{ApiError, ErrorBody};
use crate::freshness::{indexed_stamps, is_current};
use crate::http::request_id::RequestId;
use crate::state::AppState;
use crate::target::Target;

/// The form (described, never built: `read_form` reads the fields as they stream in).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// One part per image (seed 003's name; `file` is taken too). At most
    /// `ingest.max_files`, each at most `ingest.max_image_bytes`.
    #[schema(value_type = Vec<String>, format = Binary)]
    files: Vec<Vec<u8>>,
    /// Collection to index into; the selected one when absent.
    collection: Option<String>,
    /// `low`, `normal` (default) or `high`.
    priority: Option<String>,
    /// Told when the job ends, as for add-images.
    webhook_url: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadResponse {
    #[serde(flatten)]
    queued: AddImagesResponse,
    /// Every file received, in request order.
    files: Vec<UploadedFile>,
}

#[derive(Serialize, utoipa::ToSchema, Debug)]
pub struct UploadedFile {
    /// The name it was uploaded as (its last path component), or `upload-<n>` when it had none.
    name: String,
    /// Its path in the index: `object:<sha256>/<name>`, as search results and job items show it.
    path: String,
    /// Where its bytes are in the object store (`objects.url` or `<data_dir>/objects`).
    object_key: String,
    size: u64,
}

/// What the form said.
struct Form {
    files: Vec<UploadedFile>,
    collection: Option<String>,
    priority: Priority,
    webhook_url: Option<String>,
}

/// Upload images to index (seed 003).
#[utoipa::path(
    post,
    path = "/api/v1/ingest/upload",
    tag = "indexing",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "Stored and queued: the job and its tasks are durable", body = UploadResponse),
        (status = 200, description = "Stored; nothing to queue: each image is indexed already under its name, or queued by another active job", body = UploadResponse),
        (status = 400, description = "`malformed_multipart`", body = ErrorBody),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
        (status = 409, description = "`collection_model_mismatch`, `collection_switching`", body = ErrorBody),
        (status = 413, description = "`file_too_large` (one file passes `ingest.max_image_bytes`) or `payload_too_large`", body = ErrorBody),
        (status = 422, description = "`validation_error` (no files, too many, an unknown field, a bad priority) or `webhook_url_not_allowed`", body = ErrorBody),
        (status = 503, description = "`object_store_unavailable`: nothing was queued", body = ErrorBody),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<UploadResponse>), ApiError> {
    let form = form.map_err(|e| ApiError::MalformedMultipart(format!("malformed multipart body: {}", e.body_text())))?;
    let Form { files, collection, priority, webhook_url } = read_form(&state, form).await?;
    let webhooks = state.webhooks.for_request(webhook_url.as_deref()).await?;
    let target = Target::resolve(&state.deps, collection.as_deref()).await?;

    // The same bytes under the same name are one image.
    let mut seen = HashSet::with_capacity(files.len());
    let distinct: Vec<&UploadedFile> = files.iter().filter(|f| seen.insert(f.path.as_str())).collect();
    let images_count = distinct.len();
    let ids: Vec<_> = distinct.iter().map(|f| target.point_id(&f.path)).collect();
    let indexed = indexed_stamps(target.store.as_ref(), &ids).await?;
    let candidates: Vec<NewItem> = distinct
        .into_iter()
        .zip(ids)
        .map(|(f, id)| NewItem { point_id: id, path: f.path.clone(), stamp: Some(FileStamp { size: f.size, mtime_ns: 0 }) })
        .filter(|item| !is_current(item.stamp, indexed.get(&item.point_id)))
        .collect();
    let unchanged = images_count - candidates.len();
    let (status, Json(queued)) = if candidates.is_empty() {
        nothing_to_do(images_count, unchanged, 0)
    } else {
        let request_id = request_id.map(|Extension(RequestId(id))| id);
        let collection = Some(target.physical);
        create_and_publish(&state, Submission { priority, images_count, unchanged, candidates, request_id, webhooks, collection })
            .await?
    };
    Ok((status, Json(UploadResponse { queued, files })))
}

/// The form's fields; on a refusal the rest of the body is read and dropped first, so
/// the client, still sending, gets the answer instead of a broken pipe. The body limit
/// bounds that read.
async fn read_form(state: &AppState, mut form: Multipart) -> Result<Form, ApiError> {
    let read = read_fields(state, &mut form).await;
    if read.is_err() {
        while let Ok(Some(mut field)) = form.next_field().await {
            while let Ok(Some(_)) = field.chunk().await {}
        }
    }
    read
}

async fn read_fields(state: &AppState, form: &mut Multipart) -> Result<Form, ApiError> {
    let limits = &state.deps.uploads.limits;
    let request_limit = limits.max_upload_request_bytes();
    let malformed = |e: MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(request_limit)
        } else {
            ApiError::MalformedMultipart(format!("malformed multipart body: {}", e.body_text()))
        }
    };
    let mut out = Form { files: Vec::new(), collection: None, priority: Priority::Normal, webhook_url: None };
    while let Some(mut field) = form.next_field().await.map_err(malformed)? {
        let field_name = field.name().unwrap_or_default().to_string();
        match field_name.as_str() {
            "files" | "file" => {
                if out.files.len() == limits.max_files {
                    return Err(ApiError::Validation(format!(
                        "at most {} files per upload (ingest.max_files)",
                        limits.max_files
                    )));
                }
                let name = clean_name(field.file_name(), &format!("upload-{}", out.files.len() + 1));
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                    if (bytes.len() + chunk.len()) as u64 > limits.max_image_bytes {
                        return Err(ApiError::FileTooLarge { name, limit: limits.max_image_bytes });
                    }
                    bytes.extend_from_slice(&chunk);
                }
                let size = bytes.len() as u64;
                let key = state.deps.uploads.store(bytes).await?;
                out.files.push(UploadedFile { path: object_path(&key, &name), name, object_key: key.to_string(), size });
            }
            "collection" => out.collection = Some(field.text().await.map_err(malformed)?),
            "webhook_url" => out.webhook_url = Some(field.text().await.map_err(malformed)?),
            "priority" => {
                let text = field.text().await.map_err(malformed)?;
                out.priority = Priority::parse(text.trim()).ok_or_else(|| {
                    ApiError::Validation(format!("priority must be low, normal or high (got {text:?})"))
                })?;
            }
            other => {
                return Err(ApiError::Validation(format!(
                    "unknown multipart field {other:?} (expected files, collection, priority, webhook_url)"
                )))
            }
        }
    }
    if out.files.is_empty() {
        return Err(ApiError::Validation("no files: send each image as a multipart field named \"files\"".into()));
    }
    Ok(out)
}
