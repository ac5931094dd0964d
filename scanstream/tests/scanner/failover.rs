//! Failover time: a scanner killed (`SIGKILL`) in the middle of a scan, with dynamic group
//! membership; the other scanner of the group must take its partitions over and close the
//! interrupted attempt within 15 s (`kafka.session_timeout_ms`, 6 s by default).

use std::time::{Duration, Instant};

use scanstream_contracts::command::Command as Cmd;
use scanstream_contracts::event::EventPayload;

use crate::harness::{Harness, make_repo, plants, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_scanners_work_resumes_elsewhere_within_fifteen_seconds() {
    let h = Harness::new("scanner-failover").await;
    let (_, text, _) = plants().remove(0);
    let url = format!("file://{}", make_repo(&h.repos(), 0, &text).display());
    // The scan waits on its repository's mirror lock: it is running when its scanner dies.
    let config = h.config("lock_timeout_seconds = 120\nmax_attempts = 3", "");
    let lock = h.lock_mirror(&url);
    let mut a = h.spawn(&config, "failover-a");
    let mut b = h.spawn(&config, "failover-b");
    let job = request("failover", &url, None, None);
    h.send(&url, Cmd::RequestScan(job.clone())).await;

    h.events_until(
        |e| {
            e.iter().any(|e| {
                e.job_id == job.job_id && matches!(e.payload, EventPayload::ScanStarted(_))
            })
        },
        Duration::from_secs(60),
    )
    .await;
    // The second scanner's join may hand the scan over once: let the group settle, then take
    // the scanner of the latest attempt.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (events, _) = h.events_until(|_| true, Duration::from_secs(5)).await;
    let (attempt, running_on) = events
        .iter()
        .filter(|e| e.job_id == job.job_id)
        .filter_map(|e| match &e.payload {
            EventPayload::ScanStarted(s) => Some((e.attempt, s.scanner_id.clone())),
            _ => None,
        })
        .max()
        .expect("the scan never started");
    let (victim, survivor) = if running_on == "failover-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    victim.kill().unwrap();
    let _ = victim.wait();
    let killed = Instant::now();
    let (events, _) = h
        .events_until(
            |e| {
                e.iter().any(|e| {
                    e.job_id == job.job_id
                        && e.attempt == attempt
                        && matches!(&e.payload, EventPayload::ScanFailed(f) if f.error_kind == "interrupted")
                })
            },
            Duration::from_secs(60),
        )
        .await;
    let resumed = killed.elapsed();
    drop(lock);
    let _ = survivor.kill();
    let _ = survivor.wait();
    let closed_by = events.iter().find_map(|e| match &e.payload {
        EventPayload::ScanFailed(f)
            if e.job_id == job.job_id && e.attempt == attempt && f.error_kind == "interrupted" =>
        {
            e.producer.clone()
        }
        _ => None,
    });
    assert!(
        closed_by.is_some(),
        "the attempt was never closed: {events:?}"
    );
    assert_ne!(closed_by.as_deref(), Some(running_on.as_str()));
    eprintln!("work resumed {resumed:?} after the kill");
    assert!(
        resumed < Duration::from_secs(15),
        "the killed scanner's work resumed only after {resumed:?}"
    );
}
