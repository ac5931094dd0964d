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

use std::sync::Arc;
use std::time::Duration;

use scanstream_contracts::Codec;
use scanstream_contracts::inventory::{InventoryItem, ItemStatus};
use tokio_util::sync::CancellationToken;

use crate::store::{Store, Table};

/// How often the items-by-status gauge is counted (a pass decodes every item).
const GAUGE_EVERY: Duration = Duration::from_secs(30);

/// Counts the store's items by status into [`crate::metrics::INVENTORY_ITEMS`] every
/// [`GAUGE_EVERY`], or ten times as long as a pass took when that is longer (a pass decodes every
/// item, so a big inventory is counted less often rather than costing more CPU), until `stop`.
pub(crate) async fn gauge_items(store: Arc<Store>, codec: Arc<Codec>, stop: CancellationToken) {
    loop {
        let started = std::time::Instant::now();
        let mut counts = [0u64; 3];
        let mut after = None;
        'pages: loop {
            let page = match store
                .blocking(move |s| s.page(Table::Items, after, 5_000))
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "inventory items not counted");
                    break 'pages;
                }
            };
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            for (_, stored) in page {
                if let Ok(item) = codec.decode::<InventoryItem>(&stored.value).await {
                    counts[item.status as usize] += 1;
                }
            }
            if stop.is_cancelled() {
                return;
            }
        }
        for (status, count) in [ItemStatus::Open, ItemStatus::Resolved, ItemStatus::Ignored]
            .into_iter()
            .zip(counts)
        {
            metrics::gauge!(crate::metrics::INVENTORY_ITEMS, "status" => status.as_str().to_lowercase())
                .set(count as f64);
        }
        let pause = GAUGE_EVERY.max(started.elapsed() * 10);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
