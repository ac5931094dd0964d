//! The inventory's exactly-once fold: consume `scans.sightings` and `scans.triage` in one group
//! (the range assignor gives partition N of both to one member: both are partitioned by
//! repository), fold each batch into items, and write the changed items to `scans.inventory`
//! (on their repository's partition) with the consumed offsets in one transaction. The store is
//! written after the commit, before the next batch is read from it.
//!
//! A partition newly assigned here is folded only once the inventory follower has read that
//! partition of `scans.inventory` to its end, as for job state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use scanstream_contracts::inventory::{
    InventoryItem, ItemId, Sighting, SightingPayload, TriageDecision,
};
use scanstream_contracts::{Codec, Topic};
use scanstream_platform::kafka::{ClientRole, StatsContext, SyncedContext, settle};
use tokio_util::sync::CancellationToken;

use super::fold::{Input, fold_batch};
use crate::changelog::{INPUTS_FOLDED_HEADER, INVENTORY};
use crate::processor::{
    Parts, ProcessError, StoreWrite, commit_with_offsets, finish, gather, run_supervised, sync,
    transactional,
};
use crate::store::{Change, Stored, Table};

/// Items kept between batches; bounded so a huge inventory cannot exhaust memory.
const CACHE_MAX: usize = 200_000;

pub struct InventoryProcessor {
    parts: Parts,
}

impl InventoryProcessor {
    pub fn new(parts: Parts) -> Self {
        Self { parts }
    }

    /// Folds until `stop`; after a failure, starts over from the committed offsets.
    pub async fn run(&self, ready: Arc<AtomicBool>, stop: CancellationToken) {
        run_supervised(
            "inventory processing",
            &self.parts.progress,
            &ready,
            &stop,
            || self.session(&ready, &stop),
        )
        .await;
    }

    async fn session(
        &self,
        ready: &AtomicBool,
        stop: &CancellationToken,
    ) -> Result<(), ProcessError> {
        let consumer: Arc<StreamConsumer<SyncedContext>> =
            Arc::new(self.parts.factory.co_partitioned_consumer_with_context(
                ClientRole::Aggregator,
                &self.parts.config.group_id,
                SyncedContext::new(ClientRole::Aggregator),
            )?);
        let sightings = self.parts.names.name(Topic::Sightings);
        let triage = self.parts.names.name(Topic::Triage);
        let partitions = self.partitions(&consumer).await?;
        consumer.subscribe(&[&sightings, &triage])?;
        let producer =
            transactional(&self.parts.factory, &self.parts.config.transactional_id).await?;
        ready.store(true, Ordering::Release);
        tracing::info!(transactional_id = %self.parts.config.transactional_id, "inventory folding");
        // The items of the last batches, committed: the store write of the last batch runs while
        // the next batch is processed, and the next batch reads these rather than the store.
        let mut cache: HashMap<ItemId, InventoryItem> = HashMap::new();
        let mut writing: Option<StoreWrite> = None;
        loop {
            let batch = tokio::select! {
                batch = gather(&consumer, self.parts.config.batch_max_events, self.parts.config.linger) => batch?,
                _ = stop.cancelled() => return finish(writing.take()).await,
            };
            if consumer.context().none_synced() {
                // A rebalance: another instance may have changed what the cache holds.
                finish(writing.take()).await?;
                cache.clear();
            }
            let write = self
                .batch(&consumer, &producer, partitions, &mut cache, batch)
                .await?;
            finish(writing.replace(write)).await?;
            if cache.len() > CACHE_MAX {
                finish(writing.take()).await?;
                cache.clear();
            }
        }
    }

    /// The partition count shared by the inputs and the changelog; an error when they differ
    /// (an item's records would not sit with its repository's).
    async fn partitions(
        &self,
        consumer: &Arc<StreamConsumer<SyncedContext>>,
    ) -> Result<i32, ProcessError> {
        let names: Vec<String> = [Topic::Sightings, Topic::Triage, Topic::Inventory]
            .iter()
            .map(|t| self.parts.names.name(*t))
            .collect();
        let timeout = self.parts.factory.request_timeout();
        let consumer = consumer.clone();
        let counts = tokio::task::spawn_blocking(move || {
            names
                .iter()
                .map(|n| {
                    scanstream_platform::kafka::partitions(consumer.client(), n, timeout)
                        .map(|p| (n.clone(), p.len() as i32))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|_| rdkafka::error::KafkaError::Canceled)??;
        let first = counts.first().map_or(0, |c| c.1);
        if first == 0 || counts.iter().any(|c| c.1 != first) {
            return Err(ProcessError::NotCoPartitioned(
                counts
                    .iter()
                    .map(|(n, c)| format!("{n}: {c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        Ok(first)
    }

    /// One batch: decode, load the items it touches (cache, then store), fold, commit the
    /// changelog and offsets in one transaction, then write the store in the background.
    async fn batch(
        &self,
        consumer: &Arc<StreamConsumer<SyncedContext>>,
        producer: &Arc<FutureProducer<StatsContext>>,
        partitions: i32,
        cache: &mut HashMap<ItemId, InventoryItem>,
        batch: Vec<OwnedMessage>,
    ) -> Result<StoreWrite, ProcessError> {
        let started = Instant::now();
        let (inputs, offsets) = self.decode(consumer, &batch).await?;
        let decoded = started.elapsed();
        let mut items = self.load(cache, &inputs).await?;
        let loaded = started.elapsed();
        let dirty = fold_batch(&inputs, &mut items);
        let folded = started.elapsed();
        let encoded = self
            .commit(consumer, producer, &dirty, &items, &offsets, partitions)
            .await?;
        let committed = started.elapsed();
        let changes: Vec<Change> = encoded
            .into_iter()
            .map(|(id, folded, value)| Change::Put {
                job: id.0.as_u128(),
                stored: Stored {
                    events_folded: folded,
                    value,
                },
            })
            .collect();
        let written = changes.len();
        let store = self.parts.store.clone();
        let write = tokio::spawn(async move {
            store
                .blocking(move |s| s.apply(Table::Items, &changes, &[], false))
                .await
                .map(|_| ())
        });
        for id in &dirty {
            if let Some(item) = items.remove(id) {
                cache.insert(*id, item);
            }
        }
        metrics::counter!(crate::metrics::INVENTORY_INPUTS).increment(inputs.len() as u64);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            inputs = inputs.len(),
            items = written,
            decode_ms = ms(decoded),
            load_ms = ms(loaded - decoded),
            fold_ms = ms(folded - loaded),
            commit_ms = ms(committed - folded),
            cache_ms = ms(started.elapsed() - committed),
            "inventory batch committed"
        );
        Ok(write)
    }

    /// The batch's inputs, and the offset to commit per topic and partition. An undecodable
    /// record is counted and skipped; a transient registry error fails the batch.
    async fn decode(
        &self,
        consumer: &Arc<StreamConsumer<SyncedContext>>,
        batch: &[OwnedMessage],
    ) -> Result<(Vec<Input>, BTreeMap<(String, i32), i64>), ProcessError> {
        let mut offsets = BTreeMap::new();
        let mut inputs = Vec::with_capacity(batch.len());
        let mut raw = Vec::with_capacity(batch.len());
        for message in batch {
            let partition = message.partition();
            offsets.insert(
                (message.topic().to_owned(), partition),
                message.offset() + 1,
            );
            if !consumer.context().is_synced(partition) {
                sync(
                    &self.parts.factory,
                    &self.parts.names,
                    INVENTORY,
                    &self.parts.store,
                    &self.parts.progress,
                    consumer,
                    partition,
                )
                .await?;
                consumer.context().mark_synced(partition);
            }
            match message.payload() {
                Some(payload) => raw.push((
                    self.parts.names.topic_of(message.topic()) == Some(Topic::Sightings),
                    payload.to_vec(),
                    partition,
                    message.offset(),
                )),
                None => metrics::counter!(crate::metrics::UNDECODABLE).increment(1),
            }
        }
        // Decoding is most of a batch's CPU: split it over the runtime's threads, in order.
        let decoded = in_parallel(
            &self.parts.codec,
            raw,
            |codec, (sighting, payload, partition, offset)| async move {
                let decoded = if sighting {
                    codec
                        .decode::<Sighting>(&payload)
                        .await
                        .map(Input::Sighting)
                } else {
                    codec
                        .decode::<TriageDecision>(&payload)
                        .await
                        .map(Input::Decision)
                };
                (decoded, partition, offset)
            },
        )
        .await?;
        for (decoded, partition, offset) in decoded {
            match decoded {
                Ok(input) => inputs.push(input),
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => {
                    tracing::error!(partition, offset, error = %e, "undecodable inventory input skipped");
                    metrics::counter!(crate::metrics::UNDECODABLE).increment(1);
                }
            }
        }
        Ok((inputs, offsets))
    }

    /// The stored items the inputs touch: each seen or decided item, and every item of a
    /// repository whose tip scan completed.
    async fn load(
        &self,
        cache: &HashMap<ItemId, InventoryItem>,
        inputs: &[Input],
    ) -> Result<HashMap<ItemId, InventoryItem>, ProcessError> {
        let mut ids: Vec<u128> = Vec::new();
        let mut repos: Vec<(u128, u128)> = Vec::new();
        for input in inputs {
            match input {
                Input::Sighting(s) => match &s.payload {
                    SightingPayload::SecretSeen(seen) => {
                        ids.push(ItemId::of(&s.repo_url, &seen.fingerprint).0.as_u128())
                    }
                    SightingPayload::TipScanned(_) => repos.push(ItemId::range_of(&s.repo_url)),
                },
                Input::Decision(d) => ids.push(d.item_id.0.as_u128()),
            }
        }
        ids.sort_unstable();
        ids.dedup();
        repos.sort_unstable();
        repos.dedup();
        let mut items: HashMap<ItemId, InventoryItem> = HashMap::with_capacity(ids.len());
        // The cache holds the newest committed version of what it has; for a repository's range,
        // the store may hold older versions of the same items and lacks the newest ones.
        ids.retain(|id| match cache.get(&ItemId(uuid::Uuid::from_u128(*id))) {
            Some(item) => {
                items.insert(item.item_id, item.clone());
                false
            }
            None => true,
        });
        for (low, high) in &repos {
            for item in cache.values() {
                if (*low..=*high).contains(&item.item_id.0.as_u128()) {
                    items.insert(item.item_id, item.clone());
                }
            }
        }
        let stored = self
            .parts
            .store
            .blocking(move |s| {
                let mut out: Vec<(u128, Stored)> = Vec::new();
                for (low, high) in repos {
                    out.extend(s.range(Table::Items, low, high)?);
                }
                for (id, stored) in ids.iter().zip(s.get_many(Table::Items, &ids)?) {
                    if let Some(stored) = stored {
                        out.push((*id, stored));
                    }
                }
                Ok(out)
            })
            .await?;
        for (id, stored) in stored {
            let id = ItemId(uuid::Uuid::from_u128(id));
            if items.contains_key(&id) {
                continue;
            }
            items.insert(
                id,
                self.parts
                    .codec
                    .decode::<InventoryItem>(&stored.value)
                    .await?,
            );
        }
        Ok(items)
    }

    /// Writes the changed items to the changelog, each on its repository's partition, and the
    /// consumed offsets, in one transaction; returns the encoded items.
    async fn commit(
        &self,
        consumer: &Arc<StreamConsumer<SyncedContext>>,
        producer: &Arc<FutureProducer<StatsContext>>,
        dirty: &HashSet<ItemId>,
        items: &HashMap<ItemId, InventoryItem>,
        offsets: &BTreeMap<(String, i32), i64>,
        partitions: i32,
    ) -> Result<Vec<(ItemId, i64, Vec<u8>)>, ProcessError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let changelog = self.parts.names.name(Topic::Inventory);
        producer.begin_transaction()?;
        let changed: Vec<InventoryItem> = dirty
            .iter()
            .filter_map(|id| items.get(id).cloned())
            .collect();
        let encoded = in_parallel(&self.parts.codec, changed, |codec, item| async move {
            codec
                .encode(Topic::Inventory, &item)
                .await
                .map(|bytes| (item.item_id, item.inputs_folded, bytes))
        })
        .await?
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        let mut deliveries = Vec::with_capacity(encoded.len());
        for (id, folded, bytes) in &encoded {
            let key = id.key();
            let folded = folded.to_string();
            let headers = OwnedHeaders::new().insert(Header {
                key: INPUTS_FOLDED_HEADER,
                value: Some(folded.as_bytes()),
            });
            let record = FutureRecord::to(&changelog)
                .key(&key)
                .payload(bytes)
                .partition(id.partition(partitions))
                .headers(headers);
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
        settle(producer, deliveries, deadline).await?;
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        scanstream_platform::fault::point("aggregator.inventory.before-commit");
        commit_with_offsets(consumer, producer, list).await?;
        scanstream_platform::fault::point("aggregator.inventory.after-commit");
        Ok(encoded)
    }
}

/// Runs `work` on each of `inputs` in a few tasks (one per thread of the machine, at most
/// two per thousand inputs), keeping their order.
async fn in_parallel<T, R, F, Fut>(
    codec: &Arc<Codec>,
    inputs: Vec<T>,
    work: F,
) -> Result<Vec<R>, ProcessError>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Arc<Codec>, T) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = R> + Send,
{
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tasks = threads.min(inputs.len() / 500).max(1);
    let per_task = inputs.len().div_ceil(tasks).max(1);
    let mut chunks = Vec::with_capacity(tasks);
    let mut inputs = inputs.into_iter();
    loop {
        let chunk: Vec<T> = inputs.by_ref().take(per_task).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let (codec, work) = (codec.clone(), work.clone());
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(chunk.len());
                for input in chunk {
                    out.push(work(codec.clone(), input).await);
                }
                out
            })
        })
        .collect();
    let mut out = Vec::new();
    for handle in handles {
        out.extend(
            handle
                .await
                .map_err(|_| rdkafka::error::KafkaError::Canceled)?,
        );
    }
    Ok(out)
}
