//! What the replay tests share: records produced at explicit timestamps, and running the
//! built binary with the test's settings.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use scanstream_contracts::event::{
    EventPayload, JobSubmitted, ScanEvent, ScanStarted, ScanSucceeded, TERMINAL_SEQUENCE,
};
use scanstream_contracts::finding::SeverityCounts;
use scanstream_contracts::{Codec, JobId, RunId, Topic, TopicNames};
use scanstream_platform::Settings;
use scanstream_testcontainers::TestScope;
use serde_json::Value;

pub const PARTITIONS: i32 = 3;
/// 2026-11-21T00:00:00Z.
pub const T0: i64 = 1_795_219_200_000;

/// The settings of the test and of every `scanstream` it runs, on top of the scope's
/// ([`PARTITIONS`] partitions).
const OVERRIDES: &[(&str, &str)] = &[("topics.partitions", "3"), ("api.auth_enabled", "false")];

/// Runs the built `scanstream` with `args` and the scope's settings.
pub fn scanstream(scope: &TestScope, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scanstream"))
        .args(args)
        .envs(scope.env(OVERRIDES))
        .output()
        .expect("cannot run scanstream")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A test's scope with its topics created, its settings, a codec and a producer.
pub struct Fixture {
    pub scope: TestScope,
    pub settings: Settings,
    pub codec: Arc<Codec>,
    pub producer: FutureProducer,
}

impl Fixture {
    pub async fn new(name: &str) -> Fixture {
        let scope = TestScope::new(name);
        let settings = scope.settings("", OVERRIDES);
        scanstream::topics::ensure(&settings, false).await.unwrap();
        let codec = Arc::new(scope.codec());
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &settings.kafka.bootstrap_servers)
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        Fixture {
            scope,
            settings,
            codec,
            producer,
        }
    }

    pub fn names(&self) -> TopicNames {
        self.scope.names()
    }

    /// Produces `event` to `partition` of scans.events at `timestamp`, with a header.
    pub async fn produce(&self, partition: i32, timestamp: i64, event: &ScanEvent) {
        let payload = self.codec.encode(Topic::Events, event).await.unwrap();
        let topic = self.names().name(Topic::Events);
        let key = event.job_id.key();
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "correlation-id",
            value: Some(event.job_name.as_bytes()),
        });
        self.producer
            .send(
                FutureRecord::to(&topic)
                    .key(&key)
                    .payload(&payload)
                    .partition(partition)
                    .timestamp(timestamp)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

pub fn submitted(job: &str, at: i64) -> ScanEvent {
    let id = JobId::from_name(job);
    ScanEvent::new(
        id,
        job,
        RunId::derived(id, "r"),
        0,
        0,
        at,
        None,
        EventPayload::JobSubmitted(JobSubmitted {
            repo_url: format!("https://git.example.com/{job}.git"),
            git_ref: None,
            engines: vec!["secrets".into()],
            mode: Default::default(),
            schedule: None,
            requested_by: None,
        }),
    )
}

pub fn started(job: &str, at: i64) -> ScanEvent {
    let id = JobId::from_name(job);
    ScanEvent::new(
        id,
        job,
        RunId::derived(id, "r"),
        1,
        1,
        at,
        Some("scanner-0".into()),
        EventPayload::ScanStarted(ScanStarted {
            scanner_id: "scanner-0".into(),
        }),
    )
}

pub fn succeeded(job: &str, at: i64) -> ScanEvent {
    let id = JobId::from_name(job);
    ScanEvent::new(
        id,
        job,
        RunId::derived(id, "r"),
        1,
        TERMINAL_SEQUENCE,
        at,
        Some("scanner-0".into()),
        EventPayload::ScanSucceeded(ScanSucceeded {
            findings: SeverityCounts::default(),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            duration_ms: 42,
        }),
    )
}

/// Ten records per partition at T0 + i s (i = 0..9), in three jobs' histories; returns each
/// (partition, offset) → event.
pub async fn ten_per_partition(f: &Fixture) -> BTreeMap<(i32, i64), ScanEvent> {
    let mut produced = BTreeMap::new();
    for p in 0..PARTITIONS {
        for i in 0..10i64 {
            let job = format!("job-{p}-{}", i / 3);
            let at = T0 + i * 1000;
            let event = match i % 3 {
                0 => submitted(&job, at),
                1 => started(&job, at),
                _ => succeeded(&job, at),
            };
            f.produce(p, at, &event).await;
            produced.insert((p, i), event);
        }
    }
    produced
}

pub fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

pub fn positions(lines: &[Value]) -> BTreeSet<(i32, i64)> {
    lines
        .iter()
        .map(|l| {
            (
                l["partition"].as_i64().unwrap_or(-1) as i32,
                l["offset"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

pub fn python() -> String {
    std::env::var("SCANSTREAM_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}
