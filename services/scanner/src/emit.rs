//! Writing what the scanner reports: events to `scans.events`, findings to `scans.findings`
//! (both keyed by job id) and bad commands to `scans.commands.dlq`. Every write waits for the
//! broker's acknowledgement (idempotent producer, acks=all).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use scanstream_contracts::command::RequestScan;
use scanstream_contracts::event::{EventPayload, ScanEvent};
use scanstream_contracts::finding::Finding;
use scanstream_contracts::{Codec, Topic, TopicNames, headers};
use scanstream_platform::kafka::StatsContext;

use crate::{Error, now_ms};

/// Longest wait for one record's acknowledgement (librdkafka retries within it).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Emitter {
    producer: FutureProducer<StatsContext>,
    codec: Arc<Codec>,
    names: TopicNames,
    scanner_id: String,
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
        }
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
        self.send(FutureRecord::to(&topic).key(&key).payload(&bytes))
            .await
    }

    /// Writes findings and waits until every one is acknowledged.
    pub async fn findings(&self, findings: &[Finding]) -> Result<(), Error> {
        let topic = self.names.name(Topic::Findings);
        let mut encoded = Vec::with_capacity(findings.len());
        for finding in findings {
            let bytes = self.codec.encode(Topic::Findings, finding).await?;
            encoded.push((finding.job_id.key(), bytes));
        }
        let sends = encoded
            .iter()
            .map(|(key, bytes)| self.send(FutureRecord::to(&topic).key(key).payload(bytes)));
        for result in futures::future::join_all(sends).await {
            result?;
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
