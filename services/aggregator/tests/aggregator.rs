//! The aggregator against the real broker and registry: what it serves equals the pure fold of
//! every event produced, through duplicates, retries, reordering and crashes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use scanstream_aggregator::Aggregator;
use scanstream_aggregator::fold::fold;
use scanstream_aggregator::stats::{HistoryLimits, job_stats, render};
use scanstream_contracts::event::{
    EngineCompleted, EventPayload, JobSubmitted, ScanCancelled, ScanEvent, ScanFailed, ScanStarted,
    ScanSucceeded,
};
use scanstream_contracts::finding::SeverityCounts;
use scanstream_contracts::state::JobState;
use scanstream_contracts::{Codec, JobId, RunId, Topic};
use scanstream_platform::Settings;
use scanstream_platform::server::Application;
use scanstream_testcontainers::{TestScope, ensure_topics};
use tokio_util::sync::CancellationToken;

fn settings(scope: &TestScope, data_dir: &Path, instance: &str) -> Settings {
    scope.settings(
        "",
        &[
            ("topics.partitions", "3"),
            ("api.auth_enabled", "false"),
            ("aggregator.data_dir", &data_dir.display().to_string()),
            ("aggregator.instance_id", instance),
            ("aggregator.batch_max_events", "500"),
            ("aggregator.batch_linger_ms", "10"),
        ],
    )
}

struct Harness {
    scope: TestScope,
    codec: Codec,
    producer: FutureProducer,
}

impl Harness {
    async fn new(test: &str) -> Harness {
        let scope = TestScope::new(test);
        let dir = tempfile::tempdir().unwrap();
        ensure_topics(&settings(&scope, dir.path(), "setup")).await;
        let codec = scope.codec();
        codec.register_all().await.unwrap();
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &scope.endpoints.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        Harness {
            scope,
            codec,
            producer,
        }
    }

    async fn produce(&self, events: &[ScanEvent]) {
        let topic = self.scope.names().name(Topic::Events);
        let mut pending = Vec::new();
        for event in events {
            let bytes = self.codec.encode(Topic::Events, event).await.unwrap();
            let key = event.job_id.key();
            let delivery = self
                .producer
                .send_result(FutureRecord::to(&topic).key(&key).payload(&bytes))
                .map_err(|(e, _)| e)
                .unwrap();
            pending.push(delivery);
        }
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                other => panic!("delivery failed: {other:?}"),
            }
        }
    }

    /// Starts an aggregator on `data_dir` and serves it on a free port.
    async fn start(&self, data_dir: &Path, instance: &str) -> (Application, String) {
        let s = settings(&self.scope, data_dir, instance);
        let metrics = scanstream_platform::telemetry::metrics_handle().unwrap();
        // A crashed instance's store may still be closing on a blocking thread (a real restart
        // is a new process, after the old one exited): retry the open briefly.
        let deadline = Instant::now() + Duration::from_secs(15);
        let aggregator = loop {
            match Aggregator::start(&s).await {
                Ok(aggregator) => break aggregator,
                Err(e) if e.to_string().contains("already open") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        let app = Application::build(&s.api.listen, vec![aggregator], metrics).unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        (app, base)
    }
}

fn submitted(job: &str) -> EventPayload {
    EventPayload::JobSubmitted(JobSubmitted {
        repo_url: format!("https://git.example.com/{job}.git"),
        git_ref: None,
        engines: vec!["secrets".into()],
        mode: Default::default(),
        schedule: None,
        requested_by: None,
    })
}

/// A job's life: a run that fails once and succeeds on retry, then (for odd jobs) a second run
/// that is cancelled.
fn history(job: &str, n: usize, clock: &mut i64) -> Vec<ScanEvent> {
    let id = JobId::from_name(job);
    let mut out = Vec::new();
    let mut push =
        |run: &str, attempt: i32, sequence: i32, payload: EventPayload, clock: &mut i64| {
            *clock += 1;
            out.push(ScanEvent::new(
                id,
                job,
                RunId::derived(id, run),
                attempt,
                sequence,
                *clock,
                None,
                payload,
            ));
        };
    push("a", 0, 0, submitted(job), clock);
    push(
        "a",
        1,
        0,
        EventPayload::ScanStarted(ScanStarted {
            scanner_id: "s0".into(),
        }),
        clock,
    );
    push(
        "a",
        1,
        1,
        EventPayload::ScanFailed(ScanFailed {
            reason: "fetch timed out".into(),
            retryable: true,
            error_kind: "fetch_timeout".into(),
        }),
        clock,
    );
    push(
        "a",
        2,
        0,
        EventPayload::ScanStarted(ScanStarted {
            scanner_id: "s1".into(),
        }),
        clock,
    );
    push(
        "a",
        2,
        1,
        EventPayload::EngineCompleted(EngineCompleted {
            engine: "secrets".into(),
            files: 10,
            bytes: 1000,
            duration_ms: 5,
            findings: 2,
            skipped_large: 0,
            skipped_binary: 0,
            ..EngineCompleted::default()
        }),
        clock,
    );
    push(
        "a",
        2,
        2,
        EventPayload::ScanSucceeded(ScanSucceeded {
            findings: SeverityCounts {
                high: 2,
                ..Default::default()
            },
            commit: None,
            duration_ms: 9,
        }),
        clock,
    );
    if n % 2 == 1 {
        push("b", 0, 0, submitted(job), clock);
        push(
            "b",
            1,
            0,
            EventPayload::ScanStarted(ScanStarted {
                scanner_id: "s0".into(),
            }),
            clock,
        );
        push(
            "b",
            1,
            1,
            EventPayload::ScanCancelled(ScanCancelled {
                reason: Some("superseded".into()),
            }),
            clock,
        );
    }
    out
}

/// Jobs interleaved (per-job order kept), with duplicates of earlier events re-sent later.
fn stream(jobs: usize, seed: u64) -> Vec<ScanEvent> {
    let mut clock = 1_763_700_000_000;
    let histories: Vec<Vec<ScanEvent>> = (0..jobs)
        .map(|n| history(&format!("job-{n}"), n, &mut clock))
        .collect();
    let mut cursors = vec![0; jobs];
    let mut out = Vec::new();
    let mut rng = seed;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) as usize
    };
    while cursors.iter().zip(&histories).any(|(c, h)| *c < h.len()) {
        let open: Vec<usize> = (0..jobs)
            .filter(|&j| cursors[j] < histories[j].len())
            .collect();
        let j = open[next() % open.len()];
        out.push(histories[j][cursors[j]].clone());
        cursors[j] += 1;
        if next() % 7 == 0 {
            let dup = out[next() % out.len()].clone();
            out.push(dup);
        }
    }
    out
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn pure_fold(events: &[ScanEvent]) -> BTreeMap<JobId, JobState> {
    let mut states = BTreeMap::new();
    for e in events {
        let next = fold(states.remove(&e.job_id), e);
        states.insert(e.job_id, next);
    }
    states
}

/// Waits until the service answers every expected job with exactly the expected state.
async fn wait_for(base: &str, expected: &BTreeMap<JobId, JobState>) {
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut remaining: Vec<&JobState> = expected.values().collect();
    let mut last = String::new();
    while !remaining.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} jobs never matched the pure fold; last difference: {last}",
            remaining.len()
        );
        let mut still = Vec::new();
        for want in remaining {
            let got = http
                .get(format!("{base}/jobs/{}", want.job_id))
                .send()
                .await;
            let got: Option<serde_json::Value> = match got {
                Ok(r) if r.status().is_success() => r.json().await.ok(),
                _ => None,
            };
            let want_json = serde_json::to_value(want).unwrap_or_default();
            if got.as_ref() != Some(&want_json) {
                last = format!("{}: got {got:?}", want.job_name);
                still.push(want);
            }
        }
        remaining = still;
        if !remaining.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test]
async fn duplicates_retries_and_reordering_give_exactly_the_pure_fold() {
    let h = Harness::new("agg-fold").await;
    let events = stream(40, 7);
    h.produce(&events).await;
    let dir = tempfile::tempdir().unwrap();
    let (app, base) = h.start(dir.path(), "a").await;
    let stop = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(stop.clone()));
    let expected = pure_fold(&events);
    wait_for(&base, &expected).await;

    let http = http_client();
    // /jobs/stats is the job manager's body for exactly these states.
    let body = http
        .get(format!("{base}/jobs/stats"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap_or_default();
    assert_eq!(
        body,
        render(&job_stats(expected.values(), |_| HistoryLimits::default()))
    );
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["job-1"]["succeeded"], 1);
    assert_eq!(stats["job-1"]["failed"], 1);
    assert_eq!(stats["job-1"]["jobtype"], "normal");
    // Paging walks every job once, in a stable order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/jobs?limit=7&cursor={c}"),
            None => format!("{base}/jobs?limit=7"),
        };
        let page: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
        for job in page["jobs"].as_array().expect("jobs") {
            seen.push(job["job_id"].as_str().unwrap_or_default().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen.len(), expected.len());
    assert_eq!(sorted.len(), expected.len());
    let cancelled: serde_json::Value = http
        .get(format!("{base}/jobs?status=cancelled&limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["jobs"].as_array().map(Vec::len), Some(20));
    let summary: serde_json::Value = http
        .get(format!("{base}/stats/summary"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["jobs"], 40);
    assert_eq!(summary["by_status"]["succeeded"], 20);
    assert_eq!(summary["findings"]["high"], 80);
    let bad = http
        .get(format!("{base}/jobs?status=sleeping"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    stop.cancel();
    let _ = running.await;
}

#[tokio::test]
async fn after_a_crash_a_restart_serves_the_pure_fold_with_the_store_kept_or_lost() {
    let h = Harness::new("agg-crash").await;
    let events = stream(300, 11);
    let (first, second) = events.split_at(events.len() / 2);
    h.produce(first).await;
    let kept = tempfile::tempdir().unwrap();
    let (app, base) = h.start(kept.path(), "crashy").await;
    let stop = CancellationToken::new();
    // Wait until part of the first half is folded, then add the rest and crash mid-stream.
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(60);
    let probe = first[0].job_id;
    while http
        .get(format!("{base}/jobs/{probe}"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
        != 200
    {
        assert!(Instant::now() < deadline, "nothing was folded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.produce(second).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    app.kill().await;
    drop(stop);

    let expected = pure_fold(&events);
    // Restart on the same store.
    let (app, base) = h.start(kept.path(), "crashy").await;
    let stop = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(stop.clone()));
    wait_for(&base, &expected).await;
    stop.cancel();
    let _ = running.await;

    // And again from an empty store: everything comes back from the changelog.
    let empty = tempfile::tempdir().unwrap();
    let (app, base) = h.start(empty.path(), "crashy").await;
    let stop = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(stop.clone()));
    wait_for(&base, &expected).await;
    let stats = http
        .get(format!("{base}/jobs/stats"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap_or_default();
    assert_eq!(
        stats,
        render(&job_stats(expected.values(), |_| HistoryLimits::default()))
    );
    stop.cancel();
    let _ = running.await;
}
