//! The ACLs the roles declare (`crates/platform/src/access.rs`, rendered into
//! `strimzi/users.yaml`), enforced by a real broker: a local cluster with SCRAM-SHA-512 over TLS
//! and the standard authorizer (`allow.everyone.if.no.acl.found=false`), one SCRAM user per
//! role with exactly the declared ACLs. One negative test per boundary, each beside something
//! the same user may do (so a refusal cannot come from a broken connection); each fails if the
//! ACL it guards were widened.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
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
