//! Tracing and metrics set-up, once per process, from [`TelemetrySettings`].
//!
//! Metric names follow `scanstream_<noun>_<unit>[_total]`; labels come from bounded sets only
//! (never a repository URL, job name or error message).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetrySettings};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log filter {filter:?} is invalid: {source}")]
    Filter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot open the log file {path}: {source}")]
    LogFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
    #[error("the Prometheus recorder could not be installed: {0}")]
    Metrics(String),
    #[error("the OTLP trace exporter could not be built: {0}")]
    Otlp(String),
}

/// Histogram buckets for every `*_seconds` metric: 1 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of whole-scan durations, 100 ms to 30 min (a full match wins over the suffix).
const SCAN_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];
/// Histogram buckets for every `*_size` metric (batch sizes).
const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// Installs the global tracing subscriber (logs to stderr, or appended to `log_file`) and the
/// Prometheus recorder. Returns the handle that renders `/metrics`.
pub fn init(
    settings: &TelemetrySettings,
    log_file: Option<&Path>,
) -> Result<PrometheusHandle, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => filter,
        _ => settings.log_filter.clone(),
    };
    let env_filter = EnvFilter::try_new(&filter).map_err(|source| TelemetryError::Filter {
        filter: filter.clone(),
        source,
    })?;
    let writer = match log_file {
        Some(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| TelemetryError::LogFile {
                    path: path.to_owned(),
                    source,
                })?;
            }
            let file = std::fs::File::options()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| TelemetryError::LogFile {
                    path: path.to_owned(),
                    source,
                })?;
            BoxMakeWriter::new(Arc::new(file))
        }
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(log_file.is_none())
        .with_writer(writer);
    let fmt = match settings.log_format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Pretty => fmt.compact().boxed(),
    };
    let otlp = match settings.otlp_endpoint.as_str() {
        "" => None,
        endpoint => Some(otlp_layer(endpoint)?),
    };
    tracing_subscriber::registry()
        .with(env_filter)
        .with(fmt)
        .with(otlp)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    metrics_handle()
}

/// The tracer provider exporting spans, when `telemetry.otlp_endpoint` is set; flushed by
/// [`shutdown`].
static TRACER_PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// A layer that exports spans over OTLP/HTTP (protobuf) to `endpoint`, batched off the request
/// path.
fn otlp_layer<S>(endpoint: &str) -> Result<impl Layer<S>, TelemetryError>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("scanstream")
                .build(),
        )
        .build();
    let tracer = provider.tracer("scanstream");
    let _ = TRACER_PROVIDER.set(provider);
    Ok(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// Exports the spans not sent yet; call before the process exits.
pub fn shutdown() {
    if let Some(provider) = TRACER_PROVIDER.get() {
        if let Err(e) = provider.force_flush() {
            eprintln!("scanstream: traces not exported: {e}");
        }
        let _ = provider.shutdown();
    }
}

/// Makes `span` a child of the trace context `traceparent` (W3C), so the spans exported over
/// OTLP are in the trace the records' `traceparent` headers name. Nothing without export.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::propagation::TextMapPropagator as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if TRACER_PROVIDER.get().is_none() {
        return;
    }
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(parent);
}

/// The process's Prometheus recorder, installed on first call; later calls (tests that build
/// several applications) get the same handle.
pub fn metrics_handle() -> Result<PrometheusHandle, TelemetryError> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| install_recorder().map_err(|e| e.to_string()))
        .clone()
        .map_err(TelemetryError::Metrics)
}

fn install_recorder() -> Result<PrometheusHandle, TelemetryError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
        .map_err(|e| TelemetryError::Metrics(e.to_string()))?
        .set_buckets_for_metric(Matcher::Suffix("_size".to_owned()), SIZE_BUCKETS)
        .map_err(|e| TelemetryError::Metrics(e.to_string()))?
        // Whole scans (`scanstream_scanner_scan_duration_seconds`) take seconds to minutes.
        .set_buckets_for_metric(
            Matcher::Suffix("_scan_duration_seconds".to_owned()),
            SCAN_BUCKETS,
        )
        .map_err(|e| TelemetryError::Metrics(e.to_string()))?
        .install_recorder()
        .map_err(|e| TelemetryError::Metrics(e.to_string()))
        .inspect(|_| crate::metrics::describe())
}
