//! Scheduled scans with Kubernetes CronJob semantics.
//!
//! # Layout
//! - [`timetable`]: cron expressions (5 fields or `@hourly`-style macros, UTC) and their ticks.
//! - [`plan`]: which ticks are due at a given time (starting deadline, suspend), what the
//!   concurrency policy does with active runs, and the run names `<schedule>-<minute>`.
//!
//! The `POST /jobs/schedule` API, the `scans.schedules` store and the leader-elected firing
//! role are built on these (issue 7); `scanstream scheduler` is not available yet.

pub mod plan;
pub mod timetable;

pub use plan::{Action, ActiveRun, Due, decide, due, run_name, tick_of};
pub use timetable::{DEFAULT_CRON, Timetable, TimetableError, minute_of};
