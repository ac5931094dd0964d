//! The transactional writer: batches submissions into Kafka transactions. Ingest's `POST /jobs`
//! and the scheduler's fired ticks both go through it, so a scheduled run is written exactly as a
//! submitted one.
//!
//! Callers encode their records and hand them over with a deadline; a writer task gathers up to
//! `max_requests` of them for at most `linger`, writes them all in one transaction, and answers
//! every waiting caller after the commit. A caller reports success only on `Ok`, so ingest never
//! gives a 202 for unwritten work. A failed or timed-out batch is aborted and every request in it
//! gets an error; a fatal producer error (fencing) either replaces the producer
//! ([`OnFatal::Reinitialize`], ingest: only a zombie of the same process can fence it) or stops
//! the writer ([`OnFatal::Stop`], the scheduler: being fenced means another instance leads).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use scanstream_contracts::{Codec, Topic, TopicNames, headers};

use crate::config::KafkaSettings;
use crate::kafka::{ClientRole, KafkaFactory, StatsContext};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Where a record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The partition of the record's key.
    Keyed,
    /// One copy to every partition of the topic (cancellations, which must reach whichever
    /// scanner holds the job's repository).
    AllPartitions,
}

/// One encoded record.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: Topic,
    pub key: String,
    /// The encoded value; `None` writes a tombstone (compacted topics).
    pub payload: Option<Vec<u8>>,
    pub target: Target,
    pub traceparent: String,
    pub correlation_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("Kafka is not reachable or the producer is not initialized")]
    NotReady,
    #[error("too many requests are waiting for Kafka")]
    Overloaded,
    #[error("the write did not complete within the deadline")]
    Timeout,
    #[error("the Kafka transaction failed: {0}")]
    Transaction(String),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error(
        "the writer stopped after a fatal producer error (fenced by another producer with the same transactional id)"
    )]
    Fenced,
}

struct Pending {
    records: Vec<Record>,
    deadline: Instant,
    reply: oneshot::Sender<Result<(), WriteError>>,
}

/// What a writer does when its producer hits a fatal error (fenced by another producer with the
/// same transactional id, or a broken transaction state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFatal {
    /// Create a new producer and go on.
    Reinitialize,
    /// Stop: every waiting and later write fails, and [`Writer::stopped`] is true.
    Stop,
}

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Client role of the producers (client id and metric labels).
    pub role: ClientRole,
    /// Base transactional id; writer `i` uses `<id>-<i>`, or exactly `<id>` when there is one
    /// writer and `exact_id` is set.
    pub transactional_id: String,
    pub exact_id: bool,
    pub on_fatal: OnFatal,
    /// Writer tasks, each with its own transactional producer: while one commits, the next
    /// gathers, so a transaction's round trips do not cap throughput.
    pub writers: usize,
    pub max_requests: usize,
    pub linger: Duration,
    pub write_timeout: Duration,
    pub queue_capacity: usize,
}

/// The handlers' side of the writer.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Pending>,
    ready: Arc<Vec<AtomicBool>>,
    stopped: Arc<AtomicBool>,
    write_timeout: Duration,
}

/// The producer settings a writer needs on top of a deployment's Kafka settings: a record that
/// cannot be delivered within the write deadline fails the transaction instead of lingering past
/// the caller's deadline, and transactions may last a little longer than that.
pub fn producer_settings(kafka: &KafkaSettings, write_timeout: Duration) -> KafkaSettings {
    let mut kafka = kafka.clone();
    let write_ms = u64::try_from(write_timeout.as_millis()).unwrap_or(u64::MAX);
    kafka
        .extra
        .entry("message.timeout.ms".to_owned())
        .or_insert_with(|| write_ms.to_string());
    kafka
        .extra
        .entry("transaction.timeout.ms".to_owned())
        // librdkafka requires socket.timeout.ms <= transaction.timeout.ms + 100.
        .or_insert_with(|| {
            (write_ms.saturating_add(10_000))
                .max(kafka.request_timeout.as_millis() as u64)
                .to_string()
        });
    kafka
        .extra
        .entry("linger.ms".to_owned())
        .or_insert_with(|| "1".to_owned());
    kafka
}

impl Writer {
    /// Starts the writer task. It initializes the producer (and registers the schemas) in the
    /// background, retrying until Kafka and the registry answer; until then [`Writer::ready`] is
    /// false and writes fail fast with [`WriteError::NotReady`]. The task ends when every
    /// `Writer` clone is dropped and the queue is drained, or when `stop` is cancelled.
    pub fn start(
        factory: KafkaFactory,
        codec: Arc<Codec>,
        names: TopicNames,
        config: WriterConfig,
        stop: CancellationToken,
    ) -> (Writer, Vec<tokio::task::JoinHandle<()>>) {
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let rx = Arc::new(Mutex::new(rx));
        let count = config.writers.max(1);
        let ready: Arc<Vec<AtomicBool>> =
            Arc::new((0..count).map(|_| AtomicBool::new(false)).collect());
        let stopped = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            tx,
            ready: ready.clone(),
            stopped: stopped.clone(),
            write_timeout: config.write_timeout,
        };
        let tasks = (0..count)
            .map(|index| {
                let task = WriterTask {
                    index,
                    factory: factory.clone(),
                    codec: codec.clone(),
                    names: names.clone(),
                    transactional_id: if config.exact_id && count == 1 {
                        config.transactional_id.clone()
                    } else {
                        format!("{}-{index}", config.transactional_id)
                    },
                    config: config.clone(),
                    ready: ready.clone(),
                    stopped: stopped.clone(),
                    stop: stop.clone(),
                };
                tokio::spawn(task.run(rx.clone()))
            })
            .collect();
        (writer, tasks)
    }

    /// True when at least one writer has a live producer.
    pub fn ready(&self) -> bool {
        self.ready.iter().any(|r| r.load(Ordering::Acquire))
    }

    /// True once a writer stopped on a fatal error ([`OnFatal::Stop`]).
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Writes `records` in one transaction (possibly with other requests' records) and returns
    /// once it is committed, or the error.
    pub async fn write(&self, records: Vec<Record>) -> Result<(), WriteError> {
        if self.stopped() {
            return Err(WriteError::Fenced);
        }
        if !self.ready() {
            return Err(WriteError::NotReady);
        }
        let deadline = Instant::now() + self.write_timeout;
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Pending {
                records,
                deadline,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => WriteError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => WriteError::ShuttingDown,
            })?;
        // The writer answers by the deadline; the margin covers an abort in progress.
        match tokio::time::timeout(self.write_timeout + Duration::from_millis(500), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(WriteError::ShuttingDown),
            Err(_) => Err(WriteError::Timeout),
        }
    }
}

struct WriterTask {
    index: usize,
    factory: KafkaFactory,
    codec: Arc<Codec>,
    names: TopicNames,
    transactional_id: String,
    config: WriterConfig,
    ready: Arc<Vec<AtomicBool>>,
    stopped: Arc<AtomicBool>,
    stop: CancellationToken,
}

struct Live {
    producer: Arc<FutureProducer<StatsContext>>,
    command_partitions: i32,
}

impl WriterTask {
    fn set_ready(&self, ready: bool) {
        if let Some(flag) = self.ready.get(self.index) {
            flag.store(ready, Ordering::Release);
        }
    }

    async fn run(self, rx: Arc<Mutex<mpsc::Receiver<Pending>>>) {
        let mut live: Option<Live> = None;
        let mut health = tokio::time::interval(Duration::from_secs(2));
        loop {
            if live.is_none() {
                live = self.init().await;
                self.set_ready(live.is_some());
                if live.is_none() {
                    // Requests stay queued for writers that are live; with none, handlers answer
                    // 503 at once because no writer is ready.
                    tokio::select! {
                        _ = self.stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    }
                }
            }
            let Some(batch) = self.next_batch(&rx, &mut health, live.as_ref()).await else {
                break;
            };
            if let Some(l) = &live
                && self.write_batch(l, batch).await
            {
                self.set_ready(false);
                live = None;
                if self.config.on_fatal == OnFatal::Stop {
                    self.stopped.store(true, Ordering::Release);
                    break;
                }
            }
        }
        // Drain: answer what is left so no caller waits on a stopped writer.
        let error = if self.stopped.load(Ordering::Acquire) {
            WriteError::Fenced
        } else {
            WriteError::ShuttingDown
        };
        if self.config.on_fatal == OnFatal::Stop {
            // Another writer task of this Writer may hold the queue; the fenced one only answers
            // what it can take without waiting.
            if let Ok(mut rx) = rx.try_lock() {
                while let Ok(p) = rx.try_recv() {
                    let _ = p.reply.send(Err(error.clone()));
                }
            }
        } else {
            let mut rx = rx.lock().await;
            rx.close();
            while let Some(p) = rx.recv().await {
                let _ = p.reply.send(Err(error.clone()));
            }
        }
        self.set_ready(false);
        tracing::info!(
            writer = self.index,
            role = self.config.role.as_str(),
            "transactional writer stopped"
        );
    }

    /// Creates the producer, initializes transactions and registers the schemas.
    async fn init(&self) -> Option<Live> {
        let producer = match self
            .factory
            .transactional_producer(self.config.role, &self.transactional_id)
        {
            Ok(p) => Arc::new(p),
            Err(e) => {
                tracing::error!(error = %e, "cannot create the Kafka producer");
                return None;
            }
        };
        let init = {
            let producer = producer.clone();
            tokio::task::spawn_blocking(move || producer.init_transactions(Duration::from_secs(10)))
                .await
        };
        match init {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Kafka transactions not initialized yet; retrying");
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "producer initialization task failed");
                return None;
            }
        }
        if let Err(e) = self.codec.register_all().await {
            tracing::warn!(error = %e, "schemas not registered yet; retrying");
            return None;
        }
        let topic = self.names.name(Topic::Commands);
        let metadata = {
            let producer = producer.clone();
            tokio::task::spawn_blocking(move || {
                crate::kafka::partitions(producer.client(), &topic, Duration::from_secs(10))
                    .map(|p| p.len())
            })
            .await
        };
        let partitions = match metadata {
            Ok(Ok(n)) if n > 0 => i32::try_from(n).unwrap_or(i32::MAX),
            other => {
                tracing::warn!(
                    ?other,
                    "topic {} not found; run `scanstream topics ensure`",
                    self.names.name(Topic::Commands)
                );
                return None;
            }
        };
        tracing::info!(transactional_id = %self.transactional_id, partitions, role = self.config.role.as_str(), "transactional writer ready");
        Some(Live {
            producer,
            command_partitions: partitions,
        })
    }

    /// Takes the next batch: the first waiting request, then whatever arrives within the linger
    /// time, up to the batch size; `None` when stopping. Only cancel-safe waits (the lock, the
    /// first `recv`) race the stop signal and the health tick, so no request taken from the
    /// queue is ever dropped. Holding the queue while gathering keeps batches whole; it is free
    /// again while this writer commits.
    async fn next_batch(
        &self,
        rx: &Mutex<mpsc::Receiver<Pending>>,
        health: &mut tokio::time::Interval,
        live: Option<&Live>,
    ) -> Option<Vec<Pending>> {
        let mut queue = loop {
            tokio::select! {
                guard = rx.lock() => break guard,
                _ = health.tick() => self.check_health(live).await,
                _ = self.stop.cancelled() => return None,
            }
        };
        let first = loop {
            tokio::select! {
                p = queue.recv() => break p?,
                _ = health.tick() => self.check_health(live).await,
                _ = self.stop.cancelled() => return None,
            }
        };
        let mut batch = vec![first];
        let linger_until = tokio::time::Instant::now() + self.config.linger;
        while batch.len() < self.config.max_requests {
            match tokio::time::timeout_at(linger_until, queue.recv()).await {
                Ok(Some(p)) => batch.push(p),
                _ => break,
            }
        }
        Some(batch)
    }

    async fn check_health(&self, live: Option<&Live>) {
        if let Some(l) = live {
            self.set_ready(reachable(l.producer.clone()).await);
        }
    }

    /// Writes one batch in one transaction and answers it. Returns true when the producer is
    /// no longer usable.
    async fn write_batch(&self, live: &Live, batch: Vec<Pending>) -> bool {
        let now = Instant::now();
        let (batch, expired): (Vec<Pending>, Vec<Pending>) =
            batch.into_iter().partition(|p| p.deadline > now);
        for p in expired {
            let _ = p.reply.send(Err(WriteError::Timeout));
        }
        let Some(deadline) = batch.iter().map(|p| p.deadline).min() else {
            return false;
        };
        let started = Instant::now();
        let size = batch.len();
        let result = self.transaction(live, &batch, deadline).await;
        let outcome = match &result {
            Ok(()) => "committed",
            Err((_, true)) => "fatal",
            Err(_) => "aborted",
        };
        let role = self.config.role.as_str();
        metrics::histogram!(crate::metrics::WRITER_BATCH_SIZE, "role" => role).record(size as f64);
        metrics::histogram!(crate::metrics::WRITER_COMMIT_DURATION, "role" => role)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(crate::metrics::WRITER_TRANSACTIONS, "role" => role, "outcome" => outcome)
            .increment(1);
        match result {
            Ok(()) => {
                self.set_ready(true);
                metrics::counter!(crate::metrics::WRITER_ACCEPTED, "role" => role)
                    .increment(size as u64);
                for p in batch {
                    let _ = p.reply.send(Ok(()));
                }
                false
            }
            Err((error, fatal)) => {
                tracing::warn!(%error, size, fatal, role, "transaction failed; its requests get the error");
                for p in batch {
                    let _ = p.reply.send(Err(error.clone()));
                }
                fatal
            }
        }
    }

    /// Returns the error and whether it is fatal for the producer.
    async fn transaction(
        &self,
        live: &Live,
        batch: &[Pending],
        deadline: Instant,
    ) -> Result<(), (WriteError, bool)> {
        let producer = &live.producer;
        producer
            .begin_transaction()
            .map_err(|e| (WriteError::Transaction(e.to_string()), is_fatal(&e)))?;
        let mut deliveries = Vec::new();
        let mut failed = None;
        'records: for pending in batch {
            for record in &pending.records {
                let topic = self.names.name(record.topic);
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: headers::TRACEPARENT,
                        value: Some(record.traceparent.as_bytes()),
                    })
                    .insert(Header {
                        key: headers::CORRELATION_ID,
                        value: Some(record.correlation_id.as_bytes()),
                    });
                let partitions: Vec<Option<i32>> = match record.target {
                    Target::Keyed => vec![None],
                    Target::AllPartitions => (0..live.command_partitions).map(Some).collect(),
                };
                for partition in partitions {
                    let mut r = FutureRecord::<String, Vec<u8>>::to(&topic)
                        .key(&record.key)
                        .headers(headers.clone());
                    if let Some(payload) = &record.payload {
                        r = r.payload(payload);
                    }
                    if let Some(p) = partition {
                        r = r.partition(p);
                    }
                    match producer.send_result(r) {
                        Ok(delivery) => deliveries.push(delivery),
                        Err((e, _)) => {
                            failed = Some(e);
                            break 'records;
                        }
                    }
                }
            }
        }
        if failed.is_none() {
            failed = crate::kafka::settle(producer, deliveries, deadline)
                .await
                .err();
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let committed = match failed {
            Some(e) => Err(e),
            None if remaining.is_zero() => Err(KafkaError::Canceled),
            None => {
                let producer = producer.clone();
                tokio::task::spawn_blocking(move || producer.commit_transaction(remaining))
                    .await
                    .unwrap_or(Err(KafkaError::Canceled))
            }
        };
        match committed {
            Ok(()) => Ok(()),
            Err(e) => {
                let fatal = is_fatal(&e);
                if !fatal {
                    let producer = producer.clone();
                    let abort = tokio::task::spawn_blocking(move || {
                        producer.abort_transaction(Duration::from_secs(5))
                    })
                    .await;
                    if let Ok(Err(abort_error)) = &abort {
                        // The transaction's fate is now unknown to this producer: replace it, which
                        // fences the old one so the broker aborts whatever it left open.
                        tracing::warn!(error = %abort_error, "aborting the failed transaction failed");
                        return Err((WriteError::Transaction(e.to_string()), true));
                    }
                }
                let error = if matches!(e, KafkaError::Canceled) || remaining.is_zero() {
                    WriteError::Timeout
                } else {
                    WriteError::Transaction(e.to_string())
                };
                Err((error, fatal))
            }
        }
    }
}

fn is_fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => false,
    }
}

/// Whether the broker answers a metadata request within a second.
async fn reachable(producer: Arc<FutureProducer<StatsContext>>) -> bool {
    tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(1))
            .is_ok()
    })
    .await
    .unwrap_or(false)
}
