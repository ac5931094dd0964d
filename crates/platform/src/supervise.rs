//! Long-running sessions that start over after a failure: a consumer group session, a changelog
//! follower, a leader's term. One loop for all of them, so each restarts, pauses, counts and
//! logs the same way.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// What [`supervise`] runs, named for its logs and metrics.
#[derive(Debug, Clone, Copy)]
pub struct Supervised {
    /// What restarts, for the log line (`"scanner consumer"`).
    pub task: &'static str,
    /// Where a new session starts, for the log line (`"from the committed offsets"`).
    pub resumes: &'static str,
    /// The counter of restarts, if one is kept.
    pub restarts: Option<&'static str>,
    /// How long to wait before starting again: a broken cluster is not hammered.
    pub pause: Duration,
}

/// Runs `session` until it returns `Ok` or `stop` is cancelled; after each `Err` it logs, counts
/// a restart, calls `failed`, waits [`Supervised::pause`] and starts a new session.
pub async fn supervise<E, F, Fut>(
    supervised: Supervised,
    stop: &CancellationToken,
    mut failed: impl FnMut(),
    mut session: F,
) where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    while !stop.is_cancelled() {
        match session().await {
            Ok(()) => return,
            Err(e) => {
                failed();
                tracing::warn!(error = %e, "{} restarts {}", supervised.task, supervised.resumes);
                if let Some(name) = supervised.restarts {
                    metrics::counter!(name).increment(1);
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(supervised.pause) => {}
                }
            }
        }
    }
}

/// Retries `attempt` every `pause` until it succeeds (`true`) or `stop` is cancelled (`false`),
/// logging each failure with `what`.
pub async fn retry_until<T, E, F, Fut>(
    what: &'static str,
    pause: Duration,
    stop: &CancellationToken,
    mut attempt: F,
) -> bool
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        match attempt().await {
            Ok(_) => return true,
            Err(e) => tracing::warn!(error = %e, "{what}; retrying"),
        }
        tokio::select! {
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const QUICK: Supervised = Supervised {
        task: "test session",
        resumes: "afresh",
        restarts: None,
        pause: Duration::from_millis(1),
    };

    #[tokio::test]
    async fn a_failed_session_starts_again_until_one_ends_well() {
        let sessions = AtomicUsize::new(0);
        let failures = AtomicUsize::new(0);
        supervise(
            QUICK,
            &CancellationToken::new(),
            || {
                failures.fetch_add(1, Ordering::Relaxed);
            },
            || async {
                match sessions.fetch_add(1, Ordering::Relaxed) {
                    0..=2 => Err("broken"),
                    _ => Ok(()),
                }
            },
        )
        .await;
        assert_eq!(sessions.load(Ordering::Relaxed), 4);
        assert_eq!(failures.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn stop_ends_the_restarts() {
        let stop = CancellationToken::new();
        let sessions = AtomicUsize::new(0);
        supervise(
            QUICK,
            &stop,
            || {},
            || {
                if sessions.fetch_add(1, Ordering::Relaxed) == 4 {
                    stop.cancel();
                }
                async { Err::<(), _>("broken") }
            },
        )
        .await;
        assert_eq!(sessions.load(Ordering::Relaxed), 5);
        let retried = AtomicUsize::new(0);
        let done = retry_until("never works", Duration::from_millis(1), &stop, || {
            retried.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), _>("no") }
        })
        .await;
        assert!(!done);
        assert_eq!(retried.load(Ordering::Relaxed), 1);
    }
}
