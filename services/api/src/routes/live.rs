//! `GET /api/v1/index/status/{job_id}/ws` (WebSocket) and `…/events` (Server-Sent
//! Events): a job's progress live, as seed 004's messages (see `crate::live`). Both
//! answer 404 for an unknown job before anything is upgraded or streamed.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Response;
use futures::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::{ApiError, ErrorBody};
use crate::live::{self, LiveMessage};
use crate::state::AppState;

/// A ping this often keeps the socket (and proxies on the way) alive.
const PING_EVERY: Duration = Duration::from_secs(20);
/// A client that sends nothing at all (not even a pong) for this long is gone (seed 004).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// WebSocket close code for a normal end (RFC 6455).
const CLOSE_NORMAL: u16 = 1000;
/// …and for a peer that went quiet.
const CLOSE_GOING_AWAY: u16 = 1001;

pub(super) async fn start(state: &AppState, job_id: String) -> Result<mpsc::Receiver<LiveMessage>, ApiError> {
    if state.deps.jobs.job(&job_id).await?.is_none() {
        return Err(ApiError::JobNotFound(job_id));
    }
    Ok(live::watch(state.deps.jobs.clone(), &state.live, job_id))
}

/// A job's progress live, over a WebSocket.
#[utoipa::path(
    get,
    path = "/api/v1/index/status/{job_id}/ws",
    tag = "live",
    params(("job_id" = String, Path, description = "The job's id")),
    responses(
        (status = 101, description = "A WebSocket of `LiveMessage` texts: the current state first, then `progress`, one `image_complete` per image, one `job_complete`, then a close. Pings every 20 s; a client silent for 60 s is closed."),
        (status = 400, description = "`bad_request`: not a WebSocket upgrade request", body = ErrorBody),
        (status = 404, description = "`job_not_found`", body = ErrorBody),
        (status = 426, description = "`bad_request`: the connection cannot be upgraded", body = ErrorBody),
    )
)]
pub async fn job_ws(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let messages = start(&state, job_id).await?;
    Ok(upgrade.on_upgrade(move |socket| serve_socket(socket, messages)))
}

/// Sends each message as a JSON text, pings, and closes once the messages end.
pub(super) async fn serve_socket<M: serde::Serialize>(mut socket: WebSocket, mut messages: mpsc::Receiver<M>) {
    // The first ping after PING_EVERY, not at once: the current state is the first frame.
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            message = messages.recv() => {
                let Some(message) = message else {
                    close(socket, CloseFrame { code: CLOSE_NORMAL, reason: "end of updates".into() }).await;
                    return;
                };
                let Ok(text) = serde_json::to_string(&message) else { return };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => heard = Instant::now(), // a pong, or anything: the client is there
            },
            _ = ping.tick() => {
                if heard.elapsed() >= IDLE_TIMEOUT {
                    close(socket, CloseFrame { code: CLOSE_GOING_AWAY, reason: "idle".into() }).await;
                    return;
                }
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// How long a closing socket waits for the client's Close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Sends Close and reads until the client's Close (or `CLOSE_WAIT`): dropping a socket
/// with a frame of the client's unread (a pong in flight) makes the kernel reset the
/// connection, and the client may lose the messages before the Close.
async fn close(mut socket: WebSocket, frame: CloseFrame) {
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let drain = async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, drain).await;
}

/// A job's progress live, as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/api/v1/index/status/{job_id}/events",
    tag = "live",
    params(("job_id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "Server-Sent Events, one `LiveMessage` per event (the event name is its `type`): the current state first, the stream ends after `job_complete`. A comment every 15 s keeps it open.", content_type = "text/event-stream", body = LiveMessage),
        (status = 404, description = "`job_not_found`", body = ErrorBody),
    )
)]
pub async fn job_events(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let messages = start(&state, job_id).await?;
    let events = futures::stream::unfold(messages, |mut messages| async move {
        let message = messages.recv().await?;
        let event = Event::default().event(message.kind).json_data(&message).unwrap_or_default();
        Some((Ok(event), messages))
    });
    // Comments every 15 s keep idle connections (and the server's idle timeout) from closing.
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
