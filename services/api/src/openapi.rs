//! The OpenAPI 3.1 document. Paths and schemas come from the handlers' own annotations,
//! collected by `utoipa-axum` as the routes are registered (`routes::router`), so no
//! route is served without being described. This module adds what every operation
//! shares — the API key schemes, the error responses the layers produce, the list of
//! error codes — and serves the document at `/openapi.json` with Swagger UI at `/docs`
//! (vendored into the binary: no CDN, nothing fetched at build time).

use axum::Router;
use serde_json::Value;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr, Schema};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::{ErrorBody, ERROR_CODES};
use crate::state::AppState;
use crate::webhooks::WebhookPayload;

pub const DOCUMENT_PATH: &str = "/openapi.json";
pub const DOCS_PATH: &str = "/docs";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "imgidx",
        description = "Turn large image collections into searchable CLIP embeddings: queue images \
            (paths or whole directories) for indexing, follow and manage the jobs, search by text or \
            by image. Every error is JSON with a stable `error` code. With API keys configured, \
            `/api/...` needs a key (`X-API-Key` or `Authorization: Bearer`): read access for GET and \
            search, write access for everything that queues or changes work.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "indexing", description = "Queue images for embedding"),
        (name = "jobs", description = "Follow, list, cancel and retry indexing jobs"),
        (name = "live", description = "A job's progress as it happens (WebSocket, Server-Sent Events)"),
        (name = "search", description = "Nearest images to a text or an image"),
        (name = "collections", description = "Separate, named indexes, each bound to one model; requests without `collection` use the selected one"),
        (name = "batch", description = "Seed 004's batches: up to 100 images by URL or base64, followed per image; errors here are `{error: <message>, status, code}`"),
        (name = "duplicates", description = "Exact and near duplicates found in the background, archived into a folder beside the images, and restored"),
        (name = "service", description = "Health and metrics, open to load balancers and scrapers"),
    ),
    components(schemas(ErrorBody, WebhookPayload, crate::routes::batch_live::BatchMessage))
)]
struct ApiDoc;

/// The document's skeleton; `routes::router` adds the paths, then calls [`finish`].
pub fn skeleton() -> Document {
    ApiDoc::openapi()
}

/// The document as served: what every operation shares added, and the webhooks this
/// server sends (OpenAPI 3.1's `webhooks`, which the generator does not write).
pub fn finish(mut doc: Document) -> Value {
    add_shared_parts(&mut doc);
    let mut value = serde_json::to_value(&doc).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("webhooks".into(), webhooks());
    }
    value
}

/// Adds what every operation shares: key schemes, the layers' error responses, the codes.
fn add_shared_parts(doc: &mut Document) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    if let Some(RefOr::T(Schema::Object(error))) = components.schemas.get_mut("Error") {
        if let Some(RefOr::T(Schema::Object(code))) = error.properties.get_mut("error") {
            code.enum_values = Some(ERROR_CODES.iter().map(|c| Value::from(*c)).collect());
        }
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let keyed = path.starts_with("/api/");
        // Seed 004's endpoints answer errors in its shape (`http/seed004.rs`).
        let schema = if path.starts_with(crate::http::seed004::PREFIX) { "BatchError" } else { "Error" };
        let operations = [
            (&mut item.get, false),
            (&mut item.post, true),
            (&mut item.put, true),
            (&mut item.delete, false),
            (&mut item.patch, true),
        ];
        for (operation, has_body) in operations {
            if let Some(op) = operation.as_mut() {
                add_shared(op, keyed, has_body, schema);
            }
        }
    }
}

fn add_shared(op: &mut Operation, keyed: bool, has_body: bool, schema: &str) {
    let add = |op: &mut Operation, status: &str, description: &str| add(op, status, description, schema);
    if keyed {
        op.security = Some(vec![
            SecurityRequirement::default(), // no keys configured: open
            SecurityRequirement::new("api_key", Vec::<String>::new()),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]);
        add(op, "401", "`unauthorized`: no valid API key (only when keys are configured)");
        add(op, "403", "`forbidden`: the key lacks the access this needs (read or write)");
        add(op, "429", "`rate_limited`: over `api.rate_limit_per_minute`; see `Retry-After`");
    }
    if has_body {
        add(op, "400", "`malformed_json` or `malformed_multipart`: the body cannot be parsed");
        add(op, "413", "`payload_too_large`: the body is larger than `api.max_body_bytes`");
        add(op, "415", "`unsupported_media_type`: the Content-Type is not one this endpoint takes");
    }
    add(op, "408", "`request_timeout`: longer than `api.request_timeout_secs`");
    add(op, "421", "`host_not_allowed`: the Host header is not one of `api.allowed_hosts`");
    add(op, "500", "`internal_error`: details are in the server's log, never in the answer");
    add(
        op,
        "503",
        "`overloaded`, or a backend is down: `job_store_unavailable`, `queue_unavailable`, \
         `index_unavailable`, `search_unavailable`; nothing was changed, try again",
    );
}

/// An error response for `status` with the body `schema`, unless the operation describes
/// that status itself.
fn add(op: &mut Operation, status: &str, description: &str, schema: &str) {
    if !op.responses.responses.contains_key(status) {
        op.responses.responses.insert(status.to_string(), RefOr::T(error_response(description, schema)));
    }
}

fn error_response(description: &str, schema: &str) -> Response {
    let content = ContentBuilder::new().schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(schema)))).build();
    ResponseBuilder::new().description(description).content("application/json", content).build()
}

/// What a receiver gets when a job ends (`api.webhook_urls`, a request's `webhook_url`).
fn webhooks() -> Value {
    let header = |name: &str, description: &str| {
        serde_json::json!({ "name": name, "in": "header", "required": true, "schema": { "type": "string" }, "description": description })
    };
    serde_json::json!({
        "job.finished": {
            "post": {
                "summary": "A job has finished (completed, failed or cancelled)",
                "description": "Sent at least once per job and URL, retried with growing waits (5 s, 5 min, 30 min,                     2 h, 5 h, 10 h) for `api.webhook_retry_hours`; every attempt carries the same `webhook-id` and                     body. Signed as Standard Webhooks specify: `webhook-signature` is `v1,` followed by the base64                     HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` under the key of `api.webhook_secret`.",
                "operationId": "job_finished",
                "parameters": [
                    header("webhook-id", "The delivery's id, the same on every attempt: deduplicate on it"),
                    header("webhook-timestamp", "Seconds since the Unix epoch when this attempt was signed"),
                    header("webhook-signature", "`v1,<base64 signature>`"),
                ],
                "requestBody": {
                    "required": true,
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/WebhookPayload" } } }
                },
                "responses": {
                    "2XX": { "description": "Delivered: no more attempts" },
                    "410": { "description": "Gone: no more attempts" },
                    "default": { "description": "Anything else (or no answer in `api.webhook_timeout_secs`): tried again" }
                }
            }
        }
    })
}

/// `/openapi.json` and the Swagger UI at `/docs`, open like `/health` (the document holds no secret).
pub fn routes(doc: Value) -> Router<AppState> {
    Router::from(SwaggerUi::new(DOCS_PATH).external_url_unchecked(DOCUMENT_PATH, doc))
}
