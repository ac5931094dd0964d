//! Encoding and decoding through a real Confluent-compatible schema registry (the shared test
//! cluster's), with per-test subjects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use apache_avro::Schema;
use apache_avro::types::Value;
use scanstream_contracts::event::{EventPayload, ScanEvent, ScanStarted};
use scanstream_contracts::finding::Finding;
use scanstream_contracts::schema::{AvroRecord, SchemaFile};
use scanstream_contracts::{Codec, CodecError, Topic};
use scanstream_testcontainers::TestScope;

fn codec(test: &str) -> (Codec, TestScope) {
    let scope = TestScope::new(test);
    (scope.codec(), scope)
}

async fn round_trip<T: AvroRecord + PartialEq + std::fmt::Debug>(
    codec: &Codec,
    topic: Topic,
    samples: Vec<T>,
) {
    let mut schema_id = None;
    for sample in samples {
        let bytes = codec
            .encode(topic, &sample)
            .await
            .unwrap_or_else(|e| panic!("encode {sample:?}: {e}"));
        assert_eq!(bytes[0], 0, "Confluent magic byte");
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        assert_eq!(
            *schema_id.get_or_insert(id),
            id,
            "one schema id per subject"
        );
        let back: T = codec
            .decode(&bytes)
            .await
            .unwrap_or_else(|e| panic!("decode {sample:?}: {e}"));
        assert_eq!(back, sample);
    }
}

#[tokio::test]
async fn every_type_and_variant_round_trips_through_the_registry() {
    let (codec, _scope) = codec("round-trip");
    let registered = codec.register_all().await.unwrap();
    assert_eq!(registered.len(), 9);
    round_trip(&codec, Topic::Commands, common::commands()).await;
    round_trip(&codec, Topic::Events, common::events()).await;
    round_trip(&codec, Topic::Findings, common::findings()).await;
    round_trip(&codec, Topic::JobState, common::states()).await;
    round_trip(&codec, Topic::Schedules, common::schedules()).await;
    round_trip(&codec, Topic::ScheduleTicks, common::schedule_ticks()).await;
    round_trip(&codec, Topic::Sightings, common::sightings()).await;
    round_trip(&codec, Topic::Triage, common::triage_decisions()).await;
    round_trip(&codec, Topic::Inventory, common::inventory_items()).await;
}

#[tokio::test]
async fn registration_is_idempotent() {
    let (codec, _scope) = codec("idempotent");
    let first = codec.register_all().await.unwrap();
    let second = codec.register_all().await.unwrap();
    assert_eq!(first, second);
}

fn events_schema_json() -> serde_json::Value {
    serde_json::from_str(SchemaFile::ScanEvent.source()).unwrap()
}

#[tokio::test]
async fn an_incompatible_schema_change_is_rejected_and_a_compatible_one_accepted() {
    let (codec, scope) = codec("compat");
    let subject = format!("{}scans.events-value", scope.topic_prefix);
    let v1 = codec
        .register(&subject, SchemaFile::ScanEvent.source())
        .await
        .unwrap();

    // A new required field (no default): readers of v2 cannot read v1 data → not BACKWARD.
    let mut incompatible = events_schema_json();
    incompatible["fields"]
        .as_array_mut()
        .expect("fields")
        .push(serde_json::json!({"name": "tenant", "type": "string", "doc": "new"}));
    let err = codec
        .register(&subject, &incompatible.to_string())
        .await
        .expect_err("an incompatible schema was registered");
    assert!(matches!(err, CodecError::Incompatible { .. }), "{err}");

    // The same field with a default is a compatible evolution.
    let mut compatible = events_schema_json();
    compatible["fields"]
        .as_array_mut()
        .expect("fields")
        .push(serde_json::json!({"name": "tenant", "type": "string", "default": "", "doc": "new"}));
    let v2 = codec
        .register(&subject, &compatible.to_string())
        .await
        .unwrap();
    assert_ne!(v1.schema_id, v2.schema_id);
}

/// A newer producer wrote with an evolved schema whose union lists ScanStarted *after* a
/// same-shaped branch and adds fields: this binary still reads exactly the event it wrote.
#[tokio::test]
async fn records_written_with_an_evolved_schema_decode_by_branch_name() {
    let (codec, scope) = codec("evolved");
    let subject = format!("{}scans.events-value", scope.topic_prefix);
    let mut evolved = events_schema_json();
    let fields = evolved["fields"].as_array_mut().expect("fields");
    fields.push(
        serde_json::json!({"name": "tenant", "type": "string", "default": "acme", "doc": "new"}),
    );
    let payload = fields
        .iter_mut()
        .find(|f| f["name"] == "payload")
        .expect("payload");
    let branches = payload["type"].as_array_mut().expect("union");
    let started = branches.remove(1);
    let mut started = started;
    started["fields"]
        .as_array_mut()
        .expect("fields")
        .push(serde_json::json!({"name": "host", "type": "string", "default": "", "doc": "new"}));
    branches.push(started);
    let evolved_text = evolved.to_string();
    codec
        .register(&subject, SchemaFile::ScanEvent.source())
        .await
        .unwrap();
    let v2 = codec
        .register(&subject, &evolved_text)
        .await
        .expect("evolved schema should be BACKWARD compatible");

    let writer = Schema::parse_str(&evolved_text).unwrap();
    let expected = common::events()
        .into_iter()
        .find(|e| matches!(e.payload, EventPayload::ScanStarted(_)))
        .expect("sample");
    let EventPayload::ScanStarted(ScanStarted { scanner_id }) = &expected.payload else {
        unreachable!()
    };
    let new_index = (branches_len(&writer) - 1) as u32;
    let uuid = |u: uuid::Uuid| Value::Uuid(u);
    let value = Value::Record(vec![
        ("event_id".into(), uuid(expected.event_id.0)),
        ("job_id".into(), uuid(expected.job_id.0)),
        ("job_name".into(), Value::String(expected.job_name.clone())),
        ("run_id".into(), uuid(expected.run_id.0)),
        ("attempt".into(), Value::Int(expected.attempt)),
        ("sequence".into(), Value::Int(expected.sequence)),
        (
            "occurred_at".into(),
            Value::TimestampMillis(expected.occurred_at),
        ),
        (
            "producer".into(),
            match &expected.producer {
                Some(p) => Value::Union(1, Box::new(Value::String(p.clone()))),
                None => Value::Union(0, Box::new(Value::Null)),
            },
        ),
        (
            "payload".into(),
            Value::Union(
                new_index,
                Box::new(Value::Record(vec![
                    ("scanner_id".into(), Value::String(scanner_id.clone())),
                    ("host".into(), Value::String("node-7".into())),
                ])),
            ),
        ),
        ("tenant".into(), Value::String("acme".into())),
    ]);
    let body = apache_avro::writer::datum::GenericDatumWriter::builder(&writer)
        .build()
        .and_then(|w| w.write_value_to_vec(value))
        .unwrap();
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&v2.schema_id.to_be_bytes());
    bytes.extend_from_slice(&body);
    let decoded: ScanEvent = codec.decode(&bytes).await.unwrap();
    assert_eq!(decoded, expected);
}

fn branches_len(schema: &Schema) -> usize {
    let Schema::Record(record) = schema else {
        panic!("record")
    };
    let field = record
        .fields
        .iter()
        .find(|f| f.name == "payload")
        .expect("payload");
    let Schema::Union(union) = &field.schema else {
        panic!("union")
    };
    union.variants().len()
}

#[tokio::test]
async fn bad_bytes_are_clear_errors_not_panics() {
    let (codec, _scope) = codec("bad-bytes");
    codec.register_all().await.unwrap();
    for bytes in [
        &b""[..],
        b"\x01\x00\x00\x00\x01",
        b"plain text",
        b"\x00\x00\x00",
    ] {
        let err = codec
            .decode::<ScanEvent>(bytes)
            .await
            .err()
            .unwrap_or_else(|| panic!("{bytes:?} decoded"));
        assert!(
            matches!(err, CodecError::Decode(_) | CodecError::Registry(_)),
            "{bytes:?}: {err}"
        );
    }
    // A well-formed record of another type is named as such.
    let finding = common::findings().remove(0);
    let bytes = codec.encode(Topic::Findings, &finding).await.unwrap();
    let err = codec
        .decode::<ScanEvent>(&bytes)
        .await
        .expect_err("decoded");
    assert!(matches!(err, CodecError::WrongRecord { .. }), "{err}");
    // A truncated record is an error too.
    let err = codec
        .decode::<Finding>(&bytes[..bytes.len() - 3])
        .await
        .err();
    assert!(err.is_some());
    // And a type written to the wrong topic is refused before anything is sent.
    let err = codec
        .encode(Topic::Events, &finding)
        .await
        .expect_err("encoded");
    assert!(matches!(err, CodecError::WrongTopic { .. }), "{err}");
}
