//! The exactly-once fold: consume `scans.events` in the aggregators' group, fold each batch, and
//! write the changed states to the changelog together with the consumed offsets in one Kafka
//! transaction (read-process-write). The local store is updated after the commit; if the process
//! dies in between, the changelog follower restores what the store missed.
//!
//! A partition newly assigned here is folded only once the changelog follower has read that
//! partition's changelog up to its current end, so the fold always starts from the last committed
//! state of every job, whoever folded it before.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use scanstream_contracts::event::ScanEvent;
use scanstream_contracts::state::JobState;
use scanstream_contracts::{Codec, JobId, Topic, TopicNames};
use scanstream_platform::kafka::{ClientRole, KafkaFactory, StatsContext, SyncedContext, settle};
use scanstream_platform::supervise::{Supervised, supervise};
use tokio_util::sync::CancellationToken;

use crate::changelog::{EVENTS_FOLDED_HEADER, Progress};
use crate::fold::fold;
use crate::store::{Change, Store, Stored, Table};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Client(#[from] scanstream_platform::KafkaError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Codec(#[from] scanstream_contracts::CodecError),
    #[error("the changelog follower did not reach partition {0}'s end in time")]
    SyncTimeout(i32),
    #[error("no consumer group metadata for the transaction")]
    NoGroupMetadata,
    #[error(
        "the inventory topics must have the same partition count (an item's records sit on its repository's partition); found {0}"
    )]
    NotCoPartitioned(String),
}

/// Tuning and identity of the processor.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub group_id: String,
    pub transactional_id: String,
    pub batch_max_events: usize,
    pub linger: Duration,
}

/// Decoded states kept between batches; bounded so a huge job count cannot exhaust memory.
const CACHE_MAX: usize = 200_000;

/// A batch's store write, running in the background.
pub(crate) type StoreWrite = tokio::task::JoinHandle<Result<(), crate::store::StoreError>>;

/// Waits for `write` and passes on its failure.
pub(crate) async fn finish(write: Option<StoreWrite>) -> Result<(), ProcessError> {
    if let Some(write) = write {
        write
            .await
            .map_err(|_| rdkafka::error::KafkaError::Canceled)??;
    }
    Ok(())
}

/// What a fold works with: the Kafka clients' factory, topic names, the codec, the store, the
/// follower's progress on the fold's changelog, and the fold's group and transactional id. Both
/// folds (job state, inventory) are built from one.
pub struct Parts {
    pub factory: KafkaFactory,
    pub names: TopicNames,
    pub codec: Arc<Codec>,
    pub store: Arc<Store>,
    pub progress: Arc<Progress>,
    pub config: ProcessorConfig,
}

pub struct Processor {
    parts: Parts,
}

impl Processor {
    pub fn new(parts: Parts) -> Self {
        Self { parts }
    }

    /// Folds until `stop`; after a failure, starts over from the committed offsets with a fresh
    /// consumer and producer (the new producer fences the old one's open transaction).
    pub async fn run(&self, ready: Arc<std::sync::atomic::AtomicBool>, stop: CancellationToken) {
        run_supervised(
            "aggregator processing",
            &self.parts.progress,
            &ready,
            &stop,
            || self.session(&ready, &stop),
        )
        .await;
    }

    async fn session(
        &self,
        ready: &std::sync::atomic::AtomicBool,
        stop: &CancellationToken,
    ) -> Result<(), ProcessError> {
        let consumer: Arc<StreamConsumer<SyncedContext>> =
            Arc::new(self.parts.factory.bulk_consumer_with_context(
                ClientRole::Aggregator,
                &self.parts.config.group_id,
                SyncedContext::new(ClientRole::Aggregator),
            )?);
        let events = self.parts.names.name(Topic::Events);
        consumer.subscribe(&[&events])?;
        let producer =
            transactional(&self.parts.factory, &self.parts.config.transactional_id).await?;
        ready.store(true, std::sync::atomic::Ordering::Release);
        tracing::info!(transactional_id = %self.parts.config.transactional_id, "aggregator folding");
        let mut cache: HashMap<JobId, JobState> = HashMap::new();
        // The store write of the last committed batch runs while the next batch is processed.
        // Its jobs are all in `cache`, so the next batch never reads them from the store; the
        // cache is only cleared once the write is done. At most one write is outstanding.
        let mut writing: Option<StoreWrite> = None;
        loop {
            let batch = tokio::select! {
                batch = self.gather(&consumer) => batch?,
                _ = stop.cancelled() => return finish(writing.take()).await,
            };
            if batch.is_empty() {
                continue;
            }
            if consumer.context().none_synced() {
                finish(writing.take()).await?;
                cache.clear();
            }
            let write = self.batch(&consumer, &producer, &mut cache, batch).await?;
            finish(writing.replace(write)).await?;
            if cache.len() > CACHE_MAX {
                finish(writing.take()).await?;
                cache.clear();
            }
        }
    }

    async fn gather(
        &self,
        consumer: &StreamConsumer<SyncedContext>,
    ) -> Result<Vec<rdkafka::message::OwnedMessage>, ProcessError> {
        gather(
            consumer,
            self.parts.config.batch_max_events,
            self.parts.config.linger,
        )
        .await
    }

    /// Waits until the changelog follower has read partition `p` of the changelog to its end.
    async fn sync(
        &self,
        consumer: &Arc<StreamConsumer<SyncedContext>>,
        partition: i32,
    ) -> Result<(), ProcessError> {
        sync(
            &self.parts.factory,
            &self.parts.names,
            crate::changelog::JOB_STATE,
            &self.parts.store,
            &self.parts.progress,
            consumer,
            partition,
        )
        .await
    }

    /// One batch, in named steps: decode, load the states it starts from, fold, commit the
    /// changelog and the offsets in one transaction, then write the store behind it.
    async fn batch(
        &self,
        consumer: &Arc<StreamConsumer<SyncedContext>>,
        producer: &Arc<FutureProducer<StatsContext>>,
        cache: &mut HashMap<JobId, JobState>,
        batch: Vec<rdkafka::message::OwnedMessage>,
    ) -> Result<StoreWrite, ProcessError> {
        let started = Instant::now();
        let (events, offsets) = self.decode(consumer, &batch).await?;
        let decoded = started.elapsed();
        let current = self.load(cache, &events).await?;
        let Folded { dirty, duplicates } = fold_batch(&events, cache, &current);
        let read_and_folded = started.elapsed();
        let (encoded, produced) = self
            .commit(consumer, producer, &dirty, &offsets, started)
            .await?;
        let committed = started.elapsed();
        metrics::histogram!(crate::metrics::COMMIT_DURATION)
            .record((committed - produced).as_secs_f64());
        let write = self.write_store(encoded);
        let folded = dirty.len();
        cache.extend(dirty);
        metrics::counter!(crate::metrics::EVENTS_FOLDED).increment(batch.len() as u64 - duplicates);
        metrics::counter!(crate::metrics::DUPLICATES_SKIPPED).increment(duplicates);
        metrics::histogram!(crate::metrics::BATCH_DURATION).record(started.elapsed().as_secs_f64());
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            events = batch.len(),
            states = folded,
            duplicates,
            decode_ms = ms(decoded),
            read_fold_ms = ms(read_and_folded - decoded),
            produce_ms = ms(produced - read_and_folded),
            commit_ms = ms(committed - produced),
            "batch committed"
        );
        Ok(write)
    }

    /// The batch's events, and per partition the offset to commit after it. A partition seen for
    /// the first time since the assignment is synced first; an undecodable record is counted and
    /// skipped (never stops the fold), a transient registry error fails the batch.
    async fn decode(
        &self,
        consumer: &Arc<StreamConsumer<SyncedContext>>,
        batch: &[rdkafka::message::OwnedMessage],
    ) -> Result<(Vec<ScanEvent>, BTreeMap<i32, i64>), ProcessError> {
        let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
        let mut events = Vec::with_capacity(batch.len());
        for message in batch {
            let partition = message.partition();
            offsets.insert(partition, message.offset() + 1);
            if !consumer.context().is_synced(partition) {
                self.sync(consumer, partition).await?;
                consumer.context().mark_synced(partition);
            }
            let Some(payload) = message.payload() else {
                metrics::counter!(crate::metrics::UNDECODABLE).increment(1);
                continue;
            };
            match self.parts.codec.decode::<ScanEvent>(payload).await {
                Ok(e) => events.push(e),
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => {
                    // `scanstream audit` reports such records too.
                    tracing::error!(partition, offset = message.offset(), error = %e, "undecodable event skipped");
                    metrics::counter!(crate::metrics::UNDECODABLE).increment(1);
                }
            }
        }
        Ok((events, offsets))
    }

    /// The stored states of the jobs `events` touch that the cache lacks, in one store read.
    async fn load(
        &self,
        cache: &HashMap<JobId, JobState>,
        events: &[ScanEvent],
    ) -> Result<HashMap<JobId, Option<JobState>>, ProcessError> {
        let mut missing: Vec<JobId> = events
            .iter()
            .map(|e| e.job_id)
            .filter(|j| !cache.contains_key(j))
            .collect();
        missing.sort();
        missing.dedup();
        let mut current: HashMap<JobId, Option<JobState>> = HashMap::with_capacity(missing.len());
        if !missing.is_empty() {
            let ids: Vec<u128> = missing.iter().map(|j| j.0.as_u128()).collect();
            let stored = self
                .parts
                .store
                .blocking(move |s| s.get_many(Table::Jobs, &ids))
                .await?;
            for (job, stored) in missing.into_iter().zip(stored) {
                let state = match stored {
                    Some(s) => Some(self.parts.codec.decode::<JobState>(&s.value).await?),
                    None => None,
                };
                current.insert(job, state);
            }
        }
        Ok(current)
    }

    /// Writes the changed states to the changelog and the consumed offsets in one transaction;
    /// returns the encoded states and when producing ended (relative to `started`).
    async fn commit(
        &self,
        consumer: &Arc<StreamConsumer<SyncedContext>>,
        producer: &Arc<FutureProducer<StatsContext>>,
        dirty: &HashMap<JobId, JobState>,
        offsets: &BTreeMap<i32, i64>,
        started: Instant,
    ) -> Result<(Vec<(JobId, i64, Vec<u8>)>, Duration), ProcessError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let changelog = self.parts.names.name(Topic::JobState);
        producer.begin_transaction()?;
        let mut encoded = Vec::with_capacity(dirty.len());
        for (job, state) in dirty {
            encoded.push((
                *job,
                state.events_folded,
                self.parts.codec.encode(Topic::JobState, state).await?,
            ));
        }
        let mut deliveries = Vec::with_capacity(encoded.len());
        for (job, folded, bytes) in &encoded {
            let key = job.key();
            let folded = folded.to_string();
            let headers = OwnedHeaders::new().insert(Header {
                key: EVENTS_FOLDED_HEADER,
                value: Some(folded.as_bytes()),
            });
            let record = FutureRecord::to(&changelog)
                .key(&key)
                .payload(bytes)
                .headers(headers);
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
        settle(producer, deliveries, deadline).await?;
        let events_topic = self.parts.names.name(Topic::Events);
        let mut list = TopicPartitionList::new();
        for (partition, offset) in offsets {
            list.add_partition_offset(&events_topic, *partition, Offset::Offset(*offset))?;
        }
        let produced = started.elapsed();
        commit_with_offsets(consumer, producer, list).await?;
        Ok((encoded, produced))
    }

    /// Writes committed states to the store in the background. Newer-wins: a write that lands
    /// after the changelog follower applied a newer state of a job (or after the next batch's
    /// write) changes nothing for it.
    fn write_store(&self, encoded: Vec<(JobId, i64, Vec<u8>)>) -> StoreWrite {
        let changes: Vec<Change> = encoded
            .into_iter()
            .map(|(job, folded, value)| Change::Put {
                job: job.0.as_u128(),
                stored: Stored {
                    events_folded: folded,
                    value,
                },
            })
            .collect();
        let store = self.parts.store.clone();
        tokio::spawn(async move {
            store
                .blocking(move |s| s.apply(Table::Jobs, &changes, &[], false))
                .await
                .map(|_| ())
        })
    }
}

/// Runs `session` once the store is restored from `progress`'s changelog (folding starts from
/// the store), again from the committed offsets after a failure (a fresh consumer and producer;
/// the new producer fences the old one's open transaction), until `stop`.
pub(crate) async fn run_supervised<F, Fut>(
    task: &'static str,
    progress: &Progress,
    ready: &std::sync::atomic::AtomicBool,
    stop: &CancellationToken,
    session: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), ProcessError>>,
{
    let supervised = Supervised {
        task,
        resumes: "from the committed offsets",
        restarts: Some(crate::metrics::RESTARTS),
        pause: Duration::from_secs(1),
    };
    let failed = || ready.store(false, std::sync::atomic::Ordering::Release);
    supervise(supervised, stop, failed, || async {
        while !progress.restored() {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        session().await
    })
    .await;
}

/// The aggregator's transactional producer under `id`, its transactions initialized (which
/// fences an earlier producer with the same id and settles its open transaction).
pub(crate) async fn transactional(
    factory: &KafkaFactory,
    id: &str,
) -> Result<Arc<FutureProducer<StatsContext>>, ProcessError> {
    let producer = Arc::new(factory.transactional_producer(ClientRole::Aggregator, id)?);
    let init = producer.clone();
    tokio::task::spawn_blocking(move || init.init_transactions(Duration::from_secs(30)))
        .await
        .map_err(|_| rdkafka::error::KafkaError::Canceled)??;
    Ok(producer)
}

/// A batch: the first record, then whatever else arrives within `linger`, at most `max`.
pub(crate) async fn gather<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    max: usize,
    linger: Duration,
) -> Result<Vec<rdkafka::message::OwnedMessage>, ProcessError> {
    let first = consumer.recv().await?.detach();
    let mut batch = vec![first];
    let until = tokio::time::Instant::now() + linger;
    while batch.len() < max {
        match tokio::time::timeout_at(until, consumer.recv()).await {
            Ok(Ok(m)) => batch.push(m.detach()),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => break,
        }
    }
    Ok(batch)
}

/// Waits until the follower of `changelog` has read its partition `partition` to its end (or the
/// store has applied that far), so a newly assigned partition is folded from its last committed
/// states, whoever folded it before.
pub(crate) async fn sync<C: ConsumerContext + 'static>(
    factory: &KafkaFactory,
    names: &TopicNames,
    changelog: crate::changelog::Changelog,
    store: &Store,
    progress: &Progress,
    consumer: &Arc<StreamConsumer<C>>,
    partition: i32,
) -> Result<(), ProcessError> {
    let topic = names.name(changelog.topic);
    let timeout = factory.request_timeout();
    let high = {
        let consumer = consumer.clone();
        tokio::task::spawn_blocking(move || consumer.fetch_watermarks(&topic, partition, timeout))
            .await
            .map_err(|_| rdkafka::error::KafkaError::Canceled)??
            .1
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while progress.position(partition).unwrap_or(0) < high
        && store.checkpoint(changelog.table, partition)?.unwrap_or(0) < high
    {
        if Instant::now() > deadline {
            return Err(ProcessError::SyncTimeout(partition));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Adds the consumed `offsets` to the open transaction and commits it.
pub(crate) async fn commit_with_offsets<C: ConsumerContext + 'static>(
    consumer: &Arc<StreamConsumer<C>>,
    producer: &Arc<FutureProducer<StatsContext>>,
    offsets: TopicPartitionList,
) -> Result<(), ProcessError> {
    let metadata = consumer
        .group_metadata()
        .ok_or(ProcessError::NoGroupMetadata)?;
    let producer = producer.clone();
    tokio::task::spawn_blocking(move || {
        producer.send_offsets_to_transaction(&offsets, &metadata, Duration::from_secs(30))?;
        producer.commit_transaction(Duration::from_secs(30))
    })
    .await
    .map_err(|_| rdkafka::error::KafkaError::Canceled)??;
    Ok(())
}

/// The states a batch changed, and how many of its events changed nothing (already folded).
struct Folded {
    dirty: HashMap<JobId, JobState>,
    duplicates: u64,
}

/// Folds `events` in order onto the states they start from: the batch's own earlier result,
/// else the cache, else the stored state (`current`).
fn fold_batch(
    events: &[ScanEvent],
    cache: &HashMap<JobId, JobState>,
    current: &HashMap<JobId, Option<JobState>>,
) -> Folded {
    let mut dirty: HashMap<JobId, JobState> = HashMap::new();
    let mut duplicates = 0u64;
    for event in events {
        let before = match dirty.get(&event.job_id) {
            Some(s) => Some(s.clone()),
            None => cache
                .get(&event.job_id)
                .cloned()
                .or_else(|| current.get(&event.job_id).cloned().flatten()),
        };
        let next = fold(before.clone(), event);
        if before.as_ref() == Some(&next) {
            duplicates += 1;
            continue;
        }
        dirty.insert(event.job_id, next);
    }
    Folded { dirty, duplicates }
}
