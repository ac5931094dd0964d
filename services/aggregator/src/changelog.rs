//! Materializing `scans.job-state` into the local store: the restore on start, and following it
//! afterwards, for **every** partition, so any aggregator instance answers reads for any job.
//!
//! The store remembers, per changelog partition, the next offset it has applied; a restart
//! resumes there (a kept store restores only what it missed, an empty one everything). Records
//! apply only when their `events-folded` header is newer than what is stored, so the processor's
//! own direct writes and this follower never move a job backwards.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use scanstream_contracts::{Topic, TopicNames};
use scanstream_platform::kafka::{ClientRole, KafkaFactory, StatsContext};
use tokio_util::sync::CancellationToken;

use crate::store::{Change, Store, Stored};

/// Header on changelog records: the state's `events_folded`, so followers order records without
/// decoding them.
pub const EVENTS_FOLDED_HEADER: &str = "events-folded";

/// How far the follower has read each changelog partition (next offset), shared with the
/// processor, which waits for it before folding a newly assigned partition.
#[derive(Default)]
pub struct Progress {
    positions: Mutex<BTreeMap<i32, i64>>,
    restored: AtomicBool,
}

impl Progress {
    pub fn position(&self, partition: i32) -> Option<i64> {
        self.positions.lock().ok()?.get(&partition).copied()
    }

    /// True once the store holds everything the changelog held when this instance started.
    pub fn restored(&self) -> bool {
        self.restored.load(Ordering::Acquire)
    }

    fn set(&self, positions: BTreeMap<i32, i64>) {
        if let Ok(mut p) = self.positions.lock() {
            p.extend(positions);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Client(#[from] scanstream_platform::KafkaError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("changelog topic {0} not found")]
    NoTopic(String),
}

const BATCH: usize = 50_000;
/// Store commits are fsynced at most this often; a crash loses at most this much, and the
/// changelog replays it (data and checkpoints are committed together).
const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// Restores the store from the changelog, marks `progress` restored, then follows the changelog
/// until `stop`.
pub async fn follow(
    factory: KafkaFactory,
    names: TopicNames,
    group_id: String,
    store: Arc<Store>,
    progress: Arc<Progress>,
    stop: CancellationToken,
) -> Result<(), FollowError> {
    let topic = names.name(Topic::JobState);
    let consumer: StreamConsumer<StatsContext> =
        factory.consumer(ClientRole::Aggregator, &format!("{group_id}-changelog"))?;
    let timeout = factory.request_timeout();
    let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(FollowError::NoTopic(topic));
    }
    let mut assignment = TopicPartitionList::new();
    let mut targets = BTreeMap::new();
    for &p in &partitions {
        let start = match store.checkpoint(p)? {
            Some(offset) => Offset::Offset(offset),
            None => Offset::Beginning,
        };
        assignment.add_partition_offset(&topic, p, start)?;
        let (_, high) = consumer.fetch_watermarks(&topic, p, timeout)?;
        targets.insert(p, high);
    }
    consumer.assign(&assignment)?;

    // Restoring into an empty store needs no newer-wins checks (see `Store::restore`).
    let empty_at_start = store.is_empty()?;
    let started = Instant::now();
    let mut last_durable = Instant::now();
    let mut restored_records: u64 = 0;
    let mut store_time = Duration::ZERO;
    let mut restoring = true;
    loop {
        let mut changes = Vec::new();
        let mut checkpoints: BTreeMap<i32, i64> = BTreeMap::new();
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(if restoring { 20 } else { 100 });
        while changes.len() < BATCH {
            let message = tokio::select! {
                m = tokio::time::timeout_at(deadline, consumer.recv()) => m,
                _ = stop.cancelled() => return Ok(()),
            };
            let Ok(message) = message else { break };
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "changelog consumer error");
                    break;
                }
            };
            checkpoints.insert(message.partition(), message.offset() + 1);
            let Some(job) = message
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| uuid::Uuid::parse_str(k).ok())
                .map(|u| u.as_u128())
            else {
                tracing::warn!(
                    partition = message.partition(),
                    offset = message.offset(),
                    "changelog record without a job id key skipped"
                );
                continue;
            };
            match message.payload() {
                None => changes.push(Change::Delete { job }),
                Some(value) => {
                    let events_folded = message
                        .headers()
                        .and_then(|h| h.iter().find(|h| h.key == EVENTS_FOLDED_HEADER))
                        .and_then(|h| h.value)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(0);
                    changes.push(Change::Put {
                        job,
                        stored: Stored {
                            events_folded,
                            value: value.to_vec(),
                        },
                    });
                }
            }
        }
        if !changes.is_empty() || !checkpoints.is_empty() {
            let count = changes.len() as u64;
            // Key order keeps the B-tree inserts local; the sort is stable, so changes to one job
            // keep their order.
            changes.sort_by_key(|c| match c {
                Change::Put { job, .. } | Change::Delete { job } => *job,
            });
            let points: Vec<(i32, i64)> = checkpoints.into_iter().collect();
            let durable = last_durable.elapsed() >= DURABLE_EVERY;
            if durable {
                last_durable = Instant::now();
            }
            let applying = Instant::now();
            let applied = store
                .blocking(move |s| {
                    if restoring && empty_at_start {
                        s.restore(&changes, &points, durable)
                    } else {
                        s.apply(&changes, &points, durable)
                    }
                })
                .await;
            store_time += applying.elapsed();
            applied?;
            metrics::counter!("scanstream_aggregator_changelog_records_total").increment(count);
            if restoring {
                restored_records += count;
            }
        }
        let mut positions = BTreeMap::new();
        if let Ok(list) = consumer.position() {
            for e in list.elements_for_topic(&topic) {
                if let Some(offset) = e.offset().to_raw() {
                    positions.insert(e.partition(), offset);
                }
            }
        }
        let caught_up = restoring
            && targets.iter().all(|(p, high)| {
                *high == 0
                    || positions.get(p).is_some_and(|pos| pos >= high)
                    || store
                        .checkpoint(*p)
                        .ok()
                        .flatten()
                        .is_some_and(|c| c >= *high)
            });
        progress.set(positions);
        if caught_up {
            restoring = false;
            // The restored state is made durable before anyone relies on it.
            store.blocking(|s| s.apply(&[], &[], true)).await?;
            last_durable = Instant::now();
            let seconds = started.elapsed().as_secs_f64();
            metrics::gauge!("scanstream_aggregator_restore_duration_seconds").set(seconds);
            metrics::gauge!("scanstream_aggregator_restore_records").set(restored_records as f64);
            tracing::info!(
                records = restored_records,
                seconds,
                store_seconds = store_time.as_secs_f64(),
                "store restored from the changelog"
            );
            progress.restored.store(true, Ordering::Release);
        }
        if restoring {
            let done: i64 = positions_sum(&progress, &targets);
            metrics::gauge!("scanstream_aggregator_restore_progress_ratio")
                .set(done as f64 / targets.values().sum::<i64>().max(1) as f64);
        }
    }
}

fn positions_sum(progress: &Progress, targets: &BTreeMap<i32, i64>) -> i64 {
    targets
        .iter()
        .map(|(p, high)| progress.position(*p).unwrap_or(0).min(*high))
        .sum()
}
