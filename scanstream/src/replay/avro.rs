//! The Avro object container format: its schema and each record's value.

use apache_avro::types::Value as AvroValue;
use scanstream_contracts::Topic;

use super::decode::Replayed;

/// The Avro schema of replay files for `kind`: one `io.scanstream.replay.Record` per record
/// with its position, timestamp, key, headers and the value in the topic's own schema.
pub fn container_schema(kind: Topic) -> anyhow::Result<apache_avro::Schema> {
    let value: serde_json::Value = match kind.value_schema() {
        Some(file) => serde_json::from_str(file.source())?,
        None => serde_json::json!("bytes"),
    };
    let schema = serde_json::json!({
        "type": "record",
        "name": "Record",
        "namespace": "io.scanstream.replay",
        "doc": format!("A record of {} as scanstream replay read it.", kind.base_name()),
        "fields": [
            {"name": "topic", "type": "string"},
            {"name": "partition", "type": "int"},
            {"name": "offset", "type": "long"},
            {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "key", "type": ["null", "string"]},
            {"name": "headers", "type": {"type": "array", "items": {
                "type": "record", "name": "Header",
                "fields": [{"name": "key", "type": "string"}, {"name": "value", "type": ["null", "bytes"]}]
            }}},
            {"name": "value", "type": ["null", value], "doc": "null for a tombstone"}
        ]
    });
    Ok(apache_avro::Schema::parse(&schema)?)
}

pub(super) fn container_value(topic: &str, record: &Replayed) -> AvroValue {
    let raw = &record.raw;
    let value = match (&record.avro, &raw.payload) {
        (Some(v), _) => AvroValue::Union(1, Box::new(v.clone())),
        (None, Some(bytes)) => AvroValue::Union(1, Box::new(AvroValue::Bytes(bytes.clone()))),
        (None, None) => AvroValue::Union(0, Box::new(AvroValue::Null)),
    };
    let optional_string = |v: Option<String>| match v {
        Some(s) => AvroValue::Union(1, Box::new(AvroValue::String(s))),
        None => AvroValue::Union(0, Box::new(AvroValue::Null)),
    };
    AvroValue::Record(vec![
        ("topic".into(), AvroValue::String(topic.to_owned())),
        ("partition".into(), AvroValue::Int(raw.partition)),
        ("offset".into(), AvroValue::Long(raw.offset)),
        (
            "timestamp".into(),
            AvroValue::TimestampMillis(raw.timestamp),
        ),
        (
            "key".into(),
            optional_string(
                raw.key
                    .as_deref()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
            ),
        ),
        (
            "headers".into(),
            AvroValue::Array(
                raw.headers
                    .iter()
                    .map(|(k, v)| {
                        AvroValue::Record(vec![
                            ("key".into(), AvroValue::String(k.clone())),
                            (
                                "value".into(),
                                match v {
                                    Some(b) => {
                                        AvroValue::Union(1, Box::new(AvroValue::Bytes(b.clone())))
                                    }
                                    None => AvroValue::Union(0, Box::new(AvroValue::Null)),
                                },
                            ),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("value".into(), value),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_has_a_container_schema() {
        for topic in Topic::ALL {
            container_schema(topic).unwrap_or_else(|e| panic!("{topic}: {e}"));
        }
    }
}
