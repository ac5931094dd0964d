//! Reaching Kafka and the schema registry, and the topics' shape.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use serde_with::{DurationMilliSeconds, serde_as};

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's `security.protocol` value.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

#[serde_as]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    /// Prefix of every client's `client.id`; the role is appended (`scanstream-ingest`).
    pub client_id: String,
    pub security_protocol: SecurityProtocol,
    pub sasl_mechanism: String,
    #[serde(default)]
    pub sasl_username: Option<String>,
    #[serde(default)]
    pub sasl_password: Option<SecretString>,
    /// CA bundle that signed the brokers' certificates (PEM file).
    #[serde(default)]
    pub ssl_ca_location: Option<String>,
    /// Client certificate and key for mutual TLS (PEM files).
    #[serde(default)]
    pub ssl_certificate_location: Option<String>,
    #[serde(default)]
    pub ssl_key_location: Option<String>,
    #[serde(default)]
    pub ssl_key_password: Option<SecretString>,
    #[serde(rename = "statistics_interval_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub statistics_interval: Duration,
    #[serde(rename = "request_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub request_timeout: Duration,
    /// How long a group member that stopped heartbeating keeps its partitions: the failover
    /// time of scanners and aggregators after a crash.
    #[serde(rename = "session_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub session_timeout: Duration,
    /// Static group membership: when set, every group consumer joins with
    /// `group.instance.id = <this>-<group>`, so a restarted process with the same id takes its
    /// partitions back at once instead of after the session time-out. Give each process its own
    /// stable id (a StatefulSet pod name); empty means dynamic membership.
    #[serde(default)]
    pub group_instance_id: String,
    /// Raw librdkafka properties applied last, for what no key above covers.
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

impl KafkaSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(invalid(
                "kafka.bootstrap_servers",
                "must name at least one broker",
            ));
        }
        if self.security_protocol.uses_sasl()
            && (self.sasl_username.is_none() || self.sasl_password.is_none())
        {
            return Err(invalid(
                "kafka.sasl_username",
                "SASL protocols need both kafka.sasl_username and kafka.sasl_password",
            ));
        }
        if !(Duration::from_secs(6)..=Duration::from_secs(300)).contains(&self.session_timeout) {
            return Err(invalid(
                "kafka.session_timeout_ms",
                "must be between 6000 and 300000 (the broker's default group session limits)",
            ));
        }
        if !["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"].contains(&self.sasl_mechanism.as_str()) {
            return Err(invalid(
                "kafka.sasl_mechanism",
                "must be SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN",
            ));
        }
        Ok(())
    }
}

#[serde_as]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// Base URL of the Confluent-compatible API (Apicurio: `…/apis/ccompat/v7`).
    pub url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretString>,
    #[serde(rename = "timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    /// Prepended to every topic name (and so to every registry subject).
    pub prefix: String,
    /// Partitions of every data topic (`scans.schedules` always has one).
    pub partitions: i32,
    pub replication_factor: i32,
}

impl RegistrySettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(invalid(
                "registry.url",
                "must be an http:// or https:// URL",
            ));
        }
        Ok(())
    }
}

impl TopicSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.partitions < 1 {
            return Err(invalid("topics.partitions", "must be at least 1"));
        }
        if self.replication_factor < 1 {
            return Err(invalid("topics.replication_factor", "must be at least 1"));
        }
        let prefix_ok = self
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !prefix_ok || self.prefix.len() > 200 {
            return Err(invalid(
                "topics.prefix",
                "may hold only ASCII letters, digits, '.', '_' and '-' (at most 200)",
            ));
        }
        Ok(())
    }
}
