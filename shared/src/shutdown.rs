//! Graceful shutdown: one broadcast a service listens to, plus the OS signals that trigger it.

use tokio_util::sync::CancellationToken;

/// Shutdown handle passed to every service's `run`. Cancelling it asks the service
/// to stop taking new work and drain what it holds.
pub type Shutdown = CancellationToken;

/// Resolves on SIGINT or SIGTERM.
pub async fn os_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
