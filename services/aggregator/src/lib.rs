//! The aggregator: folds `scans.events` into per-job state, keeps it in a local store with a
//! compacted changelog (`scans.job-state`), and serves job stats.
//!
//! This crate holds the role's pure core so far; the store, the exactly-once consume loop and
//! the HTTP API are the rest of the aggregator milestone (`scanstream aggregator` still says it
//! is not available).
//!
//! # Layout
//! - [`fold`]: the pure `(JobState?, ScanEvent) → JobState` and its laws.
//! - [`stats`]: `GET /jobs/stats` in the job manager's format.

pub mod fold;
pub mod stats;
