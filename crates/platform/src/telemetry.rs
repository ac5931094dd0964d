//! Tracing and metrics set-up, once per process, from [`TelemetrySettings`].
//!
//! Metric names follow `scanstream_<noun>_<unit>[_total]`; labels come from bounded sets only
//! (never a repository URL, job name or error message).

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetrySettings};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log filter {filter:?} is invalid: {source}")]
    Filter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
    #[error("the Prometheus recorder could not be installed: {0}")]
    Metrics(String),
}

/// Installs the global tracing subscriber (logs to stderr) and the Prometheus recorder.
/// Returns the handle that renders `/metrics`.
pub fn init(settings: &TelemetrySettings) -> Result<PrometheusHandle, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => filter,
        _ => settings.log_filter.clone(),
    };
    let env_filter = EnvFilter::try_new(&filter).map_err(|source| TelemetryError::Filter {
        filter: filter.clone(),
        source,
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    let installed = match settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    installed.map_err(|_| TelemetryError::AlreadyInstalled)?;
    PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| TelemetryError::Metrics(e.to_string()))
}
