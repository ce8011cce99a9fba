//! Load shedding: at most `api.max_concurrent_requests` requests are handled at once;
//! one more is answered 503 `overloaded` at once instead of queueing behind them,
//! so a burst costs its senders a retry, not everyone their latency.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;

use crate::error::ApiError;

pub async fn shed(State(permits): State<Arc<Semaphore>>, request: Request, next: Next) -> Result<Response, ApiError> {
    let _permit = permits.try_acquire().map_err(|_| ApiError::Overloaded)?;
    Ok(next.run(request).await)
}
