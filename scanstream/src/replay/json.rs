//! JSON lines: the `jsonl` format and the canonical form the digest is taken over.

use serde::Serialize;

use super::decode::{Decoded, Replayed};

#[derive(Serialize)]
struct HeaderLine {
    key: String,
    value: Option<String>,
}

/// One JSON line. Field order is fixed: topic, partition, offset, timestamp, key, headers, value.
/// The canonical form (digests, comparing copies) leaves out topic and offset.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    partition: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<i64>,
    timestamp: i64,
    key: Option<String>,
    headers: Vec<HeaderLine>,
    value: Option<&'a Decoded>,
}

/// The JSON line of a record (`canonical`: without topic and offset), without the newline.
pub fn json_line(topic: &str, record: &Replayed, canonical: bool) -> String {
    let raw = &record.raw;
    let line = Line {
        topic: (!canonical).then_some(topic),
        partition: raw.partition,
        offset: (!canonical).then_some(raw.offset),
        timestamp: raw.timestamp,
        key: raw
            .key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        headers: raw
            .headers
            .iter()
            .map(|(k, v)| HeaderLine {
                key: k.clone(),
                value: v
                    .as_deref()
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
            })
            .collect(),
        value: record.value.as_ref(),
    };
    serde_json::to_string(&line).unwrap_or_default()
}
