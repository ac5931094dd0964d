//! Writing what the scanner reports: events to `scans.events`, findings to `scans.findings`
//! (both keyed by job id), what a scan saw of its repository to `scans.sightings` (keyed and
//! partitioned by repository) and bad commands to `scans.commands.dlq`. Every write waits for the
//! broker's acknowledgement (idempotent producer, acks=all).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use scanstream_contracts::command::RequestScan;
use scanstream_contracts::event::{EventPayload, ScanEvent};
use scanstream_contracts::finding::Finding;
use scanstream_contracts::ids::RunId;
use scanstream_contracts::inventory::{Sighting, SightingPayload, repo_partition};
use scanstream_contracts::{Codec, Topic, TopicNames, headers};
use scanstream_platform::http::child_traceparent;
use scanstream_platform::kafka::StatsContext;

use crate::{Error, now_ms};

/// Most runs whose trace is kept at once.
const MAX_TRACES: usize = 10_000;

/// Longest wait for one record's acknowledgement (librdkafka retries within it).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Emitter {
    producer: FutureProducer<StatsContext>,
    codec: Arc<Codec>,
    names: TopicNames,
    scanner_id: String,
    /// The trace of each run being worked on: what is written for a run continues its
    /// command's trace.
    traces: Mutex<HashMap<RunId, Trace>>,
    /// `scans.sightings`' partition count, read once.
    sighting_partitions: tokio::sync::OnceCell<i32>,
}

/// A command's trace headers.
#[derive(Debug, Clone, Default)]
struct Trace {
    traceparent: Option<String>,
    correlation_id: Option<String>,
}

impl Trace {
    /// The headers of a record written for the run: a new span in the command's trace (a new
    /// trace when the command had none) and its correlation id.
    fn headers(&self) -> OwnedHeaders {
        let traceparent = child_traceparent(self.traceparent.as_deref());
        let headers = OwnedHeaders::new().insert(Header {
            key: headers::TRACEPARENT,
            value: Some(traceparent.as_bytes()),
        });
        match &self.correlation_id {
            Some(id) => headers.insert(Header {
                key: headers::CORRELATION_ID,
                value: Some(id.as_bytes()),
            }),
            None => headers,
        }
    }
}

impl Emitter {
    pub fn new(
        producer: FutureProducer<StatsContext>,
        codec: Arc<Codec>,
        names: TopicNames,
        scanner_id: String,
    ) -> Self {
        Self {
            producer,
            codec,
            names,
            scanner_id,
            traces: Mutex::new(HashMap::new()),
            sighting_partitions: tokio::sync::OnceCell::new(),
        }
    }

    /// Remembers the trace headers of `run_id`'s command (`message`), until its terminal event.
    pub fn begin(&self, run_id: RunId, message: &impl Message) {
        let header = |name: &str| {
            message.headers().and_then(|h| {
                h.iter()
                    .find(|header| header.key == name)
                    .and_then(|header| header.value)
                    .and_then(|value| std::str::from_utf8(value).ok())
                    .map(str::to_owned)
            })
        };
        let trace = Trace {
            traceparent: header(headers::TRACEPARENT),
            correlation_id: header(headers::CORRELATION_ID),
        };
        let mut traces = self.traces.lock().unwrap_or_else(PoisonError::into_inner);
        // Runs that end elsewhere (a partition revoked mid-scan) leave their entry: bounded.
        if traces.len() >= MAX_TRACES {
            traces.clear();
        }
        traces.insert(run_id, trace);
    }

    fn trace(&self, run_id: &RunId) -> Trace {
        self.traces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(run_id)
            .cloned()
            .unwrap_or_default()
    }

    pub fn scanner_id(&self) -> &str {
        &self.scanner_id
    }

    /// Writes one event of `command`'s run, with its deterministic id.
    pub async fn event(
        &self,
        command: &RequestScan,
        attempt: i32,
        sequence: i32,
        payload: EventPayload,
    ) -> Result<(), Error> {
        self.write(&self.build(command, attempt, sequence, payload))
            .await
    }

    /// The event `event` would write now, to be written later, possibly again, unchanged.
    pub fn build(
        &self,
        command: &RequestScan,
        attempt: i32,
        sequence: i32,
        payload: EventPayload,
    ) -> ScanEvent {
        ScanEvent::new(
            command.job_id,
            command.job_name.clone(),
            command.run_id,
            attempt,
            sequence,
            now_ms(),
            Some(self.scanner_id.clone()),
            payload,
        )
    }

    /// Writes a built event; writing the same event twice writes two equal records under one
    /// event id, which the aggregator folds once.
    pub async fn write(&self, event: &ScanEvent) -> Result<(), Error> {
        let bytes = self.codec.encode(Topic::Events, event).await?;
        let topic = self.names.name(Topic::Events);
        let key = event.job_id.key();
        let trace = self.trace(&event.run_id);
        self.send(
            FutureRecord::to(&topic)
                .key(&key)
                .payload(&bytes)
                .headers(trace.headers()),
        )
        .await?;
        // The run's last event (a retryable failure is followed by another attempt).
        let last = match &event.payload {
            EventPayload::ScanSucceeded(_) | EventPayload::ScanCancelled(_) => true,
            EventPayload::ScanFailed(failed) => !failed.retryable,
            _ => false,
        };
        if last {
            self.traces
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&event.run_id);
        }
        Ok(())
    }

    /// Writes findings and waits until every one is acknowledged.
    pub async fn findings(&self, findings: &[Finding]) -> Result<(), Error> {
        let topic = self.names.name(Topic::Findings);
        let mut encoded = Vec::with_capacity(findings.len());
        for finding in findings {
            let bytes = self.codec.encode(Topic::Findings, finding).await?;
            encoded.push((finding.job_id.key(), bytes));
        }
        let traces: Vec<Trace> = findings.iter().map(|f| self.trace(&f.run_id)).collect();
        let sends = encoded.iter().zip(&traces).map(|((key, bytes), trace)| {
            self.send(
                FutureRecord::to(&topic)
                    .key(key)
                    .payload(bytes)
                    .headers(trace.headers()),
            )
        });
        for result in futures::future::join_all(sends).await {
            result?;
        }
        Ok(())
    }

    /// Writes what an attempt saw of its repository, in order (every `SecretSeen` is
    /// acknowledged before a `TipScanned` is sent), on the repository's partition.
    pub async fn sightings(&self, sightings: &[Sighting]) -> Result<(), Error> {
        let Some(first) = sightings.first() else {
            return Ok(());
        };
        let topic = self.names.name(Topic::Sightings);
        let partitions = *self
            .sighting_partitions
            .get_or_try_init(|| async {
                let producer = self.producer.clone();
                let topic = topic.clone();
                tokio::task::spawn_blocking(move || {
                    scanstream_platform::kafka::partitions(
                        producer.client(),
                        &topic,
                        DELIVERY_TIMEOUT,
                    )
                    .and_then(|p| match p.len() {
                        // Not cached: the topic may be created later.
                        0 => Err(rdkafka::error::KafkaError::MetadataFetch(
                            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
                        )),
                        n => Ok(i32::try_from(n).unwrap_or(i32::MAX)),
                    })
                })
                .await
                .map_err(|_| Error::Kafka(rdkafka::error::KafkaError::Canceled))?
                .map_err(Error::from)
            })
            .await?;
        let partition = repo_partition(&first.repo_url, partitions);
        let trace = self.trace(&first.run_id);
        let (seen, done): (Vec<&Sighting>, Vec<&Sighting>) = sightings
            .iter()
            .partition(|s| matches!(s.payload, SightingPayload::SecretSeen(_)));
        for group in [seen, done] {
            let mut encoded = Vec::with_capacity(group.len());
            for sighting in group {
                encoded.push((
                    sighting.repo_url.as_str(),
                    self.codec.encode(Topic::Sightings, sighting).await?,
                ));
            }
            let sends = encoded.iter().map(|(key, bytes)| {
                self.send(
                    FutureRecord::to(&topic)
                        .key(*key)
                        .payload(bytes)
                        .partition(partition)
                        .headers(trace.headers()),
                )
            });
            for result in futures::future::join_all(sends).await {
                result?;
            }
        }
        Ok(())
    }

    /// Copies a command that cannot be processed to the DLQ, original key and bytes, with the
    /// reason in headers.
    pub async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &str,
        kind: &str,
    ) -> Result<(), Error> {
        let topic = self.names.name(Topic::CommandsDlq);
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let mut record_headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            use rdkafka::message::Headers;
            for header in original.iter() {
                record_headers = record_headers.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
        let record_headers = record_headers
            .insert(Header {
                key: headers::DLQ_REASON,
                value: Some(reason),
            })
            .insert(Header {
                key: headers::DLQ_ERROR_KIND,
                value: Some(kind),
            })
            .insert(Header {
                key: headers::DLQ_TOPIC,
                value: Some(message.topic()),
            })
            .insert(Header {
                key: headers::DLQ_PARTITION,
                value: Some(&partition),
            })
            .insert(Header {
                key: headers::DLQ_OFFSET,
                value: Some(&offset),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&topic).headers(record_headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        self.send(record).await?;
        metrics::counter!(crate::metrics::DEAD_LETTERS, "kind" => kind.to_owned()).increment(1);
        Ok(())
    }

    async fn send<K, P>(&self, record: FutureRecord<'_, K, P>) -> Result<(), Error>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        self.producer
            .send(record, DELIVERY_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| Error::Kafka(e))
    }
}
