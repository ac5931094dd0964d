//! Every way a run can end besides success, and a cancel that reaches a running scan while its
//! partition is paused, each against one `scanstream scanner`.

use std::time::{Duration, Instant};

use scanstream_contracts::JobId;
use scanstream_contracts::command::{CancelScan, Command as Cmd, RequestScan};
use scanstream_contracts::event::{EventPayload, ScanEvent, TERMINAL_SEQUENCE};

use crate::harness::{Harness, ended, make_repo, plants, request};

/// Every way a run can end besides success, against one scanner: a deadline, a cancel, a
/// repository that does not exist (permanent), and a mirror that stays locked (retried with
/// backoff until the attempts run out, each attempt visible).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_cancels_and_failures_end_their_runs_with_visible_attempts() {
    let h = Harness::new("scanner-endings").await;
    let (_, text, _) = plants().remove(0);
    let url = format!("file://{}", make_repo(&h.repos(), 0, &text).display());
    let locked_url = format!("file://{}", make_repo(&h.repos(), 1, &text).display());
    let config = h.config(
        "lock_timeout_seconds = 1\nmax_attempts = 3\nretry_backoff_ms = 100",
        "",
    );
    let lock = h.lock_mirror(&locked_url);

    let deadline = request("deadline", &url, None, Some(1));
    let cancelled = request("cancelled", &url, None, None);
    let missing_url = format!("file://{}", h.repos().join("no-such-repo").display());
    let missing = request("missing", &missing_url, None, None);
    let busy = request("busy", &locked_url, None, None);
    h.send(
        &url,
        Cmd::CancelScan(CancelScan {
            job_id: cancelled.job_id,
            run_id: Some(cancelled.run_id.0),
            reason: Some("changed my mind".into()),
            requested_by: None,
        }),
    )
    .await;
    for r in [&deadline, &cancelled, &missing, &busy] {
        h.send(&r.repo_url, Cmd::RequestScan(r.clone())).await;
    }
    let mut scanner = h.spawn(&config, "scanner");
    let jobs = [
        deadline.job_id,
        cancelled.job_id,
        missing.job_id,
        busy.job_id,
    ];
    let (events, _) = h
        .events_until(
            |e| jobs.iter().all(|job| ended(e, *job)),
            Duration::from_secs(90),
        )
        .await;
    let _ = scanner.kill();
    let _ = scanner.wait();
    drop(lock);
    let terminals = |job: JobId| -> Vec<(i32, String, bool)> {
        let mut out: Vec<(i32, String, bool)> = events
            .iter()
            .filter(|e| e.job_id == job && e.sequence == TERMINAL_SEQUENCE)
            .map(|e| match &e.payload {
                EventPayload::ScanFailed(f) => (e.attempt, f.error_kind.clone(), f.retryable),
                EventPayload::ScanCancelled(_) => (e.attempt, "cancelled".into(), false),
                EventPayload::ScanSucceeded(_) => (e.attempt, "succeeded".into(), false),
                other => panic!("{other:?} at the terminal sequence"),
            })
            .collect();
        out.sort();
        out.dedup();
        out
    };
    assert_eq!(
        terminals(deadline.job_id),
        vec![(1, "deadline".into(), false)]
    );
    assert_eq!(
        terminals(cancelled.job_id),
        vec![(1, "cancelled".into(), false)]
    );
    assert_eq!(terminals(missing.job_id), vec![(1, "fetch".into(), false)]);
    assert_eq!(
        terminals(busy.job_id),
        vec![
            (1, "mirror_busy".into(), true),
            (2, "mirror_busy".into(), true),
            (3, "mirror_busy".into(), false),
        ]
    );
    let reason = events.iter().find_map(|e| match &e.payload {
        EventPayload::ScanCancelled(c) if e.job_id == cancelled.job_id => c.reason.clone(),
        _ => None,
    });
    assert_eq!(reason.as_deref(), Some("changed my mind"));
}

/// A cancel reaches a running scan even while the scanner's partitions are paused: the scan waits
/// on a locked mirror, two more commands of the same repository fill the queue (so the partition
/// is paused and the cancel behind them cannot be read by the group consumer), and the cancel
/// still ends the scan within moments, long before the lock wait would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_a_running_scan_while_its_partition_is_paused() {
    let h = Harness::new("scanner-cancel").await;
    let (_, text, _) = plants().remove(0);
    let url = format!("file://{}", make_repo(&h.repos(), 0, &text).display());
    let config = h.config(
        "concurrency = 1\nqueue_max = 1\nlock_timeout_seconds = 120",
        "",
    );
    let lock = h.lock_mirror(&url);
    let jobs: Vec<RequestScan> = ["blocked", "queued-1", "queued-2"]
        .iter()
        .map(|name| request(name, &url, None, None))
        .collect();
    for job in &jobs {
        h.send(&url, Cmd::RequestScan(job.clone())).await;
    }
    let mut scanner = h.spawn(&config, "scanner");

    // The first scan is running (waiting for the mirror) once it has written ScanStarted.
    let started = |e: &[ScanEvent]| {
        e.iter().any(|e| {
            e.job_id == jobs[0].job_id && matches!(e.payload, EventPayload::ScanStarted(_))
        })
    };
    let (events, _) = h.events_until(started, Duration::from_secs(60)).await;
    assert!(started(&events), "the first scan did not start");
    // Let the consumer read the other two commands and pause the partition.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cancelled_at = Instant::now();
    h.send(
        &url,
        Cmd::CancelScan(CancelScan {
            job_id: jobs[0].job_id,
            run_id: None,
            reason: Some("stop it".into()),
            requested_by: None,
        }),
    )
    .await;
    let (events, _) = h
        .events_until(|e| ended(e, jobs[0].job_id), Duration::from_secs(60))
        .await;
    let took = cancelled_at.elapsed();
    assert!(
        events
            .iter()
            .any(|e| e.job_id == jobs[0].job_id
                && matches!(e.payload, EventPayload::ScanCancelled(_))),
        "the running scan was not cancelled"
    );
    assert!(took < Duration::from_secs(30), "the cancel took {took:?}");
    // The queued scans of the same repository were not cancelled: they run once the lock goes.
    drop(lock);
    let succeeded = |events: &[ScanEvent]| {
        jobs[1..].iter().all(|job| {
            events.iter().any(|e| {
                e.job_id == job.job_id && matches!(e.payload, EventPayload::ScanSucceeded(_))
            })
        })
    };
    let (events, _) = h.events_until(succeeded, Duration::from_secs(60)).await;
    let _ = scanner.kill();
    let _ = scanner.wait();
    assert!(
        succeeded(&events),
        "the queued scans did not run after the cancel"
    );
}
