//! A scanner crashed (`SCANSTREAM_CRASH_AT`, an abort: nothing flushed) at every step around an
//! attempt's end, then started again under the same static membership: whatever the step, every
//! attempt has exactly one terminal outcome, records sharing an event id are equal, the run is
//! counted once when folded, and its findings are not written again under other ids.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use rdkafka::Message;
use scanstream_aggregator::fold::fold;
use scanstream_contracts::Topic;
use scanstream_contracts::command::Command as Cmd;
use scanstream_contracts::event::{EventPayload, ScanEvent, TERMINAL_SEQUENCE};
use scanstream_contracts::finding::Finding;

use crate::harness::{Harness, ended, make_repo, plants, request};

/// Runs one job on a scanner that crashes at `point`, then on its restart; checks the outcome.
/// `interrupted`: whether the crash comes before the attempt's outcome is decided (the attempt
/// then ends as interrupted and a second attempt succeeds).
async fn crash_at(point: &str, interrupted: bool) {
    let h = Harness::new(&format!("crash-{point}")).await;
    let (_, text, _) = plants().remove(0);
    let url = format!("file://{}", make_repo(&h.repos(), 0, &text).display());
    let config = h.config("max_attempts = 3\nretry_backoff_ms = 100", "");
    let job = request(&format!("crash-{point}"), &url, None, None);
    h.send(&url, Cmd::RequestScan(job.clone())).await;
    // Static membership: the restarted process takes the partitions back at once.
    let member = [("kafka.group_instance_id", "faults")];

    let mut crashing = h.spawn_with(
        &config,
        "scanner",
        &member,
        &[(scanstream_platform::fault::CRASH_AT, point)],
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = crashing.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the scanner never reached {point}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{point}: {status:?}");

    let mut scanner = h.spawn_with(&config, "scanner", &member, &[]);
    let (events, raw) = h
        .events_until(|e| ended(e, job.job_id), Duration::from_secs(90))
        .await;
    let _ = scanner.kill();
    let _ = scanner.wait();
    let ours: Vec<(&ScanEvent, &rdkafka::message::OwnedMessage)> = events
        .iter()
        .zip(&raw)
        .filter(|(e, _)| e.job_id == job.job_id)
        .collect();
    assert!(ended(&events, job.job_id), "{point}: the run never ended");

    // Records under one event id are equal; one terminal outcome per attempt.
    let mut by_id: BTreeMap<String, &ScanEvent> = BTreeMap::new();
    for (event, _) in &ours {
        let seen = by_id.entry(event.event_id.to_string()).or_insert(event);
        assert_eq!(*seen, *event, "{point}: two different records under one id");
    }
    let mut terminals: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
    for (event, _) in &ours {
        if event.sequence == TERMINAL_SEQUENCE {
            terminals
                .entry(event.attempt)
                .or_default()
                .insert(format!("{:?}", event.payload));
        }
    }
    for (attempt, outcomes) in &terminals {
        assert_eq!(
            outcomes.len(),
            1,
            "{point}: attempt {attempt}: {outcomes:?}"
        );
    }

    // Folded as the aggregator folds: the run is counted once.
    let mut state = None;
    for (event, _) in &ours {
        state = Some(fold(state, event));
    }
    let state = state.unwrap();
    let (succeeded, failed) = if interrupted { (1, 1) } else { (1, 0) };
    assert_eq!(
        (state.succeeded, state.failed),
        (succeeded, failed),
        "{point}: {:?}",
        terminals
    );
    let interruptions = ours
        .iter()
        .filter(|(e, _)| matches!(&e.payload, EventPayload::ScanFailed(f) if f.error_kind == "interrupted"))
        .count();
    assert_eq!(interruptions > 0, interrupted, "{point}");

    // Findings: one id per secret and place, however often they were written.
    let findings = h
        .read(Topic::Findings, |_| false, Duration::from_secs(2))
        .await;
    let mut ids_by_place: BTreeMap<(String, String, i32), BTreeSet<uuid::Uuid>> = BTreeMap::new();
    for record in &findings {
        let finding: Finding = h
            .codec
            .decode(record.payload().unwrap_or_default())
            .await
            .unwrap();
        if finding.job_id == job.job_id {
            ids_by_place
                .entry((finding.fingerprint, finding.path, finding.line))
                .or_default()
                .insert(finding.finding_id);
        }
    }
    assert!(!ids_by_place.is_empty(), "{point}: no findings");
    for (place, ids) in &ids_by_place {
        assert_eq!(ids.len(), 1, "{point}: {place:?} has findings {ids:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_findings_is_an_interrupted_attempt_and_one_retry() {
    crash_at("scanner.attempt.after-findings", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_outcome_is_written_ahead_is_an_interrupted_attempt() {
    crash_at("scanner.close.before-intent", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_write_ahead_writes_the_decided_outcome() {
    crash_at("scanner.close.after-intent", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_terminal_event_writes_the_same_event_again() {
    crash_at("scanner.close.after-event", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_ledger_update_only_commits() {
    crash_at("scanner.close.after-ledger", false).await;
}
