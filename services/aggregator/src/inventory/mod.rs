//! The inventory: one item per secret per repository, folded exactly once from `scans.sightings`
//! and `scans.triage` into the local store and the compacted changelog `scans.inventory`.
//!
//! - [`fold`]: the pure fold of sightings and decisions into items, and its laws.
//! - [`api`]: `GET /findings`, `GET /findings/{id}`, `PATCH /findings/{id}`, `GET /repos`.
//! - [`processor`]: the read-process-write loop (both input topics, co-partitioned by
//!   repository, in one consumer group; the changelog and the offsets in one transaction).

pub(crate) mod api;
pub mod fold;
pub mod processor;
