//! Waiting until a service really answers: a broker that returns metadata listing itself, a
//! registry whose Confluent API lists subjects.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Asks the broker for cluster metadata once.
pub async fn kafka_answers(bootstrap: &str, extra: &[(String, String)]) -> Result<(), String> {
    let bootstrap = bootstrap.to_owned();
    let extra = extra.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &bootstrap)
            .set("log_level", "3");
        for (key, value) in &extra {
            config.set(key, value);
        }
        let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        if metadata.brokers().is_empty() {
            Err("metadata lists no broker yet".to_owned())
        } else {
            Ok(())
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Asks the registry for its subjects once.
pub async fn registry_answers(client: &reqwest::Client, registry_url: &str) -> Result<(), String> {
    let url = format!("{}/subjects", registry_url.trim_end_matches('/'));
    let response = client.get(&url).send().await.map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("GET {url}: {}", response.status()))
    }
}

/// Polls `probe` every 250 ms until it succeeds, `alive` reports the process gone, or `limit`
/// passes. Returns the last probe error on time-out.
pub async fn poll<F, Fut>(
    limit: Duration,
    mut alive: impl FnMut() -> Result<(), String>,
    mut probe: F,
) -> Result<Duration, PollError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let mut last = String::from("no attempt yet");
    while started.elapsed() < limit {
        if let Err(status) = alive() {
            return Err(PollError::Exited(status));
        }
        match probe().await {
            Ok(()) => return Ok(started.elapsed()),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(PollError::TimedOut(last))
}

#[derive(Debug)]
pub enum PollError {
    Exited(String),
    TimedOut(String),
}
