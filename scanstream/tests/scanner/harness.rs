//! The scanner tests' harness: repositories with planted secrets, a scope with its topics,
//! `scanstream scanner` processes, and reading what they wrote.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use scanstream_contracts::command::{Command as Cmd, RequestScan, ScanCommand, ScanMode};
use scanstream_contracts::event::{EventPayload, ScanEvent};
use scanstream_contracts::{Codec, JobId, RunId, Topic};
use scanstream_testcontainers::{TestScope, TopicReader, ensure_topics};

use crate::support;

pub const REPOS: usize = 10;
pub const JOBS: usize = 60;

/// One planted secret per repository: (rule, text, secret), each from a different rule.
pub fn plants() -> Vec<(String, String, String)> {
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
pub fn make_repo(root: &Path, index: usize, plant: &str) -> PathBuf {
    let dir = root.join(format!("repo{index}"));
    std::fs::create_dir_all(dir.join("src")).unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("src/settings.txt"), plant).unwrap();
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
        std::fs::write(dir.join("src/generated.rs"), body).unwrap();
        git(&dir, &["add", "-A"]);
        git(&dir, &["commit", "-q", "-m", "generated"]);
    }
    git(&dir, &["checkout", "-q", "main"]);
    dir
}

/// One test's scope of the shared cluster, its topics and schemas, a producer, and a folder for
/// repositories, the scanners' cache and configuration.
pub struct Harness {
    pub scope: TestScope,
    pub codec: Codec,
    producer: FutureProducer,
    reader: TopicReader,
    work: tempfile::TempDir,
    /// Scanner logs; kept after the test for reading after a failure.
    logs: PathBuf,
}

impl Harness {
    pub async fn new(test: &str) -> Harness {
        let scope = TestScope::new(test);
        ensure_topics(&scope.settings("", &[("topics.partitions", "4")])).await;
        let codec = scope.codec();
        codec.register_all().await.unwrap();
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &scope.endpoints.bootstrap_servers)
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        let logs = std::env::temp_dir().join(format!("scanstream-{}", scope.group_id));
        std::fs::create_dir_all(&logs).unwrap();
        eprintln!("scanner logs: {}", logs.display());
        Harness {
            reader: scope.reader(),
            scope,
            codec,
            producer,
            work: tempfile::tempdir().unwrap(),
            logs,
        }
    }

    pub fn repos(&self) -> PathBuf {
        self.work.path().join("repos")
    }

    pub fn cache(&self) -> PathBuf {
        self.work.path().join("cache")
    }

    /// A scanner configuration: this harness's folders plus `scanner` (more `[scanner]` keys)
    /// and `extra` (more tables).
    pub fn config(&self, scanner: &str, extra: &str) -> PathBuf {
        let path = self.work.path().join("scanner.toml");
        let text = format!(
            "[kafka]\nstatistics_interval_ms = 0\n[api]\nlisten = \"127.0.0.1:0\"\nauth_enabled = false\n\
             [ingest]\nfile_roots = [\"{}\"]\n[scanner]\ncache_dir = \"{}\"\n{scanner}\n{extra}\n",
            self.repos().display(),
            self.cache().display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts `scanstream scanner`; its log goes to `<logs>/<name>.log`.
    pub fn spawn(&self, config: &Path, name: &str) -> Child {
        self.spawn_with(config, name, &[], &[])
    }

    /// [`Harness::spawn`] with more settings and environment variables; a later process of the
    /// same `name` appends to its log.
    pub fn spawn_with(
        &self,
        config: &Path,
        name: &str,
        settings: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Child {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{name}.log")))
            .unwrap();
        let mut overrides = vec![
            ("scanner.instance_id", name),
            ("telemetry.log_filter", "warn,scanstream_scanner=debug"),
        ];
        overrides.extend_from_slice(settings);
        let mut child = Command::new(env!("CARGO_BIN_EXE_scanstream"))
            .args(["--config", &config.display().to_string(), "scanner"])
            .envs(self.scope.env(&overrides))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting a scanner");
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
    pub async fn send(&self, key: &str, command: Cmd) {
        let value = ScanCommand {
            command_id: uuid::Uuid::new_v4(),
            issued_at: scanstream_scanner::now_ms(),
            command,
        };
        let bytes = self.codec.encode(Topic::Commands, &value).await.unwrap();
        self.send_raw(key, &bytes).await;
    }

    /// Sends a command record, with the trace headers ingest would give it
    /// ([`COMMAND_TRACEPARENT`], [`CORRELATION_ID`]).
    pub async fn send_raw(&self, key: &str, bytes: &[u8]) {
        let topic = self.scope.names().name(Topic::Commands);
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header {
                key: scanstream_contracts::headers::TRACEPARENT,
                value: Some(COMMAND_TRACEPARENT),
            })
            .insert(rdkafka::message::Header {
                key: scanstream_contracts::headers::CORRELATION_ID,
                value: Some(CORRELATION_ID),
            });
        self.producer
            .send(
                FutureRecord::to(&topic)
                    .key(key)
                    .payload(bytes)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    /// Every record of `topic` so far (read for `wait`, or until `until` holds).
    pub async fn read(
        &self,
        topic: Topic,
        until: impl Fn(&[OwnedMessage]) -> bool,
        wait: Duration,
    ) -> Vec<OwnedMessage> {
        self.reader.read_until(topic, until, wait).await
    }

    pub async fn decode_events(&self, raw: &[OwnedMessage]) -> Vec<ScanEvent> {
        let mut events = Vec::new();
        for m in raw {
            events.push(
                self.codec
                    .decode::<ScanEvent>(m.payload().unwrap_or_default())
                    .await
                    .unwrap(),
            );
        }
        events
    }

    /// Events of `scans.events` once `done` holds of them, or after `timeout`; with their raw
    /// records.
    pub async fn events_until(
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
    pub fn lock_mirror(&self, url: &str) -> std::fs::File {
        let mirrors =
            scanstream_scanner::mirror::Mirrors::new(scanstream_scanner::mirror::MirrorConfig {
                root: self.cache().join("mirrors"),
                fetch_timeout: Duration::from_secs(1),
                lock_timeout: Duration::from_secs(1),
                refetch_after: Duration::ZERO,
                credentials: vec![],
            });
        let lock_path = mirrors.path_for(url).with_extension("lock");
        std::fs::create_dir_all(mirrors.root()).unwrap();
        let lock = std::fs::File::create(&lock_path).unwrap();
        lock.lock().unwrap();
        lock
    }
}

/// The trace context of every command the harness sends: what the scanner writes for it
/// continues this trace (same trace id, a span of its own).
pub const COMMAND_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// The correlation id of every command the harness sends.
pub const CORRELATION_ID: &str = "harness-correlation";

/// A request for job `name` of `url` at `git_ref`.
pub fn request(
    name: &str,
    url: &str,
    git_ref: Option<String>,
    timeout_ms: Option<i64>,
) -> RequestScan {
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
pub fn ended(events: &[ScanEvent], job: JobId) -> bool {
    events.iter().any(|e| {
        e.job_id == job
            && match &e.payload {
                EventPayload::ScanSucceeded(_) | EventPayload::ScanCancelled(_) => true,
                EventPayload::ScanFailed(f) => !f.retryable,
                _ => false,
            }
    })
}
