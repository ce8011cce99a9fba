//! The HTTP/1.1 server loop (in place of `axum::serve`, which has no knobs): a bound
//! on open connections, a deadline for a client to send its headers (slow-loris),
//! the client address for the rate limit, and a graceful stop with a deadline —
//! connections still busy when it passes are dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use imgidx_shared::shutdown::Shutdown;

use super::idle::TrackedStream;

pub struct ServerLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// A connection nothing moved on for this long is closed.
    pub idle_timeout: Duration,
    /// How long a stop waits for requests in flight.
    pub drain_timeout: Duration,
}

/// Pause after a failed accept (e.g. out of file descriptors) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub async fn serve(listener: TcpListener, app: Router, limits: ServerLimits, shutdown: Shutdown) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = shutdown.cancelled() => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(remote));
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.oneshot(request).await.unwrap_or_else(|e| match e {})) }
        });
        let (stream, activity) = TrackedStream::new(stream);
        let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let stop = shutdown.clone();
        let idle_timeout = limits.idle_timeout;
        tracker.spawn(async move {
            let _permit = permit;
            tokio::pin!(connection);
            let idle = async {
                loop {
                    let quiet = activity.quiet_for();
                    if quiet >= idle_timeout {
                        return;
                    }
                    tokio::time::sleep(idle_timeout - quiet).await;
                }
            };
            tokio::select! {
                _ = connection.as_mut() => return,
                () = stop.cancelled() => connection.as_mut().graceful_shutdown(),
                () = idle => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    tracker.close();
    if tokio::time::timeout(limits.drain_timeout, tracker.wait()).await.is_err() {
        tracing::warn!(
            open = tracker.len(),
            after = ?limits.drain_timeout,
            "requests still in flight at the shutdown deadline; dropping them"
        );
    }
}
