//! The AsyncAPI 3.0 document of every topic: what downstream consumers may rely on, generated
//! from the topic definitions ([`Topic`]) and the Avro schemas themselves, so it cannot drift
//! from them. `scanstream up` and `scanstream ingest` serve it at `/asyncapi.json`; the prose
//! version is docs/topics.md.

use serde_json::{Map, Value, json};

use crate::headers;
use crate::topic::{Topic, TopicNames};

/// The Avro schema format, as AsyncAPI names it.
pub const AVRO_SCHEMA_FORMAT: &str = "application/vnd.apache.avro+json;version=1.9.0";
/// The Kafka bindings version the document follows.
const KAFKA_BINDINGS: &str = "0.5.0";

/// What each topic's key is, its ordering, and who writes it.
fn about(topic: Topic) -> (&'static str, &'static str, &'static str) {
    match topic {
        Topic::Commands => (
            "The normalized repository URL (credentials removed); a CancelScan is written to \
             every partition, keyed by job id.",
            "Per repository: all work on one repository is handled in order by one scanner.",
            "Scan commands (RequestScan, CancelScan), written by ingest and the scheduler, \
             exactly once per accepted request; read by the scanner group.",
        ),
        Topic::Events => (
            "The job id (lowercase hyphenated uuid).",
            "Per job: a job's events are in the order they happened.",
            "Every fact of every job (JobSubmitted, ScanStarted, RepoFetched, EngineCompleted, \
             ScanSucceeded, ScanFailed, ScanCancelled): the audit source of truth, kept forever.",
        ),
        Topic::Findings => (
            "The job id (lowercase hyphenated uuid).",
            "Per job; all findings of an attempt precede its ScanSucceeded event.",
            "Findings (rule, severity, path, line, commit, keyed fingerprint, redacted preview: \
             never the secret), at least once; deduplicate on finding_id.",
        ),
        Topic::JobState => (
            "The job id (lowercase hyphenated uuid); a null value (tombstone) purges the job.",
            "Per job: the latest record per key is the job's current state.",
            "The aggregator's compacted changelog of job state, written exactly once with its \
             consumer offsets (read_committed).",
        ),
        Topic::Schedules => (
            "The schedule name; a null value (tombstone) deletes the schedule.",
            "One partition: a single total order of every schedule change.",
            "Durable schedules (CronJob semantics), written by ingest's transactional writer.",
        ),
        Topic::ScheduleTicks => (
            "The schedule name; a null value (tombstone) after the schedule's deletion.",
            "One partition.",
            "The leading scheduler's record of each schedule's handled ticks, written in the \
             same transaction as the runs it fires.",
        ),
        Topic::CommandsDlq => (
            "The original record's key.",
            "As the original topic's partitions were read.",
            "Commands no scanner could process: the original bytes, unchanged, with the error \
             headers.",
        ),
        Topic::NotificationsDlq => (
            "The inventory item id.",
            "Per item.",
            "Notifications a destination did not accept after the configured attempts: the \
             JSON body that was sent, with the error headers and the destination's name.",
        ),
        Topic::Sightings => (
            "The normalized repository URL; the partition is the repository's hash modulo the \
             partition count (the same as its items' on scans.triage and scans.inventory).",
            "Per repository: an attempt's SecretSeen records precede its TipScanned.",
            "What each scan attempt saw (SecretSeen per finding, TipScanned after a complete \
             scan of the default ref's tip), at least once; the inventory's input, kept forever.",
        ),
        Topic::Triage => (
            "The inventory item id (lowercase hyphenated uuid); the partition is its \
             repository's.",
            "Per item: decisions in the order they were made.",
            "People's triage decisions (who, when, from and to status, reason, comment): the \
             audit trail, kept forever; nothing is edited in place.",
        ),
        Topic::Inventory => (
            "The inventory item id; a null value (tombstone) purges the item.",
            "Per item: the latest record per key is the item's current state.",
            "The aggregator's compacted changelog of the inventory (one secret in one \
             repository across scans), written exactly once with its consumer offsets \
             (read_committed).",
        ),
    }
}

/// The document for a deployment: its topic names (`names`, with its prefix), the partitions
/// and replicas its data topics are created with, and its schema registry's URL.
pub fn document(
    names: &TopicNames,
    partitions: i32,
    replication_factor: i32,
    registry_url: &str,
) -> Value {
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for topic in Topic::ALL {
        let spec = topic.spec(partitions, replication_factor);
        let (key, ordering, description) = about(topic);
        let name = names.name(topic);
        let message_name = match topic.value_schema() {
            Some(schema) => schema.file_name().trim_end_matches(".avsc").to_owned(),
            None if topic == Topic::NotificationsDlq => "NotificationDeadLetter".to_owned(),
            None => "DeadLetter".to_owned(),
        };
        let payload = match topic.value_schema() {
            Some(schema) => json!({
                "schemaFormat": AVRO_SCHEMA_FORMAT,
                "schema": serde_json::from_str::<Value>(schema.source()).unwrap_or(Value::Null),
            }),
            None if topic == Topic::NotificationsDlq => json!({
                "type": "object",
                "description": "The notification's JSON body as a webhook receives it (docs/notifications.md): type, idempotency_key, reason, item.",
            }),
            None => json!({
                "type": "string",
                "format": "binary",
                "description": "The original record's value, unchanged.",
            }),
        };
        let mut header_properties = json!({
            headers::TRACEPARENT: {
                "type": "string",
                "description": "W3C trace context: the request's trace, a span of this record's own.",
            },
            headers::CORRELATION_ID: {
                "type": "string",
                "description": "The submitting request's correlation id.",
            },
        });
        if topic == Topic::CommandsDlq {
            for (header, text) in [
                (
                    headers::DLQ_REASON,
                    "Why the command could not be processed.",
                ),
                (
                    headers::DLQ_ERROR_KIND,
                    "empty, undecodable or invalid_command.",
                ),
                (headers::DLQ_TOPIC, "The topic the record came from."),
                (headers::DLQ_PARTITION, "Its partition."),
                (headers::DLQ_OFFSET, "Its offset."),
            ] {
                header_properties[header] = json!({"type": "string", "description": text});
            }
        }
        if topic == Topic::NotificationsDlq {
            for (header, text) in [
                (
                    headers::DLQ_REASON,
                    "The last error (an HTTP status or a transport error).",
                ),
                (headers::DLQ_ERROR_KIND, "http_status or request."),
                ("notification-destination", "The destination's name."),
                ("notification-attempts", "How many tries were made."),
                ("idempotency-key", "The notification's idempotency key."),
            ] {
                header_properties[header] = json!({"type": "string", "description": text});
            }
        }
        let mut message = json!({
            "name": message_name,
            "title": message_name,
            "summary": description,
            "headers": {"type": "object", "properties": header_properties},
            "payload": payload,
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": key},
                    "bindingVersion": KAFKA_BINDINGS,
                }
            },
        });
        if topic.value_schema().is_some() {
            // Confluent wire format: magic byte 0, the schema id, then Avro binary.
            message["contentType"] = json!("application/vnd.apache.avro+binary");
            message["bindings"]["kafka"]["schemaIdLocation"] = json!("payload");
            message["bindings"]["kafka"]["schemaIdPayloadEncoding"] = json!("confluent");
            message["bindings"]["kafka"]["schemaLookupStrategy"] = json!("TopicNameStrategy");
        } else if topic == Topic::NotificationsDlq {
            message["contentType"] = json!("application/json");
        } else {
            message["contentType"] = json!("application/octet-stream");
        }
        messages.insert(message_name.clone(), message);
        let mut configuration = Map::new();
        for (config, value) in &spec.configs {
            let value = match config.as_str() {
                "cleanup.policy" => json!(value.split(',').collect::<Vec<_>>()),
                _ => value
                    .parse::<i64>()
                    .map_or_else(|_| json!(value), |n| json!(n)),
            };
            configuration.insert(config.clone(), value);
        }
        let id = topic.base_name().to_owned();
        channels.insert(
            id.clone(),
            json!({
                "address": name,
                "title": topic.base_name(),
                "description": format!("{description} Key: {key} Ordering: {ordering}"),
                "messages": {message_name.clone(): {"$ref": format!("#/components/messages/{message_name}")}},
                "bindings": {
                    "kafka": {
                        "topic": name,
                        "partitions": spec.partitions,
                        "replicas": spec.replication_factor,
                        "topicConfiguration": configuration,
                        "bindingVersion": KAFKA_BINDINGS,
                    }
                },
            }),
        );
        operations.insert(
            format!("write-{id}"),
            json!({
                "action": "send",
                "channel": {"$ref": format!("#/channels/{id}")},
                "summary": format!("scanstream writes {}.", topic.base_name()),
                "messages": [{"$ref": format!("#/channels/{id}/messages/{message_name}")}],
            }),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "scanstream topics",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every topic scanstream writes: keys are UTF-8 strings; values are Avro \
                in the Confluent wire format, subjects <topic>-value (TopicNameStrategy) under \
                BACKWARD compatibility; read with isolation.level=read_committed. Python's \
                confluent-kafka AvroDeserializer needs return_record_name=True to see which \
                union branch (event type) a value holds; Avro enum symbols are upper case \
                (CRITICAL, SUCCEEDED).",
        },
        "servers": {
            "registry": {
                "host": registry_url.split("://").nth(1).unwrap_or(registry_url),
                "protocol": "http",
                "description": "The Confluent-compatible schema registry holding every value schema.",
            }
        },
        "defaultContentType": "application/vnd.apache.avro+binary",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_is_a_channel_as_its_definition_says() {
        let names = TopicNames::new("acme.");
        let doc = document(&names, 12, 3, "http://registry:8081/apis/ccompat/v7");
        assert_eq!(doc["asyncapi"], "3.0.0");
        let channels = doc["channels"].as_object().unwrap();
        assert_eq!(channels.len(), Topic::ALL.len());
        for topic in Topic::ALL {
            let spec = topic.spec(12, 3);
            let channel = &channels[topic.base_name()];
            let kafka = &channel["bindings"]["kafka"];
            assert_eq!(channel["address"], names.name(topic));
            assert_eq!(kafka["topic"], names.name(topic));
            assert_eq!(kafka["partitions"], spec.partitions);
            assert_eq!(kafka["replicas"], 3);
            let configuration = kafka["topicConfiguration"].as_object().unwrap();
            assert_eq!(configuration.len(), spec.configs.len());
            assert_eq!(
                configuration["cleanup.policy"],
                json!([spec.configs["cleanup.policy"]])
            );
            if let Some(retention) = spec.configs.get("retention.ms") {
                assert_eq!(
                    configuration["retention.ms"],
                    retention.parse::<i64>().unwrap()
                );
            }
            // The channel's message is the component, whose payload is the topic's schema.
            let (name, reference) = channel["messages"]
                .as_object()
                .unwrap()
                .iter()
                .next()
                .unwrap();
            assert_eq!(reference["$ref"], format!("#/components/messages/{name}"));
            let message = &doc["components"]["messages"][name];
            match topic.value_schema() {
                Some(schema) => {
                    assert_eq!(message["payload"]["schemaFormat"], AVRO_SCHEMA_FORMAT);
                    let avsc: Value = serde_json::from_str(schema.source()).unwrap();
                    assert_eq!(message["payload"]["schema"], avsc);
                    assert_eq!(
                        message["bindings"]["kafka"]["schemaIdPayloadEncoding"],
                        "confluent"
                    );
                }
                None => assert!(matches!(
                    topic,
                    Topic::CommandsDlq | Topic::NotificationsDlq
                )),
            }
            assert!(message["headers"]["properties"][headers::TRACEPARENT].is_object());
            assert!(
                !message["bindings"]["kafka"]["key"]["description"]
                    .as_str()
                    .unwrap()
                    .is_empty()
            );
            // An operation writes it.
            let operation = &doc["operations"][format!("write-{}", topic.base_name())];
            assert_eq!(operation["action"], "send");
            assert_eq!(
                operation["channel"]["$ref"],
                format!("#/channels/{}", topic.base_name())
            );
        }
        let dlq = &doc["components"]["messages"]["DeadLetter"]["headers"]["properties"];
        assert!(dlq[headers::DLQ_REASON].is_object());
        assert!(dlq[headers::DLQ_OFFSET].is_object());
    }
}
