//! The aggregator: folds `scans.events` into per-job state, keeps it in a local store with a
//! compacted changelog (`scans.job-state`), and serves job stats.
//!
//! # Layout
//! - [`fold`]: the pure `(JobState?, ScanEvent) → JobState` and its laws.
//! - [`store`]: the local redb store of changelog values and changelog checkpoints.
//! - [`changelog`]: restoring the store from the changelog and following it (every partition).
//! - [`processor`]: the exactly-once consume → fold → changelog + offsets transaction loop,
//!   a batch in named steps (decode, load, fold, commit, write the store).
//! - [`inventory`]: the inventory of secrets per repository, its fold and its processor.
//! - [`stats`]: `GET /jobs/stats` in the job manager's format.
//! - [`api`], [`openapi`]: the read API and its OpenAPI document generated from its types.
//! - [`freshness`]: read-your-writes for `GET /jobs/{uuid}` (waits for the fold, bounded).
//! - [`startup`]: starting the role (served and stopped by `scanstream_platform::server`).
//! - [`index`]: in-memory summaries of every job and item, kept current from the store's writes.
//! - [`ui`]: the dashboard under `/ui/` (server-rendered pages, assets embedded).
//! - [`metrics`]: the names and HELP texts of what it records.
//!
//! Only the modules the benchmark and tests need are public; the role is [`Aggregator`].

mod api;
pub mod changelog;
pub mod fold;
mod freshness;
pub mod index;
pub mod inventory;
pub mod metrics;
mod openapi;
pub mod processor;
mod startup;
pub mod stats;
pub mod store;
pub mod ui;

pub use startup::{Aggregator, AggregatorError};
