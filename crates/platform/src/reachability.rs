//! Whether this process can reach Kafka, as a role of its own in `/readyz`: every process serves
//! it beside its roles, so readiness turns false within seconds of the brokers going away (a
//! crashed broker, a partition in the network) and true again once they answer, whatever the
//! roles' own clients are doing meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rdkafka::producer::Producer;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::kafka::{ClientRole, KafkaFactory};
use crate::server::{Readiness, Role};
use crate::shutdown::Tasks;

/// How often the brokers are asked for metadata.
const EVERY: Duration = Duration::from_secs(1);
/// How long one answer may take.
const TIMEOUT: Duration = Duration::from_secs(2);
/// No answer for this long: unreachable.
const STALE: Duration = Duration::from_secs(4);

/// The `kafka` entry of `/readyz`.
pub struct Reachability {
    started: Instant,
    /// Milliseconds after `started` of the last answer; -1 before the first.
    last_answer_ms: Arc<AtomicI64>,
    tasks: Tasks,
}

impl Reachability {
    /// Starts asking the brokers of `factory` for metadata every second.
    pub fn start(factory: KafkaFactory, role: ClientRole) -> Arc<Reachability> {
        let started = Instant::now();
        let last_answer_ms = Arc::new(AtomicI64::new(-1));
        let stop = CancellationToken::new();
        let probing = tokio::spawn({
            let (last, stop) = (last_answer_ms.clone(), stop.clone());
            async move {
                let producer = match factory.producer(role) {
                    Ok(p) => Arc::new(p),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot create the Kafka reachability probe");
                        return;
                    }
                };
                loop {
                    let asking = producer.clone();
                    let answered = tokio::task::spawn_blocking(move || {
                        asking.client().fetch_metadata(None, TIMEOUT).is_ok()
                    })
                    .await
                    .unwrap_or(false);
                    if answered {
                        let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
                        last.store(ms, Ordering::Release);
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(EVERY) => {}
                    }
                }
            }
        });
        Arc::new(Reachability {
            started,
            last_answer_ms,
            tasks: Tasks::new(stop, vec![probing]),
        })
    }

    /// Whether the brokers answered within the last few seconds.
    pub fn reachable(&self) -> bool {
        self.silent_for().is_some_and(|silent| silent < STALE)
    }

    /// How long since the brokers last answered; `None` if they never did.
    fn silent_for(&self) -> Option<Duration> {
        let last = self.last_answer_ms.load(Ordering::Acquire);
        let last = u64::try_from(last).ok()?;
        Some(
            self.started
                .elapsed()
                .saturating_sub(Duration::from_millis(last)),
        )
    }
}

impl Role for Reachability {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn readiness(&self) -> Readiness {
        let reachable = self.reachable();
        let silent = self.silent_for().map(|d| d.as_secs());
        let mut detail = json!({ "reachable": reachable });
        if !reachable {
            detail["reason"] = match silent {
                Some(s) => json!(format!("no Kafka broker answered for {s} s")),
                None => json!("no Kafka broker answered yet"),
            };
        }
        Readiness::new(reachable, detail)
    }

    fn label(&self) -> Option<&'static str> {
        None
    }

    fn http_workers(&self) -> Option<usize> {
        Some(1)
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.tasks.stop())
    }
}
