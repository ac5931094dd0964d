//! Posting one notification to one destination: up to `max_attempts` tries with exponential
//! backoff and full jitter ([`backon`]); `408`, `425`, `429`, `5xx` and transport errors are
//! retried, any other answer ends the tries at once. Errors never carry the URL (a Slack
//! webhook URL is itself a credential).

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

pub struct Deliverer {
    http: reqwest::Client,
    backoff: ExponentialBuilder,
    max_attempts: u32,
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
        let result = attempt
            .retry(self.backoff)
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
        result
            .map(|()| attempts)
            .map_err(|error| Failure { error, attempts })
    }
}
