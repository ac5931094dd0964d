//! Scheduled scans with Kubernetes CronJob semantics, fired exactly once across failover.
//!
//! # Layout
//! - [`timetable`]: cron expressions (5 fields or `@hourly`-style macros, UTC) and their ticks.
//! - [`plan`]: which ticks are due at a given time (starting deadline, suspend), what the
//!   concurrency policy does with active runs, and the run names `<schedule>-<minute>`.
//! - [`pass`]: one pass of the leader over every schedule: the runs to fire and the new tick
//!   records, a pure function of its inputs.
//! - [`clock`]: the schedule clock (real time, or faster for tests and demos).
//! - [`health`]: what the leader's passes show (readiness, the invalid-schedules metric).
//! - [`role`]: the Kafka-elected leader that writes each pass in one transaction; each term is
//!   a supervised session (`scanstream_platform::supervise`).
//! - [`metrics`]: the names and HELP texts of what it records.
//!
//! The modules are private but [`clock`] and [`metrics`]; what other crates use is re-exported.
//!
//! The `/jobs/schedule` API that writes schedules lives in ingest.

pub mod clock;
mod health;
pub mod metrics;
mod pass;
mod plan;
mod role;
mod timetable;

pub use clock::{Clock, ScaledClock, SystemClock};
pub use plan::{Action, ActiveRun, Due, decide, due, run_name, tick_of};
pub use role::{Scheduler, SchedulerError};
pub use timetable::{DEFAULT_CRON, Timetable, TimetableError, minute_of};
