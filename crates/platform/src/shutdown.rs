//! Graceful shutdown: SIGINT (Ctrl-C) or SIGTERM (Kubernetes) cancels one token that every task
//! of a role watches. A second signal is not special-cased: roles bound their own drain time.

use tokio_util::sync::CancellationToken;

/// Waits for SIGINT or SIGTERM. If the SIGTERM handler cannot be installed, waits for SIGINT
/// alone and says so.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this process");
            let _ = ctrl_c.await;
            tracing::info!("SIGINT received, shutting down");
        }
    }
}

/// A token cancelled on the first SIGINT or SIGTERM.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        signal().await;
        child.cancel();
    });
    token
}

/// The background tasks a role owns and the token that tells them to stop.
#[derive(Debug)]
pub struct Tasks {
    stop: CancellationToken,
    handles: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Tasks {
    /// `handles` are tasks that end once `stop` is cancelled.
    pub fn new(stop: CancellationToken, handles: Vec<tokio::task::JoinHandle<()>>) -> Self {
        Self {
            stop,
            handles: std::sync::Mutex::new(handles),
        }
    }

    /// Tells the tasks to stop without waiting for them.
    pub fn cancel(&self) {
        self.stop.cancel();
    }

    /// The tasks not yet taken; later calls get none.
    pub fn take(&self) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(&mut *crate::sync::lock(&self.handles))
    }

    /// Tells the tasks to stop and waits for every one not yet taken to end.
    pub async fn stop(&self) {
        self.cancel();
        for task in self.take() {
            let _ = task.await;
        }
    }
}
