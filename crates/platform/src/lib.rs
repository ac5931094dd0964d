//! What every scanstream role shares: configuration, the role lifecycle, Kafka clients,
//! telemetry and shutdown.
//!
//! # Layout
//! - [`access`]: what each role may do on Kafka (topics, groups, transactional ids), declared
//!   once: the roles build their ids with it and `strimzi/users.yaml` is rendered from it.
//! - [`config`]: typed settings, layered: embedded defaults → optional `--config` file →
//!   `SCANSTREAM__…` environment variables → command-line overrides. Secrets never print.
//! - [`fault`]: crash points the fault tests stop a process at (`SCANSTREAM_CRASH_AT`).
//! - [`auth`]: bearer tokens (configured hashed) and scopes, shared by the HTTP roles.
//! - [`http`]: problem+json errors, JSON body rules, request context and metrics middleware.
//! - [`kafka`]: the one place Kafka client configs are built (security applied once), and
//!   [`kafka::StatsContext`], which turns librdkafka statistics into metrics (consumer lag).
//! - [`metrics`]: the names and HELP texts of the metrics recorded here.
//! - [`net`]: which hosts repositories may be fetched from (the SSRF guard of ingest and scanner).
//! - [`reachability`]: whether this process reaches Kafka, the `kafka` entry of `/readyz`.
//! - [`registry`]: the schema registry codec for a deployment's settings.
//! - [`repo`]: which repository URLs are accepted, one check for ingest and scanner (schemes,
//!   scp-style rewriting, option injection, `file://` roots after symbolic links are resolved).
//! - [`topics`]: creating scanstream's topics and detecting drift through the admin API.
//! - [`telemetry`]: tracing (pretty or JSON) and the Prometheus recorder.
//! - [`server`]: the role lifecycle and [`server::Application`]: started roles served on one
//!   port with the shared probes, `/metrics` and `/openapi.json`, and stopped in order.
//! - [`session`]: the dashboard's signed, expiring session cookie, checked by every HTTP role.
//! - [`shutdown`]: the SIGINT/SIGTERM signal as a cancellation token.
//! - [`sync`]: taking a lock the one way (a poisoned lock is taken back).
//! - [`supervise`]: sessions that start over after a failure, and retries until stopped.
//! - [`writer`]: batched Kafka transactions for submissions (ingest's API, the scheduler's ticks).
//! - [`tail`]: an in-memory table that follows a compacted topic (schedules, tick records).

pub mod access;
pub mod auth;
pub mod config;
pub mod fault;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod net;
pub mod reachability;
pub mod registry;
pub mod repo;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod supervise;
pub mod sync;
pub mod tail;
pub mod telemetry;
pub mod topics;
pub mod writer;

pub use config::{ConfigError, Settings};

/// Milliseconds since the Unix epoch (0 before it), the unit of every time in the topics.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
pub use kafka::{KafkaError, KafkaFactory};
