//! The pure fold: `(JobState?, ScanEvent) → JobState`. Everything the aggregator stores, and
//! everything `scanstream audit` recomputes, is this function applied to `scans.events` in order.
//!
//! Laws (property-tested below):
//! - **Idempotent.** Each run keeps a high-water mark `(attempt, last_sequence)`; an event at or
//!   below it (a re-delivered duplicate, or a late event of an attempt that was superseded)
//!   changes nothing, not even `events_folded`.
//! - **Per job.** An event only touches its own job's state, so interleaving jobs differently
//!   (another partitioning, another consumer) gives the same states.
//! - **Counts attempts.** `succeeded` and `failed` count terminal events of distinct attempts over
//!   all of a job's runs, as the job manager's Kubernetes Jobs counted pods.

use scanstream_contracts::event::{EventPayload, ScanEvent};
use scanstream_contracts::finding::SeverityCounts;
use scanstream_contracts::state::{EngineSummary, JobState, JobStatus, RunState};

/// Runs kept per job. The oldest finished runs beyond this are dropped (their attempts stay
/// counted in `succeeded`/`failed`); a duplicate of a dropped run's event would count again, which
/// needs a redelivery hundreds of runs late.
pub const MAX_RUNS: usize = 256;

fn empty(event: &ScanEvent) -> JobState {
    JobState {
        job_id: event.job_id,
        job_name: event.job_name.clone(),
        schedule: None,
        repo_url: String::new(),
        status: JobStatus::Queued,
        succeeded: 0,
        failed: 0,
        runs: Vec::new(),
        findings: SeverityCounts::default(),
        last_error: None,
        events_folded: 0,
        updated_at: event.occurred_at,
    }
}

/// Folds one event into its job's state (`None` for a job not seen yet).
pub fn fold(state: Option<JobState>, event: &ScanEvent) -> JobState {
    let mut state = state.unwrap_or_else(|| empty(event));
    if state.job_id != event.job_id {
        // Not this job's event: a caller bug, and never a reason to corrupt a state.
        return state;
    }
    let index = match state.runs.iter().position(|r| r.run_id == event.run_id) {
        Some(index) => {
            let run = &state.runs[index];
            if (event.attempt, event.sequence) <= (run.attempt, run.last_sequence) {
                return state;
            }
            index
        }
        None => {
            state.runs.push(RunState {
                run_id: event.run_id,
                status: JobStatus::Queued,
                attempt: 0,
                last_sequence: -1,
                queued_at: event.occurred_at,
                started_at: None,
                finished_at: None,
                last_error: None,
                engines: Vec::new(),
            });
            state.runs.len() - 1
        }
    };
    let at = event.occurred_at;
    let run = &mut state.runs[index];
    run.attempt = event.attempt;
    run.last_sequence = event.sequence;
    match &event.payload {
        EventPayload::JobSubmitted(submitted) => {
            run.status = JobStatus::Queued;
            run.queued_at = at;
            state.repo_url = submitted.repo_url.clone();
            state.schedule = submitted.schedule.clone();
        }
        EventPayload::ScanStarted(_) => {
            run.status = JobStatus::Running;
            run.started_at.get_or_insert(at);
            run.finished_at = None;
            // A new attempt: its engines are yet to complete.
            run.engines.clear();
        }
        EventPayload::RepoFetched(_) | EventPayload::EngineCompleted(_) => {
            if run.status == JobStatus::Queued {
                run.status = JobStatus::Running;
                run.started_at.get_or_insert(at);
            }
            if let EventPayload::EngineCompleted(c) = &event.payload {
                let summary = EngineSummary {
                    engine: c.engine.clone(),
                    outcome: c.outcome,
                    version: c.version.clone(),
                    findings: c.findings,
                    error: c.error.clone(),
                    cached: c.cached,
                };
                match run.engines.iter_mut().find(|e| e.engine == c.engine) {
                    Some(known) => *known = summary,
                    None => run.engines.push(summary),
                }
            }
        }
        EventPayload::ScanSucceeded(succeeded) => {
            run.status = JobStatus::Succeeded;
            run.finished_at = Some(at);
            state.succeeded += 1;
            state.findings = succeeded.findings;
        }
        EventPayload::ScanFailed(failed) => {
            run.status = JobStatus::Failed;
            run.finished_at = Some(at);
            run.last_error = Some(failed.reason.clone());
            state.failed += 1;
            state.last_error = Some(failed.reason.clone());
        }
        EventPayload::ScanCancelled(_) => {
            run.status = JobStatus::Cancelled;
            run.finished_at = Some(at);
        }
    }
    state.job_name = event.job_name.clone();
    state.events_folded += 1;
    state.updated_at = state.updated_at.max(at);
    trim_runs(&mut state);
    state.status = state.runs.last().map_or(JobStatus::Queued, |r| r.status);
    state
}

/// Drops the oldest finished runs beyond [`MAX_RUNS`]; the latest run always stays.
fn trim_runs(state: &mut JobState) {
    while state.runs.len() > MAX_RUNS {
        let last = state.runs.len() - 1;
        let oldest_finished = state.runs[..last]
            .iter()
            .position(|r| r.finished_at.is_some());
        match oldest_finished {
            Some(i) => {
                state.runs.remove(i);
            }
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use scanstream_contracts::event::{
        EngineCompleted, JobSubmitted, ScanCancelled, ScanFailed, ScanStarted, ScanSucceeded,
    };
    use scanstream_contracts::{JobId, RunId};

    use super::*;

    /// How an attempt ends in a generated history.
    #[derive(Debug, Clone, Copy)]
    enum End {
        Succeeded,
        Failed,
        Cancelled,
        Unfinished,
    }

    fn event(
        job: &str,
        run: u32,
        attempt: i32,
        sequence: i32,
        at: i64,
        payload: EventPayload,
    ) -> ScanEvent {
        let id = JobId::from_name(job);
        ScanEvent::new(
            id,
            job,
            RunId::derived(id, &run.to_string()),
            attempt,
            sequence,
            at,
            None,
            payload,
        )
    }

    /// One job's events in order: runs of attempts, each attempt started, engine done, ended.
    fn job_history(job: &str, runs: &[Vec<End>], clock: &mut i64) -> Vec<ScanEvent> {
        let mut out = Vec::new();
        for (r, attempts) in runs.iter().enumerate() {
            let r = r as u32;
            *clock += 1;
            out.push(event(
                job,
                r,
                0,
                0,
                *clock,
                EventPayload::JobSubmitted(JobSubmitted {
                    repo_url: format!("https://git.example.com/{job}.git"),
                    git_ref: None,
                    engines: vec!["secrets".into()],
                    mode: Default::default(),
                    schedule: None,
                    requested_by: None,
                }),
            ));
            for (a, end) in attempts.iter().enumerate() {
                let attempt = a as i32 + 1;
                *clock += 1;
                out.push(event(
                    job,
                    r,
                    attempt,
                    0,
                    *clock,
                    EventPayload::ScanStarted(ScanStarted {
                        scanner_id: "s".into(),
                    }),
                ));
                *clock += 1;
                out.push(event(
                    job,
                    r,
                    attempt,
                    1,
                    *clock,
                    EventPayload::EngineCompleted(EngineCompleted {
                        engine: "secrets".into(),
                        files: 1,
                        bytes: 1,
                        duration_ms: 1,
                        findings: 0,
                        skipped_large: 0,
                        skipped_binary: 0,
                        ..EngineCompleted::default()
                    }),
                ));
                *clock += 1;
                let terminal = match end {
                    End::Succeeded => Some(EventPayload::ScanSucceeded(ScanSucceeded {
                        findings: SeverityCounts {
                            high: attempt as i64,
                            ..Default::default()
                        },
                        commit: None,
                        duration_ms: 1,
                    })),
                    End::Failed => Some(EventPayload::ScanFailed(ScanFailed {
                        reason: format!("attempt {attempt} failed"),
                        retryable: true,
                        error_kind: "fetch_timeout".into(),
                    })),
                    End::Cancelled => {
                        Some(EventPayload::ScanCancelled(ScanCancelled { reason: None }))
                    }
                    End::Unfinished => None,
                };
                if let Some(payload) = terminal {
                    out.push(event(job, r, attempt, 2, *clock, payload));
                }
            }
        }
        out
    }

    fn fold_all<'a>(events: impl IntoIterator<Item = &'a ScanEvent>) -> BTreeMap<JobId, JobState> {
        let mut states = BTreeMap::new();
        for e in events {
            let next = fold(states.remove(&e.job_id), e);
            states.insert(e.job_id, next);
        }
        states
    }

    fn end() -> impl Strategy<Value = End> {
        prop_oneof![
            Just(End::Succeeded),
            Just(End::Failed),
            Just(End::Cancelled),
            Just(End::Unfinished)
        ]
    }

    /// Up to four jobs, each with up to three runs of up to three attempts.
    fn histories() -> impl Strategy<Value = Vec<Vec<ScanEvent>>> {
        prop::collection::vec(
            prop::collection::vec(prop::collection::vec(end(), 0..3), 1..4),
            1..5,
        )
        .prop_map(|jobs| {
            let mut clock = 1_000;
            jobs.iter()
                .enumerate()
                .map(|(j, runs)| job_history(&format!("job-{j}"), runs, &mut clock))
                .collect()
        })
    }

    /// Interleaves per-job histories, keeping each job's order, choosing by `picks`.
    fn interleave(histories: &[Vec<ScanEvent>], picks: &[usize]) -> Vec<ScanEvent> {
        let mut cursors = vec![0; histories.len()];
        let mut out = Vec::new();
        let mut pick = picks.iter().cycle();
        while out.len() < histories.iter().map(Vec::len).sum::<usize>() {
            let open: Vec<usize> = (0..histories.len())
                .filter(|&j| cursors[j] < histories[j].len())
                .collect();
            let j = open[pick.next().copied().unwrap_or(0) % open.len()];
            out.push(histories[j][cursors[j]].clone());
            cursors[j] += 1;
        }
        out
    }

    proptest! {
        #[test]
        fn interleaving_jobs_differently_gives_the_same_states(
            histories in histories(),
            a in prop::collection::vec(0usize..8, 1..16),
            b in prop::collection::vec(0usize..8, 1..16),
        ) {
            prop_assert_eq!(fold_all(&interleave(&histories, &a)), fold_all(&interleave(&histories, &b)));
        }

        #[test]
        fn duplicates_anywhere_after_the_original_change_nothing(
            histories in histories(),
            picks in prop::collection::vec(0usize..8, 1..16),
            dups in prop::collection::vec((0usize..1000, 0usize..1000), 0..20),
        ) {
            let stream = interleave(&histories, &picks);
            // A re-delivery comes after the original: each duplicate of event `source` is
            // emitted right after some event at or after it.
            let mut after: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (source, offset) in dups {
                let source = source % stream.len();
                let target = source + offset % (stream.len() - source);
                after.entry(target).or_default().push(source);
            }
            let mut noisy = Vec::new();
            for (i, event) in stream.iter().enumerate() {
                noisy.push(event.clone());
                for &source in after.get(&i).map(Vec::as_slice).unwrap_or_default() {
                    noisy.push(stream[source].clone());
                }
            }
            prop_assert_eq!(fold_all(&noisy), fold_all(&stream));
        }

        #[test]
        fn folding_an_event_twice_is_folding_it_once(histories in histories()) {
            let mut state = None;
            for e in histories.concat().iter().filter(|e| e.job_id == histories[0][0].job_id) {
                let once = fold(state.clone(), e);
                prop_assert_eq!(fold(Some(once.clone()), e), once.clone());
                state = Some(once);
            }
        }

        #[test]
        fn counts_are_the_terminal_attempts(histories in histories()) {
            let states = fold_all(&histories.concat());
            for history in &histories {
                let state = &states[&history[0].job_id];
                let succeeded = history.iter().filter(|e| matches!(e.payload, EventPayload::ScanSucceeded(_))).count() as i64;
                let failed = history.iter().filter(|e| matches!(e.payload, EventPayload::ScanFailed(_))).count() as i64;
                prop_assert_eq!((state.succeeded, state.failed), (succeeded, failed));
                prop_assert_eq!(state.events_folded, history.len() as i64);
                prop_assert_eq!(state.status, state.runs.last().map(|r| r.status).unwrap_or(JobStatus::Queued));
            }
        }

        #[test]
        fn a_superseded_attempt_cannot_overwrite_a_newer_one(histories in histories()) {
            let events = histories.concat();
            let states = fold_all(&events);
            // Replay every event of every attempt below the run's last one, late.
            for e in &events {
                let state = &states[&e.job_id];
                let run = state.runs.iter().find(|r| r.run_id == e.run_id);
                if run.is_some_and(|r| e.attempt < r.attempt) {
                    prop_assert_eq!(&fold(Some(state.clone()), e), state);
                }
            }
        }
    }

    #[test]
    fn a_run_shows_the_engines_of_its_latest_attempt() {
        let mut clock = 0;
        let history = job_history("engines", &[vec![End::Failed, End::Succeeded]], &mut clock);
        let engines: Vec<Vec<String>> = history
            .iter()
            .scan(None, |s: &mut Option<JobState>, e| {
                let next = fold(s.take(), e);
                let names = next.runs[0]
                    .engines
                    .iter()
                    .map(|e| format!("{}:{}", e.engine, e.outcome.name()))
                    .collect();
                *s = Some(next);
                Some(names)
            })
            .collect();
        let secrets = || vec!["secrets:completed".to_owned()];
        // Attempt 1 completes its engine; attempt 2 starts without it, then completes it once.
        assert_eq!(
            engines,
            [
                vec![],
                vec![],
                secrets(),
                secrets(),
                vec![],
                secrets(),
                secrets()
            ]
        );
    }

    #[test]
    fn a_retried_run_moves_through_its_statuses() {
        let mut clock = 0;
        let history = job_history("retried", &[vec![End::Failed, End::Succeeded]], &mut clock);
        let statuses: Vec<JobStatus> = history
            .iter()
            .scan(None, |s: &mut Option<JobState>, e| {
                let next = fold(s.take(), e);
                let status = next.status;
                *s = Some(next);
                Some(status)
            })
            .collect();
        use JobStatus::*;
        assert_eq!(
            statuses,
            [
                Queued, Running, Running, Failed, Running, Running, Succeeded
            ]
        );
        let state = fold_all(&history)
            .into_values()
            .next()
            .unwrap_or_else(|| panic!("no state"));
        assert_eq!((state.succeeded, state.failed), (1, 1));
        assert_eq!(
            state.findings.high, 2,
            "findings of the latest succeeded attempt"
        );
        assert_eq!(state.last_error.as_deref(), Some("attempt 1 failed"));
        assert_eq!(
            state.runs[0].started_at,
            Some(2),
            "started at the first attempt"
        );
    }

    #[test]
    fn runs_beyond_the_limit_drop_the_oldest_finished() {
        let mut clock = 0;
        let runs: Vec<Vec<End>> = (0..MAX_RUNS + 5).map(|_| vec![End::Succeeded]).collect();
        let history = job_history("busy", &runs, &mut clock);
        let state = fold_all(&history)
            .into_values()
            .next()
            .unwrap_or_else(|| panic!("no state"));
        assert_eq!(state.runs.len(), MAX_RUNS);
        assert_eq!(state.succeeded, (MAX_RUNS + 5) as i64);
    }
}
