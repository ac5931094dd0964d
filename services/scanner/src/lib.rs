//! The scanner role: consumes `scans.commands`, mirrors repositories into a shared cache, runs
//! scan engines over their blobs and reports events and findings.
//!
//! # Layout
//! - [`rules`]: the `secrets` rule pack (TOML), merged and compiled.
//! - [`engine`]: the trait every engine implements; [`secrets`]: the built-in engine.
//! - [`runner`]: runs an engine over a source's items on every core; sources are a
//!   repository's blobs ([`git`]) or a folder's files ([`dir`]).
//! - [`results`]: the content-addressed result cache shared by scanners.
//! - [`mirror`]: the shared repository mirror cache, its locks, credentials and eviction.
//! - [`scan`]: scan modes, engines and caches together; used by the service and `scanstream scan`.
//! - [`report`]: human, JSON and SARIF output of a local scan.
//! - The service: [`consumer`] (commands, offsets, back-pressure, cancels, DLQ) runs [`job`]s
//!   (attempts and their events), numbered through the [`ledger`], reported through [`emit`];
//!   [`offsets`] decides what may be committed; [`startup`] wires it all.

pub mod consumer;
pub mod dir;
pub mod emit;
pub mod engine;
pub mod git;
pub mod job;
pub mod ledger;
pub mod mirror;
pub mod offsets;
pub mod report;
pub mod results;
pub mod rules;
pub mod runner;
pub mod scan;
pub mod secrets;
pub mod startup;

pub use startup::{Application, Scanner};

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the scanner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rule pack: {0}")]
    Rules(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the repository failed: {0}")]
    Git(String),
    #[error("ref {0:?} does not exist in the repository")]
    RefNotFound(String),
    #[error("{0}")]
    Source(String),
    #[error("fetching the repository failed: {message}")]
    Fetch { message: String, retryable: bool },
    #[error("fetching the repository took longer than {0} s")]
    FetchTimeout(u64),
    #[error("the repository mirror stayed locked by other scans for {0} s")]
    Busy(u64),
    #[error("the scan was cancelled")]
    Cancelled,
    #[error("{0}")]
    Refused(String),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error(transparent)]
    Codec(#[from] scanstream_contracts::CodecError),
    #[error("configuration: {0}")]
    Config(String),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether another attempt may succeed where this one failed.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Fetch { retryable, .. } => *retryable,
            Error::FetchTimeout(_) | Error::Busy(_) | Error::Io { .. } | Error::Kafka(_) => true,
            Error::Codec(e) => e.is_transient(),
            Error::Config(_)
            | Error::Rules(_)
            | Error::Git(_)
            | Error::RefNotFound(_)
            | Error::Source(_)
            | Error::Refused(_)
            | Error::Cancelled => false,
        }
    }

    /// A bounded label for metrics and `ScanFailed.error_kind`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Rules(_) => "rules",
            Error::Io { .. } => "io",
            Error::Git(_) => "git",
            Error::RefNotFound(_) => "ref_not_found",
            Error::Source(_) => "source",
            Error::Fetch { .. } => "fetch",
            Error::FetchTimeout(_) => "fetch_timeout",
            Error::Busy(_) => "mirror_busy",
            Error::Cancelled => "cancelled",
            Error::Refused(_) => "refused",
            Error::Kafka(_) => "kafka",
            Error::Codec(_) => "codec",
            Error::Config(_) => "config",
        }
    }
}
