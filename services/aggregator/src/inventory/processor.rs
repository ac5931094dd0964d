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
use scanstream_contracts::{Codec, Topic, TopicNames};
use scanstream_platform::kafka::{ClientRole, KafkaFactory, StatsContext, SyncedContext, settle};
use scanstream_platform::supervise::{Supervised, supervise};
use tokio_util::sync::CancellationToken;

use super::fold::{Input, fold_batch};
use crate::changelog::{INPUTS_FOLDED_HEADER, INVENTORY, Progress};
use crate::processor::{ProcessError, ProcessorConfig, commit_with_offsets, gather, sync};
use crate::store::{Change, Store, Stored, Table};

pub struct InventoryProcessor {
    factory: KafkaFactory,
    names: TopicNames,
    codec: Arc<Codec>,
    store: Arc<Store>,
    progress: Arc<Progress>,
    config: ProcessorConfig,
}

impl InventoryProcessor {
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

    /// Folds until `stop`; after a failure, starts over from the committed offsets.
    pub async fn run(&self, ready: Arc<AtomicBool>, stop: CancellationToken) {
        let supervised = Supervised {
            task: "inventory processing",
            resumes: "from the committed offsets",
            restarts: Some(crate::metrics::RESTARTS),
            pause: Duration::from_secs(1),
        };
        let failed = || ready.store(false, Ordering::Release);
        supervise(supervised, &stop, failed, || async {
            while !self.progress.restored() {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
            self.session(&ready, &stop).await
        })
        .await;
    }

    async fn session(
        &self,
        ready: &AtomicBool,
        stop: &CancellationToken,
    ) -> Result<(), ProcessError> {
        let consumer: Arc<StreamConsumer<SyncedContext>> =
            Arc::new(self.factory.co_partitioned_consumer_with_context(
                ClientRole::Aggregator,
                &self.config.group_id,
                SyncedContext::new(ClientRole::Aggregator),
            )?);
        let sightings = self.names.name(Topic::Sightings);
        let triage = self.names.name(Topic::Triage);
        let partitions = self.partitions(&consumer).await?;
        consumer.subscribe(&[&sightings, &triage])?;
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
        ready.store(true, Ordering::Release);
        tracing::info!(transactional_id = %self.config.transactional_id, "inventory folding");
        loop {
            let batch = tokio::select! {
                batch = gather(&consumer, self.config.batch_max_events, self.config.linger) => batch?,
                _ = stop.cancelled() => return Ok(()),
            };
            self.batch(&consumer, &producer, partitions, batch).await?;
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
            .map(|t| self.names.name(*t))
            .collect();
        let timeout = self.factory.request_timeout();
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

    async fn batch(
        &self,
        consumer: &Arc<StreamConsumer<SyncedContext>>,
        producer: &Arc<FutureProducer<StatsContext>>,
        partitions: i32,
        batch: Vec<OwnedMessage>,
    ) -> Result<(), ProcessError> {
        let started = Instant::now();
        let (inputs, offsets) = self.decode(consumer, &batch).await?;
        let mut items = self.load(&inputs).await?;
        let dirty = fold_batch(&inputs, &mut items);
        let encoded = self
            .commit(consumer, producer, &dirty, &items, &offsets, partitions)
            .await?;
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
        self.store
            .blocking(move |s| s.apply(Table::Items, &changes, &[], false))
            .await?;
        metrics::counter!(crate::metrics::INVENTORY_INPUTS).increment(inputs.len() as u64);
        tracing::debug!(
            inputs = inputs.len(),
            items = written,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "inventory batch committed"
        );
        Ok(())
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
        for message in batch {
            let partition = message.partition();
            offsets.insert(
                (message.topic().to_owned(), partition),
                message.offset() + 1,
            );
            if !consumer.context().is_synced(partition) {
                sync(
                    &self.factory,
                    &self.names,
                    INVENTORY,
                    &self.store,
                    &self.progress,
                    consumer,
                    partition,
                )
                .await?;
                consumer.context().mark_synced(partition);
            }
            let Some(payload) = message.payload() else {
                metrics::counter!(crate::metrics::UNDECODABLE).increment(1);
                continue;
            };
            let decoded = match self.names.topic_of(message.topic()) {
                Some(Topic::Sightings) => self
                    .codec
                    .decode::<Sighting>(payload)
                    .await
                    .map(Input::Sighting),
                _ => self
                    .codec
                    .decode::<TriageDecision>(payload)
                    .await
                    .map(Input::Decision),
            };
            match decoded {
                Ok(input) => inputs.push(input),
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => {
                    tracing::error!(topic = message.topic(), partition, offset = message.offset(), error = %e, "undecodable inventory input skipped");
                    metrics::counter!(crate::metrics::UNDECODABLE).increment(1);
                }
            }
        }
        Ok((inputs, offsets))
    }

    /// The stored items the inputs touch: each seen or decided item, and every item of a
    /// repository whose tip scan completed.
    async fn load(&self, inputs: &[Input]) -> Result<HashMap<ItemId, InventoryItem>, ProcessError> {
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
        let stored = self
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
        let mut items = HashMap::with_capacity(stored.len());
        for (id, stored) in stored {
            let id = ItemId(uuid::Uuid::from_u128(id));
            if items.contains_key(&id) {
                continue;
            }
            items.insert(id, self.codec.decode::<InventoryItem>(&stored.value).await?);
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
        let changelog = self.names.name(Topic::Inventory);
        producer.begin_transaction()?;
        let mut encoded = Vec::with_capacity(dirty.len());
        for id in dirty {
            if let Some(item) = items.get(id) {
                encoded.push((
                    *id,
                    item.inputs_folded,
                    self.codec.encode(Topic::Inventory, item).await?,
                ));
            }
        }
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
