//! The scanner role: consumes `scans.commands`, mirrors repositories into a shared cache, runs
//! scan engines over their blobs and reports events and findings.
//!
//! # Layout
//! - [`rules`]: the `secrets` rule pack (TOML), merged and compiled.
//! - [`engine`]: the trait every engine implements; [`secrets`]: the built-in engine.
//! - [`source`]: what a scan reads content from; sources are a repository's blobs ([`git`]) or
//!   a folder's files ([`dir`]). [`runner`]: runs an engine over a source's items on every core.
//! - [`command`]: command engines (any program writing SARIF) on a worktree of the scanned
//!   commit, run as child processes or Kubernetes Jobs.
//! - [`results`]: the content-addressed result cache shared by scanners.
//! - [`mirror`]: the shared repository mirror cache, its locks, credentials and eviction.
//! - [`scan`]: scan modes, engines and caches together; used by the service and `scanstream scan`.
//! - [`report`]: human, JSON and SARIF output of a local scan.
//! - The service: [`consumer`] (commands, offsets, back-pressure, cancels, DLQ) runs [`job`]s
//!   (attempts and their events), numbered through the [`ledger`], reported through [`emit`];
//!   [`offsets`] decides what may be committed; [`startup`] wires it all; [`metrics`] names
//!   what it records.
//! - [`Error`]: the one error type, with a bounded label per kind.

pub mod command;
mod consumer;
pub mod decode;
pub mod dir;
mod emit;
pub mod engine;
mod error;
mod git;
mod job;
mod ledger;
pub mod metrics;
pub mod mirror;
mod offsets;
pub mod report;
mod results;
pub mod rules;
pub mod runner;
pub mod scan;
pub mod secrets;
pub mod source;
pub mod startup;

pub use error::Error;
pub use startup::Scanner;

pub use scanstream_platform::now_ms;
