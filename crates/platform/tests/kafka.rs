//! The client factory, topic admin and codec against the real broker and registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rdkafka::Message;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureRecord, Producer};
use scanstream_contracts::event::{EventPayload, ScanEvent, ScanStarted};
use scanstream_contracts::{JobId, RunId, Topic, TopicNames};
use scanstream_platform::Settings;
use scanstream_platform::kafka::{ClientRole, KafkaFactory};
use scanstream_platform::topics;
use scanstream_testcontainers::{TestScope, ensure_topics};

const TIMEOUT: Duration = Duration::from_secs(30);

fn settings(scope: &TestScope, partitions: i32) -> Settings {
    scope.settings("", &[("topics.partitions", &partitions.to_string())])
}

#[tokio::test]
async fn ensure_creates_every_topic_once_and_then_changes_nothing() {
    let scope = TestScope::new("ensure");
    let s = settings(&scope, 3);
    let factory = KafkaFactory::new(s.kafka.clone());
    let admin = factory.admin().unwrap();
    let names = TopicNames::new(s.topics.prefix.clone());

    let first = topics::ensure(&admin, &names, &s.topics, TIMEOUT)
        .await
        .unwrap();
    let mut all: Vec<String> = Topic::ALL.iter().map(|t| names.name(*t)).collect();
    all.sort();
    let mut created = first.created.clone();
    created.sort();
    assert_eq!(created, all);
    assert!(first.drift.is_empty());

    let second = topics::ensure(&admin, &names, &s.topics, TIMEOUT)
        .await
        .unwrap();
    assert!(second.created.is_empty(), "{second:?}");
    assert!(second.drift.is_empty(), "{second:?}");
    let mut unchanged = second.unchanged.clone();
    unchanged.sort();
    assert_eq!(unchanged, all);

    // What was created is what the spec says, as the broker reports it.
    let metadata = admin
        .inner()
        .fetch_metadata(Some(&names.name(Topic::Schedules)), TIMEOUT)
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 1);
    let metadata = admin
        .inner()
        .fetch_metadata(Some(&names.name(Topic::Events)), TIMEOUT)
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 3);
}

#[tokio::test]
async fn ensure_reports_drift_without_changing_the_topic() {
    let scope = TestScope::new("drift");
    let s = settings(&scope, 3);
    let factory = KafkaFactory::new(s.kafka.clone());
    let admin = factory.admin().unwrap();
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
        .unwrap()
    {
        result.unwrap();
    }

    let report = topics::ensure(&admin, &names, &s.topics, TIMEOUT)
        .await
        .unwrap();
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
        .unwrap();
    assert_eq!(again.drift, report.drift);
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
    ensure_topics(&s).await;
    let codec = scope.codec();
    codec.register_all().await.unwrap();
    let topic = scope.names().name(Topic::Events);

    let producer = factory
        .transactional_producer(ClientRole::Ingest, &format!("{}tx", scope.topic_prefix))
        .unwrap();
    producer.init_transactions(TIMEOUT).unwrap();
    for (n, commit) in [(1, true), (2, false), (3, true)] {
        producer.begin_transaction().unwrap();
        let event = started(n);
        let bytes = codec.encode(Topic::Events, &event).await.unwrap();
        let key = event.job_id.key();
        producer
            .send(FutureRecord::to(&topic).key(&key).payload(&bytes), TIMEOUT)
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        if commit {
            producer.commit_transaction(TIMEOUT).unwrap();
        } else {
            producer.abort_transaction(TIMEOUT).unwrap();
        }
    }

    let consumer = factory
        .consumer(ClientRole::Aggregator, &scope.group_id)
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 && tokio::time::Instant::now() < deadline {
        let message = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await;
        let Ok(Ok(message)) = message else { continue };
        let payload = message.payload().expect("no payload");
        let event: ScanEvent = codec.decode(payload).await.unwrap();
        assert_eq!(message.key(), Some(event.job_id.key().as_bytes()));
        seen.push(event);
    }
    seen.sort_by_key(|e| e.occurred_at);
    assert_eq!(seen, vec![started(1), started(3)]);
    // Nothing else arrives: the aborted event stays invisible.
    let extra = tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await;
    assert!(extra.is_err(), "an aborted record was delivered");
}
