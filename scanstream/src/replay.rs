//! `scanstream replay`: any scanstream topic read by time or offset range, decoded, filtered and
//! written as JSON lines or an Avro object container file, or re-driven into another topic.
//!
//! # Ranges
//! `--from` is inclusive and `--to` exclusive. A time (RFC 3339) is resolved per partition with
//! the broker's offsets-for-times: the range of a partition starts at its first record whose
//! timestamp is at or after `--from` and ends before its first record whose timestamp is at or
//! after `--to`; of that offset range only records whose own timestamp lies in
//! `[from, to)` are kept (this only matters for out-of-order producer timestamps). An offset
//! (`N` for every partition, or `P:N,P:N`) is used as given. Without `--to` the range ends at
//! the end each partition had when the replay started. Records are read `read_committed`,
//! partition by partition in offset order, so the same range always gives the same output.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use apache_avro::types::Value as AvroValue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use scanstream_contracts::command::{Command, ScanCommand};
use scanstream_contracts::event::{EventPayload, ScanEvent};
use scanstream_contracts::finding::Finding;
use scanstream_contracts::schedule::{Schedule, ScheduleTicks};
use scanstream_contracts::schema::SchemaFile;
use scanstream_contracts::state::JobState;
use scanstream_contracts::{Codec, JobId, Topic, TopicNames};
use scanstream_platform::Settings;
use scanstream_platform::kafka::{self, ClientRole, KafkaFactory, StatsContext};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// How long metadata and offset requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Records handed from the reading thread to the writer at once.
const BATCH: usize = 2048;

/// One end of a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// Milliseconds since the Unix epoch.
    Time(i64),
    /// The same offset in every partition.
    Offset(i64),
    /// Offsets per partition; partitions not named use the topic's own start or end.
    Offsets(BTreeMap<i32, i64>),
}

impl FromStr for Bound {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
            return Ok(Bound::Time(t.timestamp_millis()));
        }
        if let Ok(n) = text.parse::<i64>() {
            return if n >= 0 {
                Ok(Bound::Offset(n))
            } else {
                Err("an offset is not negative".to_owned())
            };
        }
        let mut offsets = BTreeMap::new();
        for part in text.split(',') {
            let (p, o) = part.split_once(':').ok_or_else(|| {
                format!(
                    "`{text}` is neither an RFC 3339 time (2026-11-21T10:00:00Z), an offset (1200) nor partition:offset pairs (0:1200,1:800)"
                )
            })?;
            let p: i32 = p
                .trim()
                .parse()
                .map_err(|_| format!("bad partition `{p}`"))?;
            let o: i64 = o.trim().parse().map_err(|_| format!("bad offset `{o}`"))?;
            if p < 0 || o < 0 {
                return Err("partitions and offsets are not negative".to_owned());
            }
            offsets.insert(p, o);
        }
        Ok(Bound::Offsets(offsets))
    }
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub from: Option<Bound>,
    pub to: Option<Bound>,
}

impl Window {
    fn times(&self) -> (i64, i64) {
        let from = match self.from {
            Some(Bound::Time(t)) => t,
            _ => i64::MIN,
        };
        let to = match self.to {
            Some(Bound::Time(t)) => t,
            _ => i64::MAX,
        };
        (from, to)
    }
}

/// Which records to keep.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub jobs: Vec<JobId>,
    pub repos: Vec<String>,
    pub event_types: Vec<String>,
}

impl Filters {
    fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.repos.is_empty() && self.event_types.is_empty()
    }

    fn keep(&self, topic: Topic, key: Option<&str>, value: Option<&Decoded>) -> bool {
        if !self.jobs.is_empty() {
            let by_key = key.is_some_and(|k| self.jobs.iter().any(|j| j.key() == k));
            let by_value = value
                .and_then(Decoded::job)
                .is_some_and(|j| self.jobs.contains(&j));
            if !(by_key || by_value) {
                return false;
            }
        }
        if !self.repos.is_empty() {
            let by_key =
                topic == Topic::Commands && key.is_some_and(|k| self.repos.iter().any(|r| r == k));
            let by_value = value
                .and_then(Decoded::repo)
                .is_some_and(|r| self.repos.iter().any(|x| x == r));
            if !(by_key || by_value) {
                return false;
            }
        }
        if !self.event_types.is_empty() {
            let kind = value.and_then(Decoded::kind);
            if !kind.is_some_and(|k| self.event_types.iter().any(|t| t == k)) {
                return false;
            }
        }
        true
    }
}

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
    /// Values without a schema (the dead-letter topic), hex-encoded.
    Bytes {
        hex: String,
    },
}

impl Decoded {
    fn job(&self) -> Option<JobId> {
        match self {
            Decoded::Command(c) => Some(match &c.command {
                Command::RequestScan(r) => r.job_id,
                Command::CancelScan(c) => c.job_id,
            }),
            Decoded::Event(e) => Some(e.job_id),
            Decoded::Finding(f) => Some(f.job_id),
            Decoded::State(s) => Some(s.job_id),
            Decoded::Ticks(t) => t.last_fired_job,
            Decoded::Schedule(_) | Decoded::Bytes { .. } => None,
        }
    }

    fn repo(&self) -> Option<&str> {
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
            _ => None,
        }
    }

    /// The command or event type (`RequestScan`, `ScanSucceeded`, …).
    fn kind(&self) -> Option<&'static str> {
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
            _ => None,
        }
    }
}

/// A record as read, before decoding.
#[derive(Debug, Clone)]
pub struct Raw {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub payload: Option<Vec<u8>>,
}

/// A decoded record: the raw one and its value.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub raw: Raw,
    /// The value in its schema's Avro form (`None` for tombstones and schemaless topics).
    pub avro: Option<AvroValue>,
    pub value: Option<Decoded>,
}

#[derive(Serialize)]
struct HeaderLine {
    key: String,
    value: Option<String>,
}

/// One JSON line. Field order is fixed: topic, partition, offset, timestamp, key, headers, value.
/// The canonical form (digests, comparing copies) leaves out topic and offset.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    partition: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<i64>,
    timestamp: i64,
    key: Option<String>,
    headers: Vec<HeaderLine>,
    value: Option<&'a Decoded>,
}

/// The JSON line of a record (`canonical`: without topic and offset), without the newline.
pub fn json_line(topic: &str, record: &Replayed, canonical: bool) -> String {
    let raw = &record.raw;
    let line = Line {
        topic: (!canonical).then_some(topic),
        partition: raw.partition,
        offset: (!canonical).then_some(raw.offset),
        timestamp: raw.timestamp,
        key: raw
            .key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        headers: raw
            .headers
            .iter()
            .map(|(k, v)| HeaderLine {
                key: k.clone(),
                value: v
                    .as_deref()
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
            })
            .collect(),
        value: record.value.as_ref(),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// A topic to replay: its full name and which scanstream topic's records it holds.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: Topic,
}

impl Source {
    /// `name` is a scanstream topic's name without the deployment prefix (`scans.events`), which
    /// gets the prefix; or any full topic name whose records are of the topic `like` names, or
    /// of the scanstream topic its name ends with (a copy named `audit.scans.events`).
    pub fn resolve(names: &TopicNames, name: &str, like: Option<&str>) -> anyhow::Result<Source> {
        let known = |base: &str| {
            Topic::from_base_name(base).with_context(|| {
                format!(
                    "`{base}` is not a scanstream topic; use one of {}",
                    Topic::ALL.map(|t| t.base_name()).join(", ")
                )
            })
        };
        if let Some(topic) = Topic::from_base_name(name) {
            return Ok(Source {
                name: names.name(topic),
                kind: topic,
            });
        }
        let kind = match like {
            Some(base) => known(base)?,
            None => Topic::ALL
                .into_iter()
                .filter(|t| name.ends_with(t.base_name()))
                .max_by_key(|t| t.base_name().len())
                .with_context(|| {
                    format!(
                        "cannot tell which records {name} holds: name a scanstream topic ({}) or add --like <one of them>",
                        Topic::ALL.map(|t| t.base_name()).join(", ")
                    )
                })?,
        };
        Ok(Source {
            name: name.to_owned(),
            kind,
        })
    }
}

/// The offset range `[start, end)` of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// Resolves `window` to an offset range per partition.
pub fn plan(
    consumer: &BaseConsumer<StatsContext>,
    topic: &str,
    window: &Window,
) -> anyhow::Result<Vec<Span>> {
    let partitions = kafka::partitions(consumer.client(), topic, REQUEST_TIMEOUT)
        .with_context(|| format!("cannot read the metadata of {topic}"))?;
    if partitions.is_empty() {
        bail!("topic {topic} does not exist");
    }
    let times = |t: i64| -> anyhow::Result<BTreeMap<i32, Option<i64>>> {
        let mut wanted = TopicPartitionList::new();
        for &p in &partitions {
            wanted.add_partition_offset(topic, p, Offset::Offset(t))?;
        }
        let found = consumer
            .offsets_for_times(wanted, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot look up offsets of {topic} by time"))?;
        Ok(found
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => (e.partition(), Some(o)),
                _ => (e.partition(), None),
            })
            .collect())
    };
    let from_times = match &window.from {
        Some(Bound::Time(t)) => Some(times(*t)?),
        _ => None,
    };
    let to_times = match &window.to {
        Some(Bound::Time(t)) => Some(times(*t)?),
        _ => None,
    };
    let mut spans = Vec::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot read the offsets of {topic}"))?;
        let pick =
            |bound: &Option<Bound>, found: &Option<BTreeMap<i32, Option<i64>>>, default: i64| {
                match bound {
                    None => default,
                    // No record at or after the time: the partition's end.
                    Some(Bound::Time(_)) => found
                        .as_ref()
                        .and_then(|f| f.get(&p).copied().flatten())
                        .unwrap_or(high),
                    Some(Bound::Offset(o)) => *o,
                    Some(Bound::Offsets(map)) => map.get(&p).copied().unwrap_or(default),
                }
            };
        let start = pick(&window.from, &from_times, low).clamp(low, high);
        let end = pick(&window.to, &to_times, high).clamp(low, high);
        spans.push(Span {
            partition: p,
            start,
            end: end.max(start),
        });
    }
    Ok(spans)
}

/// Reads `spans` of `topic` in order on the calling (blocking) thread, handing batches to
/// `send`; `read` counts records read. Stops early when `send` returns false.
pub fn read_spans(
    consumer: &BaseConsumer<StatsContext>,
    topic: &str,
    spans: &[Span],
    read: &AtomicU64,
    mut send: impl FnMut(Vec<Raw>) -> bool,
) -> anyhow::Result<()> {
    for span in spans.iter().filter(|s| s.start < s.end) {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, span.partition, Offset::Offset(span.start))?;
        consumer.assign(&list)?;
        let mut batch = Vec::with_capacity(BATCH);
        let mut last_progress = Instant::now();
        loop {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    last_progress = Instant::now();
                    if m.offset() >= span.end {
                        break;
                    }
                    batch.push(Raw {
                        partition: m.partition(),
                        offset: m.offset(),
                        timestamp: m.timestamp().to_millis().unwrap_or(-1),
                        key: m.key().map(<[u8]>::to_vec),
                        headers: m
                            .headers()
                            .map(|h| {
                                h.iter()
                                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        payload: m.payload().map(<[u8]>::to_vec),
                    });
                    read.fetch_add(1, Ordering::Relaxed);
                    let done = m.offset() + 1 >= span.end;
                    if (batch.len() >= BATCH || done) && !send(std::mem::take(&mut batch)) {
                        return Ok(());
                    }
                    if done {
                        break;
                    }
                }
                Some(Err(e)) => bail!("reading {topic} failed: {e}"),
                None => {
                    // Only transaction markers or aborted records may be left: the position
                    // moves past them without a message.
                    let at = consumer.position().ok().and_then(|l| {
                        l.find_partition(topic, span.partition)
                            .and_then(|e| e.offset().to_raw())
                    });
                    if at.is_some_and(|o| o >= span.end) {
                        break;
                    }
                    if last_progress.elapsed() > Duration::from_secs(60) {
                        bail!(
                            "{topic} partition {} made no progress for 60 s at offset {at:?} (range ends at {})",
                            span.partition,
                            span.end
                        );
                    }
                }
            }
        }
        if !batch.is_empty() && !send(batch) {
            return Ok(());
        }
    }
    Ok(())
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
    };
    Ok(Replayed {
        raw,
        avro: Some(avro),
        value: Some(value),
    })
}

/// The Avro schema of replay files for `kind`: one `io.scanstream.replay.Record` per record
/// with its position, timestamp, key, headers and the value in the topic's own schema.
pub fn container_schema(kind: Topic) -> anyhow::Result<apache_avro::Schema> {
    let value: serde_json::Value = match kind.value_schema() {
        Some(file) => serde_json::from_str(file.source())?,
        None => serde_json::json!("bytes"),
    };
    let schema = serde_json::json!({
        "type": "record",
        "name": "Record",
        "namespace": "io.scanstream.replay",
        "doc": format!("A record of {} as scanstream replay read it.", kind.base_name()),
        "fields": [
            {"name": "topic", "type": "string"},
            {"name": "partition", "type": "int"},
            {"name": "offset", "type": "long"},
            {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "key", "type": ["null", "string"]},
            {"name": "headers", "type": {"type": "array", "items": {
                "type": "record", "name": "Header",
                "fields": [{"name": "key", "type": "string"}, {"name": "value", "type": ["null", "bytes"]}]
            }}},
            {"name": "value", "type": ["null", value], "doc": "null for a tombstone"}
        ]
    });
    Ok(apache_avro::Schema::parse(&schema)?)
}

fn container_value(topic: &str, record: &Replayed) -> AvroValue {
    let raw = &record.raw;
    let value = match (&record.avro, &raw.payload) {
        (Some(v), _) => AvroValue::Union(1, Box::new(v.clone())),
        (None, Some(bytes)) => AvroValue::Union(1, Box::new(AvroValue::Bytes(bytes.clone()))),
        (None, None) => AvroValue::Union(0, Box::new(AvroValue::Null)),
    };
    let optional_string = |v: Option<String>| match v {
        Some(s) => AvroValue::Union(1, Box::new(AvroValue::String(s))),
        None => AvroValue::Union(0, Box::new(AvroValue::Null)),
    };
    AvroValue::Record(vec![
        ("topic".into(), AvroValue::String(topic.to_owned())),
        ("partition".into(), AvroValue::Int(raw.partition)),
        ("offset".into(), AvroValue::Long(raw.offset)),
        (
            "timestamp".into(),
            AvroValue::TimestampMillis(raw.timestamp),
        ),
        (
            "key".into(),
            optional_string(
                raw.key
                    .as_deref()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
            ),
        ),
        (
            "headers".into(),
            AvroValue::Array(
                raw.headers
                    .iter()
                    .map(|(k, v)| {
                        AvroValue::Record(vec![
                            ("key".into(), AvroValue::String(k.clone())),
                            (
                                "value".into(),
                                match v {
                                    Some(b) => {
                                        AvroValue::Union(1, Box::new(AvroValue::Bytes(b.clone())))
                                    }
                                    None => AvroValue::Union(0, Box::new(AvroValue::Null)),
                                },
                            ),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("value".into(), value),
    ])
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON document per line.
    Jsonl,
    /// An Avro object container file.
    Avro,
}

/// Where selected records go.
pub enum Sink {
    Jsonl {
        out: Box<dyn Write + Send>,
        canonical: bool,
    },
    Avro {
        writer: Box<apache_avro::Writer<'static, Box<dyn Write + Send>>>,
    },
    Into {
        producer: FutureProducer<StatsContext>,
        topic: String,
        keep_partitions: bool,
        /// Records per second; 0 is unlimited.
        rate: u64,
        started: Instant,
        sent: u64,
        pending: Vec<rdkafka::producer::DeliveryFuture>,
    },
    /// Only counted and digested (audit).
    Digest,
}

/// What a replay did.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub topic: String,
    pub spans: Vec<Span>,
    pub read: u64,
    pub selected: u64,
    /// Records skipped because their value could not be decoded (each is reported on stderr).
    pub undecodable: u64,
    pub seconds: f64,
    /// SHA-256 over the canonical JSON lines (each followed by a newline) of the selected records.
    pub sha256: String,
}

/// Replays `source` over `window` through `filters` into `sink`; `progress` shows a bar on a
/// terminal. `each` sees every selected record (audit folds with it).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    settings: &Settings,
    source: &Source,
    window: &Window,
    filters: &Filters,
    mut sink: Sink,
    progress: bool,
    mut each: impl FnMut(&Replayed),
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let codec = scanstream_platform::registry::codec(settings)?;
    let factory = KafkaFactory::new(settings.kafka.clone());
    let group = format!(
        "{}scanstream-replay-{}",
        settings.topics.prefix,
        uuid::Uuid::new_v4().simple()
    );
    let consumer = factory
        .base_consumer(ClientRole::Cli, &group)
        .context("cannot create a Kafka consumer")?;
    let (topic, range) = (source.name.clone(), window.clone());
    let (consumer, spans) = tokio::task::spawn_blocking(move || {
        let spans = plan(&consumer, &topic, &range);
        (consumer, spans)
    })
    .await?;
    let spans = spans?;
    let total: i64 = spans.iter().map(|s| s.end - s.start).sum();
    let bar = progress.then(|| progress_bar(u64::try_from(total).unwrap_or(0)));
    let read = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Raw>>(8);
    let reader = {
        let (topic, spans, read) = (source.name.clone(), spans.clone(), read.clone());
        tokio::task::spawn_blocking(move || {
            read_spans(&consumer, &topic, &spans, &read, |batch| {
                tx.blocking_send(batch).is_ok()
            })
        })
    };
    let (from_ms, to_ms) = window.times();
    let mut digest = Sha256::new();
    let mut selected = 0u64;
    let mut undecodable = 0u64;
    while let Some(batch) = rx.recv().await {
        for raw in batch {
            if raw.timestamp < from_ms || raw.timestamp >= to_ms {
                continue;
            }
            let (partition, offset) = (raw.partition, raw.offset);
            let record = match decode(&codec, source.kind, raw).await {
                Ok(record) => record,
                Err(e) => {
                    undecodable += 1;
                    eprintln!(
                        "warning: {} partition {partition} offset {offset} skipped: {e:#}",
                        source.name
                    );
                    continue;
                }
            };
            let key = record
                .raw
                .key
                .as_deref()
                .and_then(|k| std::str::from_utf8(k).ok());
            if !filters.is_empty() && !filters.keep(source.kind, key, record.value.as_ref()) {
                continue;
            }
            selected += 1;
            let canonical = json_line(&source.name, &record, true);
            digest.update(canonical.as_bytes());
            digest.update(b"\n");
            write(&mut sink, &source.name, &record, &canonical).await?;
            each(&record);
        }
        if let Some(bar) = &bar {
            bar.set_position(read.load(Ordering::Relaxed));
        }
    }
    reader.await??;
    finish(sink).await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(Summary {
        topic: source.name.clone(),
        spans,
        read: read.load(Ordering::Relaxed),
        selected,
        undecodable,
        seconds: started.elapsed().as_secs_f64(),
        sha256: hex::encode(digest.finalize()),
    })
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} records  {per_sec}  ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

async fn write(
    sink: &mut Sink,
    topic: &str,
    record: &Replayed,
    canonical: &str,
) -> anyhow::Result<()> {
    match sink {
        Sink::Jsonl { out, canonical: c } => {
            if *c {
                out.write_all(canonical.as_bytes())?;
            } else {
                out.write_all(json_line(topic, record, false).as_bytes())?;
            }
            out.write_all(b"\n")?;
        }
        Sink::Avro { writer } => {
            writer
                .append_value(container_value(topic, record))
                .context("cannot write the Avro record")?;
        }
        Sink::Into {
            producer,
            topic: target,
            keep_partitions,
            rate,
            started,
            sent,
            pending,
        } => {
            if *rate > 0 {
                // Never ahead of `rate` records per second since the start.
                let due = Duration::from_secs_f64(*sent as f64 / *rate as f64);
                let elapsed = started.elapsed();
                if due > elapsed {
                    tokio::time::sleep(due - elapsed).await;
                }
            }
            let raw = &record.raw;
            let mut headers = OwnedHeaders::new();
            for (key, value) in &raw.headers {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
            let mut out = FutureRecord::<[u8], [u8]>::to(target)
                .headers(headers)
                .timestamp(raw.timestamp);
            if let Some(k) = &raw.key {
                out = out.key(k.as_slice());
            }
            if let Some(p) = &raw.payload {
                out = out.payload(p.as_slice());
            }
            if *keep_partitions {
                out = out.partition(raw.partition);
            }
            loop {
                match producer.send_result(out) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        back,
                    )) => {
                        out = back;
                        settle(pending).await?;
                    }
                    Err((e, _)) => bail!("cannot produce to {target}: {e}"),
                }
            }
            *sent += 1;
            if pending.len() >= 10_000 {
                settle(pending).await?;
            }
        }
        Sink::Digest => {}
    }
    Ok(())
}

async fn settle(pending: &mut Vec<rdkafka::producer::DeliveryFuture>) -> anyhow::Result<()> {
    for delivery in pending.drain(..) {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => bail!("a record was not delivered: {e}"),
            Err(_) => bail!("a delivery report was lost"),
        }
    }
    Ok(())
}

async fn finish(sink: Sink) -> anyhow::Result<()> {
    match sink {
        Sink::Jsonl { mut out, .. } => out.flush()?,
        Sink::Avro { writer } => {
            let mut out = writer.into_inner().context("cannot finish the Avro file")?;
            out.flush()?;
        }
        Sink::Into { mut pending, .. } => settle(&mut pending).await?,
        Sink::Digest => {}
    }
    Ok(())
}

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

/// The options of `scanstream replay`.
pub struct ReplayOptions {
    pub source: Source,
    pub window: Window,
    pub filters: Filters,
    pub format: Format,
    pub out: Option<PathBuf>,
    pub canonical: bool,
    pub into: Option<String>,
    pub into_bootstrap: Option<String>,
    pub rate: u64,
}

/// `scanstream replay`.
pub async fn replay(settings: &Settings, options: ReplayOptions) -> anyhow::Result<Summary> {
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output = || -> anyhow::Result<Box<dyn Write + Send>> {
        Ok(match &options.out {
            Some(path) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout())),
        })
    };
    let sink = match (&options.into, options.format) {
        (Some(target), _) => {
            let keep = {
                // Count partitions of the source to create the target alike.
                let consumer = KafkaFactory::new(settings.kafka.clone())
                    .base_consumer(ClientRole::Cli, "scanstream-replay-metadata")?;
                let name = options.source.name.clone();
                let partitions = tokio::task::spawn_blocking(move || {
                    kafka::partitions(consumer.client(), &name, REQUEST_TIMEOUT).map(|p| p.len())
                })
                .await??;
                if partitions == 0 {
                    bail!("topic {} does not exist", options.source.name);
                }
                prepare_target(
                    settings,
                    options.into_bootstrap.as_deref(),
                    &options.source,
                    partitions,
                    target,
                )
                .await?
            };
            Sink::Into {
                producer: into_producer(settings, options.into_bootstrap.as_deref())?,
                topic: target.clone(),
                keep_partitions: keep,
                rate: options.rate,
                started: Instant::now(),
                sent: 0,
                pending: Vec::new(),
            }
        }
        (None, Format::Jsonl) => Sink::Jsonl {
            out: output()?,
            canonical: options.canonical,
        },
        (None, Format::Avro) => {
            let schema = Box::leak(Box::new(container_schema(options.source.kind)?));
            Sink::Avro {
                writer: Box::new(apache_avro::Writer::with_codec(
                    schema,
                    output()?,
                    apache_avro::Codec::Deflate(Default::default()),
                )?),
            }
        }
    };
    run(
        settings,
        &options.source,
        &options.window,
        &options.filters,
        sink,
        progress,
        |_| {},
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_times_offsets_and_partition_offsets() {
        assert_eq!(
            "2026-11-21T10:00:00Z".parse::<Bound>(),
            Ok(Bound::Time(1_795_255_200_000))
        );
        assert_eq!(
            "2026-11-21T11:00:00+01:00".parse::<Bound>(),
            Ok(Bound::Time(1_795_255_200_000))
        );
        assert_eq!("1200".parse::<Bound>(), Ok(Bound::Offset(1200)));
        assert_eq!(
            "0:5, 2:7".parse::<Bound>(),
            Ok(Bound::Offsets([(0, 5), (2, 7)].into_iter().collect()))
        );
        for bad in ["yesterday", "-3", "0:-1", "x:1", "2026-13-01T00:00:00Z"] {
            assert!(bad.parse::<Bound>().is_err(), "{bad}");
        }
    }

    #[test]
    fn sources_are_scanstream_topics_or_copies_of_one() {
        let names = TopicNames::new("t.");
        let s = Source::resolve(&names, "scans.events", None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.name.as_str(), s.kind), ("t.scans.events", Topic::Events));
        let s = Source::resolve(&names, "audit-copy.scans.job-state", None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (s.name.as_str(), s.kind),
            ("audit-copy.scans.job-state", Topic::JobState)
        );
        let s = Source::resolve(&names, "mirror", Some("scans.findings"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.kind, Topic::Findings);
        assert!(Source::resolve(&names, "mirror", None).is_err());
        assert!(Source::resolve(&names, "mirror", Some("scans.nothing")).is_err());
        // The longest matching base name wins (scans.commands.dlq, not scans.commands).
        let s =
            Source::resolve(&names, "x.scans.commands.dlq", None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.kind, Topic::CommandsDlq);
    }

    #[test]
    fn every_topic_has_a_container_schema() {
        for topic in Topic::ALL {
            container_schema(topic).unwrap_or_else(|e| panic!("{topic}: {e}"));
        }
    }
}
