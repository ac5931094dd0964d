//! A follower of a (usually compacted) topic: reads it from the beginning with `read_committed`,
//! folds every record into an in-memory state, and keeps following it. Ingest lists schedules
//! from one, the aggregator reads the schedules' history limits from one, and the scheduler
//! reads schedules, its tick records and the active scheduled runs from them.
//!
//! [`Tail::sync`] gives read-your-writes: it returns once the state holds everything committed
//! to the topic before the call. A record that cannot be decoded is logged, counted
//! (`scanstream_tail_bad_records_total{topic}`) and skipped; it never stops the follower.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use scanstream_contracts::{AvroRecord, Codec, Topic};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::kafka::{ClientRole, KafkaFactory, StatsContext};

/// Why a [`Tail::sync`] did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TailError {
    #[error("{topic} could not be read to its end within {waited_ms} ms")]
    Timeout { topic: String, waited_ms: u128 },
    #[error("the end offsets of {topic} are unknown: {reason}")]
    Offsets { topic: String, reason: String },
    #[error("the follower of {topic} has stopped")]
    Stopped { topic: String },
}

/// How often an idle follower publishes the consumer's position (which moves past transaction
/// markers without delivering a message).
const IDLE_TICK: Duration = Duration::from_millis(50);

struct Shared<S> {
    state: RwLock<S>,
    topic: String,
    /// A client that only asks for end offsets. Not the reading consumer: a broker answers one
    /// request per connection at a time, so behind a long-polling fetch (up to
    /// `fetch.wait.max.ms`) an offsets request would wait.
    probe: Mutex<Option<Arc<StreamConsumer<StatsContext>>>>,
    /// Next offset to read per partition, published only once everything before it is applied.
    positions: watch::Sender<BTreeMap<i32, i64>>,
    stopped: AtomicBool,
}

/// A state folded from a topic; cheap to clone.
pub struct Tail<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for Tail<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// The latest value of every key of a compacted topic.
pub type Table<T> = Tail<BTreeMap<String, T>>;

/// Where a tail reads from.
pub struct TailSource {
    pub factory: KafkaFactory,
    pub role: ClientRole,
    pub codec: Arc<Codec>,
    pub topic: Topic,
    pub stop: CancellationToken,
}

impl<T: AvroRecord + Send + Sync + 'static> Tail<BTreeMap<String, T>> {
    /// Follows `source.topic` as a table: the latest value per key, tombstones removing keys.
    pub fn table(source: TailSource) -> (Table<T>, tokio::task::JoinHandle<()>) {
        Tail::start(
            source,
            BTreeMap::new(),
            |table: &mut BTreeMap<String, T>, key: &str, value: Option<T>| match value {
                Some(value) => {
                    table.insert(key.to_owned(), value);
                }
                None => {
                    table.remove(key);
                }
            },
        )
    }
}

impl<S: Send + Sync + 'static> Tail<S> {
    /// Starts following `source.topic` from its beginning; `apply` folds each record (its key and
    /// its value, `None` for a tombstone) into the state. The task ends when `source.stop` is
    /// cancelled.
    pub fn start<T, F>(
        source: TailSource,
        initial: S,
        apply: F,
    ) -> (Tail<S>, tokio::task::JoinHandle<()>)
    where
        T: AvroRecord + Send + 'static,
        F: FnMut(&mut S, &str, Option<T>) + Send + 'static,
    {
        let topic = source.codec.topic_names().name(source.topic);
        // At zero from the start, so an alert on its increase sees the first bad record.
        metrics::counter!(crate::metrics::TAIL_BAD_RECORDS, "topic" => topic.clone()).increment(0);
        let (positions, _) = watch::channel(BTreeMap::new());
        let shared = Arc::new(Shared {
            state: RwLock::new(initial),
            topic,
            probe: Mutex::new(None),
            positions,
            stopped: AtomicBool::new(false),
        });
        let task = tokio::spawn(follow(shared.clone(), source, apply));
        (Tail { shared }, task)
    }

    /// Reads the state.
    pub fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        let state = crate::sync::read(&self.shared.state);
        f(&state)
    }

    /// The full topic name.
    pub fn topic(&self) -> &str {
        &self.shared.topic
    }

    /// Waits until the state holds every record committed to the topic before this call.
    pub async fn sync(&self, timeout: Duration) -> Result<(), TailError> {
        let started = std::time::Instant::now();
        let topic = self.shared.topic.clone();
        let timed_out = || TailError::Timeout {
            topic: topic.clone(),
            waited_ms: started.elapsed().as_millis(),
        };
        let consumer = loop {
            if self.shared.stopped.load(Ordering::Acquire) {
                return Err(TailError::Stopped {
                    topic: topic.clone(),
                });
            }
            let consumer = crate::sync::lock(&self.shared.probe).clone();
            if let Some(consumer) = consumer {
                break consumer;
            }
            if started.elapsed() >= timeout {
                return Err(timed_out());
            }
            tokio::time::sleep(IDLE_TICK).await;
        };
        let ends = {
            let name = topic.clone();
            let remaining = timeout.saturating_sub(started.elapsed());
            tokio::task::spawn_blocking(move || end_offsets(&consumer, &name, remaining))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
                .map_err(|reason| TailError::Offsets {
                    topic: topic.clone(),
                    reason,
                })?
        };
        let mut positions = self.shared.positions.subscribe();
        let reached = |p: &BTreeMap<i32, i64>| {
            ends.iter().all(|(partition, (start, end))| {
                start >= end || p.get(partition).is_some_and(|at| at >= end)
            })
        };
        let wait = positions.wait_for(reached);
        match tokio::time::timeout(timeout.saturating_sub(started.elapsed()), wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(TailError::Stopped { topic }),
            Err(_) => Err(timed_out()),
        }
    }

    /// True once the follower has read the topic to the end it had when it started.
    pub fn caught_up(&self) -> bool {
        !self.shared.positions.borrow().is_empty()
    }
}

/// The start and end (last stable offset, as the consumer reads `read_committed`) of every
/// partition.
fn end_offsets(
    consumer: &StreamConsumer<StatsContext>,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, (i64, i64)>, String> {
    partitions(consumer, topic, timeout)?
        .into_iter()
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, timeout)
                .map(|range| (p, range))
                .map_err(|e| e.to_string())
        })
        .collect()
}

async fn follow<S, T, F>(shared: Arc<Shared<S>>, source: TailSource, mut apply: F)
where
    T: AvroRecord,
    F: FnMut(&mut S, &str, Option<T>),
{
    let topic = shared.topic.clone();
    let consumer = loop {
        let opened = {
            let (factory, role, topic) = (source.factory.clone(), source.role, topic.clone());
            tokio::task::spawn_blocking(move || open(&factory, role, &topic))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
        };
        match opened {
            Ok(pair) => break pair,
            Err(reason) => {
                tracing::warn!(%topic, %reason, "cannot follow the topic yet; retrying");
                tokio::select! {
                    () = source.stop.cancelled() => {
                        shared.stopped.store(true, Ordering::Release);
                        return;
                    }
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    let (consumer, probe) = (Arc::new(consumer.0), Arc::new(consumer.1));
    *crate::sync::lock(&shared.probe) = Some(probe.clone());
    // Reaching the end it had at the start is what `caught_up` reports.
    // Caught up means the last stable offsets at the start: an open (or hanging) transaction
    // must not keep the follower from being ready.
    let start_ends = loop {
        let c = consumer.clone();
        let t = topic.clone();
        let timeout = source.factory.request_timeout();
        match tokio::task::spawn_blocking(move || end_offsets(&c, &t, timeout)).await {
            Ok(Ok(ends)) => break ends,
            other => {
                tracing::warn!(%topic, ?other, "end offsets unknown; retrying");
                tokio::select! {
                    () = source.stop.cancelled() => {
                        shared.stopped.store(true, Ordering::Release);
                        return;
                    }
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    let mut applied: HashMap<i32, i64> = HashMap::new();
    let mut started = false;
    loop {
        let next = tokio::select! {
            () = source.stop.cancelled() => break,
            next = tokio::time::timeout(IDLE_TICK, consumer.recv()) => next,
        };
        match next {
            Err(_) => {
                // Idle: everything received is applied, so the consumer's own position (past
                // any transaction markers) is safe to publish.
                if let Ok(list) = consumer.position() {
                    for e in list.elements() {
                        if let Offset::Offset(o) = e.offset() {
                            let at = applied.entry(e.partition()).or_insert(o);
                            *at = (*at).max(o);
                        }
                    }
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%topic, %error, "reading the topic failed; retrying");
                continue;
            }
            Ok(Ok(message)) => {
                let partition = message.partition();
                let offset = message.offset();
                let key = message.key().map(std::str::from_utf8);
                let value = match (key, message.payload()) {
                    (Some(Ok(key)), None) => Some((key.to_owned(), None)),
                    (Some(Ok(key)), Some(bytes)) => match source.codec.decode::<T>(bytes).await {
                        Ok(value) => Some((key.to_owned(), Some(value))),
                        Err(error) => {
                            bad_record(&topic, partition, offset, &error.to_string());
                            None
                        }
                    },
                    _ => {
                        bad_record(&topic, partition, offset, "the key is missing or not UTF-8");
                        None
                    }
                };
                if let Some((key, value)) = value {
                    let mut state = crate::sync::write(&shared.state);
                    apply(&mut state, &key, value);
                }
                applied.insert(partition, offset + 1);
            }
        }
        let reached_start = start_ends
            .iter()
            .all(|(p, (start, end))| start >= end || applied.get(p).is_some_and(|at| at >= end));
        if started || reached_start {
            if !started {
                tracing::debug!(%topic, "caught up with the topic");
            }
            started = true;
            shared.positions.send_if_modified(|published| {
                let mut changed = false;
                for (p, at) in &applied {
                    if published.get(p) != Some(at) {
                        published.insert(*p, *at);
                        changed = true;
                    }
                }
                // An empty partition has nothing to apply; its start is its end.
                for (p, (_, end)) in &start_ends {
                    if !published.contains_key(p) {
                        published.insert(*p, *end);
                        changed = true;
                    }
                }
                changed
            });
        }
    }
    shared.stopped.store(true, Ordering::Release);
}

fn bad_record(topic: &str, partition: i32, offset: i64, reason: &str) {
    tracing::warn!(%topic, partition, offset, %reason, "skipping a record that cannot be read");
    metrics::counter!(crate::metrics::TAIL_BAD_RECORDS, "topic" => topic.to_owned()).increment(1);
}

/// A consumer assigned every partition of `topic` from the beginning (no group membership, no
/// commits), and a second, never assigned, for offset queries.
fn open(
    factory: &KafkaFactory,
    role: ClientRole,
    topic: &str,
) -> Result<(StreamConsumer<StatsContext>, StreamConsumer<StatsContext>), String> {
    let group = crate::access::tail_group(topic);
    let consumer = factory.consumer(role, &group).map_err(|e| e.to_string())?;
    // High watermarks for `sync`: a write committed just before must be waited for, though its
    // transaction markers may not be written yet.
    let probe = factory
        .offset_probe(role, &group)
        .map_err(|e| e.to_string())?;
    let mut list = TopicPartitionList::new();
    for p in partitions(&consumer, topic, factory.request_timeout())? {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&list).map_err(|e| e.to_string())?;
    Ok((consumer, probe))
}

/// The partition ids of `topic`; an error when it does not exist.
fn partitions(
    consumer: &StreamConsumer<StatsContext>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, String> {
    let partitions =
        crate::kafka::partitions(consumer.client(), topic, timeout).map_err(|e| e.to_string())?;
    if partitions.is_empty() {
        return Err(format!(
            "topic {topic} not found; run `scanstream topics ensure`"
        ));
    }
    Ok(partitions)
}
