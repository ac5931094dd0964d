//! Decoding raw records into the Rust types of their topic's schema.

use anyhow::Context;
use apache_avro::types::Value as AvroValue;
use scanstream_contracts::command::{Command, ScanCommand};
use scanstream_contracts::event::{EventPayload, ScanEvent};
use scanstream_contracts::finding::Finding;
use scanstream_contracts::inventory::{InventoryItem, Sighting, SightingPayload, TriageDecision};
use scanstream_contracts::schedule::{Schedule, ScheduleTicks};
use scanstream_contracts::schema::SchemaFile;
use scanstream_contracts::state::JobState;
use scanstream_contracts::{Codec, JobId, Topic};
use serde::Serialize;

use super::read::Raw;

/// A record's decoded value, serialized exactly as the Rust type of its schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Decoded {
    Command(ScanCommand),
    Event(ScanEvent),
    Finding(Finding),
    State(JobState),
    Schedule(Schedule),
    Ticks(ScheduleTicks),
    Sighting(Sighting),
    Triage(TriageDecision),
    Item(InventoryItem),
    /// Values without a schema (the dead-letter topic), hex-encoded.
    Bytes {
        hex: String,
    },
}

impl Decoded {
    pub(super) fn job(&self) -> Option<JobId> {
        match self {
            Decoded::Command(c) => Some(match &c.command {
                Command::RequestScan(r) => r.job_id,
                Command::CancelScan(c) => c.job_id,
            }),
            Decoded::Event(e) => Some(e.job_id),
            Decoded::Finding(f) => Some(f.job_id),
            Decoded::State(s) => Some(s.job_id),
            Decoded::Ticks(t) => t.last_fired_job,
            Decoded::Sighting(s) => Some(s.job_id),
            Decoded::Item(i) => Some(i.last_job),
            Decoded::Schedule(_) | Decoded::Triage(_) | Decoded::Bytes { .. } => None,
        }
    }

    pub(super) fn repo(&self) -> Option<&str> {
        match self {
            Decoded::Command(ScanCommand {
                command: Command::RequestScan(r),
                ..
            }) => Some(&r.repo_url),
            Decoded::Event(ScanEvent {
                payload: EventPayload::JobSubmitted(s),
                ..
            }) => Some(&s.repo_url),
            Decoded::Finding(f) => Some(&f.repo_url),
            Decoded::State(s) => Some(&s.repo_url),
            Decoded::Schedule(s) => Some(&s.repo_url),
            Decoded::Sighting(s) => Some(&s.repo_url),
            Decoded::Triage(t) => Some(&t.repo_url),
            Decoded::Item(i) => Some(&i.repo_url),
            _ => None,
        }
    }

    /// The command or event type (`RequestScan`, `ScanSucceeded`, …).
    pub(super) fn kind(&self) -> Option<&'static str> {
        match self {
            Decoded::Command(c) => Some(match c.command {
                Command::RequestScan(_) => "RequestScan",
                Command::CancelScan(_) => "CancelScan",
            }),
            Decoded::Event(e) => Some(match e.payload {
                EventPayload::JobSubmitted(_) => "JobSubmitted",
                EventPayload::ScanStarted(_) => "ScanStarted",
                EventPayload::RepoFetched(_) => "RepoFetched",
                EventPayload::EngineCompleted(_) => "EngineCompleted",
                EventPayload::ScanSucceeded(_) => "ScanSucceeded",
                EventPayload::ScanFailed(_) => "ScanFailed",
                EventPayload::ScanCancelled(_) => "ScanCancelled",
            }),
            Decoded::Sighting(s) => Some(match s.payload {
                SightingPayload::SecretSeen(_) => "SecretSeen",
                SightingPayload::TipScanned(_) => "TipScanned",
            }),
            Decoded::Triage(_) => Some("TriageDecision"),
            _ => None,
        }
    }
}

/// A decoded record: the raw one and its value.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub raw: Raw,
    /// The value in its schema's Avro form (`None` for tombstones and schemaless topics).
    pub avro: Option<AvroValue>,
    pub value: Option<Decoded>,
}

/// Decodes one record of a `kind` topic.
pub async fn decode(codec: &Codec, kind: Topic, raw: Raw) -> anyhow::Result<Replayed> {
    let Some(bytes) = raw.payload.as_deref() else {
        return Ok(Replayed {
            raw,
            avro: None,
            value: None,
        });
    };
    let Some(file) = kind.value_schema() else {
        let value = Some(Decoded::Bytes {
            hex: hex::encode(bytes),
        });
        return Ok(Replayed {
            raw,
            avro: None,
            value,
        });
    };
    let avro = codec.decode_value(bytes, file).await.with_context(|| {
        format!(
            "partition {} offset {} cannot be decoded",
            raw.partition, raw.offset
        )
    })?;
    let value = match file {
        SchemaFile::ScanCommand => Decoded::Command(apache_avro::from_value(&avro)?),
        SchemaFile::ScanEvent => Decoded::Event(apache_avro::from_value(&avro)?),
        SchemaFile::Finding => Decoded::Finding(apache_avro::from_value(&avro)?),
        SchemaFile::JobState => Decoded::State(apache_avro::from_value(&avro)?),
        SchemaFile::Schedule => Decoded::Schedule(apache_avro::from_value(&avro)?),
        SchemaFile::ScheduleTicks => Decoded::Ticks(apache_avro::from_value(&avro)?),
        SchemaFile::Sighting => Decoded::Sighting(apache_avro::from_value(&avro)?),
        SchemaFile::TriageDecision => Decoded::Triage(apache_avro::from_value(&avro)?),
        SchemaFile::InventoryItem => Decoded::Item(apache_avro::from_value(&avro)?),
    };
    Ok(Replayed {
        raw,
        avro: Some(avro),
        value: Some(value),
    })
}
