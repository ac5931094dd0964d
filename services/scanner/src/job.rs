//! One `RequestScan` from command to terminal event: attempts numbered through the ledger, each
//! attempt reported as `ScanStarted`, `RepoFetched`, one `EngineCompleted` per engine, its
//! findings (all delivered first), and exactly one terminal event at [`TERMINAL_SEQUENCE`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scanstream_contracts::command::{RequestScan, ScanMode};
use scanstream_contracts::event::{
    EngineCompleted, EngineOutcome, EventPayload, RepoFetched, ScanCancelled, ScanEvent,
    ScanFailed, ScanStarted, ScanSucceeded, TERMINAL_SEQUENCE,
};
use scanstream_contracts::finding::{Finding, SeverityCounts};
use scanstream_contracts::ids::derived_uuid;
use scanstream_contracts::inventory::{SecretSeen, Sighting, SightingPayload, TipScanned};
use scanstream_platform::fault;
use scanstream_platform::net::HostPolicy;
use tokio_util::sync::CancellationToken;

use crate::command::{CommandEngines, Labels, ScanContext};
use crate::emit::Emitter;
use crate::ledger::{Entry, Ledger, Plan, Then, plan};
use crate::mirror::Mirrors;
use crate::runner::{EngineRun, Progress};
use crate::scan::Scanning;
use crate::{Error, now_ms};
use scanstream_platform::sync::lock;

/// Why a running scan stops early.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// A `CancelScan` for this run; its reason is in `cancel_reason`.
    pub cancel: CancellationToken,
    pub cancel_reason: Arc<Mutex<Option<String>>>,
    /// The partition was revoked or the scanner shuts down: hand the run over.
    pub hand_over: CancellationToken,
}

impl Signals {
    pub fn cancel_with(&self, reason: Option<String>) {
        {
            let mut slot = lock(&self.cancel_reason);
            *slot = reason;
        }
        self.cancel.cancel();
    }

    fn reason(&self) -> Option<String> {
        lock(&self.cancel_reason).clone()
    }
}

/// How a job left this scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// The run has its final terminal event: the command's offset may be committed.
    Finished,
    /// Handed over (revoked or shutting down): the offset must not be committed.
    HandedOver,
}

/// What every job of a scanner shares.
pub struct JobContext {
    pub emitter: Emitter,
    pub mirrors: Mirrors,
    pub ledger: Ledger,
    pub scanning: Arc<Scanning>,
    /// The command engines (`[engines.<id>]`) and their executor.
    pub commands: Arc<CommandEngines>,
    /// Refuses hosts that are or resolve to private or metadata addresses, before each fetch.
    pub hosts: HostPolicy,
    pub default_timeout: Duration,
    pub max_attempts: i32,
    pub retry_backoff: Duration,
}

enum AttemptEnd {
    Succeeded(ScanSucceeded),
    Cancelled(Option<String>),
    HandedOver,
    Failed(Failure),
}

struct Failure {
    reason: String,
    retryable: bool,
    kind: &'static str,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            reason: e.to_string(),
            retryable: e.retryable(),
            kind: e.metric_label(),
        }
    }
}

fn failed(failure: Failure) -> EventPayload {
    EventPayload::ScanFailed(ScanFailed {
        reason: failure.reason,
        retryable: failure.retryable,
        error_kind: failure.kind.to_owned(),
    })
}

enum Next {
    Finish,
    HandOver,
    Retry,
}

impl JobContext {
    /// Runs `command` to its end. `cancelled` carries the reason of a cancel that arrived before
    /// the command started.
    pub async fn execute(
        &self,
        command: &RequestScan,
        signals: &Signals,
        cancelled: Option<Option<String>>,
    ) -> JobEnd {
        let mut entry = self
            .ledger
            .get(command.job_id, command.run_id)
            .unwrap_or_else(|e| {
                tracing::warn!(job = %command.job_id, error = %e, "attempt ledger unreadable; the run starts over");
                None
            });
        let mut attempt = loop {
            match plan(entry, self.max_attempts) {
                Plan::Done => return JobEnd::Finished,
                Plan::Reclose { attempt, then } => {
                    match self.reclose(command, attempt, then, signals).await {
                        Ok(after) => entry = Some(after),
                        Err(end) => return end,
                    }
                }
                Plan::Start(n) => break n,
                Plan::GiveUp(n) => {
                    let failure = Failure {
                        reason: format!("gave up after {} attempts", n - 1),
                        retryable: false,
                        kind: "attempts_exhausted",
                    };
                    return self
                        .close(
                            command,
                            n,
                            failed(failure),
                            Entry::Finished(n),
                            Next::Finish,
                            signals,
                        )
                        .await;
                }
                Plan::CloseInterrupted { attempt, retry } => {
                    let failure = Failure {
                        reason: format!(
                            "the scanner running attempt {attempt} stopped before it ended"
                        ),
                        retryable: retry,
                        kind: "interrupted",
                    };
                    let (entry, next) = if retry {
                        (Entry::Retrying(attempt), Next::Retry)
                    } else {
                        (Entry::Finished(attempt), Next::Finish)
                    };
                    match self
                        .close(command, attempt, failed(failure), entry, next, signals)
                        .await
                    {
                        JobEnd::Finished if retry => break attempt + 1,
                        end => return end,
                    }
                }
            }
        };
        if let Some(reason) = cancelled {
            let payload = EventPayload::ScanCancelled(ScanCancelled { reason });
            return self
                .close(
                    command,
                    attempt,
                    payload,
                    Entry::Finished(attempt),
                    Next::Finish,
                    signals,
                )
                .await;
        }
        let timeout = command
            .timeout_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .filter(|ms| *ms > 0)
            .map_or(self.default_timeout, Duration::from_millis);
        let deadline = Instant::now() + timeout;
        loop {
            let end = self
                .attempt(command, attempt, (deadline, timeout), signals)
                .await;
            let (payload, entry, next) = match end {
                AttemptEnd::Succeeded(done) => (
                    EventPayload::ScanSucceeded(done),
                    Entry::Finished(attempt),
                    Next::Finish,
                ),
                AttemptEnd::Cancelled(reason) => (
                    EventPayload::ScanCancelled(ScanCancelled { reason }),
                    Entry::Finished(attempt),
                    Next::Finish,
                ),
                AttemptEnd::HandedOver => (
                    failed(Failure {
                        reason: "handed over to another scanner (partition revoked or shutdown)"
                            .into(),
                        retryable: true,
                        kind: "handed_over",
                    }),
                    Entry::Retrying(attempt),
                    Next::HandOver,
                ),
                AttemptEnd::Failed(mut failure) => {
                    if failure.retryable && attempt >= self.max_attempts {
                        failure.retryable = false;
                        failure.reason = format!(
                            "{} (attempt {attempt} of {})",
                            failure.reason, self.max_attempts
                        );
                    }
                    if failure.retryable {
                        (failed(failure), Entry::Retrying(attempt), Next::Retry)
                    } else {
                        (failed(failure), Entry::Finished(attempt), Next::Finish)
                    }
                }
            };
            let retry = matches!(next, Next::Retry);
            let end = self
                .close(command, attempt, payload, entry, next, signals)
                .await;
            if !retry || end == JobEnd::HandedOver {
                return end;
            }
            let exponent = u32::try_from(attempt.saturating_sub(1))
                .unwrap_or(0)
                .min(16);
            let backoff = (self.retry_backoff * 2u32.pow(exponent)).min(Duration::from_secs(300));
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = signals.hand_over.cancelled() => return JobEnd::HandedOver,
                _ = signals.cancel.cancelled() => {}
            }
            attempt += 1;
        }
    }

    /// Settles an attempt whose terminal event was decided by a scanner that stopped before it
    /// updated the ledger: writes that same event again (same id, same content) and returns the
    /// entry the closer would have written.
    async fn reclose(
        &self,
        command: &RequestScan,
        attempt: i32,
        then: Then,
        signals: &Signals,
    ) -> Result<Entry, JobEnd> {
        let stored = self
            .ledger
            .closing(command.job_id, command.run_id)
            .ok()
            .flatten();
        let Some(event) = stored else {
            return Ok(Entry::Running(attempt));
        };
        tracing::info!(job = %command.job_id, attempt, "the attempt's outcome was decided before a stop; writing it again");
        let after = Entry::after(attempt, then);
        let next = match then {
            Then::Retrying => Next::Retry,
            Then::Finished => Next::Finish,
        };
        match self
            .write_terminal(command, &event, after, next, signals)
            .await
        {
            JobEnd::HandedOver => Err(JobEnd::HandedOver),
            JobEnd::Finished => Ok(after),
        }
    }

    /// Closes an attempt: its terminal event is built once and written ahead into the ledger,
    /// then written to `scans.events`, then the ledger moves on to `entry`. Whatever instant the
    /// process dies at, the attempt ends with this one event or (before the write-ahead) is
    /// closed as interrupted by the next owner: never both.
    async fn close(
        &self,
        command: &RequestScan,
        attempt: i32,
        payload: EventPayload,
        entry: Entry,
        next: Next,
        signals: &Signals,
    ) -> JobEnd {
        let event = self
            .emitter
            .build(command, attempt, TERMINAL_SEQUENCE, payload);
        let then = match entry {
            Entry::Retrying(_) => Then::Retrying,
            _ => Then::Finished,
        };
        fault::point("scanner.close.before-intent");
        if let Err(e) = self.ledger.put_closing(&event, then) {
            // Without the write-ahead a crash right after the event would let the next owner
            // close the attempt as interrupted as well; the events stay correct otherwise.
            tracing::warn!(job = %command.job_id, attempt, error = %e, "attempt ledger not updated before closing");
        }
        fault::point("scanner.close.after-intent");
        self.write_terminal(command, &event, entry, next, signals)
            .await
    }

    /// Writes a terminal event until it is delivered (one try while the run is handed over),
    /// then the ledger entry that follows it.
    async fn write_terminal(
        &self,
        command: &RequestScan,
        event: &ScanEvent,
        entry: Entry,
        next: Next,
        signals: &Signals,
    ) -> JobEnd {
        let attempt = event.attempt;
        let kind = terminal_kind(&event.payload);
        loop {
            match self.emitter.write(event).await {
                Ok(()) => break,
                Err(e) if signals.hand_over.is_cancelled() || matches!(next, Next::HandOver) => {
                    tracing::warn!(job = %command.job_id, attempt, error = %e, "terminal event not written; the next owner closes the attempt");
                    return JobEnd::HandedOver;
                }
                Err(e) => {
                    tracing::warn!(job = %command.job_id, attempt, error = %e, "terminal event not written yet; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = signals.hand_over.cancelled() => {}
                    }
                }
            }
        }
        fault::point("scanner.close.after-event");
        metrics::counter!(crate::metrics::ATTEMPTS, "outcome" => kind).increment(1);
        tracing::info!(job = %command.job_id, run = %command.run_id, attempt, outcome = kind, "attempt ended");
        if let Err(e) = self.ledger.put(command.job_id, command.run_id, entry) {
            // The event is written; the write-ahead entry makes the next owner write the same
            // event again, under the same id, and go on from there.
            tracing::warn!(job = %command.job_id, error = %e, "attempt ledger not updated");
        }
        fault::point("scanner.close.after-ledger");
        match next {
            Next::HandOver => JobEnd::HandedOver,
            Next::Finish | Next::Retry => JobEnd::Finished,
        }
    }

    async fn attempt(
        &self,
        command: &RequestScan,
        attempt: i32,
        (deadline, timeout): (Instant, Duration),
        signals: &Signals,
    ) -> AttemptEnd {
        if let Err(e) = self
            .ledger
            .put(command.job_id, command.run_id, Entry::Running(attempt))
        {
            return AttemptEnd::Failed(e.into());
        }
        tracing::debug!(job = %command.job_id, attempt, repo = %command.repo_url, "attempt started");
        let abort = CancellationToken::new();
        let flag = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (abort, flag, signals) = (abort.clone(), flag.clone(), signals.clone());
            let until = tokio::time::Instant::from_std(deadline);
            tokio::spawn(async move {
                tokio::select! {
                    _ = signals.cancel.cancelled() => {}
                    _ = signals.hand_over.cancelled() => {}
                    _ = tokio::time::sleep_until(until) => {}
                    _ = abort.cancelled() => {}
                }
                flag.store(true, Ordering::Relaxed);
                abort.cancel();
            })
        };
        let result = self.work(command, attempt, &abort, &flag).await;
        abort.cancel();
        let _ = watcher.await;
        match result {
            Ok(done) => AttemptEnd::Succeeded(done),
            Err(_) if signals.cancel.is_cancelled() => AttemptEnd::Cancelled(signals.reason()),
            Err(_) if signals.hand_over.is_cancelled() => AttemptEnd::HandedOver,
            Err(Error::Cancelled) => AttemptEnd::Failed(Failure {
                reason: format!(
                    "the scan exceeded its deadline of {} s",
                    timeout.as_secs_f64().ceil()
                ),
                retryable: false,
                kind: "deadline",
            }),
            Err(e) => {
                tracing::warn!(job = %command.job_id, attempt, error = %e, "scan attempt failed");
                AttemptEnd::Failed(e.into())
            }
        }
    }

    async fn work(
        &self,
        command: &RequestScan,
        attempt: i32,
        abort: &CancellationToken,
        flag: &Arc<AtomicBool>,
    ) -> Result<ScanSucceeded, Error> {
        let started = Instant::now();
        let started_at = now_ms();
        let emitter = &self.emitter;
        let started_event = EventPayload::ScanStarted(ScanStarted {
            scanner_id: emitter.scanner_id().to_owned(),
        });
        emitter.event(command, attempt, 0, started_event).await?;
        if let Ok(url) = url::Url::parse(&command.repo_url)
            && let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default())
        {
            self.hosts
                .check(host, port)
                .await
                .map_err(|refused| Error::Refused(refused.to_string()))?;
        }
        // Checked again right before the fetch: a link under a root may have changed since the
        // command was read.
        self.scanning
            .check_url(&command.repo_url)
            .map_err(Error::Refused)?;
        let acquired = self.mirrors.acquire(&command.repo_url, abort).await?;
        let scanning = self.scanning.clone();
        let path = acquired.lease.path.clone();
        let git_ref = command.git_ref.clone();
        let mode = command.mode;
        let resolved = blocking(move || scanning.resolve(&path, git_ref.as_deref(), mode)).await?;
        let commit = resolved.commit();
        let fetched = EventPayload::RepoFetched(RepoFetched {
            commit: commit.clone(),
            fetch_ms: i64::try_from(acquired.fetch_ms).unwrap_or(i64::MAX),
            cache_hit: acquired.cache_hit,
        });
        emitter.event(command, attempt, 1, fetched).await?;
        let scanning = self.scanning.clone();
        let built_in: Vec<String> = command
            .engines
            .iter()
            .filter(|id| self.commands.get(id).is_none())
            .cloned()
            .collect();
        let (repo, flag) = (command.repo_url.clone(), flag.clone());
        let git_ref = command.git_ref.clone();
        let (mut runs, resolved) = blocking(move || {
            let runs = if built_in.is_empty() {
                Vec::new()
            } else {
                scanning.scan(
                    &resolved,
                    &built_in,
                    mode,
                    &repo,
                    git_ref.as_deref(),
                    &Progress::default(),
                    &flag,
                )?
            };
            Ok((runs, resolved))
        })
        .await?;
        let scan = ScanContext {
            resolved: &resolved,
            labels: Labels {
                job: command.job_id.to_string(),
                run: command.run_id.to_string(),
                attempt,
            },
        };
        runs.extend(self.commands.run(&command.engines, scan, abort).await?);
        drop(resolved);
        drop(acquired);
        // Reported in the order the command names the engines: the first to find a secret
        // names its finding.
        runs.sort_by_key(|run| command.engines.iter().position(|id| *id == run.engine));
        let (findings, totals) = findings(command, attempt, commit.as_deref(), &runs, now_ms());
        for (index, run) in runs.iter().enumerate() {
            let completed = EventPayload::EngineCompleted(EngineCompleted {
                engine: run.engine.clone(),
                files: i64::try_from(run.files).unwrap_or(i64::MAX),
                bytes: i64::try_from(run.bytes).unwrap_or(i64::MAX),
                duration_ms: i64::try_from(run.duration_ms).unwrap_or(i64::MAX),
                findings: i64::try_from(run.found.len()).unwrap_or(i64::MAX),
                skipped_large: i64::try_from(run.skipped_large).unwrap_or(i64::MAX),
                skipped_binary: i64::try_from(run.skipped_binary).unwrap_or(i64::MAX),
                version: run.version.clone(),
                outcome: run.outcome,
                error: run.error.clone(),
                cached: run.from_cache,
                skipped_failed: i64::try_from(run.skipped_failed).unwrap_or(i64::MAX),
            });
            let sequence = 2 + i32::try_from(index).unwrap_or(0);
            emitter.event(command, attempt, sequence, completed).await?;
            metrics::counter!(crate::metrics::BYTES_SCANNED).increment(run.bytes);
            metrics::counter!(crate::metrics::FILES_SCANNED).increment(run.files);
            if run.skipped_failed > 0 {
                metrics::counter!(crate::metrics::FILES_FAILED, "engine" => run.engine.clone())
                    .increment(run.skipped_failed);
            }
            if self.commands.get(&run.engine).is_some() {
                let outcome = if run.from_cache {
                    "cached"
                } else {
                    run.outcome.name()
                };
                metrics::counter!(crate::metrics::ENGINE_RUNS, "engine" => run.engine.clone(), "outcome" => outcome)
                    .increment(1);
            }
        }
        // Every engine's event is written first: a required engine's failure then fails the
        // attempt, and no finding is written.
        if let Some(run) = runs.iter().find(|run| {
            run.outcome != EngineOutcome::Completed
                && self.commands.get(&run.engine).is_some_and(|e| e.required())
        }) {
            return Err(Error::Engine {
                engine: run.engine.clone(),
                reason: run.error.clone().unwrap_or_default(),
                retryable: run.outcome == EngineOutcome::TimedOut,
            });
        }
        emitter.findings(&findings).await?;
        emitter
            .sightings(&sightings(
                command,
                attempt,
                started_at,
                &findings,
                commit.as_deref(),
            ))
            .await?;
        fault::point("scanner.attempt.after-findings");
        metrics::counter!(crate::metrics::FINDINGS).increment(findings.len() as u64);
        if let Some(commit) = &commit {
            self.scanning
                .mark_scanned(&command.repo_url, command.git_ref.as_deref(), commit);
        }
        let elapsed = started.elapsed();
        metrics::histogram!(crate::metrics::SCAN_DURATION).record(elapsed.as_secs_f64());
        Ok(ScanSucceeded {
            findings: totals,
            commit,
            duration_ms: i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
        })
    }
}

/// What an attempt saw of its repository, for the inventory: a `SecretSeen` per finding and,
/// when it read the whole tree at the tip of the default ref (a tree scan without a ref), a
/// closing `TipScanned`. `started_at` orders it among the repository's other scans.
fn sightings(
    command: &RequestScan,
    attempt: i32,
    started_at: i64,
    findings: &[Finding],
    commit: Option<&str>,
) -> Vec<Sighting> {
    let tip = command.mode == ScanMode::Tree && command.git_ref.is_none();
    let sighting = |payload| Sighting {
        repo_url: command.repo_url.clone(),
        job_id: command.job_id,
        run_id: command.run_id,
        attempt,
        scan_started_at: started_at,
        tip,
        payload,
    };
    let mut out: Vec<Sighting> = findings
        .iter()
        .map(|f| {
            sighting(SightingPayload::SecretSeen(SecretSeen {
                fingerprint: f.fingerprint.clone(),
                rule_id: f.rule_id.clone(),
                severity: f.severity,
                engine: f.engine.clone(),
                path: f.path.clone(),
                line: f.line,
                // A tree scan's finding names the scanned commit, not where the secret came from.
                commit: f.commit.clone().filter(|_| command.mode != ScanMode::Tree),
                redacted_preview: f.redacted_preview.clone(),
                detected_at: f.detected_at,
            }))
        })
        .collect();
    if tip {
        out.push(sighting(SightingPayload::TipScanned(TipScanned {
            commit: commit.map(str::to_owned),
            findings: i64::try_from(findings.len()).unwrap_or(i64::MAX),
            completed_at: now_ms(),
        })));
    }
    out
}

/// The findings of an attempt's engine runs, with ids derived from the run and where and what
/// was found (so a retried attempt writes the same ids), and their count by severity. `commit` is
/// the scanned commit, for findings whose place names none (tree scans).
fn findings(
    command: &RequestScan,
    attempt: i32,
    commit: Option<&str>,
    runs: &[EngineRun],
    detected_at: i64,
) -> (Vec<Finding>, SeverityCounts) {
    let mut totals = SeverityCounts::default();
    // The same secret at the same place, found by another engine: one finding naming both.
    let findings: Vec<Finding> = crate::runner::merge(runs, commit)
        .into_iter()
        .map(|merged| {
            let found = merged.found;
            let line = i32::try_from(found.hit.line).unwrap_or(i32::MAX);
            let commit = found
                .place
                .commit
                .clone()
                .or_else(|| commit.map(str::to_owned));
            let engine = merged.engines[0].to_owned();
            Finding {
                // Stable per run, not per attempt: a retry that finds the same secret writes
                // the same id, so consumers can drop the repeat.
                finding_id: derived_uuid(
                    "finding",
                    &[
                        &command.job_id.to_string(),
                        &command.run_id.to_string(),
                        &engine,
                        &found.hit.fingerprint,
                        &found.place.path,
                        &line.to_string(),
                        commit.as_deref().unwrap_or(""),
                    ],
                ),
                job_id: command.job_id,
                run_id: command.run_id,
                attempt,
                repo_url: command.repo_url.clone(),
                engine,
                engines: merged.engines.iter().map(|e| (*e).to_owned()).collect(),
                rule_id: found.hit.rule.clone(),
                severity: merged.severity,
                path: found.place.path.clone(),
                line,
                commit,
                fingerprint: found.hit.fingerprint.clone(),
                redacted_preview: found.hit.preview.clone(),
                detected_at,
            }
        })
        .collect();
    for finding in &findings {
        totals.add(finding.severity);
    }
    (findings, totals)
}

fn terminal_kind(payload: &EventPayload) -> &'static str {
    match payload {
        EventPayload::ScanSucceeded(_) => "succeeded",
        EventPayload::ScanCancelled(_) => "cancelled",
        EventPayload::ScanFailed(f) if f.retryable => "failed_retryable",
        _ => "failed",
    }
}

/// Runs CPU-bound or blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Source(format!("scan task failed: {e}")))?
}
