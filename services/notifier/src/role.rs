//! The notifier role: reads `scans.inventory` in its group, one record at a time per partition,
//! and commits a record's offset only once every destination that wants it has it, or it was
//! dead-lettered.
//!
//! What it remembers of each item is the `reopened` count of the item's last record it handled
//! (a new record notifies when the count grew while the item is open, or when it is the item's
//! first). That memory is rebuilt from the changelog itself: before the first record of a newly
//! assigned partition, the partition is read from its beginning up to that record, everything a
//! notifier already handled. A crash between a delivery and the commit delivers again with the
//! same idempotency key.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use scanstream_contracts::inventory::{InventoryItem, ItemId};
use scanstream_contracts::{Codec, Topic, TopicNames, headers};
use scanstream_platform::Settings;
use scanstream_platform::kafka::{ClientRole, KafkaFactory, StatsContext, SyncedContext};
use scanstream_platform::server::{Readiness, Role};
use scanstream_platform::shutdown::Tasks;
use scanstream_platform::supervise::{Supervised, supervise};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::deliver::{Deliverer, Failure};
use crate::message::{Destination, Notification, opened};

/// A changelog record read back: its item (from the key) and its value (`None`: a tombstone).
type Remembered = (Option<ItemId>, Option<Vec<u8>>);

/// Longest wait for Kafka to take a dead letter.
const DLQ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Client(#[from] scanstream_platform::KafkaError),
    #[error(transparent)]
    Codec(#[from] scanstream_contracts::CodecError),
    #[error("the HTTP client could not be built: {0}")]
    Http(#[from] reqwest::Error),
    #[error("reading the changelog failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

struct Loop {
    factory: KafkaFactory,
    names: TopicNames,
    codec: Arc<Codec>,
    group_id: String,
    destinations: Vec<Destination>,
    deliverer: Deliverer,
    dlq: FutureProducer<StatsContext>,
}

/// The notifier role (`scanstream notifier`, and inside `scanstream up`).
pub struct Notifier {
    running: Arc<AtomicBool>,
    destinations: usize,
    tasks: Tasks,
}

impl Notifier {
    pub async fn start(settings: &Settings) -> Result<Arc<Notifier>, NotifierError> {
        crate::metrics::describe();
        let factory = KafkaFactory::new(settings.kafka.clone());
        let config = &settings.notifier;
        let work = Arc::new(Loop {
            names: TopicNames::new(settings.topics.prefix.clone()),
            codec: Arc::new(scanstream_platform::registry::codec(settings)?),
            group_id: scanstream_platform::access::group_id(settings, &config.group_id),
            destinations: config.destinations.iter().map(Destination::new).collect(),
            deliverer: Deliverer::new(config)?,
            dlq: factory.producer(ClientRole::Notifier)?,
            factory,
        });
        if work.destinations.is_empty() {
            tracing::info!(
                "no notifier.destinations configured: inventory changes are read and nobody is told"
            );
        }
        let running = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (work, running, stop) = (work.clone(), running.clone(), stop.clone());
            async move {
                let supervised = Supervised {
                    task: "notifier",
                    resumes: "from the committed offsets",
                    restarts: Some(crate::metrics::RESTARTS),
                    pause: Duration::from_secs(1),
                };
                let failed = || running.store(false, Ordering::Release);
                supervise(supervised, &stop, failed, || work.session(&running, &stop)).await;
            }
        });
        Ok(Arc::new(Notifier {
            running,
            destinations: settings.notifier.destinations.len(),
            tasks: Tasks::new(stop, vec![task]),
        }))
    }
}

impl Role for Notifier {
    fn name(&self) -> &'static str {
        "notifier"
    }

    fn readiness(&self) -> Readiness {
        let consuming = self.running.load(Ordering::Acquire);
        Readiness::new(
            consuming,
            json!({"consuming": consuming, "destinations": self.destinations}),
        )
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.tasks.stop())
    }
}

impl Loop {
    async fn session(
        &self,
        running: &AtomicBool,
        stop: &CancellationToken,
    ) -> Result<(), NotifierError> {
        let consumer: StreamConsumer<SyncedContext> = self.factory.consumer_with_context(
            ClientRole::Notifier,
            &self.group_id,
            SyncedContext::new(ClientRole::Notifier),
        )?;
        let topic = self.names.name(Topic::Inventory);
        consumer.subscribe(&[&topic])?;
        running.store(true, Ordering::Release);
        tracing::info!(group = %self.group_id, destinations = self.destinations.len(), "notifier consuming");
        // The `reopened` count of each item's last record handled.
        let mut handled: HashMap<ItemId, i32> = HashMap::new();
        loop {
            let message = tokio::select! {
                m = consumer.recv() => m?.detach(),
                _ = stop.cancelled() => return Ok(()),
            };
            let partition = message.partition();
            if !consumer.context().is_synced(partition) {
                self.remember(partition, message.offset(), &mut handled)
                    .await?;
                consumer.context().mark_synced(partition);
            }
            self.handle(&message, &mut handled).await?;
            scanstream_platform::fault::point("notifier.before-commit");
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(
                message.topic(),
                partition,
                Offset::Offset(message.offset() + 1),
            )?;
            consumer.commit(&list, CommitMode::Async)?;
        }
    }

    /// Notifies for one record if it calls for it; an undecodable record is counted and
    /// skipped, a registry that does not answer fails the session (the record is read again).
    async fn handle(
        &self,
        message: &OwnedMessage,
        handled: &mut HashMap<ItemId, i32>,
    ) -> Result<(), NotifierError> {
        let id = message
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(ItemId::parse);
        let Some(payload) = message.payload() else {
            if let Some(id) = id {
                handled.remove(&id);
            }
            return Ok(());
        };
        let item: InventoryItem = match self.codec.decode(payload).await {
            Ok(item) => item,
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                tracing::error!(partition = message.partition(), offset = message.offset(), error = %e, "undecodable inventory record skipped");
                metrics::counter!(crate::metrics::UNDECODABLE).increment(1);
                return Ok(());
            }
        };
        let Some(reason) = opened(handled.get(&item.item_id).copied(), &item) else {
            metrics::counter!(crate::metrics::RECORDS, "outcome" => "none").increment(1);
            handled.insert(item.item_id, item.reopened);
            return Ok(());
        };
        metrics::counter!(crate::metrics::RECORDS, "outcome" => "notify").increment(1);
        let notification = Notification::new(&item, reason);
        let wanted: Vec<&Destination> = self
            .destinations
            .iter()
            .filter(|d| d.wants(&item))
            .collect();
        let results = futures::future::join_all(
            wanted
                .iter()
                .map(|d| self.deliverer.deliver(d, &notification)),
        )
        .await;
        for (destination, result) in wanted.into_iter().zip(results) {
            match result {
                Ok(attempts) => {
                    metrics::counter!(crate::metrics::NOTIFICATIONS, "destination" => destination.name.clone(), "outcome" => "delivered").increment(1);
                    tracing::info!(destination = %destination.name, item = %item.item_id, key = %notification.idempotency_key, attempts, "notification delivered");
                }
                Err(failure) => {
                    self.dead_letter(destination, &notification, &failure)
                        .await?;
                }
            }
        }
        handled.insert(item.item_id, item.reopened);
        Ok(())
    }

    /// Writes a notification no try delivered to `scans.notifications.dlq`: the webhook body,
    /// keyed by item, with why in headers (never the destination's URL: it may be a credential).
    async fn dead_letter(
        &self,
        destination: &Destination,
        notification: &Notification,
        failure: &Failure,
    ) -> Result<(), NotifierError> {
        let topic = self.names.name(Topic::NotificationsDlq);
        let body = serde_json::to_vec(notification).unwrap_or_default();
        let reason = failure.error.to_string();
        let attempts = failure.attempts.to_string();
        let record_headers = OwnedHeaders::new()
            .insert(Header {
                key: headers::DLQ_REASON,
                value: Some(&reason),
            })
            .insert(Header {
                key: headers::DLQ_ERROR_KIND,
                value: Some(failure.error.kind()),
            })
            .insert(Header {
                key: "notification-destination",
                value: Some(&destination.name),
            })
            .insert(Header {
                key: "notification-attempts",
                value: Some(&attempts),
            })
            .insert(Header {
                key: "idempotency-key",
                value: Some(&notification.idempotency_key),
            });
        self.dlq
            .send(
                FutureRecord::to(&topic)
                    .key(&notification.item.item_id)
                    .payload(&body)
                    .headers(record_headers),
                DLQ_TIMEOUT,
            )
            .await
            .map_err(|(e, _)| e)?;
        metrics::counter!(crate::metrics::NOTIFICATIONS, "destination" => destination.name.clone(), "outcome" => "dead_lettered").increment(1);
        tracing::error!(destination = %destination.name, item = %notification.item.item_id, key = %notification.idempotency_key, attempts = failure.attempts, error = %failure.error, "notification dead-lettered");
        Ok(())
    }

    /// Reads `partition` of the changelog from its beginning up to `before` (exclusive), the
    /// records a notifier already handled, into `handled`.
    async fn remember(
        &self,
        partition: i32,
        before: i64,
        handled: &mut HashMap<ItemId, i32>,
    ) -> Result<(), NotifierError> {
        if before <= 0 {
            return Ok(());
        }
        let topic = self.names.name(Topic::Inventory);
        let factory = self.factory.clone();
        let group = self.group_id.clone();
        let records =
            tokio::task::spawn_blocking(move || -> Result<Vec<Remembered>, NotifierError> {
                let consumer = factory.base_consumer(ClientRole::Notifier, &group)?;
                let mut list = TopicPartitionList::new();
                list.add_partition_offset(&topic, partition, Offset::Beginning)?;
                consumer.assign(&list)?;
                let mut out = Vec::new();
                let deadline = std::time::Instant::now() + Duration::from_secs(300);
                loop {
                    let position = consumer
                        .position()
                        .ok()
                        .and_then(|p| {
                            p.find_partition(&topic, partition)
                                .and_then(|e| e.offset().to_raw())
                        })
                        .unwrap_or(0);
                    if position >= before {
                        break;
                    }
                    if std::time::Instant::now() > deadline {
                        return Err(rdkafka::error::KafkaError::Canceled.into());
                    }
                    match consumer.poll(Duration::from_millis(200)) {
                        Some(Ok(m)) if m.offset() < before => out.push((
                            m.key()
                                .and_then(|k| std::str::from_utf8(k).ok())
                                .and_then(ItemId::parse),
                            m.payload().map(<[u8]>::to_vec),
                        )),
                        Some(Ok(_)) => break,
                        Some(Err(e)) => return Err(e.into()),
                        None => {}
                    }
                }
                Ok(out)
            })
            .await??;
        let count = records.len();
        for (id, payload) in records {
            match payload {
                None => {
                    if let Some(id) = id {
                        handled.remove(&id);
                    }
                }
                Some(bytes) => {
                    if let Ok(item) = self.codec.decode::<InventoryItem>(&bytes).await {
                        handled.insert(item.item_id, item.reopened);
                    }
                }
            }
        }
        tracing::info!(
            partition,
            records = count,
            "notifier remembered what it handled"
        );
        Ok(())
    }
}
