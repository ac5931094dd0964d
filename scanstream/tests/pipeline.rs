//! The whole pipeline through the built binary: `scanstream up` (ingest, scanner and aggregator
//! in one process) on the real broker and registry; 30 scans over 6 planted repositories
//! submitted over HTTP; stats, job state and findings checked against what was planted; then a
//! SIGKILL and a restart on the same data folder, after which every job is still there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scanstream::demo::{Planted, plant_repository};
use scanstream_contracts::JobId;
use scanstream_scanner::rules::RulePack;
use scanstream_scanner::secrets::SecretsEngine;
use scanstream_testcontainers::TestScope;
use serde_json::{Value, json};

mod support;

use support::api::Client;
use support::{Up, log};

const FINGERPRINT_KEY: &str = "pipeline-test-fingerprint-key";
const REPOSITORIES: usize = 6;
/// Tree scans and history scans submitted per repository: 6 × (3 + 2) = 30 scans.
const TREE_RUNS: usize = 3;
const HISTORY_RUNS: usize = 2;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One job of the test: its repository, mode and the runs submitted.
struct Job {
    name: String,
    repo: usize,
    history: bool,
    runs: Vec<String>,
}

/// Reads `scans.findings` and `scans.events` as a downstream Python consumer would, from the
/// addresses of the AsyncAPI document: confluent-kafka with `read_committed` and its
/// AvroDeserializer (`return_record_name=True`). Counts the records of `jobs`.
fn python_consumer(scope: &TestScope, asyncapi: &Value, jobs: &HashSet<JobId>) -> Value {
    const CONSUMER: &str = r#"
import json, sys, time, uuid
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
bootstrap, registry, document, jobs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), set(sys.argv[4].split(","))
address = {name: channel["address"] for name, channel in document["channels"].items()}
deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry}), return_record_name=True)
def read(topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "downstream-" + uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    values, idle = [], time.time()
    while time.time() - idle < 5:
        message = consumer.poll(0.5)
        if message is None or message.error():
            continue
        idle = time.time()
        if message.key().decode() in jobs:
            values.append(deserialize(message.value(), SerializationContext(topic, MessageField.VALUE)))
    consumer.close()
    return values
findings = read(address["scans.findings"])
events = read(address["scans.events"])
types = {}
for event in events:
    name = event["payload"][0].rsplit(".", 1)[-1]
    types[name] = types.get(name, 0) + 1
print(json.dumps({"findings": len(findings), "severities": sorted({f["severity"] for f in findings}),
                  "event_types": types}))
"#;
    let python = std::env::var("SCANSTREAM_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let jobs: Vec<String> = jobs.iter().map(|j| j.to_string()).collect();
    let out = std::process::Command::new(&python)
        .args(["-c", CONSUMER])
        .arg(&scope.endpoints.bootstrap_servers)
        .arg(&scope.endpoints.registry_url)
        .arg(asyncapi.to_string())
        .arg(jobs.join(","))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "the Python consumer failed (scripts/test installs confluent-kafka[avro] into the venv of \
         SCANSTREAM_PYTHON): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the Python consumer printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Lints a `/metrics` text with Prometheus' own Python client (scripts/test installs
/// prometheus-client into the venv of SCANSTREAM_PYTHON): it parses, every family has HELP
/// text and is declared once, and every counter sample ends in `_total`.
fn lint_metrics(text: &str) {
    const LINT: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
problems, seen = [], set()
for family in text_string_to_metric_families(sys.stdin.read()):
    if family.name in seen:
        problems.append("declared twice: " + family.name)
    seen.add(family.name)
    if not family.documentation.strip():
        problems.append("no HELP: " + family.name)
    if family.type == "counter":
        for sample in family.samples:
            if not sample.name.endswith(("_total", "_created")):
                problems.append("counter sample not named _total: " + sample.name)
print("\n".join(problems) or "%d families" % len(seen))
sys.exit(1 if problems else 0)
"#;
    let python = std::env::var("SCANSTREAM_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut child = std::process::Command::new(&python)
        .args(["-c", LINT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "/metrics fails the lint (scripts/test installs prometheus-client into the venv of \
         SCANSTREAM_PYTHON):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_scans_go_through_and_survive_a_kill_and_restart() {
    let scope = TestScope::new("pipeline");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("scanstream.toml");
    std::fs::write(
        &config,
        format!(
            "[scanner]\nfingerprint_key = \"{FINGERPRINT_KEY}\"\nconcurrency = 4\n\n[telemetry]\nlog_filter = \"info\"\n"
        ),
    )
    .unwrap();
    let mut planted: Vec<Vec<Planted>> = Vec::new();
    for i in 0..REPOSITORIES {
        let repo = data_dir.join("repos").join(format!("service-{i}"));
        planted.push(plant_repository(&repo).unwrap());
    }
    let engine = SecretsEngine::new(
        RulePack::load(&[] as &[&str]).unwrap(),
        FINGERPRINT_KEY.as_bytes(),
    );
    let fingerprint = |p: &Planted| engine.fingerprint(p.rule, p.secret.as_bytes());

    let since = now_ms() - 1_000;
    let test_started = Instant::now();
    let phase = |what: &str| println!("{what} after {:.1} s", test_started.elapsed().as_secs_f64());
    let mut up = Up::start(&scope, &config, &data_dir);
    let client = Client {
        http: reqwest::Client::new(),
        url: up.url.clone(),
        token: up.token(),
    };
    client.wait_ready(&data_dir).await;
    phase("up ready");

    // A job-manager client names a job and no repository: `up` derives the repository of that
    // name under its data folder; a name with no repository there is refused at once.
    let post = |body: Value| {
        let request = client
            .http
            .post(format!("{}/jobs", client.url))
            .bearer_auth(&client.token)
            .json(&body);
        async move {
            let response = request.send().await.expect("POST /jobs");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = post(json!({"name": "service-0"})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["uuid"], JobId::from_name("service-0").to_string());
    // Reads follow writes: the job is there at once, though the fold runs behind the 202.
    let (status, job) = client
        .get(&format!("/jobs/{}", JobId::from_name("service-0")))
        .await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["job_name"], "service-0");
    let (status, body) = post(json!({"name": "no-such-repository"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("file-not-found"), "{body}");

    // 30 scans, interleaved across repositories and modes.
    let mut jobs: Vec<Job> = Vec::new();
    for i in 0..REPOSITORIES {
        for history in [false, true] {
            let mode = if history { "history" } else { "tree" };
            jobs.push(Job {
                name: format!("{}-{mode}-{i}", scope.topic_prefix.trim_end_matches('.')),
                repo: i,
                history,
                runs: Vec::new(),
            });
        }
    }
    for round in 0..TREE_RUNS.max(HISTORY_RUNS) {
        for job in &mut jobs {
            let wanted = if job.history { HISTORY_RUNS } else { TREE_RUNS };
            if round < wanted {
                let repo = format!(
                    "file://{}",
                    data_dir
                        .join("repos")
                        .join(format!("service-{}", job.repo))
                        .display()
                );
                let mode = if job.history { "history" } else { "tree" };
                let run = client.submit(&job.name, &repo, mode).await;
                job.runs.push(run);
            }
        }
    }
    assert_eq!(jobs.iter().map(|j| j.runs.len()).sum::<usize>(), 30);

    // Every run reaches a terminal state.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut states: BTreeMap<String, Value> = BTreeMap::new();
    loop {
        let mut pending = 0;
        for job in &jobs {
            let (status, state) = client
                .get(&format!("/jobs/{}", JobId::from_name(&job.name)))
                .await;
            let finished = status == 200
                && job.runs.iter().all(|run| {
                    state["runs"].as_array().is_some_and(|runs| {
                        runs.iter().any(|r| {
                            r["run_id"] == run.as_str()
                                && matches!(
                                    r["status"].as_str(),
                                    Some("SUCCEEDED" | "FAILED" | "CANCELLED")
                                )
                        })
                    })
                });
            if finished {
                states.insert(job.name.clone(), state);
            } else {
                pending += 1;
            }
        }
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} jobs still running\n{}",
            log(&data_dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    phase("all 30 scans terminal");

    // GET /jobs/{uuid} agrees with what was submitted and planted.
    let mut latencies = Vec::new();
    for job in &jobs {
        let state = &states[&job.name];
        assert_eq!(state["job_name"], job.name.as_str());
        assert_eq!(state["status"], "SUCCEEDED", "{state}");
        assert_eq!(state["succeeded"], job.runs.len() as i64, "{state}");
        assert_eq!(state["failed"], 0, "{state}");
        let runs = state["runs"].as_array().cloned().unwrap_or_default();
        assert_eq!(runs.len(), job.runs.len(), "{state}");
        for run in &runs {
            assert_eq!(run["status"], "SUCCEEDED", "{state}");
            let queued = run["queued_at"].as_i64().unwrap_or_default();
            let finished = run["finished_at"].as_i64().unwrap_or_default();
            assert!(finished >= queued, "{run}");
            latencies.push(finished - queued);
        }
        let expected: Vec<&Planted> = planted[job.repo]
            .iter()
            .filter(|p| job.history || p.in_tree)
            .collect();
        let critical = expected
            .iter()
            .filter(|p| p.rule != "slack-webhook-url")
            .count();
        assert_eq!(state["findings"]["critical"], critical as i64, "{state}");
        assert_eq!(
            state["findings"]["high"],
            (expected.len() - critical) as i64,
            "{state}"
        );
    }
    latencies.sort_unstable();
    println!(
        "submit-to-terminal latency over {} scans: p50 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or_default()
    );

    // GET /jobs/stats: the job manager's format, one entry per job with its run counts.
    let (status, stats) = client.get("/jobs/stats").await;
    assert_eq!(status, 200);
    for job in &jobs {
        let entry = &stats[&job.name];
        assert_eq!(entry["uuid"], JobId::from_name(&job.name).to_string());
        assert_eq!(entry["jobtype"], "normal");
        assert_eq!(entry["succeeded"], job.runs.len() as i64, "{entry}");
        assert_eq!(entry["failed"], 0, "{entry}");
    }

    // Findings on scans.findings match the planted secrets by fingerprint, run by run, and
    // carry none of them in clear.
    let settings = scope.settings("", &[]);
    let ids: HashSet<JobId> = jobs.iter().map(|j| JobId::from_name(&j.name)).collect();
    let findings = scanstream::findings::read(&settings, &ids, since, Duration::from_secs(60))
        .await
        .unwrap();

    // A downstream consumer nobody here wrote reads the topics from the AsyncAPI document `up`
    // serves: confluent-kafka's consumer and AvroDeserializer (Python), as docs/topics.md says.
    let (status, asyncapi) = client.get("/asyncapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(asyncapi["asyncapi"], "3.0.0");
    let downstream = python_consumer(&scope, &asyncapi, &ids);
    assert_eq!(
        downstream["findings"].as_u64(),
        Some(findings.len() as u64),
        "{downstream}"
    );
    let severities: BTreeSet<String> = findings
        .iter()
        .map(|f| format!("{:?}", f.severity).to_uppercase())
        .collect();
    let seen: BTreeSet<String> = downstream["severities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, severities, "Avro enums are upper case: {downstream}");
    // With return_record_name=True the event type (the union branch) is visible.
    for event_type in ["JobSubmitted", "ScanStarted", "ScanSucceeded"] {
        assert!(
            downstream["event_types"][event_type].as_u64().unwrap_or(0) > 0,
            "{event_type} not seen: {downstream}"
        );
    }
    for job in &jobs {
        let expected: BTreeSet<(String, String)> = planted[job.repo]
            .iter()
            .filter(|p| job.history || p.in_tree)
            .map(|p| (p.rule.to_owned(), fingerprint(p)))
            .collect();
        for run in &job.runs {
            let found: BTreeSet<(String, String)> = findings
                .iter()
                .filter(|f| f.run_id.to_string() == *run)
                .map(|f| (f.rule_id.clone(), f.fingerprint.clone()))
                .collect();
            assert_eq!(found, expected, "findings of {} run {run}", job.name);
        }
    }
    let secrets: Vec<&str> = planted
        .iter()
        .flatten()
        .map(|p| p.secret.as_str())
        .collect();
    for finding in &findings {
        let text = format!("{finding:?}");
        assert!(
            secrets.iter().all(|s| !text.contains(s)),
            "a secret in clear: {text}"
        );
    }

    // /metrics is Prometheus text with every role's metrics.
    let metrics = client
        .http
        .get(format!("{}/metrics", up.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap_or_default();
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics does not parse");
    let names: BTreeSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for name in [
        "scanstream_http_requests_total",
        "scanstream_aggregator_store_keys",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    for prefix in [
        "scanstream_ingest_",
        "scanstream_scanner_",
        "scanstream_aggregator_",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(prefix)),
            "no {prefix}* metric in {names:?}"
        );
    }
    // Series alerts take increase() of are there before their first event, and the process
    // metrics are there.
    for name in [
        "scanstream_scanner_dead_letters_total",
        "scanstream_scanner_restarts_total",
        "scanstream_scanner_scanned_bytes_total",
        "scanstream_aggregator_undecodable_total",
        "scanstream_aggregator_restarts_total",
        "scanstream_aggregator_restore_progress_ratio",
        "scanstream_tail_bad_records_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    let kinds: BTreeSet<&str> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "scanstream_scanner_dead_letters_total")
        .filter_map(|s| s.labels.get("kind"))
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["empty", "invalid_command", "undecodable"])
    );
    lint_metrics(&metrics);
    let log_text =
        std::fs::read_to_string(data_dir.join("logs/scanstream.log")).unwrap_or_default();
    for secret in &secrets {
        assert!(!log_text.contains(secret), "a secret in the log");
    }

    // kill -9, restart on the same data folder: every job is still there, unchanged, and the
    // pipeline keeps working.
    let _ = up.child.kill();
    let _ = up.child.wait();
    drop(up);
    let up = Up::start(&scope, &config, &data_dir);
    let client = Client {
        url: up.url.clone(),
        ..client
    };
    client.wait_ready(&data_dir).await;
    phase("ready again after kill -9 and restart");
    let (status, after) = client.get("/jobs/stats").await;
    assert_eq!(status, 200);
    for job in &jobs {
        assert_eq!(
            after[&job.name], stats[&job.name],
            "{} after restart",
            job.name
        );
        let (status, state) = client
            .get(&format!("/jobs/{}", JobId::from_name(&job.name)))
            .await;
        assert_eq!(status, 200);
        assert_eq!(state["runs"], states[&job.name]["runs"], "{}", job.name);
    }
    let first = &jobs[0];
    let repo = format!(
        "file://{}",
        data_dir.join("repos").join("service-0").display()
    );
    let run = client.submit(&first.name, &repo, "tree").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, state) = client
            .get(&format!("/jobs/{}", JobId::from_name(&first.name)))
            .await;
        let done = state["runs"].as_array().is_some_and(|runs| {
            runs.iter()
                .any(|r| r["run_id"] == run.as_str() && r["status"] == "SUCCEEDED")
        });
        if done {
            assert_eq!(state["succeeded"], (first.runs.len() + 1) as i64);
            phase("a scan after the restart terminal");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no scan after the restart\n{}",
            log(&data_dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SIGTERM stops everything cleanly.
    let mut up = up;
    let sent = Command::new("kill")
        .args(["-TERM", &up.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            assert!(
                status.success(),
                "up exited with {status}\n{}",
                log(&data_dir)
            );
            phase("stopped by SIGTERM");
            break;
        }
        assert!(Instant::now() < deadline, "up did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The quick start's `up --demo --once`, on the test broker: both demo scans succeed, the stats
/// and the redacted findings are printed (the history scan's removed key among them), no
/// planted secret is printed, and the process exits 0.
#[test]
fn the_demo_scans_its_planted_repository_and_shows_redacted_findings() {
    let scope = TestScope::new("demo");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_scanstream"))
        .args(["--bootstrap", &scope.endpoints.bootstrap_servers])
        .args(["--registry", &scope.endpoints.registry_url])
        .args(["--topic-prefix", &scope.topic_prefix])
        .args([
            "up",
            "--demo",
            "--once",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data_dir)
        .env("SCANSTREAM__TOPICS__PARTITIONS", "2")
        .env("SCANSTREAM__TOPICS__REPLICATION_FACTOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        log(&data_dir)
    );
    for expected in [
        "demo-tree      succeeded",
        "demo-history   succeeded",
        "\"succeeded\": 1",
        "aws-access-key-id",
        "github-pat",
        "slack-webhook-url",
        "stripe-live-key        scripts/release.sh:2",
        "The inventory",
        "(5 items: one per secret",
        "history only",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    // The planted values are in the demo repository's files and history; none is printed.
    let repo = data_dir.join("repos").join("demo");
    let show = Command::new("git")
        .current_dir(&repo)
        .args(["log", "--all", "-p"])
        .output()
        .unwrap();
    let history = String::from_utf8_lossy(&show.stdout);
    let secrets: Vec<&str> = history
        .lines()
        .filter_map(|l| l.strip_prefix('+'))
        .flat_map(|l| l.split(['"', '=', ' ', ':']))
        .filter(|w| w.len() >= 20 && !w.contains("stripe.com"))
        .collect();
    assert!(secrets.len() >= 4, "{history}");
    for secret in secrets {
        assert!(!stdout.contains(secret), "printed in clear: {secret}");
    }
}

/// What the OTLP receiver got: each request's line and headers, and its body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// A local OTLP/HTTP receiver: answers every request 200 and keeps what it got.
fn otlp_receiver() -> (String, Received) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut data = Vec::new();
            let mut chunk = [0u8; 8192];
            // The head, then as much body as Content-Length says.
            let (head, length) = loop {
                let Ok(n) = stream.read(&mut chunk) else {
                    break (String::new(), 0);
                };
                if n == 0 {
                    break (String::new(), 0);
                }
                data.extend_from_slice(&chunk[..n]);
                if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&data[..at]).into_owned();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    data.drain(..at + 4);
                    break (head, length);
                }
            };
            while data.len() < length {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => data.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            kept.lock().unwrap().push((head, data));
        }
    });
    (endpoint, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_are_exported_over_otlp_in_the_request_trace() {
    let scope = TestScope::new("otlp");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (endpoint, received) = otlp_receiver();
    let config = dir.path().join("scanstream.toml");
    std::fs::write(
        &config,
        format!("[telemetry]\notlp_endpoint = \"{endpoint}\"\n"),
    )
    .unwrap();
    let up = Up::start(&scope, &config, &data_dir);
    let client = Client {
        http: reqwest::Client::new(),
        url: up.url.clone(),
        token: up.token(),
    };
    client.wait_ready(&data_dir).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = client
        .http
        .get(format!("{}/jobs/stats", client.url))
        .bearer_auth(&client.token)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // The batch goes out within seconds: OTLP/HTTP protobuf holding the request's trace id.
    let raw_id = hex::decode(trace_id).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = received.lock().unwrap().iter().any(|(head, body)| {
            head.starts_with("POST /v1/traces ")
                && head.to_ascii_lowercase().contains("application/x-protobuf")
                && body.windows(raw_id.len()).any(|w| w == raw_id.as_slice())
        });
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no span of trace {trace_id} exported; received {:?}",
            received
                .lock()
                .unwrap()
                .iter()
                .map(|(head, body)| (head.clone(), body.len()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(up);
}
