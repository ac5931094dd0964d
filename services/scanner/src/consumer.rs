//! The scanner's consumer of `scans.commands` (group `scanstream-scanner`, cooperative-sticky).
//!
//! - Several scans run at once; commands read ahead wait in a bounded queue, and when it is full
//!   every assigned partition is paused. The consumer keeps polling all the while, so rebalances
//!   are served and `max.poll.interval.ms` is never exceeded however long a scan takes.
//! - An offset is committed only when every command before it in its partition has its final
//!   terminal event delivered ([`crate::offsets`]).
//! - On revoke, the partitions' commit points are committed synchronously, their queued commands
//!   are dropped and their running scans handed over (closed with a retryable `ScanFailed`), so
//!   the next owner starts from exactly there and nothing is processed twice knowingly.
//! - `CancelScan` (on every partition, keyed by job id) cancels a running scan, or a queued or
//!   later-read one issued before the cancel. A separate watcher reads cancels from every
//!   partition's end, so cancels arrive even while this consumer's partitions are paused.
//! - A command that cannot be decoded or is invalid goes to `scans.commands.dlq` with the reason
//!   in headers (an invalid `RequestScan` also gets a final `ScanFailed`), and the consumer
//!   carries on.
//!
//! Over 600 lines on purpose: the session, back-pressure, commits, hand-over and the cancel
//! watcher all work on one `Shared` state under one lock; split across files, that state and
//! its invariants would have to be visible to the whole crate.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use scanstream_contracts::command::{CancelScan, Command, RequestScan, ScanCommand};
use scanstream_contracts::event::{EventPayload, ScanFailed, TERMINAL_SEQUENCE};
use scanstream_contracts::{Codec, JobId, RunId, Topic, TopicNames};
use scanstream_platform::kafka::{ClientRole, KafkaFactory, StatsContext};
use scanstream_platform::supervise::{Supervised, supervise};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::job::{JobContext, JobEnd, Signals};
use crate::offsets::OffsetBook;
use scanstream_platform::sync::lock;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub group_id: String,
    pub concurrency: usize,
    pub queue_max: usize,
    pub drain_timeout: Duration,
    /// Engine ids this scanner runs.
    pub engines: Vec<String>,
}

/// A command waiting for a free slot.
struct Queued {
    partition: i32,
    offset: i64,
    generation: u64,
    issued_at: i64,
    command: RequestScan,
}

struct Running {
    job: JobId,
    run: RunId,
    signals: Signals,
}

/// A cancel remembered for commands read later (bounded).
struct Cancel {
    run: Option<RunId>,
    issued_at: i64,
    reason: Option<String>,
}

const CANCELS_MAX: usize = 100_000;

/// State shared by the poll loop, the rebalance callbacks and the cancel watcher.
#[derive(Default)]
struct Shared {
    book: OffsetBook,
    queue: VecDeque<Queued>,
    running: HashMap<(i32, i64), Running>,
    cancels: HashMap<JobId, Vec<Cancel>>,
    assignment_changed: bool,
}

impl Shared {
    /// Records a cancel and signals every running scan it applies to.
    fn cancel(&mut self, cancel: &CancelScan, issued_at: i64) {
        for running in self.running.values() {
            if running.job == cancel.job_id && cancel.run_id.is_none_or(|r| r == running.run.0) {
                running.signals.cancel_with(cancel.reason.clone());
            }
        }
        if self.cancels.len() >= CANCELS_MAX {
            self.cancels.clear();
        }
        self.cancels.entry(cancel.job_id).or_default().push(Cancel {
            run: cancel.run_id.map(RunId),
            issued_at,
            reason: cancel.reason.clone(),
        });
    }

    /// The reason of a cancel that applies to `command` issued at `issued_at`, if any: one
    /// naming its run, or one for the whole job issued after the command.
    fn cancelled(&self, command: &RequestScan, issued_at: i64) -> Option<Option<String>> {
        self.cancels.get(&command.job_id)?.iter().find_map(|c| {
            let applies = match c.run {
                Some(run) => run == command.run_id,
                None => c.issued_at >= issued_at,
            };
            applies.then(|| c.reason.clone())
        })
    }
}

struct ScannerContext {
    stats: StatsContext,
    shared: Arc<Mutex<Shared>>,
}

impl ClientContext for ScannerContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.stats.record(&statistics);
    }
}

impl ConsumerContext for ScannerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let mut shared = lock(&self.shared);
        let mut commits = TopicPartitionList::new();
        for element in list.elements() {
            let partition = element.partition();
            if let Some(point) = shared.book.revoke(partition) {
                let _ =
                    commits.add_partition_offset(element.topic(), partition, Offset::Offset(point));
            }
            shared.queue.retain(|q| q.partition != partition);
            for ((p, _), running) in &shared.running {
                if *p == partition {
                    running.signals.hand_over.cancel();
                }
            }
        }
        shared.assignment_changed = true;
        drop(shared);
        if commits.count() > 0
            && let Err(e) = consumer.commit(&commits, CommitMode::Sync)
        {
            tracing::warn!(error = %e, "committing revoked partitions failed; their next owner may repeat finished scans");
        }
        tracing::info!(revoked = list.count(), "partitions revoked");
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        if let Err(e) = result {
            // Committed again on the next tick.
            tracing::debug!(error = %e, "offset commit failed");
            {
                let mut shared = lock(&self.shared);
                for element in offsets.elements() {
                    shared.book.uncommit(element.partition());
                }
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(list) = rebalance else {
            return;
        };
        // librdkafka keeps a partition's pause flag across revoke and re-assignment: a partition
        // paused while it was ours before would stay silent. The poll loop pauses again when the
        // queue is full.
        if list.count() > 0
            && let Err(e) = consumer.resume(list)
        {
            tracing::warn!(error = %e, "resuming newly assigned partitions failed");
        }
        {
            let mut shared = lock(&self.shared);
            for element in list.elements() {
                shared.book.assign(element.partition());
            }
            shared.assignment_changed = true;
        }
        tracing::info!(assigned = list.count(), "partitions assigned");
    }
}

/// A finished job, reported to the poll loop.
struct Done {
    partition: i32,
    offset: i64,
    generation: u64,
    end: JobEnd,
}

pub struct CommandConsumer {
    factory: KafkaFactory,
    names: TopicNames,
    codec: Arc<Codec>,
    jobs: Arc<JobContext>,
    config: ConsumerConfig,
    shared: Arc<Mutex<Shared>>,
}

impl CommandConsumer {
    pub fn new(
        factory: KafkaFactory,
        names: TopicNames,
        codec: Arc<Codec>,
        jobs: Arc<JobContext>,
        config: ConsumerConfig,
    ) -> Self {
        Self {
            factory,
            names,
            codec,
            jobs,
            config,
            shared: Arc::new(Mutex::new(Shared::default())),
        }
    }

    /// Consumes until `stop`, restarting from the committed offsets after a failure.
    pub async fn run(&self, ready: Arc<std::sync::atomic::AtomicBool>, stop: CancellationToken) {
        let watcher = {
            let group = scanstream_platform::access::cancel_watch_group(&self.config.group_id);
            let (factory, names, codec, shared, stop) = (
                self.factory.clone(),
                self.names.clone(),
                self.codec.clone(),
                self.shared.clone(),
                stop.clone(),
            );
            tokio::spawn(
                async move { watch_cancels(factory, &group, names, codec, shared, stop).await },
            )
        };
        let supervised = Supervised {
            task: "scanner consumer",
            resumes: "from the committed offsets",
            restarts: Some(crate::metrics::RESTARTS),
            pause: Duration::from_secs(1),
        };
        let failed = || ready.store(false, std::sync::atomic::Ordering::Release);
        supervise(supervised, &stop, failed, || self.session(&ready, &stop)).await;
        ready.store(false, std::sync::atomic::Ordering::Release);
        let _ = watcher.await;
    }

    async fn session(
        &self,
        ready: &std::sync::atomic::AtomicBool,
        stop: &CancellationToken,
    ) -> Result<(), Error> {
        {
            let mut shared = lock(&self.shared);
            // Scans of an earlier session were handed over when it ended.
            shared.book = OffsetBook::default();
            shared.queue.clear();
            shared.running.clear();
        }
        let consumer: StreamConsumer<ScannerContext> = self.factory.consumer_with_context(
            ClientRole::Scanner,
            &self.config.group_id,
            ScannerContext {
                stats: StatsContext::new(ClientRole::Scanner),
                shared: self.shared.clone(),
            },
        )?;
        let topic = self.names.name(Topic::Commands);
        consumer.subscribe(&[&topic])?;
        ready.store(true, std::sync::atomic::Ordering::Release);
        tracing::info!(group = %self.config.group_id, "scanner consuming commands");
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut paused = false;
        let result = loop {
            tokio::select! {
                _ = stop.cancelled() => break Ok(()),
                Some(done) = done_rx.recv() => self.finished(done),
                received = consumer.recv() => match received {
                    Ok(message) => {
                        let message = message.detach();
                        if let Err(e) = self.handle(message, &done_tx).await {
                            break Err(e);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "consumer error"),
                },
                _ = tick.tick() => {}
            }
            self.start_queued(&done_tx);
            self.commit(&consumer, CommitMode::Async);
            paused = self.back_pressure(&consumer, paused);
        };
        self.drain(&consumer, &mut done_rx).await;
        result
    }

    /// Handles one record; an error means the session must restart (nothing was lost: the
    /// record is not finished, so its offset is not committed).
    async fn handle(
        &self,
        message: OwnedMessage,
        done_tx: &mpsc::UnboundedSender<Done>,
    ) -> Result<(), Error> {
        let (partition, offset) = (message.partition(), message.offset());
        let generation = {
            let mut shared = lock(&self.shared);
            if !shared.book.read(partition, offset) {
                tracing::debug!(
                    partition,
                    offset,
                    "record of a partition not assigned here skipped"
                );
                return Ok(());
            }
            tracing::debug!(partition, offset, "command read");
            shared.book.generation(partition).unwrap_or(0)
        };
        let finish = |shared: &Arc<Mutex<Shared>>| {
            let mut shared = lock(shared);
            shared.book.finish(partition, offset, generation);
        };
        let decoded = match message.payload() {
            None => Err(("the record has no value".to_owned(), "empty")),
            Some(bytes) => match self.decode(bytes).await {
                Ok(command) => Ok(command),
                Err(e) if e.is_transient() => return Err(Error::Codec(e)),
                Err(e) => Err((e.to_string(), "undecodable")),
            },
        };
        let command = match decoded {
            Ok(command) => command,
            Err((reason, kind)) => {
                self.dead_letter(&message, &reason, kind).await?;
                finish(&self.shared);
                return Ok(());
            }
        };
        match command.command {
            Command::CancelScan(cancel) => {
                {
                    let mut shared = lock(&self.shared);
                    shared.cancel(&cancel, command.issued_at);
                }
                finish(&self.shared);
            }
            Command::RequestScan(request) => {
                self.jobs.emitter.begin(request.run_id, &message);
                if let Err(reason) = self.validate(&request) {
                    self.dead_letter(&message, &reason, "invalid_command")
                        .await?;
                    let payload = EventPayload::ScanFailed(ScanFailed {
                        reason: format!("invalid command: {reason}"),
                        retryable: false,
                        error_kind: "invalid_command".to_owned(),
                    });
                    self.jobs
                        .emitter
                        .event(&request, 1, TERMINAL_SEQUENCE, payload)
                        .await?;
                    finish(&self.shared);
                    return Ok(());
                }
                {
                    let mut shared = lock(&self.shared);
                    shared.queue.push_back(Queued {
                        partition,
                        offset,
                        generation,
                        issued_at: command.issued_at,
                        command: request,
                    });
                }
                self.start_queued(done_tx);
            }
        }
        Ok(())
    }

    async fn decode(&self, bytes: &[u8]) -> Result<ScanCommand, scanstream_contracts::CodecError> {
        // A registry outage is transient: retry a few times before restarting the session.
        let mut delay = Duration::from_millis(200);
        loop {
            match self.codec.decode::<ScanCommand>(bytes).await {
                Err(e) if e.is_transient() && delay < Duration::from_secs(5) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
    }

    fn validate(&self, request: &RequestScan) -> Result<(), String> {
        if request.engines.is_empty() {
            return Err("names no engine".into());
        }
        for engine in &request.engines {
            if !self.config.engines.contains(engine) {
                return Err(format!(
                    "engine {engine:?} is not one of {:?}",
                    self.config.engines
                ));
            }
        }
        if request.job_name.trim().is_empty() {
            return Err("job_name is empty".into());
        }
        self.jobs.scanning.check_url(&request.repo_url)
    }

    /// Writes a record to the DLQ, retrying while Kafka is unavailable: a bad record is never
    /// dropped silently.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &str,
        kind: &str,
    ) -> Result<(), Error> {
        tracing::warn!(
            partition = message.partition(),
            offset = message.offset(),
            kind,
            reason,
            "command sent to the DLQ"
        );
        self.jobs.emitter.dead_letter(message, reason, kind).await
    }

    fn start_queued(&self, done_tx: &mpsc::UnboundedSender<Done>) {
        let mut shared = lock(&self.shared);
        while shared.running.len() < self.config.concurrency {
            let Some(queued) = shared.queue.pop_front() else {
                break;
            };
            let signals = Signals::default();
            let cancelled = shared.cancelled(&queued.command, queued.issued_at);
            shared.running.insert(
                (queued.partition, queued.offset),
                Running {
                    job: queued.command.job_id,
                    run: queued.command.run_id,
                    signals: signals.clone(),
                },
            );
            let (jobs, done_tx) = (self.jobs.clone(), done_tx.clone());
            tokio::spawn(async move {
                let end = jobs.execute(&queued.command, &signals, cancelled).await;
                let _ = done_tx.send(Done {
                    partition: queued.partition,
                    offset: queued.offset,
                    generation: queued.generation,
                    end,
                });
            });
        }
        metrics::gauge!(crate::metrics::RUNNING_SCANS).set(shared.running.len() as f64);
        metrics::gauge!(crate::metrics::QUEUED_COMMANDS).set(shared.queue.len() as f64);
    }

    fn finished(&self, done: Done) {
        {
            let mut shared = lock(&self.shared);
            shared.running.remove(&(done.partition, done.offset));
            if done.end == JobEnd::Finished {
                shared
                    .book
                    .finish(done.partition, done.offset, done.generation);
            }
        }
    }

    fn commit(&self, consumer: &StreamConsumer<ScannerContext>, mode: CommitMode) {
        let commits = lock(&self.shared).book.take_commits();
        if commits.is_empty() {
            return;
        }
        let topic = self.names.name(Topic::Commands);
        let mut list = TopicPartitionList::new();
        for (partition, offset) in &commits {
            let _ = list.add_partition_offset(&topic, *partition, Offset::Offset(*offset));
        }
        if let Err(e) = consumer.commit(&list, mode) {
            tracing::warn!(error = %e, "offset commit failed; retried on the next tick");
            {
                let mut shared = lock(&self.shared);
                for (partition, _) in commits {
                    shared.book.uncommit(partition);
                }
            }
        }
    }

    /// Pauses every assigned partition while the queue is full, resumes when it drained.
    fn back_pressure(&self, consumer: &StreamConsumer<ScannerContext>, paused: bool) -> bool {
        let (queued, changed) = {
            let mut shared = lock(&self.shared);
            (
                shared.queue.len(),
                std::mem::take(&mut shared.assignment_changed),
            )
        };
        let Ok(assignment) = consumer.assignment() else {
            return paused;
        };
        if queued >= self.config.queue_max && (!paused || changed) {
            if consumer.pause(&assignment).is_ok() {
                tracing::debug!(queued, "partitions paused");
                return true;
            }
        } else if paused
            && queued < self.config.queue_max.div_ceil(2)
            && consumer.resume(&assignment).is_ok()
        {
            tracing::debug!(queued, "partitions resumed");
            return false;
        }
        paused
    }

    /// On shutdown: running scans get the drain time to finish, then are handed over; finished
    /// offsets are committed before the consumer leaves its group.
    async fn drain(
        &self,
        consumer: &StreamConsumer<ScannerContext>,
        done_rx: &mut mpsc::UnboundedReceiver<Done>,
    ) {
        {
            let mut shared = lock(&self.shared);
            shared.queue.clear();
        }
        let running = || lock(&self.shared).running.len();
        let until = tokio::time::Instant::now() + self.config.drain_timeout;
        let mut handed_over = false;
        while running() > 0 {
            let wait = if handed_over {
                tokio::time::Instant::now() + Duration::from_secs(15)
            } else {
                until
            };
            match tokio::time::timeout_at(wait, done_rx.recv()).await {
                Ok(Some(done)) => self.finished(done),
                Ok(None) => break,
                Err(_) if handed_over => break,
                Err(_) => {
                    handed_over = true;
                    {
                        let shared = lock(&self.shared);
                        tracing::info!(
                            running = shared.running.len(),
                            "handing running scans over"
                        );
                        for running in shared.running.values() {
                            running.signals.hand_over.cancel();
                        }
                    }
                }
            }
        }
        self.commit(consumer, CommitMode::Sync);
    }
}

/// Reads `CancelScan` records from the end of every partition, independently of the group's
/// assignment and pauses.
async fn watch_cancels(
    factory: KafkaFactory,
    group: &str,
    names: TopicNames,
    codec: Arc<Codec>,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
) {
    let topic = names.name(Topic::Commands);
    while !stop.is_cancelled() {
        let result: Result<(), Error> = async {
            let consumer = factory.consumer(ClientRole::Scanner, group)?;
            let partitions = scanstream_platform::kafka::partitions(
                consumer.client(),
                &topic,
                factory.request_timeout(),
            )?;
            let mut list = TopicPartitionList::new();
            for p in partitions {
                let _ = list.add_partition_offset(&topic, p, Offset::End);
            }
            consumer.assign(&list)?;
            loop {
                let message = tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    m = consumer.recv() => m?,
                };
                let Some(bytes) = message.payload() else {
                    continue;
                };
                if let Ok(ScanCommand {
                    command: Command::CancelScan(cancel),
                    issued_at,
                    ..
                }) = codec.decode::<ScanCommand>(bytes).await
                {
                    lock(&shared).cancel(&cancel, issued_at);
                }
            }
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cancel watcher restarts");
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}
