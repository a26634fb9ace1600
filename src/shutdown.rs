//! Turns SIGTERM and SIGINT (Ctrl-C) into the cancellation of a token, once.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot listen for SIGTERM.");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = terminate => tracing::info!("SIGTERM received; shutting down."),
            _ = tokio::signal::ctrl_c() => tracing::info!("Interrupt received; shutting down."),
            _ = token.cancelled() => return,
        }
        token.cancel();
    });
}
