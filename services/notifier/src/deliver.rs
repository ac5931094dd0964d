//! Posting one notification to one destination: up to `max_attempts` tries with exponential
//! backoff and full jitter ([`backon`]); `408`, `425`, `429`, `5xx` and transport errors are
//! retried, any other answer ends the tries at once. Errors never carry the URL (a Slack
//! webhook URL is itself a credential).
//!
//! A destination whose last [`TRIP_AFTER`] notifications all failed every try gets one try per
//! notification until one succeeds again: a receiver that is gone for good costs one request per
//! notification, not the whole backoff, so it cannot hold up the other destinations for long.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use scanstream_platform::config::NotifierSettings;

use crate::message::{Destination, EVENT, IDEMPOTENCY_HEADER, Notification, SIGNATURE_HEADER};

#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    #[error("the destination answered HTTP {0}")]
    Status(u16),
    #[error("the request failed: {0}")]
    Request(String),
}

impl DeliveryError {
    fn retryable(&self) -> bool {
        match self {
            DeliveryError::Status(code) => matches!(code, 408 | 425 | 429) || *code >= 500,
            DeliveryError::Request(_) => true,
        }
    }

    /// A bounded category for dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            DeliveryError::Status(_) => "http_status",
            DeliveryError::Request(_) => "request",
        }
    }
}

/// Why a notification was not delivered.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: DeliveryError,
    pub attempts: u32,
}

/// Consecutive notifications a destination failed before it gets one try each.
pub const TRIP_AFTER: u32 = 3;

pub struct Deliverer {
    http: reqwest::Client,
    backoff: ExponentialBuilder,
    max_attempts: u32,
    /// Per destination, how many notifications in a row failed every try.
    failing: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl Deliverer {
    pub fn new(settings: &NotifierSettings) -> Result<Deliverer, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            // A redirect could carry the signed body somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let backoff = ExponentialBuilder::new()
            .with_min_delay(settings.initial_backoff)
            .with_max_delay(settings.max_backoff)
            .with_factor(2.0)
            .with_max_times(settings.max_attempts.saturating_sub(1) as usize)
            .with_jitter();
        Ok(Deliverer {
            http,
            backoff,
            max_attempts: settings.max_attempts,
            failing: Default::default(),
        })
    }

    /// Delivers `notification` to `destination`; the number of tries it took, or why it failed
    /// after the last one.
    pub async fn deliver(
        &self,
        destination: &Destination,
        notification: &Notification,
    ) -> Result<u32, Failure> {
        let body = destination.body(notification);
        let signature = destination.signature(&body);
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let attempt = || async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut request = self
                .http
                .post(&destination.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(IDEMPOTENCY_HEADER, &notification.idempotency_key)
                .header("X-Scanstream-Event", EVENT)
                .body(body.clone());
            if let Some(signature) = &signature {
                request = request.header(SIGNATURE_HEADER, signature);
            }
            let response = request
                .send()
                .await
                .map_err(|e| DeliveryError::Request(e.without_url().to_string()))?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(DeliveryError::Status(status.as_u16()))
            }
        };
        let tripped = scanstream_platform::sync::lock(&self.failing)
            .get(&destination.name)
            .is_some_and(|&n| n >= TRIP_AFTER);
        let backoff = if tripped {
            self.backoff.with_max_times(0)
        } else {
            self.backoff
        };
        let result = attempt
            .retry(backoff)
            .when(DeliveryError::retryable)
            .notify(|error, after| {
                metrics::counter!(crate::metrics::RETRIES, "destination" => destination.name.clone())
                    .increment(1);
                tracing::warn!(
                    destination = %destination.name,
                    key = %notification.idempotency_key,
                    %error,
                    retry_in_ms = after.as_millis() as u64,
                    "notification not delivered yet"
                );
            })
            .await;
        let attempts = attempts
            .load(std::sync::atomic::Ordering::Relaxed)
            .min(self.max_attempts);
        {
            let mut failing = scanstream_platform::sync::lock(&self.failing);
            let count = failing.entry(destination.name.clone()).or_default();
            *count = if result.is_ok() {
                0
            } else {
                count.saturating_add(1)
            };
        }
        result
            .map(|()| attempts)
            .map_err(|error| Failure { error, attempts })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use scanstream_contracts::JobId;
    use scanstream_contracts::finding::Severity;
    use scanstream_contracts::inventory::{InventoryItem, ItemId, ItemStatus};
    use scanstream_platform::config::{DestinationKind, DestinationSettings};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::message::Opened;

    /// A local receiver answering 500 while `failing`, else 200; counts requests.
    async fn receiver(failing: Arc<AtomicBool>, requests: Arc<AtomicU32>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (failing, requests) = (failing.clone(), requests.clone());
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 65536];
                    let _ = socket.read(&mut buffer).await;
                    requests.fetch_add(1, Ordering::SeqCst);
                    let status = if failing.load(Ordering::SeqCst) {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let _ = socket
                        .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
                        .await;
                });
            }
        });
        url
    }

    fn item() -> InventoryItem {
        let job = JobId::from_name("j");
        InventoryItem {
            item_id: ItemId::of("https://git.example.com/a.git", "fp"),
            repo_url: "https://git.example.com/a.git".into(),
            fingerprint: "fp".into(),
            rule_id: "github-pat".into(),
            severity: Severity::High,
            engines: vec!["secrets".into()],
            redacted_preview: "ghp_****".into(),
            status: ItemStatus::Open,
            reason: None,
            status_changed_at: 1,
            reopened: 0,
            locations: Vec::new(),
            locations_total: 0,
            first_seen: 1,
            last_seen: 1,
            first_job: job,
            last_job: job,
            in_tip: true,
            tip_seen_at: None,
            tip_checked_at: None,
            triage: Vec::new(),
            inputs_folded: 1,
            updated_at: 1,
        }
    }

    #[tokio::test]
    async fn a_destination_that_keeps_failing_gets_one_try_until_it_answers_again() {
        let (failing, requests) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU32::new(0)));
        let url = receiver(failing.clone(), requests.clone()).await;
        let settings = NotifierSettings {
            group_id: "g".into(),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            request_timeout: Duration::from_secs(5),
            destinations: Vec::new(),
        };
        let deliverer = Deliverer::new(&settings).unwrap();
        let destination = Destination::new(&DestinationSettings {
            name: "d".into(),
            kind: DestinationKind::Webhook,
            url,
            secret: Some("0123456789abcdef".to_owned().into()),
            min_severity: "info".into(),
            repos: Vec::new(),
        });
        let notification = Notification::new(&item(), Opened::New);
        let mut tries = Vec::new();
        for _ in 0..5 {
            let failure = deliverer
                .deliver(&destination, &notification)
                .await
                .unwrap_err();
            assert!(matches!(failure.error, DeliveryError::Status(500)));
            tries.push(failure.attempts);
        }
        assert_eq!(tries, vec![3, 3, 3, 1, 1]);
        assert_eq!(requests.load(Ordering::SeqCst), 11);
        // Back: one success resets it to the full tries.
        failing.store(false, Ordering::SeqCst);
        assert_eq!(
            deliverer.deliver(&destination, &notification).await.ok(),
            Some(1)
        );
        failing.store(true, Ordering::SeqCst);
        assert_eq!(
            deliverer
                .deliver(&destination, &notification)
                .await
                .unwrap_err()
                .attempts,
            3
        );
        // A status not worth retrying ends the tries at once.
        assert!(!DeliveryError::Status(404).retryable());
        assert!(DeliveryError::Status(429).retryable());
    }
}
