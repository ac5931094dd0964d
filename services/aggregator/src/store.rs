//! The local store (redb): per changelog ([`Table`]: jobs from `scans.job-state`, inventory items
//! from `scans.inventory`), every key's latest changelog value, and how far the store has read
//! each changelog partition.
//!
//! Values are kept as written to the changelog (Confluent-framed Avro) behind an 8-byte
//! big-endian version (`events_folded` of a job, `inputs_folded` of an item), so restoring copies
//! bytes without decoding them, and a write is applied only when it is newer than what is
//! stored. Losing the store is safe: it is rebuilt from the changelogs.

use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

/// job id (uuid as u128) → events_folded (8 bytes, big-endian) ++ changelog value.
const JOBS: TableDefinition<u128, &[u8]> = TableDefinition::new("jobs");
/// `scans.job-state` partition → next changelog offset the store has not applied.
const CHECKPOINTS: TableDefinition<i32, i64> = TableDefinition::new("changelog_checkpoints");
/// item id (uuid as u128: repository hash, then fingerprint hash) → inputs_folded ++ value.
const ITEMS: TableDefinition<u128, &[u8]> = TableDefinition::new("inventory_items");
/// `scans.inventory` partition → next changelog offset the store has not applied.
const ITEM_CHECKPOINTS: TableDefinition<i32, i64> = TableDefinition::new("inventory_checkpoints");

/// One changelog's keys and checkpoints in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Job states (`scans.job-state`), keyed by job id.
    Jobs,
    /// Inventory items (`scans.inventory`), keyed by item id.
    Items,
}

impl Table {
    fn values(self) -> TableDefinition<'static, u128, &'static [u8]> {
        match self {
            Table::Jobs => JOBS,
            Table::Items => ITEMS,
        }
    }

    fn checkpoints(self) -> TableDefinition<'static, i32, i64> {
        match self {
            Table::Jobs => CHECKPOINTS,
            Table::Items => ITEM_CHECKPOINTS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("local store: {0}")]
pub struct StoreError(#[from] redb::Error);

fn err(e: impl Into<redb::Error>) -> StoreError {
    StoreError(e.into())
}

/// One key's stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The value's version: `events_folded` of a job, `inputs_folded` of an item.
    pub events_folded: i64,
    /// The changelog value: Confluent-framed Avro `JobState` or `InventoryItem`.
    pub value: Vec<u8>,
}

/// A write to apply: a key's new value, or its removal (a changelog tombstone).
#[derive(Debug, Clone)]
pub enum Change {
    Put { job: u128, stored: Stored },
    Delete { job: u128 },
}

impl Change {
    /// The key (job or item id) it changes.
    pub fn key(&self) -> u128 {
        match self {
            Change::Put { job, .. } | Change::Delete { job } => *job,
        }
    }
}

pub struct Store {
    db: Database,
    /// Keys written since [`Store::take_changed`] last ran, for the dashboard's index.
    changed: std::sync::Mutex<Changed>,
    wake: tokio::sync::Notify,
}

/// Keys written (put or removed) per table, recorded after their transaction committed.
#[derive(Debug, Default)]
pub struct Changed {
    pub jobs: std::collections::HashSet<u128>,
    pub items: std::collections::HashSet<u128>,
}

impl Store {
    /// Runs `work` on the store on the blocking pool: redb calls block on disk, and async tasks
    /// (HTTP handlers, the fold, the follower) must not.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| err(redb::StorageError::Io(std::io::Error::other(e))))?
    }

    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| err(redb::StorageError::Io(e)))?;
        let db = Database::create(dir.join("aggregator.redb")).map_err(err)?;
        let write = db.begin_write().map_err(err)?;
        for table in [Table::Jobs, Table::Items] {
            write.open_table(table.values()).map_err(err)?;
            write.open_table(table.checkpoints()).map_err(err)?;
        }
        write.commit().map_err(err)?;
        Ok(Store {
            db,
            changed: std::sync::Mutex::default(),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The keys written since the last call, once some were; waits until there are.
    pub async fn take_changed(&self) -> Changed {
        loop {
            {
                let mut changed = scanstream_platform::sync::lock(&self.changed);
                if !changed.jobs.is_empty() || !changed.items.is_empty() {
                    return std::mem::take(&mut *changed);
                }
            }
            self.wake.notified().await;
        }
    }

    /// Applies `changes` (each only if newer than the stored value) and, when given, moves
    /// changelog checkpoints forward, in one store transaction. `durable` false skips the fsync
    /// (the changelog can replay what a crash loses).
    pub fn apply(
        &self,
        table: Table,
        changes: &[Change],
        checkpoints: &[(i32, i64)],
        durable: bool,
    ) -> Result<usize, StoreError> {
        self.write(table, changes, checkpoints, durable, true)
    }

    /// [`Store::apply`] without the newer-wins check, for restoring into a store that was empty:
    /// changelog order is fold order there, so the last record of a job is its newest.
    pub fn restore(
        &self,
        table: Table,
        changes: &[Change],
        checkpoints: &[(i32, i64)],
        durable: bool,
    ) -> Result<usize, StoreError> {
        self.write(table, changes, checkpoints, durable, false)
    }

    fn write(
        &self,
        table: Table,
        changes: &[Change],
        checkpoints: &[(i32, i64)],
        durable: bool,
        check: bool,
    ) -> Result<usize, StoreError> {
        let mut write = self.db.begin_write().map_err(err)?;
        if !durable {
            write.set_durability(Durability::None).map_err(err)?;
        }
        let mut applied = 0;
        let mut bytes = Vec::new();
        {
            let mut jobs = write.open_table(table.values()).map_err(err)?;
            for change in changes {
                match change {
                    Change::Put { job, stored } => {
                        let newer = !check
                            || match jobs.get(*job).map_err(err)? {
                                Some(current) => folded(current.value()) < stored.events_folded,
                                None => true,
                            };
                        if newer {
                            bytes.clear();
                            bytes.extend_from_slice(&stored.events_folded.to_be_bytes());
                            bytes.extend_from_slice(&stored.value);
                            jobs.insert(*job, bytes.as_slice()).map_err(err)?;
                            applied += 1;
                        }
                    }
                    Change::Delete { job } => {
                        jobs.remove(*job).map_err(err)?;
                        applied += 1;
                    }
                }
            }
            let mut marks = write.open_table(table.checkpoints()).map_err(err)?;
            for (partition, offset) in checkpoints {
                let current = marks.get(*partition).map_err(err)?.map(|g| g.value());
                if current.is_none_or(|c| c < *offset) {
                    marks.insert(*partition, *offset).map_err(err)?;
                }
            }
        }
        write.commit().map_err(err)?;
        if !changes.is_empty() {
            let mut changed = scanstream_platform::sync::lock(&self.changed);
            let keys = match table {
                Table::Jobs => &mut changed.jobs,
                Table::Items => &mut changed.items,
            };
            keys.extend(changes.iter().map(Change::key));
            drop(changed);
            self.wake.notify_one();
        }
        Ok(applied)
    }

    /// Several keys in one read transaction.
    pub fn get_many(&self, table: Table, jobs: &[u128]) -> Result<Vec<Option<Stored>>, StoreError> {
        let read = self.db.begin_read().map_err(err)?;
        let table = read.open_table(table.values()).map_err(err)?;
        jobs.iter()
            .map(|job| Ok(table.get(*job).map_err(err)?.map(|g| split(g.value()))))
            .collect()
    }

    pub fn get(&self, table: Table, job: u128) -> Result<Option<Stored>, StoreError> {
        let read = self.db.begin_read().map_err(err)?;
        let jobs = read.open_table(table.values()).map_err(err)?;
        Ok(jobs.get(job).map_err(err)?.map(|g| split(g.value())))
    }

    /// Keys `low..=high` in key order, in one read transaction.
    pub fn range(
        &self,
        table: Table,
        low: u128,
        high: u128,
    ) -> Result<Vec<(u128, Stored)>, StoreError> {
        let read = self.db.begin_read().map_err(err)?;
        let values = read.open_table(table.values()).map_err(err)?;
        let mut out = Vec::new();
        for entry in values.range(low..=high).map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            out.push((k.value(), split(v.value())));
        }
        Ok(out)
    }

    /// Keys in id order after `after` (exclusive), at most `limit`.
    pub fn page(
        &self,
        table: Table,
        after: Option<u128>,
        limit: usize,
    ) -> Result<Vec<(u128, Stored)>, StoreError> {
        let read = self.db.begin_read().map_err(err)?;
        let jobs = read.open_table(table.values()).map_err(err)?;
        let range = match after {
            Some(a) if a == u128::MAX => return Ok(Vec::new()),
            Some(a) => jobs.range((a + 1)..).map_err(err)?,
            None => jobs.range(0u128..).map_err(err)?,
        };
        let mut out = Vec::new();
        for entry in range.take(limit) {
            let (k, v) = entry.map_err(err)?;
            out.push((k.value(), split(v.value())));
        }
        Ok(out)
    }

    pub fn len(&self, table: Table) -> Result<u64, StoreError> {
        let read = self.db.begin_read().map_err(err)?;
        read.open_table(table.values())
            .map_err(err)?
            .len()
            .map_err(err)
    }

    pub fn is_empty(&self, table: Table) -> Result<bool, StoreError> {
        Ok(self.len(table)? == 0)
    }

    /// Next changelog offset to apply, per partition.
    pub fn checkpoint(&self, table: Table, partition: i32) -> Result<Option<i64>, StoreError> {
        let read = self.db.begin_read().map_err(err)?;
        let marks = read.open_table(table.checkpoints()).map_err(err)?;
        Ok(marks.get(partition).map_err(err)?.map(|g| g.value()))
    }
}

fn folded(bytes: &[u8]) -> i64 {
    bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(i64::MIN, i64::from_be_bytes)
}

fn split(bytes: &[u8]) -> Stored {
    Stored {
        events_folded: folded(bytes),
        value: bytes.get(8..).unwrap_or_default().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(job: u128, folded: i64, value: &[u8]) -> Change {
        Change::Put {
            job,
            stored: Stored {
                events_folded: folded,
                value: value.to_vec(),
            },
        }
    }

    #[test]
    fn only_newer_values_replace_older_ones_and_checkpoints_only_advance() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .apply(Table::Jobs, &[put(1, 5, b"five")], &[(0, 10)], true)
            .unwrap();
        store
            .apply(
                Table::Jobs,
                &[put(1, 3, b"three"), put(2, 1, b"one")],
                &[(0, 4)],
                false,
            )
            .unwrap();
        assert_eq!(
            store.get(Table::Jobs, 1).ok().flatten().map(|s| s.value),
            Some(b"five".to_vec())
        );
        assert_eq!(store.checkpoint(Table::Jobs, 0).ok().flatten(), Some(10));
        store
            .apply(
                Table::Jobs,
                &[put(1, 6, b"six"), Change::Delete { job: 2 }],
                &[],
                true,
            )
            .unwrap();
        assert_eq!(
            store
                .get(Table::Jobs, 1)
                .ok()
                .flatten()
                .map(|s| (s.events_folded, s.value)),
            Some((6, b"six".to_vec()))
        );
        assert_eq!(store.get(Table::Jobs, 2).ok().flatten(), None);
        drop(store);
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(reopened.len(Table::Jobs).ok(), Some(1));
        // A restore writes what it is given, in order, without the newer-wins check.
        reopened
            .restore(Table::Jobs, &[put(1, 2, b"two")], &[], true)
            .unwrap();
        assert_eq!(
            reopened
                .get(Table::Jobs, 1)
                .ok()
                .flatten()
                .map(|s| s.events_folded),
            Some(2)
        );
    }

    #[test]
    fn pages_walk_every_job_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let changes: Vec<Change> = (0..25u128).rev().map(|j| put(j, 1, b"v")).collect();
        store.apply(Table::Jobs, &changes, &[], true).unwrap();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.page(Table::Jobs, after, 10).unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            seen.extend(page.into_iter().map(|(k, _)| k));
        }
        assert_eq!(seen, (0..25u128).collect::<Vec<_>>());
    }

    #[test]
    fn tables_are_separate_and_ranges_are_inclusive() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .apply(
                Table::Items,
                &[put(10, 1, b"a"), put(11, 1, b"b"), put(12, 1, b"c")],
                &[(0, 3)],
                true,
            )
            .unwrap();
        assert_eq!(store.len(Table::Jobs).ok(), Some(0));
        assert_eq!(store.checkpoint(Table::Jobs, 0).ok().flatten(), None);
        assert_eq!(store.checkpoint(Table::Items, 0).ok().flatten(), Some(3));
        let keys: Vec<u128> = store
            .range(Table::Items, 10, 11)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![10, 11]);
    }
}
