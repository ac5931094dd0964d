//! The scanner's one error type.

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
    /// A file of a folder that could not be opened or read: it is listed as not scanned, and
    /// the scan goes on with the other files.
    #[error("{path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the repository failed: {0}")]
    Git(String),
    #[error("ref {0:?} does not exist in the repository")]
    RefNotFound(String),
    /// HEAD names a branch the repository does not have, while it has others.
    #[error(
        "the repository's HEAD names {head}, which does not exist; scan one of its branches or \
         tags by name ({refs}), or its whole history"
    )]
    HeadUnborn { head: String, refs: String },
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
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Client(#[from] scanstream_platform::KafkaError),
    #[error(transparent)]
    Codec(#[from] scanstream_contracts::CodecError),
    #[error("worktree: {0}")]
    Worktree(String),
    #[error("Kubernetes: {0}")]
    Kubernetes(String),
    /// A required command engine gave no result.
    #[error("engine {engine} {reason}")]
    Engine {
        engine: String,
        reason: String,
        retryable: bool,
    },
    #[error("configuration: ingest.allowed_hosts: {0}")]
    Hosts(#[from] scanstream_platform::net::HostPolicyError),
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
            Error::Fetch { retryable, .. } | Error::Engine { retryable, .. } => *retryable,
            Error::FetchTimeout(_)
            | Error::Busy(_)
            | Error::Io { .. }
            | Error::Unreadable { .. }
            | Error::Kafka(_)
            | Error::Kubernetes(_)
            | Error::Client(_) => true,
            Error::Codec(e) => e.is_transient(),
            Error::Hosts(_)
            | Error::Rules(_)
            | Error::Git(_)
            | Error::RefNotFound(_)
            | Error::HeadUnborn { .. }
            | Error::Source(_)
            | Error::Worktree(_)
            | Error::Refused(_)
            | Error::Cancelled => false,
        }
    }

    /// A bounded label for metrics and `ScanFailed.error_kind`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Rules(_) => "rules",
            Error::Io { .. } | Error::Unreadable { .. } => "io",
            Error::Git(_) => "git",
            Error::RefNotFound(_) | Error::HeadUnborn { .. } => "ref_not_found",
            Error::Source(_) => "source",
            Error::Fetch { .. } => "fetch",
            Error::FetchTimeout(_) => "fetch_timeout",
            Error::Busy(_) => "mirror_busy",
            Error::Cancelled => "cancelled",
            Error::Refused(_) => "refused",
            Error::Kafka(_) | Error::Client(_) => "kafka",
            Error::Codec(_) => "codec",
            Error::Hosts(_) => "config",
            Error::Worktree(_) => "worktree",
            Error::Kubernetes(_) => "kubernetes",
            Error::Engine { .. } => "engine",
        }
    }
}
