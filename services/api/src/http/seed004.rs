//! Seed 004's error body on its endpoints (`/api/v1/batch…`): `{"error": "<message>",
//! "status": 400}`, which its clients print, with our stable code kept as `code`. Every
//! other endpoint answers `{"error": "<code>", "message", "detail"}`; this layer sits
//! outside all others, so errors of the layers (401, 413, 429…) are rewritten too.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{json, Value};

/// Where seed 004's shape applies.
pub const PREFIX: &str = "/api/v1/batch";

/// Error bodies are small; anything larger is passed on as it is.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub async fn errors(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let ours = path == PREFIX || path.starts_with("/api/v1/batch/");
    let response = next.run(request).await;
    let status = response.status();
    if !ours || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let reshaped = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(o)) if o.get("error").is_some_and(Value::is_string) && o.contains_key("message") => json!({
            "error": o["message"],
            "status": status.as_u16(),
            "code": o["error"],
            "detail": o.get("detail").cloned().unwrap_or_else(|| o["message"].clone()),
        }),
        _ => return Response::from_parts(parts, Body::from(bytes)),
    };
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(reshaped.to_string()))
}
