//! Reading findings back from `scans.findings`, for the demo and for checks.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::Consumer;
use rdkafka::{Message, Offset, TopicPartitionList};
use scanstream_contracts::finding::Finding;
use scanstream_contracts::{JobId, Topic, TopicNames};
use scanstream_platform::Settings;
use scanstream_platform::kafka::{ClientRole, KafkaFactory};

/// How long metadata and offset requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The findings of `jobs` written to `scans.findings` at or after `since_ms` (milliseconds since
/// the epoch), read up to the end the topic had when this was called. Consumes no group
/// offsets: partitions are assigned, never subscribed or committed.
pub async fn read(
    settings: &Settings,
    jobs: &HashSet<JobId>,
    since_ms: i64,
    timeout: Duration,
) -> anyhow::Result<Vec<Finding>> {
    let topic = TopicNames::new(settings.topics.prefix.clone()).name(Topic::Findings);
    let codec = scanstream_platform::registry::codec(settings)?;
    let group = format!(
        "{}scanstream-findings-reader-{}",
        settings.topics.prefix,
        uuid::Uuid::new_v4().simple()
    );
    let consumer = KafkaFactory::new(settings.kafka.clone())
        .consumer(ClientRole::Cli, &group)
        .context("cannot create a Kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
        .with_context(|| format!("cannot read the metadata of {topic}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut wanted = TopicPartitionList::new();
    for &partition in &partitions {
        wanted.add_partition_offset(&topic, partition, Offset::Offset(since_ms))?;
    }
    let starts = consumer
        .offsets_for_times(wanted, REQUEST_TIMEOUT)
        .with_context(|| format!("cannot look up offsets of {topic} by time"))?;
    // The end of each partition now; reading stops there.
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for element in starts.elements() {
        let (_, high) = consumer
            .fetch_watermarks(&topic, element.partition(), REQUEST_TIMEOUT)
            .with_context(|| format!("cannot read the end offsets of {topic}"))?;
        if let Offset::Offset(start) = element.offset()
            && start < high
        {
            remaining.insert(element.partition(), high);
            assignment.add_partition_offset(&topic, element.partition(), element.offset())?;
        }
    }
    let mut found = Vec::new();
    if remaining.is_empty() {
        return Ok(found);
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    while !remaining.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        anyhow::ensure!(
            !left.is_zero(),
            "reading {topic} took longer than {timeout:?}"
        );
        let message =
            match tokio::time::timeout(left.min(Duration::from_millis(500)), consumer.recv()).await
            {
                Ok(message) => message.with_context(|| format!("reading {topic}"))?,
                Err(_) => {
                    // Control records (transaction markers) are never delivered: a partition
                    // whose position reached its end is done even without a last message.
                    if let Ok(positions) = consumer.position() {
                        for element in positions.elements() {
                            if let Offset::Offset(position) = element.offset()
                                && remaining
                                    .get(&element.partition())
                                    .is_some_and(|&high| position >= high)
                            {
                                remaining.remove(&element.partition());
                            }
                        }
                    }
                    continue;
                }
            };
        let partition = message.partition();
        if let Some(payload) = message.payload() {
            // A record this version cannot decode is skipped: the reader only shows findings.
            if let Ok(finding) = codec.decode::<Finding>(payload).await
                && jobs.contains(&finding.job_id)
            {
                found.push(finding);
            }
        }
        if remaining
            .get(&partition)
            .is_some_and(|&high| message.offset() + 1 >= high)
        {
            remaining.remove(&partition);
        }
    }
    Ok(found)
}
