//! The one place Kafka clients are configured. Security (TLS, SASL/SCRAM), client ids,
//! statistics and time-outs are applied here once; services ask the factory for a producer,
//! consumer or admin client and never build a `ClientConfig` themselves.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;
use secrecy::ExposeSecret;

use crate::config::KafkaSettings;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("creating the Kafka {kind} client failed: {source}")]
    Create {
        kind: &'static str,
        #[source]
        source: RdKafkaError,
    },
}

/// Which part of scanstream a client belongs to; becomes part of `client.id` and the `client`
/// metric label, so it is a bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    Ingest,
    Scanner,
    Aggregator,
    Scheduler,
    Notifier,
    Admin,
    Cli,
}

impl ClientRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientRole::Ingest => "ingest",
            ClientRole::Scanner => "scanner",
            ClientRole::Aggregator => "aggregator",
            ClientRole::Scheduler => "scheduler",
            ClientRole::Notifier => "notifier",
            ClientRole::Admin => "admin",
            ClientRole::Cli => "cli",
        }
    }
}

/// Builds every Kafka client scanstream uses.
#[derive(Debug, Clone)]
pub struct KafkaFactory {
    settings: KafkaSettings,
}

/// Fetch settings of bulk consumers. librdkafka's defaults (1 MiB per partition per fetch, up
/// to 500 ms fetch waits) cap one consumer at about 200,000 small records/s; these let a
/// restore read 1 million changelog records in about 2 s. `kafka.extra` overrides them.
const BULK_FETCH: &[(&str, &str)] = &[
    ("max.partition.fetch.bytes", "16777216"),
    ("fetch.max.bytes", "104857600"),
    ("fetch.wait.max.ms", "100"),
    ("queued.min.messages", "1000000"),
];

impl KafkaFactory {
    pub fn new(settings: KafkaSettings) -> Self {
        Self { settings }
    }

    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    /// The base config for `role`: brokers, security, client id, statistics, then `extra`.
    pub fn client_config(&self, role: ClientRole) -> ClientConfig {
        let s = &self.settings;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &s.bootstrap_servers)
            .set("client.id", format!("{}-{}", s.client_id, role.as_str()))
            .set("security.protocol", s.security_protocol.as_librdkafka())
            .set(
                "statistics.interval.ms",
                s.statistics_interval.as_millis().to_string(),
            )
            .set(
                "socket.timeout.ms",
                s.request_timeout.as_millis().to_string(),
            )
            .set_log_level(RDKafkaLogLevel::Warning);
        if s.security_protocol.uses_sasl() {
            config.set("sasl.mechanism", &s.sasl_mechanism);
            if let Some(user) = &s.sasl_username {
                config.set("sasl.username", user);
            }
            if let Some(password) = &s.sasl_password {
                config.set("sasl.password", password.expose_secret());
            }
        }
        for (key, value) in [
            ("ssl.ca.location", &s.ssl_ca_location),
            ("ssl.certificate.location", &s.ssl_certificate_location),
            ("ssl.key.location", &s.ssl_key_location),
        ] {
            if let Some(value) = value {
                config.set(key, value);
            }
        }
        if let Some(password) = &s.ssl_key_password {
            config.set("ssl.key.password", password.expose_secret());
        }
        for (key, value) in &s.extra {
            config.set(key, value);
        }
        config
    }

    /// An idempotent producer that waits for every in-sync replica (acks=all).
    pub fn producer(&self, role: ClientRole) -> Result<FutureProducer<StatsContext>, KafkaError> {
        let mut config = self.client_config(role);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4");
        config
            .create_with_context(StatsContext::new(role))
            .map_err(|source| KafkaError::Create {
                kind: "producer",
                source,
            })
    }

    /// A transactional producer with `transactional_id`; call `init_transactions` before use.
    pub fn transactional_producer(
        &self,
        role: ClientRole,
        transactional_id: &str,
    ) -> Result<FutureProducer<StatsContext>, KafkaError> {
        let mut config = self.client_config(role);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("transactional.id", transactional_id);
        // Back-to-back transactions meet CONCURRENT_TRANSACTIONS while the broker still writes
        // the previous markers; librdkafka then waits retry.backoff.ms (100 ms by default)
        // before retrying, which caps a producer at ~10 transactions/s (KAFKA-5477; the Java
        // client uses 20 ms here). `kafka.extra` can still override these.
        for (key, value) in [("retry.backoff.ms", "5"), ("retry.backoff.max.ms", "100")] {
            if !self.settings.extra.contains_key(key) {
                config.set(key, value);
            }
        }
        config
            .create_with_context(StatsContext::new(role))
            .map_err(|source| KafkaError::Create {
                kind: "transactional producer",
                source,
            })
    }

    /// A consumer in `group_id` that stores and commits offsets only when told to (at-least-once
    /// is the caller's to build), reads only committed transactional data, and uses the
    /// cooperative-sticky assignor. `context` receives rebalance callbacks; it should forward
    /// statistics to a [`StatsContext`].
    pub fn consumer_with_context<C: ConsumerContext + 'static>(
        &self,
        role: ClientRole,
        group_id: &str,
        context: C,
    ) -> Result<StreamConsumer<C>, KafkaError> {
        self.consumer_config(role, group_id, false)
            .create_with_context(context)
            .map_err(|source| KafkaError::Create {
                kind: "consumer",
                source,
            })
    }

    /// [`Self::consumer_with_context`] for reading high volumes (the aggregator's events and
    /// changelog): bigger fetches and a deeper prefetch queue, see [`BULK_FETCH`].
    pub fn bulk_consumer_with_context<C: ConsumerContext + 'static>(
        &self,
        role: ClientRole,
        group_id: &str,
        context: C,
    ) -> Result<StreamConsumer<C>, KafkaError> {
        self.consumer_config(role, group_id, true)
            .create_with_context(context)
            .map_err(|source| KafkaError::Create {
                kind: "consumer",
                source,
            })
    }

    /// [`Self::bulk_consumer_with_context`] with the range assignor, for a group that reads
    /// several co-partitioned topics (same partition count, same key → same partition number):
    /// the range assignor gives partition N of every subscribed topic to the same member, which
    /// the cooperative-sticky assignor does not promise.
    pub fn co_partitioned_consumer_with_context<C: ConsumerContext + 'static>(
        &self,
        role: ClientRole,
        group_id: &str,
        context: C,
    ) -> Result<StreamConsumer<C>, KafkaError> {
        let mut config = self.consumer_config(role, group_id, true);
        config.set("partition.assignment.strategy", "range");
        config
            .create_with_context(context)
            .map_err(|source| KafkaError::Create {
                kind: "consumer",
                source,
            })
    }

    /// A bulk consumer (as [`Self::bulk_consumer_with_context`]) that is polled: for a blocking
    /// thread that reads many records as fast as it can (restoring a store).
    pub fn base_consumer(
        &self,
        role: ClientRole,
        group_id: &str,
    ) -> Result<BaseConsumer<StatsContext>, KafkaError> {
        self.consumer_config(role, group_id, true)
            .create_with_context(StatsContext::new(role))
            .map_err(|source| KafkaError::Create {
                kind: "consumer",
                source,
            })
    }

    /// A polled consumer that exists for its group membership (the scheduler's leadership): a
    /// member that stops heartbeating loses its partitions after `session_timeout`.
    pub fn group_member(
        &self,
        role: ClientRole,
        group_id: &str,
        session_timeout: Duration,
    ) -> Result<BaseConsumer<StatsContext>, KafkaError> {
        let session = session_timeout.as_millis();
        let mut config = self.consumer_config(role, group_id, false);
        config
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 4).max(500).to_string());
        config
            .create_with_context(StatsContext::new(role))
            .map_err(|source| KafkaError::Create {
                kind: "consumer",
                source,
            })
    }

    fn consumer_config(&self, role: ClientRole, group_id: &str, bulk: bool) -> ClientConfig {
        let mut config = self.client_config(role);
        if bulk {
            for (key, value) in BULK_FETCH {
                if !self.settings.extra.contains_key(*key) {
                    config.set(*key, *value);
                }
            }
        }
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("partition.assignment.strategy", "cooperative-sticky");
        let session = self.settings.session_timeout.as_millis();
        config
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 3).max(500).to_string());
        if !self.settings.group_instance_id.is_empty() {
            config.set(
                "group.instance.id",
                format!("{}-{group_id}", self.settings.group_instance_id),
            );
        }
        config
    }

    /// A consumer that only asks partitions' offsets and reads nothing: its watermark queries
    /// answer high watermarks, where a read_committed consumer's answer the last stable offset,
    /// which lags a committed transaction until its markers are written.
    pub fn offset_probe(
        &self,
        role: ClientRole,
        group_id: &str,
    ) -> Result<StreamConsumer<StatsContext>, KafkaError> {
        let mut config = self.consumer_config(role, group_id, false);
        config.set("isolation.level", "read_uncommitted");
        config
            .create_with_context(StatsContext::new(role))
            .map_err(|source| KafkaError::Create {
                kind: "consumer",
                source,
            })
    }

    /// [`Self::consumer_with_context`] with a plain [`StatsContext`].
    pub fn consumer(
        &self,
        role: ClientRole,
        group_id: &str,
    ) -> Result<StreamConsumer<StatsContext>, KafkaError> {
        self.consumer_with_context(role, group_id, StatsContext::new(role))
    }

    pub fn admin(&self) -> Result<AdminClient<StatsContext>, KafkaError> {
        self.client_config(ClientRole::Admin)
            .create_with_context(StatsContext::new(ClientRole::Admin))
            .map_err(|source| KafkaError::Create {
                kind: "admin",
                source,
            })
    }

    /// How long a single admin or metadata request may take.
    pub fn request_timeout(&self) -> Duration {
        self.settings.request_timeout
    }
}

/// The partition ids of `topic`, ascending; empty when the topic does not exist. Any client
/// will do (`consumer.client()`, `producer.client()`, `admin.inner()`).
pub fn partitions<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, RdKafkaError> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    let mut ids: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Waits until every record of a transaction is acknowledged and its delivery report released,
/// before `deadline`. Call it before `commit_transaction`: rust-rdkafka flushes inside the commit
/// and, with anything still in flight, its flush polls in 100 ms steps, which would make every
/// transaction last at least 100 ms.
pub async fn settle(
    producer: &FutureProducer<StatsContext>,
    deliveries: Vec<rdkafka::producer::DeliveryFuture>,
    deadline: std::time::Instant,
) -> Result<(), RdKafkaError> {
    use rdkafka::producer::Producer;
    let until = tokio::time::Instant::from_std(deadline);
    for delivery in deliveries {
        match tokio::time::timeout_at(until, delivery).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err((e, _)))) => return Err(e),
            Ok(Err(_)) | Err(_) => return Err(RdKafkaError::Canceled),
        }
    }
    while producer.in_flight_count() > 0 {
        if std::time::Instant::now() >= deadline {
            return Err(RdKafkaError::Canceled);
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    Ok(())
}

/// A consumer context that forwards statistics to a [`StatsContext`] and forgets the partitions
/// it loses: a processor that prepares a partition before its first record (reads a changelog
/// to its end, rebuilds what it remembers) does so again when the partition comes back.
pub struct SyncedContext {
    stats: StatsContext,
    synced: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<i32>>>,
}

impl SyncedContext {
    pub fn new(role: ClientRole) -> Self {
        Self {
            stats: StatsContext::new(role),
            synced: Default::default(),
        }
    }

    /// Whether `partition` was prepared since it was (last) assigned.
    pub fn is_synced(&self, partition: i32) -> bool {
        crate::sync::lock(&self.synced).contains(&partition)
    }

    pub fn mark_synced(&self, partition: i32) {
        crate::sync::lock(&self.synced).insert(partition);
    }

    /// Whether no partition is prepared (after a rebalance took them all).
    pub fn none_synced(&self) -> bool {
        crate::sync::lock(&self.synced).is_empty()
    }
}

impl ClientContext for SyncedContext {
    fn stats(&self, statistics: Statistics) {
        self.stats.record(&statistics);
    }
}

impl rdkafka::consumer::ConsumerContext for SyncedContext {
    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if let rdkafka::consumer::Rebalance::Revoke(list) = rebalance {
            let mut synced = crate::sync::lock(&self.synced);
            for e in list.elements() {
                synced.remove(&e.partition());
            }
            tracing::info!(revoked = list.count(), "partitions revoked");
        }
    }
}

/// Client context that exports librdkafka's statistics as metrics and its log lines as
/// tracing events.
///
/// Metrics (labels from bounded sets only: role, topic, partition):
/// - `scanstream_kafka_consumer_lag_messages{client,topic,partition}`
/// - `scanstream_kafka_unstable_messages{client,topic,partition}`: beyond the last stable offset
/// - `scanstream_kafka_client_queue_messages{client}`: messages waiting in the client
/// - `scanstream_kafka_messages_sent_total{client}` / `_received_total{client}`
/// - `scanstream_kafka_broker_errors_total{client,direction}`
#[derive(Debug, Clone)]
pub struct StatsContext {
    role: ClientRole,
}

impl StatsContext {
    pub fn new(role: ClientRole) -> Self {
        Self { role }
    }

    /// Records one statistics report; wrappers that implement their own context call this.
    pub fn record(&self, stats: &Statistics) {
        let client = self.role.as_str();
        metrics::gauge!(crate::metrics::KAFKA_CLIENT_QUEUE, "client" => client)
            .set(stats.msg_cnt as f64);
        metrics::counter!(crate::metrics::KAFKA_MESSAGES_SENT, "client" => client)
            .absolute(u64::try_from(stats.txmsgs).unwrap_or(0));
        metrics::counter!(crate::metrics::KAFKA_MESSAGES_RECEIVED, "client" => client)
            .absolute(u64::try_from(stats.rxmsgs).unwrap_or(0));
        let (tx_errors, rx_errors) = stats
            .brokers
            .values()
            .fold((0, 0), |(t, r), b| (t + b.txerrs, r + b.rxerrs));
        metrics::counter!(crate::metrics::KAFKA_BROKER_ERRORS, "client" => client, "direction" => "tx")
            .absolute(tx_errors);
        metrics::counter!(crate::metrics::KAFKA_BROKER_ERRORS, "client" => client, "direction" => "rx")
            .absolute(rx_errors);
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                // librdkafka reports -1 for the internal "unassigned" partition and for partitions
                // this client does not consume.
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!(
                    crate::metrics::KAFKA_CONSUMER_LAG,
                    "client" => client,
                    "topic" => topic.clone(),
                    "partition" => partition.to_string()
                )
                .set(p.consumer_lag as f64);
                // Consumers read committed data, so their lag counts to the last stable offset
                // and stays 0 behind a transaction that never ends; this shows it.
                if p.hi_offset >= 0 && p.ls_offset >= 0 {
                    metrics::gauge!(
                        crate::metrics::KAFKA_UNSTABLE_MESSAGES,
                        "client" => client,
                        "topic" => topic.clone(),
                        "partition" => partition.to_string()
                    )
                    .set((p.hi_offset - p.ls_offset).max(0) as f64);
                }
            }
        }
    }
}

impl ClientContext for StatsContext {
    fn stats(&self, statistics: Statistics) {
        self.record(&statistics);
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let client = self.role.as_str();
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(client, facility, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(client, facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(client, facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(client, facility, "{message}"),
        }
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        tracing::error!(client = self.role.as_str(), %error, "{reason}");
    }
}

impl ConsumerContext for StatsContext {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Settings, Sources};

    fn settings(vars: &[(&str, &str)]) -> KafkaSettings {
        settings_with_file(vars, None)
    }

    fn settings_with_file(vars: &[(&str, &str)], file: Option<&std::path::Path>) -> KafkaSettings {
        Settings::load(Sources {
            files: file.into_iter().collect(),
            env: Some(
                vars.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Sources::default()
        })
        .unwrap()
        .kafka
    }

    #[test]
    fn scram_over_tls_is_applied_once_for_every_client() {
        let factory = KafkaFactory::new(settings(&[
            ("SCANSTREAM__KAFKA__SECURITY_PROTOCOL", "sasl_ssl"),
            ("SCANSTREAM__KAFKA__SASL_USERNAME", "scanner"),
            ("SCANSTREAM__KAFKA__SASL_PASSWORD", "s3cret"),
            ("SCANSTREAM__KAFKA__SSL_CA_LOCATION", "/etc/kafka/ca.crt"),
        ]));
        let config = factory.client_config(ClientRole::Scanner);
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("scanner"));
        assert_eq!(config.get("sasl.password"), Some("s3cret"));
        assert_eq!(config.get("ssl.ca.location"), Some("/etc/kafka/ca.crt"));
        assert_eq!(config.get("client.id"), Some("scanstream-scanner"));
    }

    #[test]
    fn plaintext_sets_no_credentials_and_extra_comes_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "[kafka.extra]\n\"linger.ms\" = \"7\"\n").unwrap();
        let factory = KafkaFactory::new(settings_with_file(&[], Some(&path)));
        let config = factory.client_config(ClientRole::Ingest);
        assert_eq!(config.get("security.protocol"), Some("plaintext"));
        assert_eq!(config.get("sasl.password"), None);
        assert_eq!(config.get("linger.ms"), Some("7"));
    }

    #[test]
    fn the_scram_build_links_ssl_and_sasl() {
        // SCRAM needs librdkafka built with SSL; creating a client with these settings fails
        // at once when it was not.
        let factory = KafkaFactory::new(settings(&[
            ("SCANSTREAM__KAFKA__SECURITY_PROTOCOL", "sasl_ssl"),
            ("SCANSTREAM__KAFKA__SASL_USERNAME", "u"),
            ("SCANSTREAM__KAFKA__SASL_PASSWORD", "p"),
        ]));
        assert!(factory.producer(ClientRole::Cli).is_ok());
    }
}
