//! The ingest service: a REST API (actix-web) that validates scan requests and writes them to
//! Kafka durably. It keeps the job-manager API of the seed working (`POST /jobs {"name": …}`,
//! `GET /health_check`) and answers `202` only after Kafka committed the work.
//!
//! # Layout
//! - [`domain`]: parse-don't-validate request types (job name, repository URL with the SSRF
//!   rules, git ref, engines).
//! - [`api`]: the routes and the request → command + event mapping.
//! - [`creates`]: creating a schedule exactly once across ingest instances.
//! - [`schedules`]: `/jobs/schedule`, schedules stored on the compacted `scans.schedules`.
//! - [`idempotency`]: replaying answers for `Idempotency-Key`.
//! - [`openapi`]: the OpenAPI 3.1 document.
//! - [`startup`]: starting the role (served and stopped by `scanstream_platform::server`).
//!
//! Every module is private; the role is [`Ingest`].

mod api;
mod creates;
mod domain;
mod idempotency;
mod openapi;
mod schedules;
mod startup;

pub use startup::{Ingest, IngestError};
