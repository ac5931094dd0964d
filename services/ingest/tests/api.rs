//! The ingest API against the real broker and registry: each test spawns its own app on port 0
//! with its own topic prefix.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use scanstream_contracts::command::{Command, ScanCommand, ScanMode};
use scanstream_contracts::event::{EventPayload, ScanEvent};
use scanstream_contracts::schedule::Schedule;
use scanstream_contracts::{Codec, JobId, RegistryConfig, Topic, TopicNames};
use scanstream_ingest::Application;
use scanstream_platform::Settings;
use scanstream_platform::config::Sources;
use scanstream_platform::kafka::KafkaFactory;
use scanstream_testcontainers::{Endpoints, TestScope};
use tokio_util::sync::CancellationToken;

struct TestApp {
    base: String,
    names: TopicNames,
    settings: Settings,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    http: reqwest::Client,
    _config: tempfile::NamedTempFile,
}

const PARTITIONS: i32 = 2;

fn settings_for(
    endpoints: &Endpoints,
    prefix: &str,
    toml: &str,
) -> (Settings, tempfile::NamedTempFile) {
    let file = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
    // Auth is off (loopback) unless the test configures it.
    let toml = if toml.contains("[api]") {
        toml.to_owned()
    } else {
        format!("[api]\nauth_enabled = false\n{toml}")
    };
    std::fs::write(file.path(), toml).unwrap_or_else(|e| panic!("{e}"));
    let settings = Settings::load(Sources {
        files: vec![file.path()],
        env: Some(BTreeMap::new()),
        overrides: vec![
            (
                "kafka.bootstrap_servers".into(),
                endpoints.bootstrap_servers.clone(),
            ),
            ("kafka.statistics_interval_ms".into(), "0".into()),
            ("registry.url".into(), endpoints.registry_url.clone()),
            ("topics.prefix".into(), prefix.to_owned()),
            ("topics.partitions".into(), PARTITIONS.to_string()),
            ("topics.replication_factor".into(), "1".into()),
            ("api.listen".into(), "127.0.0.1:0".into()),
        ],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    (settings, file)
}

async fn ensure_topics(settings: &Settings) {
    let factory = KafkaFactory::new(settings.kafka.clone());
    let admin = factory.admin().unwrap_or_else(|e| panic!("{e}"));
    let names = TopicNames::new(settings.topics.prefix.clone());
    scanstream_platform::topics::ensure(&admin, &names, &settings.topics, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// An app on the shared cluster, auth off unless `toml` configures it, ready to accept.
async fn spawn_app(test: &str, toml: &str) -> TestApp {
    let scope = TestScope::new(test);
    spawn_on(&scope.endpoints, &scope.topic_prefix, toml, true).await
}

async fn spawn_on(endpoints: &Endpoints, prefix: &str, toml: &str, wait_ready: bool) -> TestApp {
    let (settings, file) = settings_for(endpoints, prefix, toml);
    if wait_ready {
        ensure_topics(&settings).await;
    }
    let metrics =
        scanstream_platform::telemetry::metrics_handle().unwrap_or_else(|e| panic!("{e}"));
    let app = Application::build(&settings, metrics)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            let _ = app.run_until_stopped(stop).await;
        }
    });
    let http = reqwest::Client::new();
    if wait_ready {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if matches!(ready, Ok(200)) {
                break;
            }
            assert!(Instant::now() < deadline, "ingest never became ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    TestApp {
        base,
        names: TopicNames::new(prefix.to_owned()),
        settings,
        stop,
        task,
        http,
        _config: file,
    }
}

impl TestApp {
    async fn post(&self, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/jobs", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn codec(&self) -> Codec {
        Codec::new(
            RegistryConfig {
                url: self.settings.registry.url.clone(),
                username: None,
                password: None,
                timeout: Duration::from_secs(10),
            },
            self.names.clone(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn consumer(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.settings.kafka.bootstrap_servers)
            .set("group.id", "unused")
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The partitions of a topic (scans.schedules has one, the data topics PARTITIONS).
    fn partitions(&self, consumer: &BaseConsumer, topic: Topic) -> Vec<i32> {
        let name = self.names.name(topic);
        let metadata = consumer
            .fetch_metadata(Some(&name), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
        metadata.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.id())
            .collect()
    }

    /// Sum of high watermarks of a topic: unchanged means nothing was written.
    fn watermark(&self, topic: Topic) -> i64 {
        let consumer = self.consumer();
        self.partitions(&consumer, topic)
            .into_iter()
            .map(|p| {
                consumer
                    .fetch_watermarks(&self.names.name(topic), p, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("{e}"))
                    .1
            })
            .sum()
    }

    /// Every committed record of a topic.
    fn read_all(&self, topic: Topic) -> Vec<OwnedMessage> {
        let consumer = self.consumer();
        let name = self.names.name(topic);
        let mut list = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for p in self.partitions(&consumer, topic) {
            list.add_partition_offset(&name, p, Offset::Beginning)
                .unwrap_or_else(|e| panic!("{e}"));
            let (_, high) = consumer
                .fetch_watermarks(&name, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{e}"));
            ends.insert(p, high);
        }
        consumer.assign(&list).unwrap_or_else(|e| panic!("{e}"));
        let done = |consumer: &BaseConsumer| -> bool {
            let Ok(position) = consumer.position() else {
                return false;
            };
            ends.iter().all(|(p, end)| {
                *end == 0
                    || position
                        .find_partition(&name, *p)
                        .and_then(|e| e.offset().to_raw())
                        .is_some_and(|o| o >= *end)
            })
        };
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done(&consumer) && Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                out.push(message.detach());
            }
        }
        out
    }

    async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
}

#[tokio::test]
async fn a_post_writes_its_command_and_event_and_they_decode_to_what_was_sent() {
    let app = spawn_app("post", "").await;
    let response = app
        .post(r#"{"name": "payments-api", "repo": "git@git.example.com:team/payments.git", "ref": "main", "engines": ["secrets"], "mode": "history"}"#)
        .await;
    assert_eq!(response.status().as_u16(), 202);
    let location = response.headers()["location"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let correlation = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let body: serde_json::Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
    let job = JobId::from_name("payments-api");
    assert_eq!(body["uuid"], job.to_string());
    assert_eq!(body["name"], "payments-api");
    assert_eq!(body["status"], "queued");
    assert_eq!(location, format!("/jobs/{job}"));

    let codec = app.codec();
    let commands = app.read_all(Topic::Commands);
    assert_eq!(commands.len(), 1);
    let command: ScanCommand = codec
        .decode(commands[0].payload().unwrap_or_default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        commands[0].key(),
        Some(&b"ssh://git@git.example.com/team/payments.git"[..])
    );
    let Command::RequestScan(request) = command.command else {
        panic!("not a RequestScan")
    };
    assert_eq!(request.job_id, job);
    assert_eq!(request.job_name, "payments-api");
    assert_eq!(
        request.repo_url,
        "ssh://git@git.example.com/team/payments.git"
    );
    assert_eq!(request.git_ref.as_deref(), Some("main"));
    assert_eq!(request.engines, ["secrets"]);
    assert_eq!(request.mode, ScanMode::History);
    assert_eq!(request.run_id.to_string(), body["run_id"]);

    let events = app.read_all(Topic::Events);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key(), Some(job.key().as_bytes()));
    let event: ScanEvent = codec
        .decode(events[0].payload().unwrap_or_default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (event.job_id, event.run_id, event.attempt, event.sequence),
        (job, request.run_id, 0, 0)
    );
    let EventPayload::JobSubmitted(submitted) = event.payload else {
        panic!("not JobSubmitted")
    };
    assert_eq!(submitted.repo_url, request.repo_url);
    for message in [&commands[0], &events[0]] {
        assert_eq!(
            header(message, "correlation-id").as_deref(),
            Some(correlation.as_str())
        );
        assert!(
            header(message, "traceparent").is_some_and(|t| t.starts_with("00-") && t.len() == 55)
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn the_seed_job_manager_requests_work_unchanged() {
    let app = spawn_app(
        "seed",
        "[ingest]\nrepo_template = \"https://git.example.com/{name}.git\"\n",
    )
    .await;
    // curl --location --request POST '…/jobs' --header 'Content-Type: application/json' --data-raw '{"name": "test10"}'
    let response = app.post("{\n    \"name\": \"test10\"\n}").await;
    assert_eq!(response.status().as_u16(), 202);
    let body: serde_json::Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["uuid"], JobId::from_name("test10").to_string());
    // Posting the same name again queues another run of the same job.
    let again: serde_json::Value = app
        .post(r#"{"name": "test10"}"#)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again["uuid"], body["uuid"]);
    assert_ne!(again["run_id"], body["run_id"]);
    let commands = app.read_all(Topic::Commands);
    assert_eq!(commands.len(), 2);
    assert_eq!(
        commands[0].key(),
        Some(&b"https://git.example.com/test10.git"[..])
    );
    // curl --location --request GET '…/health_check'
    let health = app
        .http
        .get(format!("{}/health_check", app.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(health.status().as_u16(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_problem_bodies_and_write_nothing() {
    let app = spawn_app("bad", "").await;
    // One good request first, so the topics hold something the rejections must not add to.
    let ok = app
        .post(r#"{"name": "ok", "repo": "https://git.example.com/ok.git"}"#)
        .await;
    assert_eq!(ok.status().as_u16(), 202);
    let commands_before = app.watermark(Topic::Commands);
    let events_before = app.watermark(Topic::Events);

    let repo = "https://git.example.com/r.git";
    let long_name = "a".repeat(64);
    let huge = format!(
        r#"{{"name": "big", "repo": "{repo}", "ref": "{}"}}"#,
        "x".repeat(70_000)
    );
    /// (content type, body, status, field, rule)
    type Case<'a> = (
        Option<&'a str>,
        String,
        u16,
        Option<&'a str>,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (None, r#"{"name": "a"}"#.into(), 415, None, None),
        (
            Some("text/plain"),
            r#"{"name": "a"}"#.into(),
            415,
            None,
            None,
        ),
        (
            Some("application/json"),
            "{".into(),
            400,
            None,
            Some("json-syntax"),
        ),
        (
            Some("application/json"),
            "".into(),
            400,
            None,
            Some("json-syntax"),
        ),
        (
            Some("application/json"),
            "[]".into(),
            400,
            None,
            Some("type"),
        ),
        (
            Some("application/json"),
            format!(r#"{{"repo": "{repo}"}}"#),
            400,
            Some("name"),
            Some("required"),
        ),
        (
            Some("application/json"),
            format!(r#"{{"name": "", "repo": "{repo}"}}"#),
            400,
            Some("name"),
            Some("required"),
        ),
        (
            Some("application/json"),
            format!(r#"{{"name": "Test10", "repo": "{repo}"}}"#),
            400,
            Some("name"),
            Some("kubernetes-name"),
        ),
        (
            Some("application/json"),
            format!(r#"{{"name": "{long_name}", "repo": "{repo}"}}"#),
            400,
            Some("name"),
            Some("kubernetes-name"),
        ),
        (
            Some("application/json"),
            format!(r#"{{"name": "a_b", "repo": "{repo}"}}"#),
            400,
            Some("name"),
            Some("kubernetes-name"),
        ),
        (
            Some("application/json"),
            format!(r#"{{"name": "ab-", "repo": "{repo}"}}"#),
            400,
            Some("name"),
            Some("kubernetes-name"),
        ),
        (
            Some("application/json"),
            r#"{"name": 5}"#.into(),
            400,
            None,
            Some("type"),
        ),
        (
            Some("application/json"),
            format!(r#"{{"name": "a", "repo": "{repo}", "nmae": "b"}}"#),
            400,
            Some("nmae"),
            Some("unknown-field"),
        ),
        (
            Some("application/json"),
            r#"{"name": "a"}"#.into(),
            400,
            Some("repo"),
            Some("required"),
        ),
        (
            Some("application/json"),
            r#"{"name": "a", "repo": "http://git.example.com/r.git"}"#.into(),
            400,
            Some("repo"),
            Some("scheme"),
        ),
        (
            Some("application/json"),
            r#"{"name": "a", "repo": "https://bob:hunter2@git.example.com/r.git"}"#.into(),
            400,
            Some("repo"),
            Some("no-credentials"),
        ),
        (
            Some("application/json"),
            r#"{"name": "a", "repo": "file:///etc/passwd"}"#.into(),
            400,
            Some("repo"),
            Some("file-root"),
        ),
        (
            Some("application/json"),
            r#"{"name": "a", "repo": "https://git.example.com/a/../../b"}"#.into(),
            400,
            Some("repo"),
            Some("path-traversal"),
        ),
        (
            Some("application/json"),
            r#"{"name": "a", "repo": "https://127.0.0.1/r.git"}"#.into(),
            400,
            Some("repo"),
            Some("private-address"),
        ),
        (
            Some("application/json"),
            r#"{"name": "a", "repo": "https://169.254.169.254/latest/meta-data"}"#.into(),
            400,
            Some("repo"),
            Some("private-address"),
        ),
        (
            Some("application/json"),
            r#"{"name": "a", "repo": "ssh://git@localhost/r.git"}"#.into(),
            400,
            Some("repo"),
            Some("private-address"),
        ),
        (
            Some("application/json"),
            r#"{"name": "a", "repo": "https://[::1]/r.git"}"#.into(),
            400,
            Some("repo"),
            Some("private-address"),
        ),
        (
            Some("application/json"),
            r#"{"name": "a", "repo": "not a url"}"#.into(),
            400,
            Some("repo"),
            Some("url-form"),
        ),
        (
            Some("application/json"),
            r#"{"name": "a", "repo": "https://git.example.com/r.git?x=1"}"#.into(),
            400,
            Some("repo"),
            Some("url-form"),
        ),
        (
            Some("application/json"),
            format!(r#"{{"name": "a", "repo": "{repo}", "ref": "a..b"}}"#),
            400,
            Some("ref"),
            Some("git-ref"),
        ),
        (
            Some("application/json"),
            format!(r#"{{"name": "a", "repo": "{repo}", "ref": "-rf"}}"#),
            400,
            Some("ref"),
            Some("git-ref"),
        ),
        (
            Some("application/json"),
            format!(r#"{{"name": "a", "repo": "{repo}", "engines": ["nope"]}}"#),
            400,
            Some("engines"),
            Some("known-engine"),
        ),
        (
            Some("application/json"),
            format!(r#"{{"name": "a", "repo": "{repo}", "engines": []}}"#),
            400,
            Some("engines"),
            Some("required"),
        ),
        (
            Some("application/json"),
            format!(r#"{{"name": "a", "repo": "{repo}", "engines": ["secrets", "secrets"]}}"#),
            400,
            Some("engines"),
            Some("unique"),
        ),
        (
            Some("application/json"),
            format!(r#"{{"name": "a", "repo": "{repo}", "mode": "deep"}}"#),
            400,
            Some("mode"),
            Some("enum"),
        ),
        (Some("application/json"), huge, 413, None, None),
    ];
    assert!(cases.len() >= 25);
    for (content_type, body, status, field, rule) in &cases {
        let mut request = app
            .http
            .post(format!("{}/jobs", app.base))
            .body(body.clone());
        if let Some(ct) = content_type {
            request = request.header("content-type", *ct);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        let shown: String = body.chars().take(80).collect();
        assert_eq!(response.status().as_u16(), *status, "{shown}");
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{shown}"
        );
        let problem: serde_json::Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(problem["status"], *status, "{shown}");
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{shown}"
        );
        assert!(
            !problem.to_string().contains("hunter2"),
            "a credential was echoed"
        );
        if let Some(field) = field {
            assert_eq!(problem["field"], *field, "{shown}: {problem}");
        }
        if let Some(rule) = rule {
            assert_eq!(problem["rule"], *rule, "{shown}: {problem}");
        }
    }
    // Other routes' bad input.
    let bad_key = app
        .http
        .post(format!("{}/jobs", app.base))
        .header("content-type", "application/json")
        .header("idempotency-key", "has space")
        .body(format!(r#"{{"name": "a", "repo": "{repo}"}}"#))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bad_key.status().as_u16(), 400);
    let bad_uuid = app
        .http
        .delete(format!("{}/jobs/not-a-uuid", app.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bad_uuid.status().as_u16(), 400);
    let unknown = app
        .http
        .get(format!("{}/nope", app.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unknown.status().as_u16(), 404);
    let wrong_method = app
        .http
        .put(format!("{}/jobs", app.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wrong_method.status().as_u16(), 405);

    assert_eq!(
        app.watermark(Topic::Commands),
        commands_before,
        "a rejected request wrote a command"
    );
    assert_eq!(
        app.watermark(Topic::Events),
        events_before,
        "a rejected request wrote an event"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn tokens_and_scopes_are_enforced() {
    use scanstream_platform::auth::hash_token;
    let toml = format!(
        "[api]\nauth_enabled = true\n[[api.tokens]]\nname = \"ci\"\nsha256 = \"{}\"\nscopes = [\"scans:write\"]\n[[api.tokens]]\nname = \"dashboard\"\nsha256 = \"{}\"\nscopes = [\"scans:read\"]\n",
        hash_token("write-token"),
        hash_token("read-token")
    );
    let app = spawn_app("auth", &toml).await;
    let body = r#"{"name": "authed", "repo": "https://git.example.com/a.git"}"#;
    let send = |token: Option<&'static str>| {
        let mut request = app
            .http
            .post(format!("{}/jobs", app.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            request = request.header("authorization", t);
        }
        request.send()
    };
    let none = send(None).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(none.status().as_u16(), 401);
    assert_eq!(
        none.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    assert_eq!(
        send(Some("Bearer wrong"))
            .await
            .map(|r| r.status().as_u16())
            .ok(),
        Some(401)
    );
    assert_eq!(
        send(Some("Basic d3JpdGU="))
            .await
            .map(|r| r.status().as_u16())
            .ok(),
        Some(401)
    );
    let forbidden = send(Some("Bearer read-token"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(forbidden.status().as_u16(), 403);
    let problem: serde_json::Value = forbidden.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(problem["type"], "/problems/forbidden");
    assert_eq!(app.watermark(Topic::Commands), 0);
    let ok = send(Some("Bearer write-token"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.status().as_u16(), 202);
    let events = app.read_all(Topic::Events);
    let event: ScanEvent = app
        .codec()
        .decode(events[0].payload().unwrap_or_default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let EventPayload::JobSubmitted(submitted) = event.payload else {
        panic!("not JobSubmitted")
    };
    assert_eq!(submitted.requested_by.as_deref(), Some("ci"));
    // Probes and metrics need no token.
    for path in [
        "/health_check",
        "/livez",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        let r = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn an_idempotency_key_replays_the_answer_and_writes_nothing_new() {
    let app = spawn_app("idempotency", "").await;
    let send = |key: &'static str, body: &'static str| {
        app.http
            .post(format!("{}/jobs", app.base))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body)
            .send()
    };
    let body = r#"{"name": "idem", "repo": "https://git.example.com/i.git"}"#;
    let first = send("key-1", body).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.status().as_u16(), 202);
    let first_body = first.text().await.unwrap_or_default();
    let second = send("key-1", body).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second.status().as_u16(), 202);
    assert_eq!(
        second
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(second.text().await.unwrap_or_default(), first_body);
    let other_body = send(
        "key-1",
        r#"{"name": "idem2", "repo": "https://git.example.com/i.git"}"#,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(other_body.status().as_u16(), 422);
    assert_eq!(app.read_all(Topic::Commands).len(), 1);
    assert_eq!(app.read_all(Topic::Events).len(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn cancel_reaches_every_command_partition() {
    let app = spawn_app("cancel", "").await;
    let job = JobId::from_name("to-cancel");
    let response = app
        .http
        .delete(format!("{}/jobs/{job}", app.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 202);
    let commands = app.read_all(Topic::Commands);
    let mut partitions: Vec<i32> = commands.iter().map(|m| m.partition()).collect();
    partitions.sort();
    assert_eq!(partitions, (0..PARTITIONS).collect::<Vec<_>>());
    for message in &commands {
        let command: ScanCommand = app
            .codec()
            .decode(message.payload().unwrap_or_default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(command.command, Command::CancelScan(ref c) if c.job_id == job));
    }
    assert_eq!(app.watermark(Topic::Events), 0);
    app.shutdown().await;
}

#[tokio::test]
async fn every_documented_route_answers_and_metrics_parse() {
    let app = spawn_app("routes", "").await;
    let doc: serde_json::Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Paths in document order (`/jobs/schedule` is created before `/jobs/schedule/{name}` is
    // read, changed and deleted); methods in create, read, change, delete order.
    for (path, item) in doc["paths"].as_object().unwrap_or_else(|| panic!("paths")) {
        let item = item.as_object().unwrap_or_else(|| panic!("item"));
        for method in ["post", "get", "put", "patch", "delete"] {
            if !item.contains_key(method) {
                continue;
            }
            let url = format!(
                "{}{}",
                app.base,
                path.replace("{uuid}", &JobId::from_name("x").to_string())
                    .replace("{name}", "route")
            );
            let body = r#"{"name": "route", "repo": "https://git.example.com/r.git"}"#;
            let json = |request: reqwest::RequestBuilder, body: &str| {
                request
                    .header("content-type", "application/json")
                    .body(body.to_owned())
            };
            let request = match method {
                "get" => app.http.get(&url),
                "post" => json(app.http.post(&url), body),
                "put" => json(app.http.put(&url), body),
                "patch" => json(app.http.patch(&url), r#"{"suspend": true}"#),
                _ => app.http.delete(&url),
            };
            let status = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .status()
                .as_u16();
            assert!(status < 300, "{method} {path}: {status}");
        }
    }
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    assert!(
        metrics.contains("scanstream_http_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scanstream_ingest_batch_size"),
        "{metrics}"
    );
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "not Prometheus text: {line}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_broker_means_503_within_the_bound() {
    let scope = TestScope::new("unreachable");
    let endpoints = Endpoints {
        bootstrap_servers: "127.0.0.1:1".into(),
        registry_url: scope.endpoints.registry_url.clone(),
    };
    let app = spawn_on(
        &endpoints,
        &scope.topic_prefix,
        "[ingest]\nwrite_timeout_ms = 2000\n",
        false,
    )
    .await;
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ready.status().as_u16(), 503);
    for _ in 0..3 {
        let started = Instant::now();
        let response = app
            .post(r#"{"name": "x", "repo": "https://git.example.com/x.git"}"#)
            .await;
        assert_eq!(response.status().as_u16(), 503);
        assert!(response.headers().contains_key("retry-after"));
        assert!(
            started.elapsed() < Duration::from_millis(3000),
            "took {:?}",
            started.elapsed()
        );
    }
    app.shutdown().await;
}

/// A broker that dies under a running service: requests get 503 within the bound, never 202.
#[tokio::test]
async fn a_broker_stopped_mid_flight_gives_503_and_never_202() {
    use scanstream_testcontainers::{LocalCluster, LocalOptions};
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut cluster = LocalCluster::start(LocalOptions::ephemeral(dir.path().to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let endpoints = cluster.endpoints().clone();
    let app = spawn_on(&endpoints, "", "[ingest]\nwrite_timeout_ms = 2000\n", true).await;
    let ok = app
        .post(r#"{"name": "before", "repo": "https://git.example.com/b.git"}"#)
        .await;
    assert_eq!(ok.status().as_u16(), 202);

    cluster.kill_kafka();
    for i in 0..4 {
        let started = Instant::now();
        let response = app
            .post(&format!(
                r#"{{"name": "after-{i}", "repo": "https://git.example.com/b.git"}}"#
            ))
            .await;
        let elapsed = started.elapsed();
        assert_eq!(response.status().as_u16(), 503, "request {i}");
        assert!(response.headers().contains_key("retry-after"));
        assert!(
            elapsed < Duration::from_millis(2000 + 1500),
            "request {i} took {elapsed:?}"
        );
    }
    app.shutdown().await;
    cluster.stop(Duration::from_secs(5)).await;
}

impl TestApp {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        request.send().await.unwrap_or_else(|e| panic!("{e}"))
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let response = self.send(method, path, body).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_else(|e| panic!("{e}"));
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// The decoded records of scans.schedules, `None` for tombstones.
    async fn schedule_records(&self) -> Vec<(String, Option<Schedule>)> {
        let codec = self.codec();
        let mut out = Vec::new();
        for m in self.read_all(Topic::Schedules) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let value = match m.payload() {
                Some(bytes) => Some(
                    codec
                        .decode::<Schedule>(bytes)
                        .await
                        .unwrap_or_else(|e| panic!("{e}")),
                ),
                None => None,
            };
            out.push((key, value));
        }
        out
    }
}

#[tokio::test]
async fn schedules_are_created_listed_changed_and_deleted_as_records_of_the_topic() {
    use reqwest::Method;
    let app = spawn_app("schedule-crud", "").await;
    let body = r#"{"name": "nightly", "schedule": "0 3 * * *", "repo": "https://github.com/example/a.git", "ref": "main"}"#;
    let response = app.send(Method::POST, "/jobs/schedule", Some(body)).await;
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(
        response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("/jobs/schedule/nightly")
    );
    let created: serde_json::Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created["schedule"], "0 3 * * *");
    assert_eq!(created["concurrencyPolicy"], "Allow");
    assert_eq!(created["successfulJobsHistoryLimit"], 3);
    assert_eq!(created["failedJobsHistoryLimit"], 1);
    let next: Vec<&str> = created["nextRuns"]
        .as_array()
        .unwrap_or_else(|| panic!("{created}"))
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(next.len(), 5, "{created}");
    assert!(next.iter().all(|t| t.ends_with("T03:00:00Z")), "{next:?}");
    assert!(next.windows(2).all(|w| w[0] < w[1]));

    // The same name again is a conflict and writes nothing.
    let before = app.watermark(Topic::Schedules);
    let (status, problem) = app.json(Method::POST, "/jobs/schedule", Some(body)).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (409, Some("/problems/schedule-exists"))
    );
    assert_eq!(app.watermark(Topic::Schedules), before);

    let (status, list) = app.json(Method::GET, "/jobs/schedule", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["schedules"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["schedules"][0]["name"], "nightly");
    let (status, shown) = app.json(Method::GET, "/jobs/schedule/nightly", None).await;
    assert_eq!((status, &shown["ref"]), (200, &serde_json::json!("main")));

    // Suspend, then resume, through PATCH.
    let (status, suspended) = app
        .json(
            Method::PATCH,
            "/jobs/schedule/nightly",
            Some(r#"{"suspend": true}"#),
        )
        .await;
    assert_eq!(
        (status, &suspended["suspend"]),
        (200, &serde_json::json!(true))
    );
    assert_eq!(suspended["nextRuns"], serde_json::json!([]));
    assert_eq!(suspended["schedule"], "0 3 * * *");
    let (_, resumed) = app
        .json(
            Method::PATCH,
            "/jobs/schedule/nightly",
            Some(r#"{"suspend": false}"#),
        )
        .await;
    assert_eq!(resumed["suspend"], false);
    assert_eq!(resumed["nextRuns"].as_array().map(Vec::len), Some(5));

    // PUT replaces every field but keeps the creation time.
    let (status, replaced) = app
        .json(
            Method::PUT,
            "/jobs/schedule/nightly",
            Some(r#"{"repo": "https://github.com/example/b.git", "concurrencyPolicy": "Forbid", "failedJobsHistoryLimit": 2}"#),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(replaced["schedule"], "*/1 * * * *");
    assert_eq!(replaced["concurrencyPolicy"], "Forbid");
    assert_eq!(replaced["ref"], serde_json::Value::Null);
    assert_eq!(replaced["createdAt"], created["createdAt"]);

    let (status, _) = app
        .json(Method::DELETE, "/jobs/schedule/nightly", None)
        .await;
    assert_eq!(status, 200);
    let (status, problem) = app.json(Method::GET, "/jobs/schedule/nightly", None).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (404, Some("/problems/not-found"))
    );
    let (status, _) = app
        .json(Method::DELETE, "/jobs/schedule/nightly", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .json(Method::PATCH, "/jobs/schedule/nightly", Some("{}"))
        .await;
    assert_eq!(status, 404);

    // The topic holds exactly what happened: create, suspend, resume, replace, tombstone.
    let records = app.schedule_records().await;
    assert_eq!(records.len(), 5, "{records:?}");
    assert!(records.iter().all(|(k, _)| k == "nightly"));
    let values: Vec<&Option<Schedule>> = records.iter().map(|(_, v)| v).collect();
    assert_eq!(values[1].as_ref().map(|s| s.suspend), Some(true));
    assert_eq!(values[2].as_ref().map(|s| s.suspend), Some(false));
    assert_eq!(
        values[3].as_ref().map(|s| s.repo_url.as_str()),
        Some("https://github.com/example/b.git")
    );
    assert!(values[4].is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn the_seed_schedule_request_gets_the_default_cron() {
    let app = spawn_app(
        "schedule-seed",
        "[ingest]\nrepo_template = \"https://git.example.com/{name}.git\"\n",
    )
    .await;
    // curl --location --request POST '…/jobs/schedule' --header 'Content-Type: application/json' --data-raw '{"name": "test6"}'
    let (status, body) = app
        .json(
            reqwest::Method::POST,
            "/jobs/schedule",
            Some("{\n    \"name\": \"test6\"\n}"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["schedule"], "*/1 * * * *");
    assert_eq!(body["repo"], "https://git.example.com/test6.git");
    let next: Vec<String> = serde_json::from_value(body["nextRuns"].clone()).unwrap_or_default();
    assert_eq!(next.len(), 5);
    assert!(next.iter().all(|t| t.ends_with(":00Z")), "{next:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn bad_schedules_get_problem_bodies_and_write_nothing() {
    use reqwest::Method;
    let app = spawn_app("schedule-bad", "").await;
    let repo = r#""repo": "https://github.com/example/a.git""#;
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!(r#"{{"name": "a", "schedule": "61 * * * *", {repo}}}"#),
            "schedule",
            "cron",
        ),
        (
            format!(r#"{{"name": "a", "schedule": "* * * *", {repo}}}"#),
            "schedule",
            "cron",
        ),
        (
            format!(r#"{{"name": "a", "schedule": "@sometimes", {repo}}}"#),
            "schedule",
            "cron",
        ),
        (
            format!(r#"{{"name": "a", "concurrencyPolicy": "Sometimes", {repo}}}"#),
            "concurrencyPolicy",
            "enum",
        ),
        (
            format!(r#"{{"name": "a", "concurrencyPolicy": "forbid", {repo}}}"#),
            "concurrencyPolicy",
            "enum",
        ),
        (
            format!(r#"{{"name": "Bad_Name", {repo}}}"#),
            "name",
            "kubernetes-name",
        ),
        (
            format!(r#"{{"name": "{}", {repo}}}"#, "a".repeat(53)),
            "name",
            "kubernetes-name",
        ),
        (format!(r#"{{"name": "", {repo}}}"#), "name", "required"),
        (
            format!(r#"{{"name": "a", "successfulJobsHistoryLimit": -1, {repo}}}"#),
            "successfulJobsHistoryLimit",
            "range",
        ),
        (
            format!(r#"{{"name": "a", "startingDeadlineSeconds": -5, {repo}}}"#),
            "startingDeadlineSeconds",
            "range",
        ),
        (
            format!(r#"{{"name": "a", "timeZone": "Europe/Paris", {repo}}}"#),
            "timeZone",
            "enum",
        ),
        (r#"{"name": "a"}"#.to_owned(), "repo", "required"),
        (
            r#"{"name": "a", "repo": "http://169.254.169.254/x.git"}"#.to_owned(),
            "repo",
            "private-address",
        ),
    ];
    let before = app.watermark(Topic::Schedules);
    for (body, field, _rule) in &cases {
        let (status, problem) = app.json(Method::POST, "/jobs/schedule", Some(body)).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert_eq!(problem["field"], *field, "{body}: {problem}");
    }
    for (body, _, rule) in &cases[..11] {
        let (_, problem) = app.json(Method::POST, "/jobs/schedule", Some(body)).await;
        assert_eq!(problem["rule"], *rule, "{body}: {problem}");
    }
    // Unknown fields and non-JSON bodies.
    let (status, _) = app
        .json(
            Method::POST,
            "/jobs/schedule",
            Some(&format!(r#"{{"name": "a", "cron": "* * * * *", {repo}}}"#)),
        )
        .await;
    assert_eq!(status, 400);
    let response = app
        .http
        .post(format!("{}/jobs/schedule", app.base))
        .header("content-type", "text/plain")
        .body("name=a")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 415);
    // A PUT whose body names another schedule, a PATCH with a bad value.
    let (status, problem) = app
        .json(
            Method::PUT,
            "/jobs/schedule/a",
            Some(&format!(r#"{{"name": "b", {repo}}}"#)),
        )
        .await;
    assert_eq!(
        (status, &problem["field"]),
        (400, &serde_json::json!("name"))
    );
    let (status, _) = app
        .json(
            Method::POST,
            "/jobs/schedule",
            Some(&format!(r#"{{"name": "a", {repo}}}"#)),
        )
        .await;
    assert_eq!(status, 201);
    let written = app.watermark(Topic::Schedules);
    assert!(written > before);
    let (status, problem) = app
        .json(
            Method::PATCH,
            "/jobs/schedule/a",
            Some(r#"{"schedule": "every minute"}"#),
        )
        .await;
    assert_eq!(
        (status, &problem["field"]),
        (400, &serde_json::json!("schedule"))
    );
    assert_eq!(app.watermark(Topic::Schedules), written);
    let records = app.schedule_records().await;
    assert_eq!(records.len(), 1, "only the one valid schedule was written");
    app.shutdown().await;
}
