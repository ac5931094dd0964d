//! `scanstream replay` and `scanstream audit` through the built binary, on the real broker and
//! registry, with records produced at explicit timestamps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use scanstream_contracts::event::{
    EventPayload, JobSubmitted, ScanEvent, ScanStarted, ScanSucceeded, TERMINAL_SEQUENCE,
};
use scanstream_contracts::finding::SeverityCounts;
use scanstream_contracts::state::JobState;
use scanstream_contracts::{Codec, JobId, RunId, Topic, TopicNames};
use scanstream_platform::Settings;
use scanstream_platform::config::Sources;
use scanstream_testcontainers::TestScope;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 3;
/// 2026-11-21T00:00:00Z.
const T0: i64 = 1_795_219_200_000;

fn settings(scope: &TestScope) -> Settings {
    Settings::load(Sources {
        files: Vec::new(),
        env: Some(env(scope).into_iter().collect()),
        overrides: Vec::new(),
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn env(scope: &TestScope) -> Vec<(String, String)> {
    [
        (
            "KAFKA__BOOTSTRAP_SERVERS",
            scope.endpoints.bootstrap_servers.clone(),
        ),
        ("KAFKA__STATISTICS_INTERVAL_MS", "0".to_owned()),
        ("REGISTRY__URL", scope.endpoints.registry_url.clone()),
        ("TOPICS__PREFIX", scope.topic_prefix.clone()),
        ("TOPICS__PARTITIONS", PARTITIONS.to_string()),
        ("TOPICS__REPLICATION_FACTOR", "1".to_owned()),
        ("API__AUTH_ENABLED", "false".to_owned()),
        ("API__LISTEN", "127.0.0.1:0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("SCANSTREAM__{k}"), v))
    .collect()
}

fn scanstream(scope: &TestScope, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scanstream"))
        .args(args)
        .envs(env(scope))
        .output()
        .unwrap_or_else(|e| panic!("cannot run scanstream: {e}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

struct Fixture {
    scope: TestScope,
    settings: Settings,
    codec: Arc<Codec>,
    producer: FutureProducer,
}

impl Fixture {
    async fn new(name: &str) -> Fixture {
        let scope = TestScope::new(name);
        let settings = settings(&scope);
        scanstream::topics::ensure(&settings, false)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let codec = Arc::new(
            scanstream_platform::registry::codec(&settings).unwrap_or_else(|e| panic!("{e}")),
        );
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &settings.kafka.bootstrap_servers)
            .set("enable.idempotence", "true")
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        Fixture {
            scope,
            settings,
            codec,
            producer,
        }
    }

    fn names(&self) -> TopicNames {
        TopicNames::new(self.settings.topics.prefix.clone())
    }

    /// Produces `event` to `partition` of scans.events at `timestamp`, with a header.
    async fn produce(&self, partition: i32, timestamp: i64, event: &ScanEvent) {
        let payload = self
            .codec
            .encode(Topic::Events, event)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
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
            .unwrap_or_else(|(e, _)| panic!("{e}"));
    }
}

fn submitted(job: &str, at: i64) -> ScanEvent {
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

fn started(job: &str, at: i64) -> ScanEvent {
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

fn succeeded(job: &str, at: i64) -> ScanEvent {
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
async fn ten_per_partition(f: &Fixture) -> BTreeMap<(i32, i64), ScanEvent> {
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

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn positions(lines: &[Value]) -> BTreeSet<(i32, i64)> {
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

#[tokio::test]
async fn time_ranges_are_inclusive_from_and_exclusive_to_on_every_partition() {
    let f = Fixture::new("replay-range").await;
    let produced = ten_per_partition(&f).await;

    // [T0+3 s, T0+7 s): timestamps 3, 4, 5 and 6 s of each partition, offsets 3..=6.
    let out = scanstream(
        &f.scope,
        &[
            "replay",
            "--topic",
            "scans.events",
            "--from",
            &rfc3339(T0 + 3000),
            "--to",
            &rfc3339(T0 + 7000),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = lines(&stdout(&out));
    let expected: BTreeSet<(i32, i64)> = (0..PARTITIONS)
        .flat_map(|p| (3..=6).map(move |o| (p, o)))
        .collect();
    assert_eq!(positions(&got), expected);
    // Partition by partition, offsets ascending: the same range always prints the same.
    let order: Vec<(i32, i64)> = got
        .iter()
        .map(|l| {
            (
                l["partition"].as_i64().unwrap_or(0) as i32,
                l["offset"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(order, sorted);

    // A time exactly at a record includes it in --from and excludes it in --to; a range between
    // two records is empty.
    let out = scanstream(
        &f.scope,
        &[
            "replay",
            "--topic",
            "scans.events",
            "--from",
            &rfc3339(T0 + 9000),
        ],
    );
    assert_eq!(positions(&lines(&stdout(&out))).len(), PARTITIONS as usize);
    let out = scanstream(
        &f.scope,
        &[
            "replay",
            "--topic",
            "scans.events",
            "--from",
            &rfc3339(T0 + 1500),
            "--to",
            &rfc3339(T0 + 1999),
        ],
    );
    assert!(out.status.success());
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));

    // Every line: fixed field order, and the value decodes back to the event produced.
    for line in &got {
        let text = serde_json::to_string(line).unwrap_or_default();
        let keys: Vec<&str> = line
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            BTreeSet::from_iter(keys),
            BTreeSet::from([
                "topic",
                "partition",
                "offset",
                "timestamp",
                "key",
                "headers",
                "value"
            ]),
            "{text}"
        );
        let p = line["partition"].as_i64().unwrap_or(0) as i32;
        let o = line["offset"].as_i64().unwrap_or(0);
        let back: ScanEvent =
            serde_json::from_value(line["value"].clone()).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(&back, &produced[&(p, o)]);
        assert_eq!(line["timestamp"], T0 + o * 1000);
        assert_eq!(line["key"], produced[&(p, o)].job_id.key());
        assert_eq!(line["headers"][0]["key"], "correlation-id");
        assert_eq!(line["topic"], f.names().name(Topic::Events));
    }
    let raw = stdout(&scanstream(
        &f.scope,
        &["replay", "--topic", "scans.events", "--to", "0:1"],
    ));
    assert!(
        raw.starts_with("{\"topic\":")
            && raw.contains("\"partition\":0,\"offset\":0,\"timestamp\":"),
        "{raw}"
    );

    // Offsets: 8 onwards everywhere, and per-partition ends.
    let out = scanstream(
        &f.scope,
        &["replay", "--topic", "scans.events", "--from", "8"],
    );
    assert_eq!(
        positions(&lines(&stdout(&out))).len(),
        2 * PARTITIONS as usize
    );
    let out = scanstream(
        &f.scope,
        &[
            "replay",
            "--topic",
            "scans.events",
            "--from",
            "0:2,1:9",
            "--to",
            "0:4,1:10,2:0",
        ],
    );
    assert_eq!(
        positions(&lines(&stdout(&out))),
        BTreeSet::from([(0, 2), (0, 3), (1, 9)])
    );

    // Filters: one job, one event type.
    let out = scanstream(
        &f.scope,
        &["replay", "--topic", "scans.events", "--job", "job-1-2"],
    );
    assert_eq!(
        positions(&lines(&stdout(&out))),
        BTreeSet::from([(1, 6), (1, 7), (1, 8)])
    );
    let out = scanstream(
        &f.scope,
        &[
            "replay",
            "--topic",
            "scans.events",
            "--event-type",
            "ScanSucceeded",
            "--from",
            "0:0,1:10,2:10",
        ],
    );
    assert_eq!(
        positions(&lines(&stdout(&out))),
        BTreeSet::from([(0, 2), (0, 5), (0, 8)])
    );
    let out = scanstream(
        &f.scope,
        &[
            "replay",
            "--topic",
            "scans.events",
            "--repo",
            "https://git.example.com/job-2-0.git",
        ],
    );
    assert_eq!(positions(&lines(&stdout(&out))), BTreeSet::from([(2, 0)]));

    // Bad input: a clear message, exit 2.
    let out = scanstream(&f.scope, &["replay", "--topic", "scans.nothing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot tell which records"));
    let out = scanstream(
        &f.scope,
        &["replay", "--topic", "scans.events", "--from", "yesterday"],
    );
    assert_eq!(out.status.code(), Some(2));
}

fn python() -> String {
    std::env::var("SCANSTREAM_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

#[tokio::test]
async fn an_avro_container_file_opens_with_fastavro_and_holds_the_same_records() {
    let f = Fixture::new("replay-avro").await;
    ten_per_partition(&f).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let avro = dir.path().join("events.avro");
    let range = ["--from", &rfc3339(T0 + 2000), "--to", &rfc3339(T0 + 8000)];
    let out = scanstream(
        &f.scope,
        &[
            &[
                "replay",
                "--topic",
                "scans.events",
                "--format",
                "avro",
                "--out",
            ],
            &[avro.to_str().unwrap_or_default()][..],
            &range[..],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jsonl = lines(&stdout(&scanstream(
        &f.scope,
        &[&["replay", "--topic", "scans.events"][..], &range[..]].concat(),
    )));
    let script = r#"
import json, sys
from fastavro import reader
with open(sys.argv[1], "rb") as f:
    r = reader(f)
    assert r.writer_schema["name"] == "io.scanstream.replay.Record", r.writer_schema["name"]
    for rec in r:
        v = rec["value"]
        print(json.dumps([rec["partition"], rec["offset"], rec["timestamp"] if isinstance(rec["timestamp"], int) else int(rec["timestamp"].timestamp() * 1000), rec["key"], str(v["event_id"]), v["job_name"], v["attempt"], v["sequence"]]))
"#;
    let run = Command::new(python())
        .args(["-c", script])
        .arg(&avro)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python()));
    assert!(
        run.status.success(),
        "fastavro could not read the file (scripts/test installs fastavro into a venv and sets SCANSTREAM_PYTHON): {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let from_avro: Vec<Value> = lines(&String::from_utf8_lossy(&run.stdout));
    let from_json: Vec<Value> = jsonl
        .iter()
        .map(|l| {
            serde_json::json!([
                l["partition"],
                l["offset"],
                l["timestamp"],
                l["key"],
                l["value"]["event_id"],
                l["value"]["job_name"],
                l["value"]["attempt"],
                l["value"]["sequence"]
            ])
        })
        .collect();
    assert_eq!(from_avro.len(), 6 * PARTITIONS as usize);
    assert_eq!(from_avro, from_json);
}

#[tokio::test]
async fn into_copies_a_range_and_both_replays_print_the_same_canonical_lines() {
    let f = Fixture::new("replay-into").await;
    ten_per_partition(&f).await;
    let target = format!("{}copy.scans.events", f.settings.topics.prefix);
    let range = ["--from", &rfc3339(T0 + 1000), "--to", &rfc3339(T0 + 9000)];
    let out = scanstream(
        &f.scope,
        &[
            &[
                "replay",
                "--topic",
                "scans.events",
                "--into",
                &target,
                "--rate",
                "100",
            ][..],
            &range[..],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 24 records at 100/s: the rate limit makes it take about a quarter of a second at least.
    let source = stdout(&scanstream(
        &f.scope,
        &[
            &["replay", "--topic", "scans.events", "--canonical"][..],
            &range[..],
        ]
        .concat(),
    ));
    let copy = stdout(&scanstream(
        &f.scope,
        &["replay", "--topic", &target, "--canonical"],
    ));
    assert_eq!(source.lines().count(), 8 * PARTITIONS as usize);
    assert_eq!(copy, source);
    // Not canonical: the copy's own topic and offsets.
    let copy_lines = lines(&stdout(&scanstream(
        &f.scope,
        &["replay", "--topic", &target],
    )));
    assert!(copy_lines.iter().all(|l| l["topic"] == target.as_str()));
    assert_eq!(copy_lines[0]["offset"], 0);
}

/// Jobs with events, an aggregator that folds them, then the audit.
#[tokio::test]
async fn audit_passes_on_a_consistent_system_and_names_a_tampered_job() {
    let f = Fixture::new("audit").await;
    let jobs: Vec<String> = (0..12).map(|n| format!("audited-{n}")).collect();
    let now = chrono::Utc::now().timestamp_millis();
    for (n, job) in jobs.iter().enumerate() {
        let p = (n as i32) % PARTITIONS;
        f.produce(p, now, &submitted(job, now)).await;
        f.produce(p, now + 1, &started(job, now + 1)).await;
        if n % 2 == 0 {
            f.produce(p, now + 2, &succeeded(job, now + 2)).await;
        }
    }
    let store = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut settings = f.settings.clone();
    settings.aggregator.data_dir = store.path().display().to_string();
    let metrics =
        scanstream_platform::telemetry::metrics_handle().unwrap_or_else(|e| panic!("{e}"));
    let app = scanstream_aggregator::Application::build(&settings, metrics)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let api = format!("http://127.0.0.1:{}", app.port());
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats: Value = match http.get(format!("{api}/jobs/stats")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let done = jobs
            .iter()
            .enumerate()
            .all(|(n, j)| stats[j]["succeeded"] == if n % 2 == 0 { 1 } else { 0 });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the aggregator never folded the events: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let report = dir.path().join("report.json");
    let run = |extra: &[&str], report: &Path| {
        let mut args = vec!["audit", "--api-url", api.as_str(), "--report"];
        let report = report.to_str().unwrap_or_default().to_owned();
        args.push(&report);
        args.extend_from_slice(extra);
        let out = scanstream(&f.scope, &args);
        let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap_or_default())
            .unwrap_or(Value::Null);
        (out, report)
    };
    let (out, first) = run(&[], &report);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(first["jobs_checked"], 12, "{first}");
    assert_eq!(first["equal"], 12);
    assert_eq!(first["events_folded"], 30);
    assert_eq!(first["api_checked"], true);
    let digest = first["digest"]["hex"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(digest.len(), 64);
    // The same range audited again: the same digest.
    let (_, again) = run(&[], &report);
    assert_eq!(again["digest"]["hex"], digest.as_str());
    // A range: only the jobs with events in it.
    let (out, ranged) = run(
        &["--from", &rfc3339(now + 2), "--to", &rfc3339(now + 3)],
        &dir.path().join("ranged.json"),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(ranged["jobs_checked"], 6, "{ranged}");
    assert_eq!(ranged["digest"]["records"], 6);

    // Tamper with one job's changelog record.
    let victim = JobId::from_name("audited-3");
    let changelog = f.names().name(Topic::JobState);
    let shown = stdout(&scanstream(
        &f.scope,
        &["replay", "--topic", "scans.job-state", "--job", "audited-3"],
    ));
    let last = lines(&shown)
        .pop()
        .unwrap_or_else(|| panic!("no changelog record: {shown}"));
    let mut state: JobState =
        serde_json::from_value(last["value"].clone()).unwrap_or_else(|e| panic!("{e}"));
    state.succeeded += 5;
    let payload = f
        .codec
        .encode(Topic::JobState, &state)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    f.producer
        .send(
            FutureRecord::to(&changelog)
                .key(&victim.key())
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("{e}"));
    let (out, tampered) = run(&[], &dir.path().join("tampered.json"));
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains(&victim.to_string()) && printed.contains("audited-3"),
        "{printed}"
    );
    assert!(printed.contains("succeeded"), "{printed}");
    assert_eq!(tampered["differing"], 1, "{tampered}");
    assert_eq!(tampered["differences"][0]["job"], victim.to_string());
    assert_eq!(tampered["differences"][0]["source"], "changelog");
    // The history did not change: neither did its digest.
    assert_eq!(tampered["digest"]["hex"], digest.as_str());

    stop.cancel();
    let _ = task.await;
}
