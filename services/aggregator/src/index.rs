//! An in-memory summary of every job and inventory item, for reads that look at all of them
//! (the dashboard's overview and listings).
//!
//! The store keeps values as changelog bytes; decoding 50,000 items per page view would take
//! far longer than a page may. The index decodes each key once when the store writes it
//! ([`Store::take_changed`]) and keeps only the few fields those reads need, so an overview
//! adds up small structs in memory. It starts from a full pass over the store; keys written
//! during that pass are read again after it, so nothing written is missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use scanstream_contracts::Codec;
use scanstream_contracts::finding::Severity;
use scanstream_contracts::inventory::{InventoryItem, ItemStatus};
use scanstream_contracts::state::{JobState, JobStatus};
use scanstream_platform::sync;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, Table};

/// What the index keeps of a job.
#[derive(Debug, Clone)]
pub struct JobSummary {
    pub id: u128,
    pub name: String,
    pub repo: Arc<str>,
    pub schedule: Option<String>,
    pub status: JobStatus,
    pub succeeded: i64,
    pub failed: i64,
    /// Findings of the latest run.
    pub findings: i64,
    pub updated_at: i64,
    /// Each run's (queued, finished) times, oldest first.
    pub runs: Vec<(i64, Option<i64>)>,
    /// When the latest run started, if it has.
    pub started_at: Option<i64>,
    pub queued_at: i64,
}

/// What the index keeps of an inventory item.
#[derive(Debug, Clone, Copy)]
pub struct ItemSummary {
    /// The repository's key in [`Index::repo_name`].
    pub repo: u64,
    pub status: ItemStatus,
    pub severity: Severity,
    pub in_tip: bool,
    pub first_seen: i64,
}

#[derive(Default)]
struct Maps {
    jobs: HashMap<u128, JobSummary>,
    items: HashMap<u128, ItemSummary>,
    repos: HashMap<u64, Arc<str>>,
}

/// The summaries, shared by the reads; kept current by [`Index::follow`].
#[derive(Default)]
pub struct Index {
    maps: RwLock<Maps>,
    built: AtomicBool,
}

/// The repository key of an item id: its high 64 bits (see `ItemId::of`).
pub fn repo_key(item: u128) -> u64 {
    (item >> 64) as u64
}

impl Index {
    /// Whether the first pass over the store has finished (until then, counts are partial).
    pub fn built(&self) -> bool {
        self.built.load(Ordering::Acquire)
    }

    /// Runs `read` on the current summaries.
    pub fn with<R>(
        &self,
        read: impl FnOnce(&HashMap<u128, JobSummary>, &HashMap<u128, ItemSummary>) -> R,
    ) -> R {
        let maps = sync::read(&self.maps);
        read(&maps.jobs, &maps.items)
    }

    /// Every repository's key and URL.
    pub fn repos(&self) -> Vec<(u64, Arc<str>)> {
        sync::read(&self.maps)
            .repos
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    /// A repository's URL by its key.
    pub fn repo_name(&self, repo: u64) -> Option<Arc<str>> {
        sync::read(&self.maps).repos.get(&repo).cloned()
    }

    /// Builds the index from the store, then applies every write until `stop`.
    pub async fn follow(
        self: Arc<Self>,
        store: Arc<Store>,
        codec: Arc<Codec>,
        stop: CancellationToken,
    ) {
        for table in [Table::Jobs, Table::Items] {
            let mut after = None;
            loop {
                let page = match store.blocking(move |s| s.page(table, after, 5_000)).await {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::warn!(error = %e, "the dashboard index could not read the store; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let Some(last) = page.last() else { break };
                after = Some(last.0);
                let keyed = page.into_iter().map(|(k, v)| (k, Some(v.value))).collect();
                self.apply(table, keyed, &codec).await;
                if stop.is_cancelled() {
                    return;
                }
            }
        }
        self.built.store(true, Ordering::Release);
        loop {
            let changed = tokio::select! {
                _ = stop.cancelled() => return,
                changed = store.take_changed() => changed,
            };
            for (table, keys) in [(Table::Jobs, changed.jobs), (Table::Items, changed.items)] {
                let keys: Vec<u128> = keys.into_iter().collect();
                if keys.is_empty() {
                    continue;
                }
                let read = keys.clone();
                match store.blocking(move |s| s.get_many(table, &read)).await {
                    Ok(values) => {
                        let keyed = keys
                            .into_iter()
                            .zip(values)
                            .map(|(k, v)| (k, v.map(|v| v.value)))
                            .collect();
                        self.apply(table, keyed, &codec).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the dashboard index missed a store write")
                    }
                }
            }
        }
    }

    /// Decodes and applies values (`None`: the key was removed).
    async fn apply(&self, table: Table, values: Vec<(u128, Option<Vec<u8>>)>, codec: &Codec) {
        match table {
            Table::Jobs => {
                let decoded = decode_all::<JobState>(values, codec).await;
                let mut maps = sync::write(&self.maps);
                for (key, job) in decoded {
                    match job {
                        Some(job) => {
                            let repo = intern(&mut maps.repos, &job.repo_url);
                            maps.jobs.insert(key, summarize_job(key, job, repo));
                        }
                        None => {
                            maps.jobs.remove(&key);
                        }
                    }
                }
            }
            Table::Items => {
                let decoded = decode_all::<InventoryItem>(values, codec).await;
                let mut maps = sync::write(&self.maps);
                for (key, item) in decoded {
                    match item {
                        Some(item) => {
                            maps.repos
                                .entry(repo_key(key))
                                .or_insert_with(|| Arc::from(item.repo_url.as_str()));
                            maps.items.insert(
                                key,
                                ItemSummary {
                                    repo: repo_key(key),
                                    status: item.status,
                                    severity: item.severity,
                                    in_tip: item.in_tip,
                                    first_seen: item.first_seen,
                                },
                            );
                        }
                        None => {
                            maps.items.remove(&key);
                        }
                    }
                }
            }
        }
    }
}

/// Decodes stored values (`None`: removed); one that does not decode is logged and left out,
/// so the index keeps its last good summary of that key.
async fn decode_all<T: scanstream_contracts::schema::AvroRecord>(
    values: Vec<(u128, Option<Vec<u8>>)>,
    codec: &Codec,
) -> Vec<(u128, Option<T>)> {
    let mut decoded = Vec::with_capacity(values.len());
    for (key, value) in values {
        let Some(bytes) = value else {
            decoded.push((key, None));
            continue;
        };
        match codec.decode::<T>(&bytes).await {
            Ok(value) => decoded.push((key, Some(value))),
            Err(e) => {
                tracing::warn!(error = %e, "the dashboard index skipped a value it could not decode")
            }
        }
    }
    decoded
}

/// The repository key of a normalized repository URL (the high 64 bits of its items' ids).
pub fn repo_key_of(url: &str) -> u64 {
    repo_key(scanstream_contracts::inventory::ItemId::range_of(url).0)
}

/// One shared string per repository URL: a thousand jobs of one repository keep one copy.
fn intern(repos: &mut HashMap<u64, Arc<str>>, url: &str) -> Arc<str> {
    repos
        .entry(repo_key_of(url))
        .or_insert_with(|| Arc::from(url))
        .clone()
}

fn summarize_job(id: u128, job: JobState, repo: Arc<str>) -> JobSummary {
    let latest = job.runs.last();
    JobSummary {
        id,
        started_at: latest.and_then(|r| r.started_at),
        queued_at: latest.map_or(job.updated_at, |r| r.queued_at),
        runs: job
            .runs
            .iter()
            .map(|r| (r.queued_at, r.finished_at))
            .collect(),
        name: job.job_name,
        repo,
        schedule: job.schedule,
        status: job.status,
        succeeded: job.succeeded,
        failed: job.failed,
        findings: job.findings.total(),
        updated_at: job.updated_at,
    }
}
