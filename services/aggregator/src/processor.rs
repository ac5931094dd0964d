//! The exactly-once fold: consume `scans.events` in the aggregators' group, fold each batch, and
//! write the changed states to the changelog together with the consumed offsets in one Kafka
//! transaction (read-process-write). The local store is updated after the commit; if the process
//! dies in between, the changelog follower restores what the store missed.
//!
//! A partition newly assigned here is folded only once the changelog follower has read that
//! partition's changelog up to its current end, so the fold always starts from the last committed
//! state of every job, whoever folded it before.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use scanstream_contracts::event::ScanEvent;
use scanstream_contracts::state::JobState;
use scanstream_contracts::{Codec, JobId, Topic, TopicNames};
use scanstream_platform::kafka::{ClientRole, KafkaFactory, StatsContext, settle};
use tokio_util::sync::CancellationToken;

use crate::changelog::{EVENTS_FOLDED_HEADER, Progress};
use crate::fold::fold;
use crate::store::{Change, Store, Stored};

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
}

/// Tuning and identity of the processor.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub group_id: String,
    pub transactional_id: String,
    pub batch_max_events: usize,
    pub linger: Duration,
}

/// Tracks assignment changes: revoked partitions must be synced again if they come back.
struct RebalanceContext {
    stats: StatsContext,
    synced: Arc<Mutex<HashSet<i32>>>,
}

impl ClientContext for RebalanceContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.stats.record(&statistics);
    }
}

impl ConsumerContext for RebalanceContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let (Rebalance::Revoke(list), Ok(mut synced)) = (rebalance, self.synced.lock()) {
            for e in list.elements() {
                synced.remove(&e.partition());
            }
            tracing::info!(revoked = list.count(), "partitions revoked");
        }
    }
}

/// Decoded states kept between batches; bounded so a huge job count cannot exhaust memory.
const CACHE_MAX: usize = 200_000;

/// A batch's store write, running in the background.
type StoreWrite = tokio::task::JoinHandle<Result<(), crate::store::StoreError>>;

/// Waits for `write` and passes on its failure.
async fn finish(write: Option<StoreWrite>) -> Result<(), ProcessError> {
    if let Some(write) = write {
        write
            .await
            .map_err(|_| rdkafka::error::KafkaError::Canceled)??;
    }
    Ok(())
}

pub struct Processor {
    factory: KafkaFactory,
    names: TopicNames,
    codec: Arc<Codec>,
    store: Arc<Store>,
    progress: Arc<Progress>,
    config: ProcessorConfig,
}

impl Processor {
    pub fn new(
        factory: KafkaFactory,
        names: TopicNames,
        codec: Arc<Codec>,
        store: Arc<Store>,
        progress: Arc<Progress>,
        config: ProcessorConfig,
    ) -> Self {
        Self {
            factory,
            names,
            codec,
            store,
            progress,
            config,
        }
    }

    /// Folds until `stop`; after a failure, starts over from the committed offsets with a fresh
    /// consumer and producer (the new producer fences the old one's open transaction).
    pub async fn run(&self, ready: Arc<std::sync::atomic::AtomicBool>, stop: CancellationToken) {
        while !stop.is_cancelled() {
            // Folding starts from the store, so it waits for the restore.
            while !self.progress.restored() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
            match self.session(&ready, &stop).await {
                Ok(()) => return,
                Err(e) => {
                    ready.store(false, std::sync::atomic::Ordering::Release);
                    tracing::warn!(error = %e, "aggregator processing restarts from the committed offsets");
                    metrics::counter!("scanstream_aggregator_restarts_total").increment(1);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    async fn session(
        &self,
        ready: &std::sync::atomic::AtomicBool,
        stop: &CancellationToken,
    ) -> Result<(), ProcessError> {
        let synced = Arc::new(Mutex::new(HashSet::new()));
        let consumer: Arc<StreamConsumer<RebalanceContext>> =
            Arc::new(self.factory.bulk_consumer_with_context(
                ClientRole::Aggregator,
                &self.config.group_id,
                RebalanceContext {
                    stats: StatsContext::new(ClientRole::Aggregator),
                    synced: synced.clone(),
                },
            )?);
        let events = self.names.name(Topic::Events);
        consumer.subscribe(&[&events])?;
        let producer = Arc::new(
            self.factory
                .transactional_producer(ClientRole::Aggregator, &self.config.transactional_id)?,
        );
        {
            let producer = producer.clone();
            tokio::task::spawn_blocking(move || {
                producer.init_transactions(Duration::from_secs(30))
            })
            .await
            .map_err(|_| rdkafka::error::KafkaError::Canceled)??;
        }
        ready.store(true, std::sync::atomic::Ordering::Release);
        tracing::info!(transactional_id = %self.config.transactional_id, "aggregator folding");
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
            if synced.lock().map(|s| s.is_empty()).unwrap_or(true) {
                finish(writing.take()).await?;
                cache.clear();
            }
            let write = self
                .batch(&consumer, &producer, &synced, &mut cache, batch)
                .await?;
            finish(writing.replace(write)).await?;
            if cache.len() > CACHE_MAX {
                finish(writing.take()).await?;
                cache.clear();
            }
        }
    }

    async fn gather(
        &self,
        consumer: &StreamConsumer<RebalanceContext>,
    ) -> Result<Vec<rdkafka::message::OwnedMessage>, ProcessError> {
        let first = consumer.recv().await?.detach();
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + self.config.linger;
        while batch.len() < self.config.batch_max_events {
            match tokio::time::timeout_at(until, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(m.detach()),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => break,
            }
        }
        Ok(batch)
    }

    /// Waits until the changelog follower has read partition `p` of the changelog to its end.
    async fn sync(
        &self,
        consumer: &Arc<StreamConsumer<RebalanceContext>>,
        partition: i32,
    ) -> Result<(), ProcessError> {
        let changelog = self.names.name(Topic::JobState);
        let timeout = self.factory.request_timeout();
        let high = {
            let consumer = consumer.clone();
            tokio::task::spawn_blocking(move || {
                consumer.fetch_watermarks(&changelog, partition, timeout)
            })
            .await
            .map_err(|_| rdkafka::error::KafkaError::Canceled)??
            .1
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.progress.position(partition).unwrap_or(0) < high
            && self.store.checkpoint(partition)?.unwrap_or(0) < high
        {
            if Instant::now() > deadline {
                return Err(ProcessError::SyncTimeout(partition));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    async fn batch(
        &self,
        consumer: &Arc<StreamConsumer<RebalanceContext>>,
        producer: &Arc<FutureProducer<StatsContext>>,
        synced: &Arc<Mutex<HashSet<i32>>>,
        cache: &mut HashMap<JobId, JobState>,
        batch: Vec<rdkafka::message::OwnedMessage>,
    ) -> Result<StoreWrite, ProcessError> {
        let started = Instant::now();
        let events_topic = self.names.name(Topic::Events);
        let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
        let mut events = Vec::with_capacity(batch.len());
        for message in &batch {
            let partition = message.partition();
            offsets.insert(partition, message.offset() + 1);
            let needs_sync = synced
                .lock()
                .map(|s| !s.contains(&partition))
                .unwrap_or(true);
            if needs_sync {
                self.sync(consumer, partition).await?;
                if let Ok(mut s) = synced.lock() {
                    s.insert(partition);
                }
            }
            let Some(payload) = message.payload() else {
                metrics::counter!("scanstream_aggregator_undecodable_total").increment(1);
                continue;
            };
            match self.codec.decode::<ScanEvent>(payload).await {
                Ok(e) => events.push(e),
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => {
                    // Never stops the fold; `scanstream audit` reports such records too.
                    tracing::error!(partition, offset = message.offset(), error = %e, "undecodable event skipped");
                    metrics::counter!("scanstream_aggregator_undecodable_total").increment(1);
                }
            }
        }
        let decoded = started.elapsed();
        // The states this batch starts from: cached, else one store read for all of them.
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
            let stored = self.store.blocking(move |s| s.get_many(&ids)).await?;
            for (job, stored) in missing.into_iter().zip(stored) {
                let state = match stored {
                    Some(s) => Some(self.codec.decode::<JobState>(&s.value).await?),
                    None => None,
                };
                current.insert(job, state);
            }
        }
        let mut dirty: HashMap<JobId, JobState> = HashMap::new();
        let mut duplicates = 0u64;
        for event in &events {
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

        let read_and_folded = started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(30);
        let changelog = self.names.name(Topic::JobState);
        producer.begin_transaction()?;
        let mut encoded = Vec::with_capacity(dirty.len());
        for (job, state) in &dirty {
            encoded.push((
                *job,
                state.events_folded,
                self.codec.encode(Topic::JobState, state).await?,
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
        let mut list = TopicPartitionList::new();
        for (partition, offset) in &offsets {
            list.add_partition_offset(&events_topic, *partition, Offset::Offset(*offset))?;
        }
        let metadata = consumer
            .group_metadata()
            .ok_or(ProcessError::NoGroupMetadata)?;
        let produced = started.elapsed();
        {
            let producer = producer.clone();
            tokio::task::spawn_blocking(move || {
                producer.send_offsets_to_transaction(&list, &metadata, Duration::from_secs(30))?;
                producer.commit_transaction(Duration::from_secs(30))
            })
            .await
            .map_err(|_| rdkafka::error::KafkaError::Canceled)??;
        }

        let committed = started.elapsed();
        metrics::histogram!("scanstream_aggregator_commit_duration_seconds")
            .record((committed - produced).as_secs_f64());
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
        // Newer-wins: a write that lands after the changelog follower applied a newer state of
        // a job (or after the next batch's write) changes nothing for it.
        let store = self.store.clone();
        let write = tokio::spawn(async move {
            store
                .blocking(move |s| s.apply(&changes, &[], false))
                .await
                .map(|_| ())
        });
        let folded = dirty.len();
        cache.extend(dirty);
        metrics::counter!("scanstream_aggregator_events_folded_total")
            .increment(batch.len() as u64 - duplicates);
        metrics::counter!("scanstream_aggregator_duplicates_skipped_total").increment(duplicates);
        metrics::histogram!("scanstream_aggregator_batch_duration_seconds")
            .record(started.elapsed().as_secs_f64());
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
}
