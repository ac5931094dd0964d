//! `scanstream scanner` processes against the real broker and registry. Two in one group,
//! sharing one cache folder: 60 jobs over 10 repositories, one scanner killed (SIGKILL) halfway,
//! a poison record and an invalid command. Every job must still end, every attempt must have
//! exactly one terminal event, bad records must land in the DLQ, and no record may hold a
//! planted secret. One alone: deadlines, cancels and failures end their runs with visible
//! attempts. One crashed at each step around an attempt's end: one outcome per attempt. One
//! with command engines (gitleaks, semgrep, a failing and a slow one) next to the built-in one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod endings;
mod engines;
mod failover;
mod faults;
mod group;
mod harness;
#[path = "../../../services/scanner/tests/support/mod.rs"]
mod support;
