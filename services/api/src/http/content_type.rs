//! Request bodies must say what they are. A browser may send `text/plain`,
//! form-encoded and multipart bodies to any origin without asking first (a CORS
//! "simple request"); requiring `application/json` on JSON endpoints makes a
//! cross-site page's forged request fail before it does anything.

use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;

const JSON: &str = "application/json";
const MULTIPART: &str = "multipart/form-data";

/// For endpoints that take a JSON body.
pub async fn json(request: Request, next: Next) -> Result<Response, ApiError> {
    require(&request, &[JSON])?;
    Ok(next.run(request).await)
}

/// For endpoints that take an upload only.
pub async fn multipart(request: Request, next: Next) -> Result<Response, ApiError> {
    require(&request, &[MULTIPART])?;
    Ok(next.run(request).await)
}

/// For endpoints that take JSON, or an upload.
pub async fn json_or_multipart(request: Request, next: Next) -> Result<Response, ApiError> {
    require(&request, &[JSON, MULTIPART])?;
    Ok(next.run(request).await)
}

fn require(request: &Request, accepted: &[&str]) -> Result<(), ApiError> {
    let given = request.headers().get(CONTENT_TYPE).map(|v| media_type(v.to_str().unwrap_or("?")));
    match given {
        Some(m) if accepted.contains(&m.as_str()) => Ok(()),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be {} (got {})",
            accepted.join(" or "),
            other.map_or_else(|| "none".to_string(), |m| format!("{m:?}"))
        ))),
    }
}

/// `Application/JSON; charset=utf-8` → `application/json`.
fn media_type(value: &str) -> String {
    value.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}
