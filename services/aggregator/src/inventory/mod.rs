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

use scanstream_contracts::inventory::ItemStatus;

use crate::index::Index;

/// Sets [`crate::metrics::INVENTORY_ITEMS`] from the index (before `/metrics` renders); nothing
/// until the index has read the whole store, so a partial count is never reported.
pub(crate) fn gauge_items(index: &Index) {
    if !index.built() {
        return;
    }
    let counts = index.with(|_, items| {
        let mut counts = [0u64; 3];
        for item in items.values() {
            counts[item.status as usize] += 1;
        }
        counts
    });
    for (status, count) in [ItemStatus::Open, ItemStatus::Resolved, ItemStatus::Ignored]
        .into_iter()
        .zip(counts)
    {
        metrics::gauge!(crate::metrics::INVENTORY_ITEMS, "status" => status.as_str().to_lowercase())
            .set(count as f64);
    }
}
