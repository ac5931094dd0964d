//! The ingest API against the real broker and registry: each test spawns its own app on port 0
//! with its own topic prefix ([`helpers::spawn_app`]), one file per feature.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod bad_requests;
mod broker_faults;
mod helpers;
mod idempotency;
mod jobs;
mod routes;
mod schedules;
