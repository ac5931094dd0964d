//! Every metric this crate records: its name (used by alerts and dashboards, so changed only
//! with them) and its HELP text, given to the recorder by [`describe`].

/// HTTP requests answered, by role, route pattern, method and status.
pub const HTTP_REQUESTS: &str = "scanstream_http_requests_total";
/// Time to answer an HTTP request, by role and route pattern.
pub const HTTP_REQUEST_DURATION: &str = "scanstream_http_request_duration_seconds";
/// Requests refused with a problem answer, by bounded reason.
pub const HTTP_REJECTIONS: &str = "scanstream_http_rejections_total";
/// Submissions acknowledged by Kafka through the transactional writer, by role.
pub const WRITER_ACCEPTED: &str = "scanstream_ingest_accepted_total";
/// Requests per writer transaction, by role.
pub const WRITER_BATCH_SIZE: &str = "scanstream_ingest_batch_size";
/// Time to commit one writer transaction, by role.
pub const WRITER_COMMIT_DURATION: &str = "scanstream_ingest_commit_duration_seconds";
/// Writer transactions, by role and outcome.
pub const WRITER_TRANSACTIONS: &str = "scanstream_ingest_transactions_total";
/// Errors a Kafka client saw talking to brokers, by client and direction (librdkafka statistics).
pub const KAFKA_BROKER_ERRORS: &str = "scanstream_kafka_broker_errors_total";
/// Messages waiting in a Kafka client's queue, by client.
pub const KAFKA_CLIENT_QUEUE: &str = "scanstream_kafka_client_queue_messages";
/// Messages between a consumer's position and the partition end, by client, topic and partition.
pub const KAFKA_CONSUMER_LAG: &str = "scanstream_kafka_consumer_lag_messages";
/// Messages of a consumed partition beyond its last stable offset (in transactions not yet
/// ended), by client, topic and partition. Above zero for over a minute: a hanging transaction.
pub const KAFKA_UNSTABLE_MESSAGES: &str = "scanstream_kafka_unstable_messages";
/// Messages a Kafka client received, by client.
pub const KAFKA_MESSAGES_RECEIVED: &str = "scanstream_kafka_messages_received_total";
/// Messages a Kafka client sent, by client.
pub const KAFKA_MESSAGES_SENT: &str = "scanstream_kafka_messages_sent_total";
/// Records of a followed compacted topic that could not be decoded and were skipped, by topic.
pub const TAIL_BAD_RECORDS: &str = "scanstream_tail_bad_records_total";

/// The process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_open_fds`, `process_threads`, …, Prometheus' standard names), refreshed by
/// [`collect_process`] on each scrape.
fn process() -> &'static metrics_process::Collector {
    static COLLECTOR: std::sync::OnceLock<metrics_process::Collector> = std::sync::OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Samples the process metrics; call before rendering a scrape.
pub fn collect_process() {
    process().collect();
}

/// Gives every metric above its HELP text (and unit); call once the recorder is installed.
pub fn describe() {
    process().describe();
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by role, route pattern, method and status."
    );
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by role and route pattern."
    );
    metrics::describe_counter!(
        HTTP_REJECTIONS,
        "Requests refused with a problem answer, by bounded reason."
    );
    metrics::describe_counter!(
        WRITER_ACCEPTED,
        "Submissions acknowledged by Kafka through the transactional writer, by role."
    );
    metrics::describe_histogram!(
        WRITER_BATCH_SIZE,
        "Requests per writer transaction, by role."
    );
    metrics::describe_histogram!(
        WRITER_COMMIT_DURATION,
        metrics::Unit::Seconds,
        "Time to commit one writer transaction, by role."
    );
    metrics::describe_counter!(
        WRITER_TRANSACTIONS,
        "Writer transactions, by role and outcome."
    );
    metrics::describe_counter!(
        KAFKA_BROKER_ERRORS,
        "Errors a Kafka client saw talking to brokers, by client and direction (librdkafka statistics)."
    );
    metrics::describe_gauge!(
        KAFKA_CLIENT_QUEUE,
        "Messages waiting in a Kafka client's queue, by client."
    );
    metrics::describe_gauge!(
        KAFKA_CONSUMER_LAG,
        "Messages between a consumer's position and the partition end, by client, topic and partition."
    );
    metrics::describe_gauge!(
        KAFKA_UNSTABLE_MESSAGES,
        "Messages of a consumed partition beyond its last stable offset (open transactions), by client, topic and partition; above zero for over a minute means a hanging transaction."
    );
    metrics::describe_counter!(
        KAFKA_MESSAGES_RECEIVED,
        "Messages a Kafka client received, by client."
    );
    metrics::describe_counter!(
        KAFKA_MESSAGES_SENT,
        "Messages a Kafka client sent, by client."
    );
    metrics::describe_counter!(
        TAIL_BAD_RECORDS,
        "Records of a followed compacted topic that could not be decoded and were skipped, by topic."
    );
}
