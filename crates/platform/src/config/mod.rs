//! Typed, layered settings. Sources, later ones winning:
//! 1. `config/default.toml`, embedded in the binary;
//! 2. an optional file (`--config FILE`, TOML);
//! 3. environment variables `SCANSTREAM__<SECTION>__<KEY>` (double underscores, any case);
//! 4. overrides the command line sets (`--bootstrap-servers`, …).
//!
//! Every section is passed down explicitly; there is no process-global configuration. Each
//! section checks its own values; durations are [`Duration`]s in code and keep their unit in the
//! key (`write_timeout_ms`) in files and the environment.
//!
//! # Layout
//! - [`kafka`]: Kafka, the schema registry and the topics' shape.
//! - [`api`]: the HTTP roles (listening, tokens) and what ingest accepts.
//! - [`roles`]: the aggregator's, scheduler's, scanner's and notifier's settings.

mod api;
mod engines;
mod kafka;
mod roles;

use std::collections::BTreeMap;
use std::path::Path;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

pub use api::{ApiSettings, IngestSettings, Scope, TokenSettings};
pub use engines::{
    BUILT_IN_ENGINE, CommandEngineSettings, EnginePreset, EngineSettings, Executor,
    KubernetesExecutorSettings, PLACEHOLDERS,
};
pub use kafka::{KafkaSettings, RegistrySettings, SecurityProtocol, TopicSettings};
pub use roles::{
    AggregatorSettings, CredentialSettings, DestinationKind, DestinationSettings, NotifierSettings,
    SEVERITY_NAMES, ScannerSettings, SchedulerSettings,
};

const DEFAULTS: &str = include_str!("../../config/default.toml");
pub const ENV_PREFIX: &str = "SCANSTREAM";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be loaded: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key {key}: {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.to_owned(),
    }
}

/// A role instance's name: `configured` when set, else `$HOSTNAME` (a pod's name), else `role`.
pub fn instance_id(configured: &str, role: &str) -> String {
    if !configured.is_empty() {
        return configured.to_owned();
    }
    std::env::var("HOSTNAME").unwrap_or_else(|_| role.to_owned())
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
    pub notifier: NotifierSettings,
    pub telemetry: TelemetrySettings,
    /// Command engines by id (`[engines.<id>]`).
    #[serde(default)]
    pub engines: BTreeMap<String, EngineSettings>,
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
    /// OTLP/HTTP (protobuf) traces endpoint (`http://collector:4318/v1/traces`); empty: no
    /// export.
    pub otlp_endpoint: String,
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

    /// The command engines, presets applied, in id order.
    pub fn command_engines(&self) -> Result<Vec<CommandEngineSettings>, ConfigError> {
        engines::resolve_all(&self.engines)
    }

    /// The engines requests may name: `ingest.engines` and every command engine.
    pub fn engine_ids(&self) -> Vec<String> {
        let mut ids = self.ingest.engines.clone();
        for id in self.engines.keys() {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        ids
    }

    /// Every section's own checks.
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.registry.validate()?;
        self.topics.validate()?;
        self.api.validate()?;
        self.ingest.validate()?;
        self.scanner.validate()?;
        self.scheduler.validate()?;
        self.aggregator.validate()?;
        self.notifier.validate()?;
        self.command_engines()?;
        let endpoint = &self.telemetry.otlp_endpoint;
        if !endpoint.is_empty()
            && url::Url::parse(endpoint).map_or(true, |u| {
                !matches!(u.scheme(), "http" | "https") || u.host().is_none()
            })
        {
            return Err(invalid(
                "telemetry.otlp_endpoint",
                "must be an http(s) URL such as http://otel-collector:4318/v1/traces",
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
        Settings::load(sources).unwrap()
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
    fn an_otlp_endpoint_must_be_an_http_url() {
        let with = |endpoint: &str| {
            Settings::load(Sources {
                env: env(&[("SCANSTREAM__TELEMETRY__OTLP_ENDPOINT", endpoint)]),
                ..Sources::default()
            })
        };
        assert!(with("http://collector:4318/v1/traces").is_ok());
        for bad in ["collector:4318", "ftp://collector/v1/traces", "http://"] {
            let error = with(bad).expect_err(bad).to_string();
            assert!(error.contains("telemetry.otlp_endpoint"), "{error}");
        }
    }

    #[test]
    fn file_then_env_then_overrides_win_in_that_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scanstream.toml");
        std::fs::write(
            &path,
            "[kafka]\nbootstrap_servers = \"file:9092\"\nclient_id = \"from-file\"\n[topics]\nprefix = \"file.\"\n",
        )
        .unwrap();
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
        let dir = tempfile::tempdir().unwrap();
        let settings = dir.path().join("scanstream.toml");
        let tokens = dir.path().join("tokens.toml");
        std::fs::write(
            &settings,
            "[kafka]\nclient_id = \"first\"\nbootstrap_servers = \"kafka:9093\"\n",
        )
        .unwrap();
        std::fs::write(
            &tokens,
            format!(
                "[kafka]\nclient_id = \"second\"\n[[api.tokens]]\nname = \"ci\"\nsha256 = \"{}\"\nscopes = [\"scans:read\"]\n",
                "ab".repeat(32)
            ),
        )
        .unwrap();
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
    fn the_shipped_kubernetes_settings_load_with_their_engines() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let base = root.join("k8s/base/scanstream.toml");
        let engines = root.join("k8s/components/kubernetes-engines/engines.toml");
        let s = load(Sources {
            files: vec![&base, &engines],
            // What the Deployment sets from its Secrets.
            env: env(&[
                ("SCANSTREAM__KAFKA__SASL_USERNAME", "scanstream-scanner"),
                ("SCANSTREAM__KAFKA__SASL_PASSWORD", "from-a-secret"),
            ]),
            ..Sources::default()
        });
        assert_eq!(s.scanner.executor, Executor::Kubernetes);
        assert_eq!(s.scanner.cache_dir, "/var/lib/scanstream/cache");
        let resolved = s.command_engines().unwrap();
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].id, "gitleaks");
        assert!(resolved[0].image.starts_with("ghcr.io/gitleaks/gitleaks:"));
        assert_eq!(s.engine_ids(), ["secrets", "gitleaks"]);
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
