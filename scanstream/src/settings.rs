//! From global flags to [`Settings`].

use std::path::PathBuf;

use scanstream_platform::config::{ENV_PREFIX, Sources};
use scanstream_platform::{ConfigError, Settings};

use crate::cli::{GlobalArgs, LogFormatArg};

/// Settings from every layer, the global flags last, plus `extra` overrides the command adds.
pub fn load(global: &GlobalArgs, extra: &[(&str, String)]) -> Result<Settings, ConfigError> {
    let mut overrides: Vec<(String, String)> = Vec::new();
    if let Some(v) = &global.bootstrap_servers {
        overrides.push(("kafka.bootstrap_servers".into(), v.clone()));
    }
    if let Some(v) = &global.registry_url {
        overrides.push(("registry.url".into(), v.clone()));
    }
    if let Some(v) = &global.topic_prefix {
        overrides.push(("topics.prefix".into(), v.clone()));
    }
    if let Some(v) = global.log_format {
        let v = match v {
            LogFormatArg::Pretty => "pretty",
            LogFormatArg::Json => "json",
        };
        overrides.push(("telemetry.log_format".into(), v.into()));
    }
    overrides.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    Settings::load(Sources {
        files: global.config.iter().map(PathBuf::as_path).collect(),
        env: None,
        overrides,
    })
}

/// True when the user named a Kafka cluster (flag, environment or config file) rather than
/// relying on the built-in default.
pub fn cluster_configured(global: &GlobalArgs) -> bool {
    global.bootstrap_servers.is_some()
        || std::env::var_os(format!("{ENV_PREFIX}__KAFKA__BOOTSTRAP_SERVERS")).is_some()
        || !global.config.is_empty()
}
