//! Typed, layered settings. Sources, later ones winning:
//! 1. `config/default.toml`, embedded in the binary;
//! 2. an optional file (`--config FILE`, TOML);
//! 3. environment variables `SCANSTREAM__<SECTION>__<KEY>` (double underscores, any case);
//! 4. overrides the command line sets (`--bootstrap-servers`, …).
//!
//! Every section is passed down explicitly; there is no process-global configuration.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use secrecy::SecretString;
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");
pub const ENV_PREFIX: &str = "SCANSTREAM";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be loaded: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key {key}: {problem}")]
    Invalid { key: &'static str, problem: String },
}

/// All settings; each role reads the sections it needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub registry: RegistrySettings,
    pub topics: TopicSettings,
    pub api: ApiSettings,
    pub ingest: IngestSettings,
    pub aggregator: AggregatorSettings,
    pub scanner: ScannerSettings,
    pub scheduler: SchedulerSettings,
    pub telemetry: TelemetrySettings,
}

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
    pub statistics_interval_ms: u64,
    pub request_timeout_ms: u64,
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
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// Base URL of the Confluent-compatible API (Apicurio: `…/apis/ccompat/v7`).
    pub url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretString>,
    pub timeout_ms: u64,
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

/// Settings of the HTTP roles.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    pub listen: String,
    pub auth_enabled: bool,
    pub tokens: Vec<TokenSettings>,
}

/// One API token. Only its SHA-256 is configured, so a leaked configuration leaks no token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Who holds the token; recorded as `requested_by` on what it submits.
    pub name: String,
    /// Lowercase hex SHA-256 of the token.
    pub sha256: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    pub repo_template: String,
    pub engines: Vec<String>,
    pub default_engines: Vec<String>,
    pub file_roots: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub body_limit_bytes: usize,
    pub write_timeout_ms: u64,
    pub retry_after_seconds: u64,
    pub batch_max_requests: usize,
    pub batch_linger_ms: u64,
    pub writers: usize,
    pub idempotency_ttl_seconds: u64,
    pub idempotency_capacity: usize,
}

impl IngestSettings {
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorSettings {
    pub data_dir: String,
    pub instance_id: String,
    pub group_id: String,
    pub batch_max_events: usize,
    pub batch_linger_ms: u64,
}

impl AggregatorSettings {
    /// `instance_id`, else `$HOSTNAME`, else `aggregator`.
    pub fn instance(&self) -> String {
        if !self.instance_id.is_empty() {
            return self.instance_id.clone();
        }
        std::env::var("HOSTNAME").unwrap_or_else(|_| "aggregator".to_owned())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Consumer group whose owner of partition 0 of `scans.schedules` is the leader.
    pub group_id: String,
    pub instance_id: String,
    /// How long a leader that stopped heartbeating keeps the leadership.
    pub session_timeout_ms: u64,
    /// Window in which a missed tick still fires, for schedules that set none.
    pub starting_deadline_seconds: i64,
    /// The schedule clock runs `clock_scale` times faster than real time from `clock_origin_ms`
    /// on (tests and demos only; 1 is real time).
    pub clock_scale: f64,
    pub clock_origin_ms: i64,
}

impl SchedulerSettings {
    /// `instance_id`, else `$HOSTNAME`, else `scheduler`.
    pub fn instance(&self) -> String {
        if !self.instance_id.is_empty() {
            return self.instance_id.clone();
        }
        std::env::var("HOSTNAME").unwrap_or_else(|_| "scheduler".to_owned())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerSettings {
    /// Shared cache folder: repository mirrors, the result cache and the attempt ledger.
    pub cache_dir: String,
    pub group_id: String,
    /// Names this instance in events (`ScanStarted.scanner_id`); empty means `$HOSTNAME`.
    pub instance_id: String,
    /// Scans run at once by one scanner.
    pub concurrency: usize,
    /// Commands read ahead beyond the running scans before the partitions are paused.
    pub queue_max: usize,
    pub job_timeout_seconds: u64,
    /// Attempts of one run, interrupted ones included.
    pub max_attempts: i32,
    pub retry_backoff_ms: u64,
    pub fetch_timeout_seconds: u64,
    pub lock_timeout_seconds: u64,
    pub refetch_after_seconds: u64,
    pub max_blob_bytes: u64,
    pub mirror_max_idle_hours: u64,
    pub mirror_budget_bytes: u64,
    pub gc_interval_seconds: u64,
    /// Attempt ledger entries older than this are removed (longer than command retention).
    pub ledger_retention_hours: u64,
    /// On shutdown, running scans get this long to finish before they are abandoned.
    pub drain_timeout_seconds: u64,
    /// User rule files merged onto the built-in rule pack.
    pub rule_files: Vec<String>,
    /// A file of finding fingerprints to ignore, one per line; empty for none.
    pub ignore_file: String,
    /// Key of the findings' fingerprints (HMAC); unset uses a built-in key.
    #[serde(default)]
    pub fingerprint_key: Option<SecretString>,
    #[serde(default)]
    pub credentials: Vec<CredentialSettings>,
}

impl ScannerSettings {
    /// `instance_id`, else `$HOSTNAME`, else `scanner`.
    pub fn instance(&self) -> String {
        if !self.instance_id.is_empty() {
            return self.instance_id.clone();
        }
        std::env::var("HOSTNAME").unwrap_or_else(|_| "scanner".to_owned())
    }
}

/// Credentials for private repositories on one host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSettings {
    pub host: String,
    /// Sent with the token over HTTPS (`x-access-token` suits GitHub, `oauth2` GitLab).
    #[serde(default = "default_git_user")]
    pub username: String,
    #[serde(default)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub ssh_key_file: Option<String>,
}

fn default_git_user() -> String {
    "x-access-token".to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    pub log_filter: String,
}

/// Where settings come from besides the embedded defaults.
#[derive(Debug, Default, Clone)]
pub struct Sources<'a> {
    /// TOML files layered in order (a later file wins), e.g. a ConfigMap's settings and then a
    /// Secret's API tokens.
    pub files: Vec<&'a Path>,
    /// Environment variables to read; `None` reads the process environment.
    pub env: Option<BTreeMap<String, String>>,
    /// Dotted keys (`kafka.bootstrap_servers`) set last.
    pub overrides: Vec<(String, String)>,
}

impl Settings {
    /// Loads and validates settings from every layer.
    pub fn load(sources: Sources<'_>) -> Result<Settings, ConfigError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        for path in sources.files {
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        let mut env = Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true);
        if let Some(vars) = sources.env {
            env = env.source(Some(vars.into_iter().collect()));
        }
        builder = builder.add_source(env);
        for (key, value) in sources.overrides {
            builder = builder.set_override(key, value)?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| ConfigError::Invalid {
            key,
            problem: problem.to_owned(),
        };
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return Err(invalid(
                "kafka.bootstrap_servers",
                "must name at least one broker",
            ));
        }
        if self.kafka.security_protocol.uses_sasl()
            && (self.kafka.sasl_username.is_none() || self.kafka.sasl_password.is_none())
        {
            return Err(invalid(
                "kafka.sasl_username",
                "SASL protocols need both kafka.sasl_username and kafka.sasl_password",
            ));
        }
        if !["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
            .contains(&self.kafka.sasl_mechanism.as_str())
        {
            return Err(invalid(
                "kafka.sasl_mechanism",
                "must be SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN",
            ));
        }
        if !(self.registry.url.starts_with("http://") || self.registry.url.starts_with("https://"))
        {
            return Err(invalid(
                "registry.url",
                "must be an http:// or https:// URL",
            ));
        }
        if self.topics.partitions < 1 {
            return Err(invalid("topics.partitions", "must be at least 1"));
        }
        if self.topics.replication_factor < 1 {
            return Err(invalid("topics.replication_factor", "must be at least 1"));
        }
        let listen: std::net::SocketAddr = self.api.listen.parse().map_err(|_| {
            invalid(
                "api.listen",
                "must be an IP address and port, e.g. 0.0.0.0:8080",
            )
        })?;
        if !self.api.auth_enabled && !listen.ip().is_loopback() {
            return Err(invalid(
                "api.auth_enabled",
                "auth may be turned off only when api.listen is a loopback address",
            ));
        }
        for token in &self.api.tokens {
            crate::auth::validate_token(token).map_err(|problem| ConfigError::Invalid {
                key: "api.tokens",
                problem,
            })?;
        }
        for engine in &self.ingest.default_engines {
            if !self.ingest.engines.contains(engine) {
                return Err(invalid(
                    "ingest.default_engines",
                    "every default engine must be listed in ingest.engines",
                ));
            }
        }
        if !self.ingest.repo_template.is_empty() && !self.ingest.repo_template.contains("{name}") {
            return Err(invalid("ingest.repo_template", "must contain {name}"));
        }
        if self.ingest.write_timeout_ms == 0
            || self.ingest.batch_max_requests == 0
            || self.ingest.writers == 0
        {
            return Err(invalid(
                "ingest.write_timeout_ms",
                "write_timeout_ms, batch_max_requests and writers must be positive",
            ));
        }
        if self.scanner.concurrency == 0 || self.scanner.max_attempts < 1 {
            return Err(invalid(
                "scanner.concurrency",
                "concurrency and max_attempts must be at least 1",
            ));
        }
        for credential in &self.scanner.credentials {
            if credential.host.trim().is_empty()
                || (credential.token.is_none() && credential.ssh_key_file.is_none())
            {
                return Err(invalid(
                    "scanner.credentials",
                    "every entry needs a host and a token or an ssh_key_file",
                ));
            }
        }
        if !(self.scheduler.clock_scale.is_finite() && self.scheduler.clock_scale >= 1.0) {
            return Err(invalid(
                "scheduler.clock_scale",
                "must be a number of at least 1",
            ));
        }
        if self.scheduler.starting_deadline_seconds < 0 {
            return Err(invalid(
                "scheduler.starting_deadline_seconds",
                "must not be negative",
            ));
        }
        if !(6_000..=300_000).contains(&self.scheduler.session_timeout_ms) {
            return Err(invalid(
                "scheduler.session_timeout_ms",
                "must be between 6000 and 300000 (the broker's default group session limits)",
            ));
        }
        if self.aggregator.batch_max_events == 0 {
            return Err(invalid("aggregator.batch_max_events", "must be positive"));
        }
        let prefix_ok = self
            .topics
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !prefix_ok || self.topics.prefix.len() > 200 {
            return Err(invalid(
                "topics.prefix",
                "may hold only ASCII letters, digits, '.', '_' and '-' (at most 200)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn load(sources: Sources<'_>) -> Settings {
        Settings::load(sources).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn embedded_defaults_load() {
        let s = load(Sources {
            env: env(&[]),
            ..Sources::default()
        });
        assert_eq!(s.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(s.kafka.security_protocol, SecurityProtocol::Plaintext);
        assert_eq!(s.topics.partitions, 12);
        assert_eq!(s.telemetry.log_format, LogFormat::Pretty);
    }

    #[test]
    fn file_then_env_then_overrides_win_in_that_order() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("scanstream.toml");
        std::fs::write(
            &path,
            "[kafka]\nbootstrap_servers = \"file:9092\"\nclient_id = \"from-file\"\n[topics]\nprefix = \"file.\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s = load(Sources {
            files: vec![&path],
            env: env(&[
                ("SCANSTREAM__KAFKA__BOOTSTRAP_SERVERS", "env:9092"),
                ("SCANSTREAM__TOPICS__PARTITIONS", "3"),
                ("SCANSTREAM_TEST_BOOTSTRAP", "ignored:1"),
            ]),
            overrides: vec![("topics.prefix".into(), "cli.".into())],
        });
        assert_eq!(s.kafka.client_id, "from-file");
        assert_eq!(s.kafka.bootstrap_servers, "env:9092");
        assert_eq!(s.topics.partitions, 3);
        assert_eq!(s.topics.prefix, "cli.");
    }

    #[test]
    fn later_config_files_win_and_add_tables() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let settings = dir.path().join("scanstream.toml");
        let tokens = dir.path().join("tokens.toml");
        std::fs::write(
            &settings,
            "[kafka]\nclient_id = \"first\"\nbootstrap_servers = \"kafka:9093\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            &tokens,
            format!(
                "[kafka]\nclient_id = \"second\"\n[[api.tokens]]\nname = \"ci\"\nsha256 = \"{}\"\nscopes = [\"scans:read\"]\n",
                "ab".repeat(32)
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s = load(Sources {
            files: vec![&settings, &tokens],
            env: env(&[]),
            ..Sources::default()
        });
        assert_eq!(s.kafka.client_id, "second");
        assert_eq!(s.kafka.bootstrap_servers, "kafka:9093");
        assert_eq!(s.api.tokens.len(), 1);
    }

    #[test]
    fn secrets_load_but_never_print() {
        let s = load(Sources {
            env: env(&[
                ("SCANSTREAM__KAFKA__SECURITY_PROTOCOL", "sasl_ssl"),
                ("SCANSTREAM__KAFKA__SASL_USERNAME", "ingest"),
                ("SCANSTREAM__KAFKA__SASL_PASSWORD", "hunter2-very-secret"),
            ]),
            ..Sources::default()
        });
        let password = s
            .kafka
            .sasl_password
            .as_ref()
            .map(|p| p.expose_secret().to_owned());
        assert_eq!(password.as_deref(), Some("hunter2-very-secret"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("SCANSTREAM__KAFKA__SECURITY_PROTOCOL", "sasl_ssl")],
                "kafka.sasl_username",
            ),
            (
                &[("SCANSTREAM__KAFKA__SECURITY_PROTOCOL", "carrier-pigeon")],
                "security_protocol",
            ),
            (
                &[("SCANSTREAM__TOPICS__PARTITIONS", "0")],
                "topics.partitions",
            ),
            (&[("SCANSTREAM__TOPICS__PREFIX", "a b")], "topics.prefix"),
            (&[("SCANSTREAM__REGISTRY__URL", "ftp://x")], "registry.url"),
            (&[("SCANSTREAM__KAFKA__NO_SUCH_KEY", "1")], "no_such_key"),
        ];
        for (vars, key) in cases {
            let err = Settings::load(Sources {
                env: env(vars),
                ..Sources::default()
            })
            .err()
            .unwrap_or_else(|| panic!("{vars:?} was accepted"));
            assert!(err.to_string().contains(key), "{vars:?}: {err}");
        }
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let err = Settings::load(Sources {
            files: vec![Path::new("/nonexistent/scanstream.toml")],
            env: env(&[]),
            ..Sources::default()
        });
        assert!(err.is_err());
    }
}
