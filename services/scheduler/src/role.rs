//! The scheduler role: a Kafka-elected leader that fires schedules' ticks.
//!
//! Every instance joins the consumer group `scheduler.group_id` on the one-partition
//! `scans.schedules`; the member that owns partition 0 leads, the others stand by. A leader's
//! term:
//! 1. starts a transactional writer under the one transactional id every scheduler shares;
//!    initializing it fences any earlier leader and settles whatever transaction it left open;
//! 2. only then reads `scans.schedule-ticks` to its end: what every earlier leader handled;
//! 3. at each tick reads `scans.schedules` to its end, plans the pass ([`crate::pass`]) and
//!    writes the fired runs (the same `RequestScan` + `JobSubmitted` as `POST /jobs`), the
//!    cancellations of `Replace` and the new tick records in one transaction.
//!
//! A tick is therefore either fired together with its record or not at all, and a new leader
//! sees exactly the records of the fired ticks: no tick fires twice, and none that fell due
//! without a leader is lost (it fires late, within its starting deadline). A leader that failed
//! to commit, or was fenced, ends its term and starts again if it still owns the partition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::consumer::Consumer;
use scanstream_contracts::command::{CancelScan, Command, ScanCommand};
use scanstream_contracts::ids::derived_uuid;
use scanstream_contracts::schedule::{Schedule, ScheduleTicks};
use scanstream_contracts::state::JobState;
use scanstream_contracts::submission::Submission;
use scanstream_contracts::{Codec, CodecError, RepoKey, RunId, Topic, TopicNames};
use scanstream_platform::Settings;
use scanstream_platform::http::child_traceparent;
use scanstream_platform::kafka::{ClientRole, KafkaFactory};
use scanstream_platform::server::{Readiness, Role};
use scanstream_platform::shutdown::Tasks;
use scanstream_platform::supervise::{Supervised, supervise};
use scanstream_platform::tail::{Table, Tail, TailSource};
use scanstream_platform::writer::{
    OnFatal, Record, Target, Writer, WriterConfig, producer_settings,
};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::{self, Clock, system_ms};
use crate::health::PassHealth;
use crate::pass::{ActiveRuns, Fire, Pass, PassConfig, plan};
use crate::plan::run_name;

/// Longest a leader sleeps between passes, in real time: new schedules and leadership changes
/// are noticed at least this often.
const MAX_NAP: Duration = Duration::from_millis(500);
/// A leader that wrote no pass for this long (real time) is not ready: its passes fail.
const PASS_STALE: Duration = Duration::from_secs(30);
/// Longest one pass's transaction may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a read of a topic to its end may take before the pass is retried.
const SYNC_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// A running scheduler instance (leader or standby).
pub struct Scheduler {
    tasks: Tasks,
    leader: watch::Receiver<bool>,
    schedules: Table<Schedule>,
    member: Arc<AtomicBool>,
    health: Arc<PassHealth>,
}

struct Leadership {
    /// Producer settings (the writer).
    factory: KafkaFactory,
    /// Consumer settings (the tick records' tail).
    consumers: KafkaFactory,
    codec: Arc<Codec>,
    names: TopicNames,
    clock: Arc<dyn Clock>,
    schedules: Table<Schedule>,
    active: Tail<ActiveRuns>,
    transactional_id: String,
    config: PassConfig,
    health: Arc<PassHealth>,
}

impl Scheduler {
    /// Joins the scheduler group and starts following schedules; leads whenever elected.
    pub async fn start(settings: &Settings) -> Result<Arc<Scheduler>, SchedulerError> {
        crate::metrics::describe();
        let config = settings.scheduler.clone();
        let names = TopicNames::new(settings.topics.prefix.clone());
        let codec = Arc::new(scanstream_platform::registry::codec(settings)?);
        let factory = KafkaFactory::new(settings.kafka.clone());
        let stop = CancellationToken::new();
        let source = |topic| TailSource {
            factory: factory.clone(),
            role: ClientRole::Scheduler,
            codec: codec.clone(),
            topic,
            stop: stop.clone(),
        };
        let (schedules, schedules_task) = Table::<Schedule>::table(source(Topic::Schedules));
        let (active, active_task) = Tail::start(
            source(Topic::JobState),
            ActiveRuns::default(),
            |runs: &mut ActiveRuns, key: &str, state: Option<JobState>| runs.apply(key, state),
        );
        let (leader_tx, leader) = watch::channel(false);
        let member = Arc::new(AtomicBool::new(false));
        let group_id = scanstream_platform::access::group_id(settings, &config.group_id);
        let membership = {
            let (factory, topic, stop, member) = (
                factory.clone(),
                names.name(Topic::Schedules),
                stop.clone(),
                member.clone(),
            );
            let session = config.session_timeout;
            tokio::task::spawn_blocking(move || {
                hold_membership(
                    &factory, &group_id, &topic, session, &leader_tx, &member, &stop,
                );
            })
        };
        let health = Arc::new(PassHealth::default());
        let leadership = Leadership {
            factory: KafkaFactory::new(producer_settings(&settings.kafka, WRITE_TIMEOUT)),
            consumers: factory.clone(),
            codec,
            names,
            clock: clock::from_settings(&config),
            schedules: schedules.clone(),
            active,
            transactional_id: scanstream_platform::access::scheduler_transactional_id(settings),
            config: PassConfig {
                starting_deadline_seconds: config.starting_deadline_seconds,
                leader: config.instance(),
            },
            health: health.clone(),
        };
        let terms = tokio::spawn(leadership.run(leader.clone(), stop.clone()));
        Ok(Arc::new(Scheduler {
            tasks: Tasks::new(stop, vec![schedules_task, active_task, membership, terms]),
            leader,
            schedules,
            member,
            health,
        }))
    }

    /// True while this instance leads.
    pub fn leading(&self) -> bool {
        *self.leader.borrow()
    }
}

impl Role for Scheduler {
    fn name(&self) -> &'static str {
        "scheduler"
    }

    /// Ready when it has joined the group and read the schedules; a standby is ready too.
    /// A leader is ready only while its passes are written; schedules it cannot plan are
    /// listed (they do not make it unready: the others fire).
    fn readiness(&self) -> Readiness {
        let member = self.member.load(Ordering::Acquire);
        let caught_up = self.schedules.caught_up();
        let leader = self.leading();
        let since_pass = system_ms() - self.health.last_pass_ms.load(Ordering::Acquire);
        let passing = !leader || since_pass < PASS_STALE.as_millis() as i64;
        let invalid: Vec<String> = scanstream_platform::sync::lock(&self.health.invalid)
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        let mut detail = json!({
            "member": member,
            "leader": leader,
            "schedules_read": caught_up,
            "invalid_schedules": invalid,
        });
        if !passing {
            detail["reason"] = json!(format!(
                "leading, but no pass was written for {} s",
                since_pass / 1000
            ));
        }
        Readiness::new(member && caught_up && passing, detail)
    }

    fn refresh_metrics(&self) {
        metrics::gauge!(crate::metrics::LEADER).set(if self.leading() { 1.0 } else { 0.0 });
        metrics::gauge!(crate::metrics::SCHEDULES)
            .set(self.health.schedules.load(Ordering::Relaxed) as f64);
        let invalid = scanstream_platform::sync::lock(&self.health.invalid).len();
        metrics::gauge!(crate::metrics::INVALID_SCHEDULES).set(invalid as f64);
    }

    fn http_workers(&self) -> Option<usize> {
        Some(1)
    }

    /// Leaves the group (a standby takes over at once) and stops.
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.tasks.stop())
    }
}

/// Keeps this instance in the scheduler group and publishes whether it owns partition 0. Runs
/// on a blocking thread until `stop`; dropping the consumer leaves the group, so a standby takes
/// over without waiting for the session timeout.
fn hold_membership(
    factory: &KafkaFactory,
    group_id: &str,
    topic: &str,
    session: Duration,
    leader: &watch::Sender<bool>,
    member: &AtomicBool,
    stop: &CancellationToken,
) {
    while !stop.is_cancelled() {
        let consumer = match factory.group_member(ClientRole::Scheduler, group_id, session) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot create the scheduler group consumer");
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
        };
        if let Err(e) = consumer.subscribe(&[topic]) {
            tracing::warn!(error = %e, "cannot join the scheduler group yet; retrying");
            std::thread::sleep(Duration::from_secs(2));
            continue;
        }
        member.store(true, Ordering::Release);
        while !stop.is_cancelled() {
            // Records are not used: the partition is the leadership, the schedules are read by
            // a tail. Polling keeps the membership alive and runs rebalances.
            if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                tracing::debug!(error = %e, "scheduler group poll");
            }
            let owns = consumer.assignment().is_ok_and(|list| {
                list.elements()
                    .iter()
                    .any(|e| e.topic() == topic && e.partition() == 0)
            });
            leader.send_if_modified(|leads| {
                let changed = *leads != owns;
                if changed {
                    tracing::info!(leader = owns, "scheduler leadership changed");
                }
                *leads = owns;
                changed
            });
        }
        leader.send_replace(false);
        member.store(false, Ordering::Release);
    }
}

/// Why a leader's term ended.
#[derive(Debug, thiserror::Error)]
enum TermEnd {
    #[error("leadership lost or not gained")]
    NotLeading,
    #[error("the transactional writer stopped before it was ready")]
    WriterStopped,
    #[error("the tick records could not be read: {0}")]
    TickRecords(String),
    #[error("a pass was not written")]
    Write,
}

impl Leadership {
    /// Leads whenever elected: each term is a session that ends when leadership is lost or a
    /// write failed, after which the next one waits for leadership again.
    async fn run(self, leader: watch::Receiver<bool>, stop: CancellationToken) {
        let supervised = Supervised {
            task: "scheduler leadership",
            resumes: "when this instance leads",
            restarts: None,
            pause: Duration::from_millis(500),
        };
        supervise(
            supervised,
            &stop,
            || {},
            || async {
                let mut leader = leader.clone();
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    changed = leader.wait_for(|leads| *leads) => {
                        if changed.is_err() {
                            return Ok(());
                        }
                    }
                }
                metrics::counter!(crate::metrics::TERMS).increment(1);
                let ended = self.term(&leader, &stop).await;
                metrics::gauge!(crate::metrics::LEADER).set(0.0);
                match ended {
                    _ if stop.is_cancelled() => Ok(()),
                    Ok(()) => Err(TermEnd::NotLeading),
                    Err(e) => Err(e),
                }
            },
        )
        .await;
    }

    /// One term as leader; returns when leadership is lost (`Ok`), a write failed, or on stop.
    async fn term(
        &self,
        leader: &watch::Receiver<bool>,
        stop: &CancellationToken,
    ) -> Result<(), TermEnd> {
        let leads = || *leader.borrow() && !stop.is_cancelled();
        let term_stop = stop.child_token();
        let (writer, writer_tasks) = Writer::start(
            self.factory.clone(),
            self.codec.clone(),
            self.names.clone(),
            WriterConfig {
                role: ClientRole::Scheduler,
                transactional_id: self.transactional_id.clone(),
                exact_id: true,
                on_fatal: OnFatal::Stop,
                writers: 1,
                max_requests: 1,
                linger: Duration::ZERO,
                write_timeout: WRITE_TIMEOUT,
                queue_capacity: 4,
            },
            term_stop.clone(),
        );
        let tasks = Tasks::new(term_stop, writer_tasks);
        // Initializing the writer's transactions fences the previous leader.
        while !writer.ready() {
            if !leads() || writer.stopped() {
                tasks.stop().await;
                return Err(if writer.stopped() {
                    TermEnd::WriterStopped
                } else {
                    TermEnd::NotLeading
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (ticks, ticks_task) = Table::<ScheduleTicks>::table(TailSource {
            factory: self.consumers.clone(),
            role: ClientRole::Scheduler,
            codec: self.codec.clone(),
            topic: Topic::ScheduleTicks,
            stop: stop.child_token(),
        });
        let synced = ticks.sync(SYNC_TIMEOUT).await;
        let mut records: BTreeMap<String, ScheduleTicks> = ticks.read(Clone::clone);
        ticks_task.abort();
        if let Err(error) = synced {
            tasks.stop().await;
            return Err(TermEnd::TickRecords(error.to_string()));
        }
        tracing::info!(
            transactional_id = %self.transactional_id,
            schedules_with_records = records.len(),
            "leading the schedulers"
        );
        metrics::gauge!(crate::metrics::LEADER).set(1.0);
        self.health.passed();
        let mut ended = Ok(());
        while leads() {
            let now = self.clock.now_ms();
            let pass_started = std::time::Instant::now();
            // Everything committed to scans.schedules before `now` is in the table after this,
            // so a schedule deleted or suspended before a tick's instant never fires it.
            if let Err(error) = self.schedules.sync(SYNC_TIMEOUT).await {
                tracing::warn!(%error, "schedules not read to their end; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let synced_in = pass_started.elapsed();
            let schedules = self.schedules.read(Clone::clone);
            self.health
                .schedules
                .store(schedules.len(), Ordering::Relaxed);
            let pass = self
                .active
                .read(|active| plan(now, &schedules, &records, active, &self.config));
            if !self.commit(&writer, &pass, now).await {
                ended = Err(TermEnd::Write);
                break;
            }
            self.health.passed();
            tracing::debug!(
                sync_ms = synced_in.as_millis(),
                pass_ms = pass_started.elapsed().as_millis(),
                fired = pass.fires.len(),
                "pass"
            );
            for record in &pass.ticks {
                records.insert(record.schedule.clone(), record.clone());
            }
            for name in &pass.removed {
                records.remove(name);
            }
            let nap = pass
                .next_ms
                .map_or(MAX_NAP, |at| self.clock.until(at).min(MAX_NAP));
            let mut leader = leader.clone();
            tokio::select! {
                () = stop.cancelled() => break,
                _ = leader.changed() => {}
                () = tokio::time::sleep(nap) => {}
            }
        }
        tasks.stop().await;
        tracing::info!("no longer leading the schedulers");
        ended
    }

    /// Writes a pass in one transaction; false when the term must end.
    async fn commit(&self, writer: &Writer, pass: &Pass, now: i64) -> bool {
        self.health.invalid(&pass.invalid);
        if pass.fires.is_empty() && pass.ticks.is_empty() && pass.removed.is_empty() {
            return true;
        }
        let records = match self.records(pass, now).await {
            Ok(r) => r,
            Err(error) => {
                tracing::warn!(%error, "cannot encode the pass; retrying");
                return false;
            }
        };
        if let Err(error) = writer.write(records).await {
            tracing::warn!(%error, "the pass was not written; the term ends and starts again");
            return false;
        }
        let outcomes = pass.outcomes;
        for (outcome, n) in [
            ("fired", outcomes.fired),
            ("skipped", outcomes.skipped),
            ("missed", outcomes.missed),
            ("suspended", outcomes.suspended),
        ] {
            if n > 0 {
                metrics::counter!(crate::metrics::TICKS, "outcome" => outcome).increment(n);
            }
        }
        for fire in &pass.fires {
            let late = (now - fire.tick * 60_000).max(0) as f64 / 1000.0;
            metrics::histogram!(crate::metrics::FIRE_DELAY).record(late);
            tracing::info!(
                schedule = %fire.schedule.name,
                run = %run_name(&fire.schedule.name, fire.tick),
                job = %fire.job,
                replaced = fire.cancel.len(),
                "scheduled run submitted"
            );
        }
        for record in &pass.ticks {
            if record.missed_total > 0 && outcomes.missed > 0 {
                tracing::warn!(
                    schedule = %record.schedule,
                    missed_total = record.missed_total,
                    last_missed = ?record.last_missed,
                    "ticks older than the starting deadline were recorded as missed"
                );
            }
        }
        true
    }

    async fn records(&self, pass: &Pass, now: i64) -> Result<Vec<Record>, CodecError> {
        let mut out = Vec::new();
        for fire in &pass.fires {
            out.extend(self.fire_records(fire, now).await?);
        }
        for record in &pass.ticks {
            out.push(Record {
                topic: Topic::ScheduleTicks,
                key: record.schedule.clone(),
                payload: Some(self.codec.encode(Topic::ScheduleTicks, record).await?),
                target: Target::Keyed,
                traceparent: child_traceparent(None),
                correlation_id: format!("schedule-ticks/{}", record.schedule),
            });
        }
        for name in &pass.removed {
            out.push(Record {
                topic: Topic::ScheduleTicks,
                key: name.clone(),
                payload: None,
                target: Target::Keyed,
                traceparent: child_traceparent(None),
                correlation_id: format!("schedule-ticks/{name}"),
            });
        }
        Ok(out)
    }

    /// The records of one fired tick: cancellations (`Replace`), then the command and event of
    /// the run, exactly as `POST /jobs` writes them.
    async fn fire_records(&self, fire: &Fire, now: i64) -> Result<Vec<Record>, CodecError> {
        let schedule = &fire.schedule;
        let name = run_name(&schedule.name, fire.tick);
        let traceparent = child_traceparent(None);
        let mut out = Vec::new();
        for job in &fire.cancel {
            let command = ScanCommand {
                command_id: derived_uuid(
                    "command",
                    &[&job.to_string(), "replaced-by", &fire.job.to_string()],
                ),
                issued_at: now,
                command: Command::CancelScan(CancelScan {
                    job_id: *job,
                    run_id: None,
                    reason: Some(format!("replaced by {name} (concurrencyPolicy Replace)")),
                    requested_by: Some(format!("scheduler/{}", schedule.name)),
                }),
            };
            out.push(Record {
                topic: Topic::Commands,
                key: job.key(),
                payload: Some(self.codec.encode(Topic::Commands, &command).await?),
                target: Target::AllPartitions,
                traceparent: traceparent.clone(),
                correlation_id: name.clone(),
            });
        }
        let submission = Submission {
            job: fire.job,
            job_name: name.clone(),
            run: RunId::derived(fire.job, "schedule"),
            repo_url: schedule.repo_url.clone(),
            git_ref: schedule.git_ref.clone(),
            engines: schedule.engines.clone(),
            mode: schedule.mode,
            schedule: Some(schedule.name.clone()),
            requested_by: Some(format!("scheduler/{}", schedule.name)),
        };
        out.push(Record {
            topic: Topic::Commands,
            key: RepoKey::from_normalized(&schedule.repo_url)
                .as_str()
                .to_owned(),
            payload: Some(
                self.codec
                    .encode(Topic::Commands, &submission.command(now))
                    .await?,
            ),
            target: Target::Keyed,
            traceparent: traceparent.clone(),
            correlation_id: name.clone(),
        });
        out.push(Record {
            topic: Topic::Events,
            key: fire.job.key(),
            payload: Some(
                self.codec
                    .encode(
                        Topic::Events,
                        &submission.event(now, Some(self.config.leader.clone())),
                    )
                    .await?,
            ),
            target: Target::Keyed,
            traceparent,
            correlation_id: name,
        });
        Ok(out)
    }
}
