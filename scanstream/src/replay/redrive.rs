//! Preparing `--into`: the target topic and the producer that copies records into it.

use anyhow::{Context, bail};
use rdkafka::producer::FutureProducer;
use scanstream_platform::Settings;
use scanstream_platform::kafka::{self, ClientRole, KafkaFactory, StatsContext};

use super::REQUEST_TIMEOUT;
use super::source::Source;

/// An idempotent producer for `--into`, to this deployment's cluster or to `bootstrap`.
pub fn into_producer(
    settings: &Settings,
    bootstrap: Option<&str>,
) -> anyhow::Result<FutureProducer<StatsContext>> {
    let mut kafka = settings.kafka.clone();
    if let Some(b) = bootstrap {
        kafka.bootstrap_servers = b.to_owned();
    }
    let producer = KafkaFactory::new(kafka)
        .producer(ClientRole::Cli)
        .context("cannot create the Kafka producer")?;
    Ok(producer)
}

/// Creates `target` like `source` (partitions, replication from the settings, configs of
/// `kind`) unless it exists; returns whether partition numbers can be kept.
pub async fn prepare_target(
    settings: &Settings,
    bootstrap: Option<&str>,
    source: &Source,
    spans: usize,
    target: &str,
) -> anyhow::Result<bool> {
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    let mut kafka = settings.kafka.clone();
    if let Some(b) = bootstrap {
        kafka.bootstrap_servers = b.to_owned();
    }
    let factory = KafkaFactory::new(kafka);
    let admin = factory.admin()?;
    let existing = kafka::partitions(admin.inner(), target, REQUEST_TIMEOUT)
        .context("cannot read the target's metadata")?
        .len();
    if existing > 0 {
        return Ok(existing == spans);
    }
    let spec = source.kind.spec(
        i32::try_from(spans).unwrap_or(1),
        settings.topics.replication_factor,
    );
    let configs: Vec<(&str, &str)> = spec
        .configs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut topic = NewTopic::new(
        target,
        i32::try_from(spans).unwrap_or(1),
        TopicReplication::Fixed(settings.topics.replication_factor),
    );
    for (k, v) in &configs {
        topic = topic.set(k, v);
    }
    let results = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT)),
        )
        .await
        .context("cannot create the target topic")?;
    for result in results {
        if let Err((name, code)) = result
            && code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
        {
            bail!("cannot create {name}: {code}");
        }
    }
    Ok(true)
}
