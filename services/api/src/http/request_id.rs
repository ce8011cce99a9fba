//! `x-request-id`: a sane one from the client is kept, any other is replaced by a new
//! one; it is returned on every response, recorded in the request's log span, and
//! carried in the tasks the request queues and their completion events, so one image
//! can be followed from request to upsert across processes.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use uuid::Uuid;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest id taken from a client; longer ones are replaced (they go into every log line).
const MAX_LEN: usize = 128;

/// The id of the request being handled (a request extension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

pub async fn assign(mut request: Request, next: Next) -> Response {
    let given = request.headers().get(&HEADER).and_then(|v| v.to_str().ok()).filter(|s| acceptable(s));
    let id = given.map_or_else(|| Uuid::new_v4().simple().to_string(), str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// Letters, digits and `-_.:`, at most [`MAX_LEN`]: safe in logs and in headers.
fn acceptable(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_ids_are_kept() {
        assert!(acceptable("req-1:a.b_c"));
        assert!(acceptable(&"a".repeat(MAX_LEN)));
        for bad in ["", "a b", "line\nbreak", "<script>", "ünï"] {
            assert!(!acceptable(bad), "{bad:?}");
        }
        assert!(!acceptable(&"a".repeat(MAX_LEN + 1)));
    }
}
