//! Kafka header names scanstream writes, part of the topic contract (docs/topics.md).

/// W3C trace context of the request that caused the record.
pub const TRACEPARENT: &str = "traceparent";
/// Correlation id of the request that caused the record (also in the API's responses and logs).
pub const CORRELATION_ID: &str = "correlation-id";

/// On `scans.commands.dlq`: why the record could not be processed (no secret in it).
pub const DLQ_REASON: &str = "dlq-reason";
/// On `scans.commands.dlq`: a bounded category of the failure, for alerts.
pub const DLQ_ERROR_KIND: &str = "dlq-error-kind";
/// On `scans.commands.dlq`: where the original record was.
pub const DLQ_TOPIC: &str = "dlq-topic";
pub const DLQ_PARTITION: &str = "dlq-partition";
pub const DLQ_OFFSET: &str = "dlq-offset";
