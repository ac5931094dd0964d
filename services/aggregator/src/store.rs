//! The local store (redb): every job's latest changelog value, and how far the store has read
//! each changelog partition.
//!
//! Values are kept as written to `scans.job-state` (Confluent-framed Avro) behind an 8-byte
//! big-endian `events_folded`, so restoring copies bytes without decoding them, and a write is
//! applied only when it is newer than what is stored. Losing the store is safe: it is rebuilt
//! from the changelog.

use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

/// job id (uuid as u128) → events_folded (8 bytes, big-endian) ++ changelog value.
const JOBS: TableDefinition<u128, &[u8]> = TableDefinition::new("jobs");
/// changelog partition → next changelog offset the store has not applied.
const CHECKPOINTS: TableDefinition<i32, i64> = TableDefinition::new("changelog_checkpoints");

#[derive(Debug, thiserror::Error)]
#[error("local store: {0}")]
pub struct StoreError(#[from] redb::Error);

fn err(e: impl Into<redb::Error>) -> StoreError {
    StoreError(e.into())
}

/// One job's stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub events_folded: i64,
    /// The changelog value: Confluent-framed Avro `JobState`.
    pub value: Vec<u8>,
}

/// A write to apply: a job's new value, or its removal (a changelog tombstone).
#[derive(Debug, Clone)]
pub enum Change {
    Put { job: u128, stored: Stored },
    Delete { job: u128 },
}

pub struct Store {
    db: Database,
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
        {
            write.open_table(JOBS).map_err(err)?;
            write.open_table(CHECKPOINTS).map_err(err)?;
        }
        write.commit().map_err(err)?;
        Ok(Store { db })
    }

    /// Applies `changes` (each only if newer than the stored value) and, when given, moves
    /// changelog checkpoints forward, in one store transaction. `durable` false skips the fsync
    /// (the changelog can replay what a crash loses).
    pub fn apply(
        &self,
        changes: &[Change],
        checkpoints: &[(i32, i64)],
        durable: bool,
    ) -> Result<usize, StoreError> {
        self.write(changes, checkpoints, durable, true)
    }

    /// [`Store::apply`] without the newer-wins check, for restoring into a store that was empty:
    /// changelog order is fold order there, so the last record of a job is its newest.
    pub fn restore(
        &self,
        changes: &[Change],
        checkpoints: &[(i32, i64)],
        durable: bool,
    ) -> Result<usize, StoreError> {
        self.write(changes, checkpoints, durable, false)
    }

    fn write(
        &self,
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
            let mut jobs = write.open_table(JOBS).map_err(err)?;
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
            let mut marks = write.open_table(CHECKPOINTS).map_err(err)?;
            for (partition, offset) in checkpoints {
                let current = marks.get(*partition).map_err(err)?.map(|g| g.value());
                if current.is_none_or(|c| c < *offset) {
                    marks.insert(*partition, *offset).map_err(err)?;
                }
            }
        }
        write.commit().map_err(err)?;
        Ok(applied)
    }

    /// Several jobs in one read transaction.
    pub fn get_many(&self, jobs: &[u128]) -> Result<Vec<Option<Stored>>, StoreError> {
        let read = self.db.begin_read().map_err(err)?;
        let table = read.open_table(JOBS).map_err(err)?;
        jobs.iter()
            .map(|job| Ok(table.get(*job).map_err(err)?.map(|g| split(g.value()))))
            .collect()
    }

    pub fn get(&self, job: u128) -> Result<Option<Stored>, StoreError> {
        let read = self.db.begin_read().map_err(err)?;
        let jobs = read.open_table(JOBS).map_err(err)?;
        Ok(jobs.get(job).map_err(err)?.map(|g| split(g.value())))
    }

    /// Jobs in id order after `after` (exclusive), at most `limit`.
    pub fn page(
        &self,
        after: Option<u128>,
        limit: usize,
    ) -> Result<Vec<(u128, Stored)>, StoreError> {
        let read = self.db.begin_read().map_err(err)?;
        let jobs = read.open_table(JOBS).map_err(err)?;
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

    pub fn len(&self) -> Result<u64, StoreError> {
        let read = self.db.begin_read().map_err(err)?;
        read.open_table(JOBS).map_err(err)?.len().map_err(err)
    }

    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Next changelog offset to apply, per partition.
    pub fn checkpoint(&self, partition: i32) -> Result<Option<i64>, StoreError> {
        let read = self.db.begin_read().map_err(err)?;
        let marks = read.open_table(CHECKPOINTS).map_err(err)?;
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
            .apply(&[put(1, 5, b"five")], &[(0, 10)], true)
            .unwrap();
        store
            .apply(&[put(1, 3, b"three"), put(2, 1, b"one")], &[(0, 4)], false)
            .unwrap();
        assert_eq!(
            store.get(1).ok().flatten().map(|s| s.value),
            Some(b"five".to_vec())
        );
        assert_eq!(store.checkpoint(0).ok().flatten(), Some(10));
        store
            .apply(&[put(1, 6, b"six"), Change::Delete { job: 2 }], &[], true)
            .unwrap();
        assert_eq!(
            store
                .get(1)
                .ok()
                .flatten()
                .map(|s| (s.events_folded, s.value)),
            Some((6, b"six".to_vec()))
        );
        assert_eq!(store.get(2).ok().flatten(), None);
        drop(store);
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(reopened.len().ok(), Some(1));
        // A restore writes what it is given, in order, without the newer-wins check.
        reopened.restore(&[put(1, 2, b"two")], &[], true).unwrap();
        assert_eq!(
            reopened.get(1).ok().flatten().map(|s| s.events_folded),
            Some(2)
        );
    }

    #[test]
    fn pages_walk_every_job_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let changes: Vec<Change> = (0..25u128).rev().map(|j| put(j, 1, b"v")).collect();
        store.apply(&changes, &[], true).unwrap();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.page(after, 10).unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            seen.extend(page.into_iter().map(|(k, _)| k));
        }
        assert_eq!(seen, (0..25u128).collect::<Vec<_>>());
    }
}
