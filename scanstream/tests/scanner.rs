//! Two `scanstream scanner` processes in one group, sharing one cache folder, against the real
//! broker and registry: 60 jobs over 10 repositories, one scanner killed (SIGKILL) halfway, a
//! poison record and an invalid command. Every job must still end, every attempt must have
//! exactly one terminal event, bad records must land in the DLQ, and no record may hold a
//! planted secret.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use scanstream_contracts::command::{
    CancelScan, Command as Cmd, RequestScan, ScanCommand, ScanMode,
};
use scanstream_contracts::event::{EventPayload, ScanEvent, TERMINAL_SEQUENCE};
use scanstream_contracts::finding::Finding;
use scanstream_contracts::{Codec, JobId, RepoKey, RunId, Topic, TopicNames, headers};
use scanstream_platform::Settings;
use scanstream_platform::config::Sources;
use scanstream_scanner::rules::RulePack;
use scanstream_scanner::secrets::{DEFAULT_FINGERPRINT_KEY, SecretsEngine};
use scanstream_testcontainers::TestScope;

const REPOS: usize = 10;
const JOBS: usize = 60;

#[path = "../../services/scanner/tests/support/mod.rs"]
mod support;

/// One planted secret per repository: (rule, text, secret), each from a different rule.
fn plants() -> Vec<(String, String, String)> {
    let mut seen = BTreeSet::new();
    support::samples()
        .positive
        .into_iter()
        .filter(|p| p.rule != "generic-secret-assignment" && seen.insert(p.rule.clone()))
        .take(REPOS)
        .map(|p| (p.rule, p.text.concat(), p.secret.concat()))
        .collect()
}

fn git(dir: &Path, args: &[&str]) {
    support::git(dir, args, None);
}

/// Branches per repository; job `i` scans branch `b{i / REPOS}` of repository `i % REPOS`.
const BRANCHES: usize = JOBS / REPOS;

/// A repository with a planted secret on `main` and one branch per job, each adding a large
/// file of its own: no job's scan is answered from the result cache, so scans take long enough
/// for a kill to land mid-scan.
fn make_repo(root: &Path, index: usize, plant: &str) -> PathBuf {
    let dir = root.join(format!("repo{index}"));
    std::fs::create_dir_all(dir.join("src")).unwrap_or_else(|e| panic!("{e}"));
    git(&dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("src/settings.txt"), plant).unwrap_or_else(|e| panic!("{e}"));
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "initial"]);
    for branch in 0..BRANCHES {
        git(
            &dir,
            &["checkout", "-q", "-b", &format!("b{branch}"), "main"],
        );
        let body: String = (0..40_000)
            .map(|line| format!("let value_{index}_{branch}_{line} = compute({line}, key);\n"))
            .collect();
        std::fs::write(dir.join("src/generated.rs"), body).unwrap_or_else(|e| panic!("{e}"));
        git(&dir, &["add", "-A"]);
        git(&dir, &["commit", "-q", "-m", "generated"]);
    }
    git(&dir, &["checkout", "-q", "main"]);
    dir
}

/// One test's scope of the shared cluster, its topics and schemas, a producer, and a folder for
/// repositories, the scanners' cache and configuration.
struct Harness {
    scope: TestScope,
    names: TopicNames,
    codec: Codec,
    producer: FutureProducer,
    work: tempfile::TempDir,
    /// Scanner logs; kept after the test for reading after a failure.
    logs: PathBuf,
}

impl Harness {
    async fn new(test: &str) -> Harness {
        let scope = TestScope::new(test);
        let s = Settings::load(Sources {
            env: Some(BTreeMap::new()),
            overrides: vec![
                (
                    "kafka.bootstrap_servers".into(),
                    scope.endpoints.bootstrap_servers.clone(),
                ),
                ("registry.url".into(), scope.endpoints.registry_url.clone()),
                ("topics.prefix".into(), scope.topic_prefix.clone()),
                ("topics.partitions".into(), "4".into()),
                ("topics.replication_factor".into(), "1".into()),
            ],
            ..Sources::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let names = TopicNames::new(s.topics.prefix.clone());
        let factory = scanstream_platform::KafkaFactory::new(s.kafka.clone());
        let admin = factory.admin().unwrap_or_else(|e| panic!("{e}"));
        scanstream_platform::topics::ensure(&admin, &names, &s.topics, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let codec = scanstream_platform::registry::codec(&s).unwrap_or_else(|e| panic!("{e}"));
        codec.register_all().await.unwrap_or_else(|e| panic!("{e}"));
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &scope.endpoints.bootstrap_servers)
            .set("enable.idempotence", "true")
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        let logs = std::env::temp_dir().join(format!("scanstream-{}", scope.group_id));
        std::fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("scanner logs: {}", logs.display());
        Harness {
            scope,
            names,
            codec,
            producer,
            work: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
            logs,
        }
    }

    fn repos(&self) -> PathBuf {
        self.work.path().join("repos")
    }

    fn cache(&self) -> PathBuf {
        self.work.path().join("cache")
    }

    /// A scanner configuration: this harness's folders plus `scanner` (more `[scanner]` keys)
    /// and `extra` (more tables).
    fn config(&self, scanner: &str, extra: &str) -> PathBuf {
        let path = self.work.path().join("scanner.toml");
        let text = format!(
            "[kafka]\nstatistics_interval_ms = 0\n[api]\nlisten = \"127.0.0.1:0\"\nauth_enabled = false\n\
             [ingest]\nfile_roots = [\"{}\"]\n[scanner]\ncache_dir = \"{}\"\n{scanner}\n{extra}\n",
            self.repos().display(),
            self.cache().display()
        );
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    /// Starts `scanstream scanner`; its log goes to `<logs>/<name>.log`.
    fn spawn(&self, config: &Path, name: &str) -> Child {
        let log = std::fs::File::create(self.logs.join(format!("{name}.log")))
            .unwrap_or_else(|e| panic!("{e}"));
        let scope = &self.scope;
        let mut child = Command::new(env!("CARGO_BIN_EXE_scanstream"))
            .args(["--config", &config.display().to_string(), "scanner"])
            .env(
                "SCANSTREAM__KAFKA__BOOTSTRAP_SERVERS",
                &scope.endpoints.bootstrap_servers,
            )
            .env("SCANSTREAM__REGISTRY__URL", &scope.endpoints.registry_url)
            .env("SCANSTREAM__TOPICS__PREFIX", &scope.topic_prefix)
            .env("SCANSTREAM__SCANNER__INSTANCE_ID", name)
            .env(
                "SCANSTREAM__TELEMETRY__LOG_FILTER",
                "warn,scanstream_scanner=debug",
            )
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting a scanner: {e}"));
        // The first stdout line says it listens: it is up.
        if let Some(stdout) = child.stdout.take() {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            assert!(line.contains("listening"), "scanner said {line:?}");
            // Keep reading, so the scanner never writes into a closed pipe.
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        }
        child
    }

    /// Writes a command to `scans.commands` under `key`.
    async fn send(&self, key: &str, command: Cmd) {
        let value = ScanCommand {
            command_id: uuid::Uuid::new_v4(),
            issued_at: scanstream_scanner::now_ms(),
            command,
        };
        let bytes = self
            .codec
            .encode(Topic::Commands, &value)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        self.send_raw(key, &bytes).await;
    }

    async fn send_raw(&self, key: &str, bytes: &[u8]) {
        let topic = self.names.name(Topic::Commands);
        self.producer
            .send(
                FutureRecord::to(&topic).key(key).payload(bytes),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("{e}"));
    }

    /// Every record of `topic` so far (read for `wait`, or until `until` holds).
    async fn read(
        &self,
        topic: Topic,
        until: impl Fn(&[OwnedMessage]) -> bool,
        wait: Duration,
    ) -> Vec<OwnedMessage> {
        let group = format!("read-{}", uuid::Uuid::new_v4().simple());
        drain_topic(&self.scope, &self.names.name(topic), &group, until, wait).await
    }

    async fn decode_events(&self, raw: &[OwnedMessage]) -> Vec<ScanEvent> {
        let mut events = Vec::new();
        for m in raw {
            events.push(
                self.codec
                    .decode::<ScanEvent>(m.payload().unwrap_or_default())
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        events
    }

    /// Events of `scans.events` once `done` holds of them, or after `timeout`; with their raw
    /// records.
    async fn events_until(
        &self,
        done: impl Fn(&[ScanEvent]) -> bool,
        timeout: Duration,
    ) -> (Vec<ScanEvent>, Vec<OwnedMessage>) {
        let until = Instant::now() + timeout;
        loop {
            let raw = self
                .read(Topic::Events, |_| false, Duration::from_secs(2))
                .await;
            let events = self.decode_events(&raw).await;
            if done(&events) || Instant::now() > until {
                return (events, raw);
            }
        }
    }

    /// Holds the exclusive lock of `url`'s mirror, as a long fetch would.
    fn lock_mirror(&self, url: &str) -> std::fs::File {
        let mirrors =
            scanstream_scanner::mirror::Mirrors::new(scanstream_scanner::mirror::MirrorConfig {
                root: self.cache().join("mirrors"),
                fetch_timeout: Duration::from_secs(1),
                lock_timeout: Duration::from_secs(1),
                refetch_after: Duration::ZERO,
                credentials: vec![],
            });
        let lock_path = mirrors.path_for(url).with_extension("lock");
        std::fs::create_dir_all(mirrors.root()).unwrap_or_else(|e| panic!("{e}"));
        let lock = std::fs::File::create(&lock_path).unwrap_or_else(|e| panic!("{e}"));
        lock.lock().unwrap_or_else(|e| panic!("{e}"));
        lock
    }
}

/// A request for job `name` of `url` at `git_ref`.
fn request(name: &str, url: &str, git_ref: Option<String>, timeout_ms: Option<i64>) -> RequestScan {
    let job_id = JobId::from_name(name);
    RequestScan {
        job_id,
        job_name: name.to_owned(),
        run_id: RunId::derived(job_id, "1"),
        repo_url: url.to_owned(),
        git_ref,
        engines: vec!["secrets".into()],
        mode: ScanMode::Tree,
        timeout_ms,
        schedule: None,
        requested_by: Some("test".into()),
    }
}

/// Whether a run's final event is among `events`.
fn ended(events: &[ScanEvent], job: JobId) -> bool {
    events.iter().any(|e| {
        e.job_id == job
            && match &e.payload {
                EventPayload::ScanSucceeded(_) | EventPayload::ScanCancelled(_) => true,
                EventPayload::ScanFailed(f) => !f.retryable,
                _ => false,
            }
    })
}

async fn drain_topic(
    scope: &TestScope,
    topic: &str,
    group: &str,
    until: impl Fn(&[OwnedMessage]) -> bool,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &scope.endpoints.bootstrap_servers)
        .set("group.id", format!("{}-{group}", scope.group_id))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while !until(&out) && Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            out.push(m.detach());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_scanners_survive_a_kill_and_every_attempt_ends_once() {
    let h = Harness::new("scanner-group").await;
    let plants = plants();
    assert_eq!(plants.len(), REPOS);
    let urls: Vec<String> = plants
        .iter()
        .enumerate()
        .map(|(i, (_, text, _))| format!("file://{}", make_repo(&h.repos(), i, text).display()))
        .collect();
    let config = h.config(
        "concurrency = 2\nqueue_max = 2\nretry_backoff_ms = 200\ndrain_timeout_seconds = 2",
        "[kafka.extra]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"",
    );
    let mut a = h.spawn(&config, "scanner-a");
    let mut b = h.spawn(&config, "scanner-b");

    // 60 jobs, a poison record, and a decodable command that names an unknown engine.
    let mut expected: HashMap<JobId, usize> = HashMap::new();
    let mut requests = Vec::new();
    for i in 0..JOBS {
        let cmd = request(
            &format!("job-{i}"),
            &urls[i % REPOS],
            Some(format!("b{}", i / REPOS)),
            None,
        );
        expected.insert(cmd.job_id, i % REPOS);
        requests.push(cmd);
    }
    let mut invalid = request("job-invalid", &urls[0], None, None);
    invalid.engines = vec!["no-such-engine".into()];
    requests.insert(JOBS / 2, invalid.clone());
    for cmd in requests {
        let key = RepoKey::from_normalized(&cmd.repo_url);
        h.send(key.as_str(), Cmd::RequestScan(cmd)).await;
    }
    h.send_raw("poison", b"\x00\x00\x00\x00\x01 not avro at all")
        .await;

    // Kill scanner A while it has work in flight: once it wrote the events of a few jobs (a job
    // writes four; the producer's name is in each event's bytes), it still holds queued and
    // running commands.
    let by_a = |messages: &[OwnedMessage]| {
        messages
            .iter()
            .filter(|m| {
                m.payload()
                    .is_some_and(|p| p.windows(9).any(|w| w == b"scanner-a"))
            })
            .count()
    };
    let seen = h
        .read(Topic::Events, |m| by_a(m) >= 8, Duration::from_secs(120))
        .await;
    assert!(by_a(&seen) >= 8, "scanner A made no progress");
    a.kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = a.wait();

    // Every job (and the invalid one) must reach a final terminal event.
    let all_ended = |events: &[ScanEvent]| {
        expected.keys().all(|job| ended(events, *job)) && ended(events, invalid.job_id)
    };
    let (events, raw_events) = h.events_until(all_ended, Duration::from_secs(60)).await;
    let _ = b.kill();
    let _ = b.wait();
    for job in expected.keys() {
        let history: Vec<String> = events
            .iter()
            .filter(|e| e.job_id == *job)
            .map(|e| {
                format!(
                    "{}/{} {:?} by {:?}",
                    e.attempt, e.sequence, e.payload, e.producer
                )
            })
            .collect();
        assert!(ended(&events, *job), "job {job} never ended: {history:#?}");
    }
    assert!(
        ended(&events, invalid.job_id),
        "the invalid command got no ScanFailed"
    );

    // Exactly one terminal event (by id) per attempt, and every started attempt has one.
    let mut terminals: HashMap<(JobId, i32), BTreeSet<uuid::Uuid>> = HashMap::new();
    let mut started: BTreeSet<(JobId, i32)> = BTreeSet::new();
    for e in &events {
        if e.sequence == TERMINAL_SEQUENCE {
            terminals
                .entry((e.job_id, e.attempt))
                .or_default()
                .insert(e.event_id.0);
        }
        if matches!(e.payload, EventPayload::ScanStarted(_)) {
            started.insert((e.job_id, e.attempt));
        }
    }
    for (attempt, ids) in &terminals {
        assert_eq!(
            ids.len(),
            1,
            "attempt {attempt:?} has {} terminal events",
            ids.len()
        );
    }
    for attempt in &started {
        assert!(
            terminals.contains_key(attempt),
            "attempt {attempt:?} never ended"
        );
    }
    let interrupted = events
        .iter()
        .filter(|e| matches!(&e.payload, EventPayload::ScanFailed(f) if f.error_kind == "interrupted" || f.error_kind == "handed_over"))
        .count();
    let mut by_scanner: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        *by_scanner
            .entry(e.producer.clone().unwrap_or_default())
            .or_default() += 1;
    }
    eprintln!(
        "{} events, {} attempts, {} closed after the kill, events by scanner {by_scanner:?}",
        events.len(),
        terminals.len(),
        interrupted
    );

    // Findings: each succeeded job's last attempt reports its repository's planted secret.
    let raw_findings = h
        .read(Topic::Findings, |_| false, Duration::from_secs(3))
        .await;
    let engine = SecretsEngine::new(
        RulePack::builtin().unwrap_or_else(|e| panic!("{e}")),
        DEFAULT_FINGERPRINT_KEY.as_bytes(),
    );
    let mut fingerprints: HashMap<JobId, BTreeSet<String>> = HashMap::new();
    for m in &raw_findings {
        let finding: Finding = h
            .codec
            .decode(m.payload().unwrap_or_default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        fingerprints
            .entry(finding.job_id)
            .or_default()
            .insert(finding.fingerprint);
    }
    for (job, repo) in &expected {
        let (rule, _, secret) = &plants[*repo];
        let want = engine.fingerprint(rule, secret.as_bytes());
        assert!(
            fingerprints.get(job).is_some_and(|f| f.contains(&want)),
            "job {job} lacks the {rule} finding"
        );
    }

    // The poison record and the invalid command are in the DLQ, with reasons.
    let dlq = h
        .read(
            Topic::CommandsDlq,
            |m| m.len() >= 2,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(dlq.len(), 2, "DLQ holds {} records", dlq.len());
    let kinds: BTreeSet<String> = dlq
        .iter()
        .filter_map(|m| {
            m.headers()?
                .iter()
                .find(|h| h.key == headers::DLQ_ERROR_KIND)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["undecodable".to_owned(), "invalid_command".to_owned()])
    );

    // No record the scanners wrote holds a planted secret, in key, value or headers.
    for m in raw_events.iter().chain(&raw_findings).chain(&dlq) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(m.key().unwrap_or_default());
        bytes.extend_from_slice(m.payload().unwrap_or_default());
        if let Some(h) = m.headers() {
            for header in h.iter() {
                bytes.extend_from_slice(header.value.unwrap_or_default());
            }
        }
        for (_, _, secret) in &plants {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a record on {} holds a planted secret",
                m.topic()
            );
        }
    }
}

/// Every way a run can end besides success, against one scanner: a deadline, a cancel, a
/// repository that does not exist (permanent), and a mirror that stays locked (retried with
/// backoff until the attempts run out, each attempt visible).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_cancels_and_failures_end_their_runs_with_visible_attempts() {
    let h = Harness::new("scanner-endings").await;
    let (_, text, _) = plants().remove(0);
    let url = format!("file://{}", make_repo(&h.repos(), 0, &text).display());
    let locked_url = format!("file://{}", make_repo(&h.repos(), 1, &text).display());
    let config = h.config(
        "lock_timeout_seconds = 1\nmax_attempts = 3\nretry_backoff_ms = 100",
        "",
    );
    let lock = h.lock_mirror(&locked_url);

    let deadline = request("deadline", &url, None, Some(1));
    let cancelled = request("cancelled", &url, None, None);
    let missing_url = format!("file://{}", h.repos().join("no-such-repo").display());
    let missing = request("missing", &missing_url, None, None);
    let busy = request("busy", &locked_url, None, None);
    h.send(
        &url,
        Cmd::CancelScan(CancelScan {
            job_id: cancelled.job_id,
            run_id: Some(cancelled.run_id.0),
            reason: Some("changed my mind".into()),
            requested_by: None,
        }),
    )
    .await;
    for r in [&deadline, &cancelled, &missing, &busy] {
        h.send(&r.repo_url, Cmd::RequestScan(r.clone())).await;
    }
    let mut scanner = h.spawn(&config, "scanner");
    let jobs = [
        deadline.job_id,
        cancelled.job_id,
        missing.job_id,
        busy.job_id,
    ];
    let (events, _) = h
        .events_until(
            |e| jobs.iter().all(|job| ended(e, *job)),
            Duration::from_secs(90),
        )
        .await;
    let _ = scanner.kill();
    let _ = scanner.wait();
    drop(lock);
    let terminals = |job: JobId| -> Vec<(i32, String, bool)> {
        let mut out: Vec<(i32, String, bool)> = events
            .iter()
            .filter(|e| e.job_id == job && e.sequence == TERMINAL_SEQUENCE)
            .map(|e| match &e.payload {
                EventPayload::ScanFailed(f) => (e.attempt, f.error_kind.clone(), f.retryable),
                EventPayload::ScanCancelled(_) => (e.attempt, "cancelled".into(), false),
                EventPayload::ScanSucceeded(_) => (e.attempt, "succeeded".into(), false),
                other => panic!("{other:?} at the terminal sequence"),
            })
            .collect();
        out.sort();
        out.dedup();
        out
    };
    assert_eq!(
        terminals(deadline.job_id),
        vec![(1, "deadline".into(), false)]
    );
    assert_eq!(
        terminals(cancelled.job_id),
        vec![(1, "cancelled".into(), false)]
    );
    assert_eq!(terminals(missing.job_id), vec![(1, "fetch".into(), false)]);
    assert_eq!(
        terminals(busy.job_id),
        vec![
            (1, "mirror_busy".into(), true),
            (2, "mirror_busy".into(), true),
            (3, "mirror_busy".into(), false),
        ]
    );
    let reason = events.iter().find_map(|e| match &e.payload {
        EventPayload::ScanCancelled(c) if e.job_id == cancelled.job_id => c.reason.clone(),
        _ => None,
    });
    assert_eq!(reason.as_deref(), Some("changed my mind"));
}

/// A cancel reaches a running scan even while the scanner's partitions are paused: the scan waits
/// on a locked mirror, two more commands of the same repository fill the queue (so the partition
/// is paused and the cancel behind them cannot be read by the group consumer), and the cancel
/// still ends the scan within moments, long before the lock wait would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_a_running_scan_while_its_partition_is_paused() {
    let h = Harness::new("scanner-cancel").await;
    let (_, text, _) = plants().remove(0);
    let url = format!("file://{}", make_repo(&h.repos(), 0, &text).display());
    let config = h.config(
        "concurrency = 1\nqueue_max = 1\nlock_timeout_seconds = 120",
        "",
    );
    let lock = h.lock_mirror(&url);
    let jobs: Vec<RequestScan> = ["blocked", "queued-1", "queued-2"]
        .iter()
        .map(|name| request(name, &url, None, None))
        .collect();
    for job in &jobs {
        h.send(&url, Cmd::RequestScan(job.clone())).await;
    }
    let mut scanner = h.spawn(&config, "scanner");

    // The first scan is running (waiting for the mirror) once it has written ScanStarted.
    let started = |e: &[ScanEvent]| {
        e.iter().any(|e| {
            e.job_id == jobs[0].job_id && matches!(e.payload, EventPayload::ScanStarted(_))
        })
    };
    let (events, _) = h.events_until(started, Duration::from_secs(60)).await;
    assert!(started(&events), "the first scan did not start");
    // Let the consumer read the other two commands and pause the partition.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cancelled_at = Instant::now();
    h.send(
        &url,
        Cmd::CancelScan(CancelScan {
            job_id: jobs[0].job_id,
            run_id: None,
            reason: Some("stop it".into()),
            requested_by: None,
        }),
    )
    .await;
    let (events, _) = h
        .events_until(|e| ended(e, jobs[0].job_id), Duration::from_secs(60))
        .await;
    let took = cancelled_at.elapsed();
    assert!(
        events
            .iter()
            .any(|e| e.job_id == jobs[0].job_id
                && matches!(e.payload, EventPayload::ScanCancelled(_))),
        "the running scan was not cancelled"
    );
    assert!(took < Duration::from_secs(30), "the cancel took {took:?}");
    // The queued scans of the same repository were not cancelled: they run once the lock goes.
    drop(lock);
    let succeeded = |events: &[ScanEvent]| {
        jobs[1..].iter().all(|job| {
            events.iter().any(|e| {
                e.job_id == job.job_id && matches!(e.payload, EventPayload::ScanSucceeded(_))
            })
        })
    };
    let (events, _) = h.events_until(succeeded, Duration::from_secs(60)).await;
    let _ = scanner.kill();
    let _ = scanner.wait();
    assert!(
        succeeded(&events),
        "the queued scans did not run after the cancel"
    );
}
