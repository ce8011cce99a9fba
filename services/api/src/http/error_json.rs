//! Every error is JSON: responses the framework and tower layers make themselves
//! (405, 408, 413, a rejected extractor…) get the same body as the API's own errors.

use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub async fn ensure(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let fresh = ApiError::Status(status).into_response();
    parts.headers.remove(CONTENT_LENGTH);
    let (fresh_parts, body) = fresh.into_parts();
    // Keep what the original said besides its body (Allow on a 405, Retry-After…).
    for (name, value) in &fresh_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, body)
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}
