//! A real Apache Kafka broker (KRaft) and a real Confluent-compatible schema registry, for the
//! test suite and for `scanstream up`.
//!
//! Backends, chosen by [`Backend::detect`] unless the caller names one:
//! - [`Backend::External`]: an existing cluster from `SCANSTREAM_TEST_BOOTSTRAP` and
//!   `SCANSTREAM_TEST_REGISTRY`; nothing is started or stopped.
//! - [`Backend::Docker`]: containers through the `testcontainers` crate, when a Docker engine
//!   answers.
//! - [`Backend::Local`]: local JVM processes. Apache Kafka's own jars and Apicurio Registry are
//!   resolved from Maven Central with `mvn` into the cache folder on first use.
//!
//! # Layout
//! - [`artifacts`]: finding Java and Maven, fetching and caching the Kafka and registry artifacts.
//! - [`local`]: the local-process backend (also what `scanstream up` runs).
//! - [`docker`]: the Docker backend.
//! - [`fixture`]: the shared per-run cluster tests use, and per-test isolation ([`TestScope`]).
//! - [`kafka`]: what tests do on their scope: settings, topics, a codec, reading topics back.
//! - [`ready`]: waiting until a broker and a registry really answer.
//! - [`kube`]: a real Kubernetes control plane (`tools/kube-up`) for the harness's own tests.

pub mod artifacts;
pub mod docker;
pub mod engines;
pub mod fixture;
pub mod kafka;
pub mod kube;
pub mod local;
pub mod ready;
pub mod secure;
pub mod transactions;

use std::path::PathBuf;
use std::time::Duration;

pub use fixture::{TestScope, shared};
pub use kafka::{TopicReader, ensure_topics, header};
pub use local::{LocalCluster, LocalOptions, Supervision};
pub use transactions::{HangingTransaction, TransactionTool};

/// Where a started cluster can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Kafka `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// Base URL of the Confluent-compatible registry API.
    pub registry_url: String,
}

/// Environment variables that point the fixture at an existing cluster.
pub const ENV_BOOTSTRAP: &str = "SCANSTREAM_TEST_BOOTSTRAP";
pub const ENV_REGISTRY: &str = "SCANSTREAM_TEST_REGISTRY";
/// Forces a backend: `external`, `docker` or `local`.
pub const ENV_BACKEND: &str = "SCANSTREAM_TEST_BACKEND";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{tool} is required but was not found: {hint}")]
    MissingTool { tool: &'static str, hint: String },
    #[error("{tool} {found} is too old; {required} or newer is required")]
    ToolTooOld {
        tool: &'static str,
        found: String,
        required: String,
    },
    #[error("fetching {artifact} from Maven Central failed (log: {log})")]
    Fetch { artifact: String, log: PathBuf },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{service} did not become ready within {waited:?}; last error: {last_error}; log: {log}"
    )]
    NotReady {
        service: &'static str,
        waited: Duration,
        last_error: String,
        log: PathBuf,
    },
    #[error("{service} exited during start-up ({status}); log: {log}")]
    Exited {
        service: &'static str,
        status: String,
        log: PathBuf,
    },
    #[error("Docker backend: {0}")]
    Docker(String),
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// A project tool (`tools/<name>`) that failed: its last lines of standard error.
    pub(crate) fn tool(name: &str, stderr: &[u8]) -> Error {
        Error::Config(format!(
            "tools/{name} failed: {}",
            String::from_utf8_lossy(stderr)
                .lines()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .join(" | ")
        ))
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which kind of cluster to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    External,
    Docker,
    Local,
}

impl Backend {
    /// `SCANSTREAM_TEST_BACKEND` if set; else external when both endpoint variables are set;
    /// else Docker when an engine answers; else local processes.
    pub fn detect() -> Result<Backend> {
        if let Ok(name) = std::env::var(ENV_BACKEND) {
            return match name.as_str() {
                "external" => Ok(Backend::External),
                "docker" => Ok(Backend::Docker),
                "local" => Ok(Backend::Local),
                other => Err(Error::Config(format!(
                    "{ENV_BACKEND}={other:?}: expected external, docker or local"
                ))),
            };
        }
        if std::env::var_os(ENV_BOOTSTRAP).is_some() && std::env::var_os(ENV_REGISTRY).is_some() {
            return Ok(Backend::External);
        }
        if docker::engine_answers() {
            return Ok(Backend::Docker);
        }
        Ok(Backend::Local)
    }
}

/// The user's cache folder for scanstream: `SCANSTREAM_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/scanstream`, else `~/.cache/scanstream`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SCANSTREAM_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("scanstream");
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("scanstream")
}
