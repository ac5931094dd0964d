//! The client factory, topic admin and codec against the real broker and registry.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureRecord, Producer};
use scanstream_contracts::event::{EventPayload, ScanEvent, ScanStarted};
use scanstream_contracts::{Codec, JobId, RegistryConfig, RunId, Topic, TopicNames};
use scanstream_platform::Settings;
use scanstream_platform::config::{Sources, TopicSettings};
use scanstream_platform::kafka::{ClientRole, KafkaFactory};
use scanstream_platform::topics;
use scanstream_testcontainers::TestScope;

const TIMEOUT: Duration = Duration::from_secs(30);

fn settings(scope: &TestScope, partitions: i32) -> Settings {
    Settings::load(Sources {
        env: Some(Default::default()),
        overrides: vec![
            (
                "kafka.bootstrap_servers".into(),
                scope.endpoints.bootstrap_servers.clone(),
            ),
            ("registry.url".into(), scope.endpoints.registry_url.clone()),
            ("topics.prefix".into(), scope.topic_prefix.clone()),
            ("topics.partitions".into(), partitions.to_string()),
            ("topics.replication_factor".into(), "1".into()),
            ("kafka.statistics_interval_ms".into(), "0".into()),
        ],
        ..Sources::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn ensure_creates_every_topic_once_and_then_changes_nothing() {
    let scope = TestScope::new("ensure");
    let s = settings(&scope, 3);
    let factory = KafkaFactory::new(s.kafka.clone());
    let admin = factory.admin().unwrap_or_else(|e| panic!("{e}"));
    let names = TopicNames::new(s.topics.prefix.clone());

    let first = topics::ensure(&admin, &names, &s.topics, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut all: Vec<String> = Topic::ALL.iter().map(|t| names.name(*t)).collect();
    all.sort();
    let mut created = first.created.clone();
    created.sort();
    assert_eq!(created, all);
    assert!(first.drift.is_empty());

    let second = topics::ensure(&admin, &names, &s.topics, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(second.created.is_empty(), "{second:?}");
    assert!(second.drift.is_empty(), "{second:?}");
    let mut unchanged = second.unchanged.clone();
    unchanged.sort();
    assert_eq!(unchanged, all);

    // What was created is what the spec says, as the broker reports it.
    let metadata = admin
        .inner()
        .fetch_metadata(Some(&names.name(Topic::Schedules)), TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(metadata.topics()[0].partitions().len(), 1);
    let metadata = admin
        .inner()
        .fetch_metadata(Some(&names.name(Topic::Events)), TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(metadata.topics()[0].partitions().len(), 3);
}

#[tokio::test]
async fn ensure_reports_drift_without_changing_the_topic() {
    let scope = TestScope::new("drift");
    let s = settings(&scope, 3);
    let factory = KafkaFactory::new(s.kafka.clone());
    let admin = factory.admin().unwrap_or_else(|e| panic!("{e}"));
    let names = TopicNames::new(s.topics.prefix.clone());
    let events = names.name(Topic::Events);
    let job_state = names.name(Topic::JobState);
    let odd = [
        NewTopic::new(&events, 2, TopicReplication::Fixed(1)).set("retention.ms", "60000"),
        NewTopic::new(&job_state, 3, TopicReplication::Fixed(1)).set("cleanup.policy", "delete"),
    ];
    for result in admin
        .create_topics(
            odd.iter(),
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    {
        result.unwrap_or_else(|(t, c)| panic!("{t}: {c}"));
    }

    let report = topics::ensure(&admin, &names, &s.topics, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let found: Vec<(String, String, String, String)> = report
        .drift
        .iter()
        .map(|d| {
            (
                d.topic.clone(),
                d.what.clone(),
                d.expected.clone(),
                d.actual.clone(),
            )
        })
        .collect();
    assert!(
        found.contains(&(events.clone(), "partitions".into(), "3".into(), "2".into())),
        "{found:?}"
    );
    assert!(
        found.contains(&(
            events.clone(),
            "config retention.ms".into(),
            "-1".into(),
            "60000".into()
        )),
        "{found:?}"
    );
    assert!(
        found.contains(&(
            job_state.clone(),
            "config cleanup.policy".into(),
            "compact".into(),
            "delete".into()
        )),
        "{found:?}"
    );
    assert_eq!(report.created.len(), Topic::ALL.len() - 2);
    // Reported, not repaired.
    let again = topics::ensure(&admin, &names, &s.topics, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.drift, report.drift);
}

fn codec(s: &Settings) -> Codec {
    Codec::new(
        RegistryConfig {
            url: s.registry.url.clone(),
            username: None,
            password: None,
            timeout: Duration::from_secs(10),
        },
        TopicNames::new(s.topics.prefix.clone()),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn started(n: i32) -> ScanEvent {
    let job = JobId::from_name(&format!("job-{n}"));
    ScanEvent::new(
        job,
        format!("job-{n}"),
        RunId::derived(job, "r"),
        1,
        0,
        1_763_700_000_000 + i64::from(n),
        None,
        EventPayload::ScanStarted(ScanStarted {
            scanner_id: "s".into(),
        }),
    )
}

/// Transactions, read_committed and the wire format together: what later roles build on.
#[tokio::test]
async fn committed_events_are_read_back_and_aborted_ones_never_seen() {
    let scope = TestScope::new("transactions");
    let s = settings(&scope, 2);
    let factory = KafkaFactory::new(s.kafka.clone());
    let admin = factory.admin().unwrap_or_else(|e| panic!("{e}"));
    let names = TopicNames::new(s.topics.prefix.clone());
    topics::ensure(
        &admin,
        &names,
        &TopicSettings { ..s.topics.clone() },
        TIMEOUT,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let codec = codec(&s);
    codec.register_all().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = names.name(Topic::Events);

    let producer = factory
        .transactional_producer(ClientRole::Ingest, &format!("{}tx", scope.topic_prefix))
        .unwrap_or_else(|e| panic!("{e}"));
    producer
        .init_transactions(TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    for (n, commit) in [(1, true), (2, false), (3, true)] {
        producer
            .begin_transaction()
            .unwrap_or_else(|e| panic!("{e}"));
        let event = started(n);
        let bytes = codec
            .encode(Topic::Events, &event)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let key = event.job_id.key();
        producer
            .send(FutureRecord::to(&topic).key(&key).payload(&bytes), TIMEOUT)
            .await
            .unwrap_or_else(|(e, _)| panic!("{e}"));
        if commit {
            producer
                .commit_transaction(TIMEOUT)
                .unwrap_or_else(|e| panic!("{e}"));
        } else {
            producer
                .abort_transaction(TIMEOUT)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    let consumer = factory
        .consumer(ClientRole::Aggregator, &scope.group_id)
        .unwrap_or_else(|e| panic!("{e}"));
    consumer
        .subscribe(&[&topic])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 && tokio::time::Instant::now() < deadline {
        let message = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await;
        let Ok(Ok(message)) = message else { continue };
        let payload = message.payload().unwrap_or_else(|| panic!("no payload"));
        let event: ScanEvent = codec
            .decode(payload)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(message.key(), Some(event.job_id.key().as_bytes()));
        seen.push(event);
    }
    seen.sort_by_key(|e| e.occurred_at);
    assert_eq!(seen, vec![started(1), started(3)]);
    // Nothing else arrives: the aborted event stays invisible.
    let extra = tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await;
    assert!(extra.is_err(), "an aborted record was delivered");
}
