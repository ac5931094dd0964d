//! The ACLs the roles declare (`crates/platform/src/access.rs`, rendered into
//! `strimzi/users.yaml`), enforced by a real broker: a local cluster with SCRAM-SHA-512 over TLS
//! and the standard authorizer (`allow.everyone.if.no.acl.found=false`), one SCRAM user per
//! role with exactly the declared ACLs. One negative test per boundary, each beside something
//! the same user may do (so a refusal cannot come from a broken connection); each fails if the
//! ACL it guards were widened.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use scanstream_contracts::{Topic, TopicNames};
use scanstream_platform::Settings;
use scanstream_platform::config::Sources;
use scanstream_testcontainers::local::{LocalCluster, LocalOptions};
use scanstream_testcontainers::secure::{ADMIN, Security, acls};

mod support;

const ROLES: [&str; 5] = ["ingest", "scanner", "aggregator", "scheduler", "notifier"];

struct Cluster {
    bootstrap: String,
    security: Security,
}

impl Cluster {
    /// Client settings of `user`, with `password` instead of the user's own when given.
    fn client(&self, user: &str, password: Option<&str>) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("log_level", "0")
            .set("message.timeout.ms", "10000");
        for (key, value) in self.security.client_config(user) {
            config.set(key, value);
        }
        if let Some(password) = password {
            config.set("sasl.password", password);
        }
        config
    }

    /// Writes one record to `topic` as `user`: the broker's error code, `None` when accepted.
    async fn write(&self, user: &str, topic: &str) -> Option<RDKafkaErrorCode> {
        let producer: FutureProducer = self.client(user, None).create().unwrap();
        producer
            .send(
                FutureRecord::to(topic).key("k").payload("v"),
                Duration::from_secs(10),
            )
            .await
            .err()
            .map(|(e, _)| code(&e))
    }

    /// Reads `topic` as `user` with the group id `group`, as a member of the group (`subscribe`)
    /// or assigned partition 0: the first error within 10 s, `None` once it read to the end.
    async fn read(
        &self,
        user: &str,
        topic: &str,
        group: &str,
        subscribe: bool,
    ) -> Option<RDKafkaErrorCode> {
        let mut config = self.client(user, None);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().unwrap();
            if subscribe {
                consumer.subscribe(&[&topic]).unwrap();
            } else {
                let mut list = TopicPartitionList::new();
                list.add_partition_offset(&topic, 0, Offset::Beginning)
                    .unwrap();
                consumer.assign(&list).unwrap();
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                match consumer.poll(Duration::from_millis(200)) {
                    // The end of the partition: it was read.
                    Some(Err(KafkaError::PartitionEOF(_))) => return None,
                    Some(Err(e)) => return Some(code(&e)),
                    _ => {}
                }
            }
            None
        })
        .await
        .unwrap()
    }

    /// Asks for `topic`'s metadata as `user` (reading needs at least that): the topic's error
    /// code, `None` when the broker describes it.
    async fn describe(&self, user: &str, topic: &str) -> Option<RDKafkaErrorCode> {
        let config = self.client(user, None);
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().unwrap();
            let metadata = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .unwrap();
            metadata.topics()[0].error().map(RDKafkaErrorCode::from)
        })
        .await
        .unwrap()
    }

    /// Starts transactions as `user` under `id`: the error code, `None` when allowed.
    async fn transactions(&self, user: &str, id: &str) -> Option<RDKafkaErrorCode> {
        let mut config = self.client(user, None);
        config.set("transactional.id", id);
        tokio::task::spawn_blocking(move || {
            let producer: FutureProducer = config.create().unwrap();
            producer
                .init_transactions(Duration::from_secs(10))
                .err()
                .map(|e| code(&e))
        })
        .await
        .unwrap()
    }
}

fn code(e: &KafkaError) -> RDKafkaErrorCode {
    e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_can_do_what_it_declares_and_nothing_across_a_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = LocalOptions::ephemeral(dir.path().to_owned());
    options.users = Some(ROLES.iter().map(|r| r.to_string()).collect());
    let local = LocalCluster::start(options).await.unwrap();
    let cluster = Cluster {
        bootstrap: local.endpoints().bootstrap_servers.clone(),
        security: local.security().unwrap().clone(),
    };

    // The built-in settings' names (as strimzi/users.yaml is rendered); the broker's admin
    // creates the topics and then the roles' declared ACLs.
    let settings = Settings::load(Sources {
        env: Some(BTreeMap::new()),
        overrides: vec![
            ("kafka.bootstrap_servers".into(), cluster.bootstrap.clone()),
            ("kafka.security_protocol".into(), "sasl_ssl".into()),
            ("kafka.sasl_mechanism".into(), "SCRAM-SHA-512".into()),
            ("kafka.sasl_username".into(), ADMIN.into()),
            (
                "kafka.sasl_password".into(),
                cluster.security.passwords[ADMIN].clone(),
            ),
            (
                "kafka.ssl_ca_location".into(),
                cluster.security.ca_file.display().to_string(),
            ),
            ("topics.partitions".into(), "1".into()),
            ("topics.replication_factor".into(), "1".into()),
        ],
        ..Sources::default()
    })
    .unwrap();
    let names = TopicNames::new(settings.topics.prefix.clone());
    let factory = scanstream_platform::KafkaFactory::new(settings.kafka.clone());
    scanstream_platform::topics::ensure(
        &factory.admin().unwrap(),
        &names,
        &settings.topics,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let principals: Vec<_> = scanstream_platform::access::principals(&settings)
        .into_iter()
        .filter(|p| ROLES.contains(&p.name))
        .collect();
    local.create_acls(&acls(&principals)).unwrap();
    let topic = |t: Topic| names.name(t);
    let denied_topic = Some(RDKafkaErrorCode::TopicAuthorizationFailed);

    // The scanner writes events, never commands.
    assert_eq!(cluster.write("scanner", &topic(Topic::Events)).await, None);
    assert_eq!(
        cluster.write("scanner", &topic(Topic::Commands)).await,
        denied_topic
    );
    // Ingest writes commands and reads schedules (with its follower's group), never findings.
    let ingest_group = scanstream_platform::access::tail_group(&topic(Topic::Schedules));
    assert_eq!(cluster.write("ingest", &topic(Topic::Commands)).await, None);
    assert_eq!(
        cluster
            .read("ingest", &topic(Topic::Schedules), &ingest_group, false)
            .await,
        None
    );
    assert_eq!(
        cluster.describe("ingest", &topic(Topic::Schedules)).await,
        None
    );
    assert_eq!(
        cluster.describe("ingest", &topic(Topic::Findings)).await,
        denied_topic
    );
    // The aggregator writes its changelog, never commands.
    assert_eq!(
        cluster.write("aggregator", &topic(Topic::JobState)).await,
        None
    );
    assert_eq!(
        cluster.write("aggregator", &topic(Topic::Commands)).await,
        denied_topic
    );
    // The notifier reads the inventory (in its group), never writes it.
    let notifier_group =
        scanstream_platform::access::group_id(&settings, &settings.notifier.group_id);
    assert_eq!(
        cluster
            .read("notifier", &topic(Topic::Inventory), &notifier_group, true)
            .await,
        None
    );
    assert_eq!(
        cluster.write("notifier", &topic(Topic::Inventory)).await,
        denied_topic
    );

    // A role's own consumer group and transactional ids, and no one else's.
    let aggregator_group =
        scanstream_platform::access::group_id(&settings, &settings.aggregator.group_id);
    let scanner_group =
        scanstream_platform::access::group_id(&settings, &settings.scanner.group_id);
    assert_eq!(
        cluster
            .read("scanner", &topic(Topic::Commands), &scanner_group, true)
            .await,
        None
    );
    assert_eq!(
        cluster
            .read("scanner", &topic(Topic::Commands), &aggregator_group, true)
            .await,
        Some(RDKafkaErrorCode::GroupAuthorizationFailed)
    );
    let aggregator_id = format!(
        "{}test",
        scanstream_platform::access::aggregator_transactional_prefix(&settings)
    );
    assert_eq!(
        cluster.transactions("aggregator", &aggregator_id).await,
        None
    );
    assert_eq!(
        cluster.transactions("scheduler", &aggregator_id).await,
        Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed)
    );

    // Nobody in without the right password, or without SASL at all.
    let wrong = cluster.client("scanner", Some("not-the-password"));
    let refused = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = wrong.create().unwrap();
        consumer.fetch_metadata(None, Duration::from_secs(5)).err()
    })
    .await
    .unwrap();
    assert!(refused.is_some(), "a wrong password was let in");
    let bootstrap = cluster.bootstrap.clone();
    let anonymous = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("log_level", "0")
            .create()
            .unwrap();
        consumer.fetch_metadata(None, Duration::from_secs(5)).err()
    })
    .await
    .unwrap();
    assert!(
        anonymous.is_some(),
        "a client without SASL and TLS was let in"
    );
    local.stop(Duration::from_secs(5)).await;
}

/// The client settings `up --secure` wrote for `user`, as the environment of a scanstream
/// command (`SCANSTREAM__KAFKA__…`).
fn user_env(data_dir: &Path, user: &str) -> Vec<(String, String)> {
    let file = data_dir.join(format!("cluster/users/{user}.properties"));
    let text = std::fs::read_to_string(&file).unwrap();
    let mut env = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = match key {
            "bootstrap.servers" => "BOOTSTRAP_SERVERS",
            "security.protocol" => "SECURITY_PROTOCOL",
            "sasl.mechanism" => "SASL_MECHANISM",
            "sasl.username" => "SASL_USERNAME",
            "sasl.password" => "SASL_PASSWORD",
            "ssl.ca.location" => "SSL_CA_LOCATION",
            other => panic!("unexpected setting {other} in {}", file.display()),
        };
        let value = if key == "SECURITY_PROTOCOL" {
            value.to_lowercase()
        } else {
            value.to_owned()
        };
        env.push((format!("SCANSTREAM__KAFKA__{key}"), value));
    }
    env
}

/// Runs the scanstream binary as the operator user `admin` (read-only on every topic).
fn as_admin(data_dir: &Path, registry: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_scanstream"))
        .envs(user_env(data_dir, "admin"))
        .args(["--registry", registry])
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_pipeline_runs_with_each_role_as_its_own_user() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;
    use support::api::{Client, commit, git, github_token};
    use support::{Up, log};

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let repo = data_dir.join("repos").join("secured");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "--quiet"]);
    commit(
        &repo,
        &[("app.env", &format!("GITHUB_TOKEN={}\n", github_token()))],
        "first",
    );
    let origin = scanstream_platform::now_ms().to_string();
    // Schedules run on a clock 60 times faster than real time: a minute's tick every second.
    let up = Up::start_secure(
        &data_dir,
        &[
            ("SCANSTREAM__SCHEDULER__CLOCK_SCALE", "60.0"),
            ("SCANSTREAM__SCHEDULER__CLOCK_ORIGIN_MS", origin.as_str()),
        ],
    );
    let client = Client {
        http: reqwest::Client::new(),
        url: up.url.clone(),
        token: up.token(),
    };
    client.wait_ready(&data_dir).await;

    // What the operator gets: every user's settings and the CA, readable by the owner only.
    for file in [
        "ca.pem",
        "users/admin.properties",
        "users/ingest.properties",
        "users/scanner.properties",
    ] {
        let mode = std::fs::metadata(data_dir.join("cluster").join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    // Submit → terminal, with ingest, scanner and aggregator each as its own user; the
    // inventory (sightings folded by the aggregator) and the notifier run too.
    let url = format!("file://{}", repo.display());
    client.scan("secured-scan", &url, "tree", &data_dir).await;
    client
        .list_until("/findings?status=open", "the secret's item", |items| {
            items.len() == 1
        })
        .await;

    // A schedule fires as the scheduler's user.
    let response = client
        .http
        .post(format!("{}/jobs/schedule", up.url))
        .bearer_auth(&client.token)
        .json(
            &serde_json::json!({"name": "secured-nightly", "schedule": "*/1 * * * *", "repo": url}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, stats) = client.get("/jobs/stats").await;
        let succeeded = stats["secured-nightly"]
            .as_array()
            .is_some_and(|runs| runs.iter().any(|r| r["succeeded"].as_i64() >= Some(1)));
        if succeeded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled run succeeded: {stats}\n{}",
            log(&data_dir)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The schedule is suspended (ingest's user again) so the audit sees a quiet moment: on the
    // fast clock it would fire every second.
    let (status, _) = client
        .patch(
            "/jobs/schedule/secured-nightly",
            serde_json::json!({"suspend": true}),
            None,
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Replay and audit as the operator user `admin`, which may read and nothing else.
    let registry = up
        .printed("Schema registry")
        .expect("up printed no registry URL");
    let replay = as_admin(&data_dir, &registry, &["replay", "--topic", "scans.events"]);
    let events = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success()
            && events.contains("secured-scan")
            && events.contains("secured-nightly-"),
        "replay as admin: {}\n{events}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let token = data_dir.join("api-token");
    let audit = as_admin(
        &data_dir,
        &registry,
        &[
            "audit",
            "--api-url",
            &up.url,
            "--token-file",
            token.to_str().unwrap(),
        ],
    );
    assert!(
        audit.status.success(),
        "audit as admin: {}{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );
    drop(up);
}
