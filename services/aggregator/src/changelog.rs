//! Materializing a changelog (`scans.job-state`, `scans.inventory`: a [`Changelog`]) into the
//! local store: the restore on start, and following it afterwards, for **every** partition, so
//! any aggregator instance answers reads for any job or item.
//!
//! The store remembers, per changelog partition, the next offset it has applied; a restart
//! resumes there (a kept store restores only what it missed, an empty one everything). Records
//! apply only when their `events-folded` header is newer than what is stored, so the processor's
//! own direct writes and this follower never move a job backwards.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use scanstream_contracts::{Topic, TopicNames};
use scanstream_platform::kafka::{ClientRole, KafkaFactory, StatsContext};
use tokio_util::sync::CancellationToken;

use crate::store::{Change, Store, Stored, Table};
use scanstream_platform::sync::lock;

/// Header on changelog records: the state's `events_folded`, so followers order records without
/// decoding them.
pub const EVENTS_FOLDED_HEADER: &str = "events-folded";
/// The header on `scans.inventory` records holding the item's `inputs_folded`.
pub const INPUTS_FOLDED_HEADER: &str = "inputs-folded";

/// One changelog the store materializes: its topic, its store table, and the header that holds
/// each record's version.
#[derive(Debug, Clone, Copy)]
pub struct Changelog {
    pub topic: Topic,
    pub table: Table,
    pub version_header: &'static str,
}

/// Job states.
pub const JOB_STATE: Changelog = Changelog {
    topic: Topic::JobState,
    table: Table::Jobs,
    version_header: EVENTS_FOLDED_HEADER,
};

/// Inventory items.
pub const INVENTORY: Changelog = Changelog {
    topic: Topic::Inventory,
    table: Table::Items,
    version_header: INPUTS_FOLDED_HEADER,
};

/// How far the follower has read each changelog partition (next offset), shared with the
/// processor, which waits for it before folding a newly assigned partition.
#[derive(Default)]
pub struct Progress {
    positions: Mutex<BTreeMap<i32, i64>>,
    restored: AtomicBool,
}

impl Progress {
    pub fn position(&self, partition: i32) -> Option<i64> {
        lock(&self.positions).get(&partition).copied()
    }

    /// True once the store holds everything the changelog held when this instance started.
    pub fn restored(&self) -> bool {
        self.restored.load(Ordering::Acquire)
    }

    fn set(&self, positions: BTreeMap<i32, i64>) {
        {
            let mut p = lock(&self.positions);
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
    #[error("the changelog reader failed: {0}")]
    Reader(#[from] tokio::task::JoinError),
    #[error("changelog topic {0} not found")]
    NoTopic(String),
}

/// Most records per store write while following, and how long reading waits to fill one.
const BATCH: usize = 50_000;
const FOLLOW_WINDOW: Duration = Duration::from_millis(100);
/// The same while restoring: bigger writes, since every write of random job ids touches much of
/// the B-tree, and nobody reads the store yet.
const RESTORE_BATCH: usize = 200_000;
const RESTORE_WINDOW: Duration = Duration::from_millis(500);
/// Restored records gathered in memory before one write (about 1.3 million jobs' states).
const RESTORE_BUFFER_BYTES: usize = 256 << 20;
/// Store commits are fsynced at most this often; a crash loses at most this much, and the
/// changelog replays it (data and checkpoints are committed together).
const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// Restores the store from the changelog, marks `progress` restored, then follows the changelog
/// until `stop`.
///
/// Reading runs on a blocking thread with a polled consumer (the cheapest way through millions
/// of records); store writes run in their own task, one batch behind, so reading the next batch
/// overlaps writing the last. Positions become visible in `progress` only once their batch is
/// in the store.
pub async fn follow(
    changelog: Changelog,
    factory: KafkaFactory,
    names: TopicNames,
    group_id: String,
    store: Arc<Store>,
    progress: Arc<Progress>,
    stop: CancellationToken,
) -> Result<(), FollowError> {
    let (batches, queue) = tokio::sync::mpsc::channel::<Work>(2);
    let writer = tokio::spawn(write_batches(
        changelog.table,
        store.clone(),
        progress.clone(),
        queue,
    ));
    let reader = tokio::task::spawn_blocking(move || {
        read(
            changelog, factory, names, group_id, store, progress, stop, batches,
        )
    });
    let read = reader.await.unwrap_or_else(|e| Err(FollowError::Reader(e)));
    // The writer ends once the queue is drained and closed; its error wins over a clean stop.
    match writer.await {
        Ok(Err(e)) => Err(e),
        _ => read,
    }
}

/// The reading half of [`follow`], on a blocking thread.
#[allow(clippy::too_many_arguments)]
fn read(
    changelog: Changelog,
    factory: KafkaFactory,
    names: TopicNames,
    group_id: String,
    store: Arc<Store>,
    progress: Arc<Progress>,
    stop: CancellationToken,
    batches: tokio::sync::mpsc::Sender<Work>,
) -> Result<(), FollowError> {
    let topic = names.name(changelog.topic);
    let table = changelog.table;
    let consumer: BaseConsumer<StatsContext> = factory.base_consumer(
        ClientRole::Aggregator,
        &scanstream_platform::access::changelog_group(&group_id),
    )?;
    let timeout = factory.request_timeout();
    let partitions = scanstream_platform::kafka::partitions(consumer.client(), &topic, timeout)?;
    if partitions.is_empty() {
        return Err(FollowError::NoTopic(topic));
    }
    let mut assignment = TopicPartitionList::new();
    let mut targets = BTreeMap::new();
    for &p in &partitions {
        let start = match store.checkpoint(table, p)? {
            Some(offset) => Offset::Offset(offset),
            None => Offset::Beginning,
        };
        assignment.add_partition_offset(&topic, p, start)?;
        let (_, high) = consumer.fetch_watermarks(&topic, p, timeout)?;
        targets.insert(p, high);
    }
    consumer.assign(&assignment)?;

    // Restoring into an empty store needs no newer-wins checks (see `Store::restore`).
    let empty_at_start = store.is_empty(table)?;
    let started = Instant::now();
    let mut restored_records: u64 = 0;
    let mut restoring = true;
    // Partitions read up to their restore target; reading stops waiting once all are.
    let mut reached: BTreeSet<i32> = BTreeSet::new();
    for (&p, &high) in &targets {
        if high == 0 || store.checkpoint(table, p)?.is_some_and(|c| c >= high) {
            reached.insert(p);
        }
    }
    while !stop.is_cancelled() {
        let mut changes = Vec::new();
        let mut checkpoints: BTreeMap<i32, i64> = BTreeMap::new();
        let (window, limit) = if restoring {
            (RESTORE_WINDOW, RESTORE_BATCH)
        } else {
            (FOLLOW_WINDOW, BATCH)
        };
        let window = if restoring && reached.len() == targets.len() {
            Duration::ZERO
        } else {
            window
        };
        let deadline = Instant::now() + window;
        while changes.len() < limit && !stop.is_cancelled() {
            let left = deadline.saturating_duration_since(Instant::now());
            // Short polls, so a stop is noticed quickly.
            let Some(message) = consumer.poll(left.min(Duration::from_millis(100))) else {
                if left.is_zero() {
                    break;
                }
                continue;
            };
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "changelog consumer error");
                    break;
                }
            };
            checkpoints.insert(message.partition(), message.offset() + 1);
            if let Some(change) = change_of(&message, changelog.version_header) {
                changes.push(change);
            }
            if restoring
                && targets
                    .get(&message.partition())
                    .is_some_and(|&high| message.offset() + 1 >= high)
                && reached.insert(message.partition())
                && reached.len() == targets.len()
            {
                break;
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
        if restoring {
            restored_records += changes.len() as u64;
        }
        let batch = Batch {
            changes,
            checkpoints: checkpoints.into_iter().collect(),
            positions: positions.clone(),
            restore: restoring && empty_at_start,
        };
        if batches.blocking_send(Work::Batch(batch)).is_err() {
            return Ok(());
        }
        // Control records (transaction markers) are never delivered, so a partition whose last
        // records are markers is reached by its position, not by a message.
        for (p, high) in &targets {
            if positions.get(p).is_some_and(|pos| pos >= high) {
                reached.insert(*p);
            }
        }
        let caught_up = restoring && reached.len() == targets.len();
        if caught_up {
            // Every batch read so far goes into the store, durably, before anyone relies on it;
            // later batches are applied newer-wins, as the processor writes too.
            let (done, written) = tokio::sync::oneshot::channel();
            if batches.blocking_send(Work::Flush(done)).is_err() {
                return Ok(());
            }
            let Ok(store_seconds) = written.blocking_recv() else {
                return Ok(());
            };
            restoring = false;
            let seconds = started.elapsed().as_secs_f64();
            metrics::gauge!(crate::metrics::RESTORE_DURATION).set(seconds);
            metrics::gauge!(crate::metrics::RESTORE_RECORDS).set(restored_records as f64);
            tracing::info!(
                records = restored_records,
                seconds,
                store_seconds,
                "store restored from the changelog"
            );
            progress.restored.store(true, Ordering::Release);
        }
        if restoring {
            let done: i64 = positions_sum(&positions, &targets);
            metrics::gauge!(crate::metrics::RESTORE_PROGRESS)
                .set(done as f64 / targets.values().sum::<i64>().max(1) as f64);
        }
    }
    Ok(())
}

/// One batch of changelog records for the store, with the positions reading reached.
struct Batch {
    changes: Vec<Change>,
    checkpoints: Vec<(i32, i64)>,
    positions: BTreeMap<i32, i64>,
    /// Written with [`Store::restore`] (no newer-wins checks: the store was empty at start).
    restore: bool,
}

enum Work {
    Batch(Batch),
    /// Make everything written so far durable, then answer with the seconds spent writing.
    Flush(tokio::sync::oneshot::Sender<f64>),
}

/// Records restored into an empty store, gathered until written.
#[derive(Default)]
struct RestoreBuffer {
    changes: Vec<Change>,
    bytes: usize,
    checkpoints: BTreeMap<i32, i64>,
    positions: BTreeMap<i32, i64>,
}

impl RestoreBuffer {
    fn add(&mut self, batch: Batch) {
        self.bytes += batch
            .changes
            .iter()
            .map(|c| match c {
                Change::Put { stored, .. } => stored.value.len() + 48,
                Change::Delete { .. } => 48,
            })
            .sum::<usize>();
        self.changes.extend(batch.changes);
        self.checkpoints.extend(batch.checkpoints);
        self.positions.extend(batch.positions);
    }

    /// Writes what is gathered in one transaction, in key order so each B-tree page is written
    /// once, keeping only each job's last change (as writing them one by one would leave), and
    /// publishes its positions.
    async fn write(
        &mut self,
        table: Table,
        store: &Arc<Store>,
        progress: &Progress,
    ) -> Result<(), FollowError> {
        let mut buffer = std::mem::take(self);
        if buffer.changes.is_empty() && buffer.checkpoints.is_empty() {
            progress.set(buffer.positions);
            return Ok(());
        }
        let count = buffer.changes.len() as u64;
        let checkpoints: Vec<(i32, i64)> = buffer.checkpoints.into_iter().collect();
        let mut changes = buffer.changes;
        store
            .blocking(move |s| {
                // Stable: a job's changes keep their changelog order.
                changes.sort_by_key(job_of);
                let mut last = Vec::with_capacity(changes.len());
                let mut changes = changes.into_iter().peekable();
                while let Some(change) = changes.next() {
                    if changes
                        .peek()
                        .is_none_or(|next| job_of(next) != job_of(&change))
                    {
                        last.push(change);
                    }
                }
                s.restore(table, &last, &checkpoints, false)
            })
            .await?;
        metrics::counter!(crate::metrics::CHANGELOG_RECORDS).increment(count);
        progress.set(std::mem::take(&mut buffer.positions));
        Ok(())
    }
}

fn job_of(change: &Change) -> u128 {
    change.key()
}

/// Applies batches in order; publishes each batch's positions once it is in the store. While
/// restoring into an empty store, batches are gathered (up to [`RESTORE_BUFFER_BYTES`]) and
/// written in one go: far fewer, larger transactions.
async fn write_batches(
    table: Table,
    store: Arc<Store>,
    progress: Arc<Progress>,
    mut queue: tokio::sync::mpsc::Receiver<Work>,
) -> Result<(), FollowError> {
    let mut last_durable = Instant::now();
    let mut store_time = Duration::ZERO;
    let mut gathered = RestoreBuffer::default();
    while let Some(work) = queue.recv().await {
        let writing = Instant::now();
        match work {
            Work::Batch(batch) if batch.restore => {
                gathered.add(batch);
                if gathered.bytes >= RESTORE_BUFFER_BYTES {
                    gathered.write(table, &store, &progress).await?;
                }
            }
            Work::Batch(mut batch) => {
                gathered.write(table, &store, &progress).await?;
                let count = batch.changes.len() as u64;
                // Key order keeps the B-tree inserts local; the sort is stable, so changes to
                // one job keep their order.
                batch.changes.sort_by_key(job_of);
                let durable = last_durable.elapsed() >= DURABLE_EVERY;
                if durable {
                    last_durable = Instant::now();
                }
                let Batch {
                    changes,
                    checkpoints,
                    positions,
                    ..
                } = batch;
                if !changes.is_empty() || !checkpoints.is_empty() {
                    store
                        .blocking(move |s| s.apply(table, &changes, &checkpoints, durable))
                        .await?;
                    metrics::counter!(crate::metrics::CHANGELOG_RECORDS).increment(count);
                }
                progress.set(positions);
            }
            Work::Flush(done) => {
                gathered.write(table, &store, &progress).await?;
                store
                    .blocking(move |s| s.apply(table, &[], &[], true))
                    .await?;
                last_durable = Instant::now();
                store_time += writing.elapsed();
                let _ = done.send(store_time.as_secs_f64());
                continue;
            }
        }
        store_time += writing.elapsed();
    }
    gathered.write(table, &store, &progress).await
}

/// The store change a changelog record asks for; `None` (logged) for a record without a job id
/// key.
fn change_of(
    message: &rdkafka::message::BorrowedMessage<'_>,
    version_header: &str,
) -> Option<Change> {
    let Some(job) = message
        .key()
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| uuid::Uuid::parse_str(k).ok())
        .map(|u| u.as_u128())
    else {
        tracing::warn!(
            partition = message.partition(),
            offset = message.offset(),
            "changelog record without a uuid key skipped"
        );
        return None;
    };
    Some(match message.payload() {
        None => Change::Delete { job },
        Some(value) => {
            let events_folded = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == version_header))
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0);
            Change::Put {
                job,
                stored: Stored {
                    events_folded,
                    value: value.to_vec(),
                },
            }
        }
    })
}

fn positions_sum(positions: &BTreeMap<i32, i64>, targets: &BTreeMap<i32, i64>) -> i64 {
    targets
        .iter()
        .map(|(p, high)| positions.get(p).copied().unwrap_or(0).min(*high))
        .sum()
}
