//! `scanstream audit`: it passes on a consistent system and names a job whose changelog record
//! was tampered with.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::producer::FutureRecord;
use scanstream_aggregator::Aggregator;
use scanstream_contracts::state::JobState;
use scanstream_contracts::{JobId, Topic};
use scanstream_platform::server::Application;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    Fixture, PARTITIONS, lines, rfc3339, scanstream, started, stdout, submitted, succeeded,
};

/// An aggregator of the fixture's topics with a store of its own, served on a free port: its
/// URL, what stops it, its task and its store folder (removed when dropped).
async fn aggregator(
    f: &Fixture,
) -> (
    String,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), scanstream_platform::server::ServeError>>,
    tempfile::TempDir,
) {
    let store = tempfile::tempdir().unwrap();
    let mut settings = f.settings.clone();
    settings.aggregator.data_dir = store.path().display().to_string();
    let metrics = scanstream_platform::telemetry::metrics_handle().unwrap();
    let aggregator = Aggregator::start(&settings).await.unwrap();
    let app = Application::build(&settings.api.listen, vec![aggregator], metrics).unwrap();
    let api = format!("http://127.0.0.1:{}", app.port());
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    (api, stop, task, store)
}

/// Jobs with events, an aggregator that folds them, then the audit.
#[tokio::test]
async fn audit_passes_on_a_consistent_system_and_names_a_tampered_job() {
    let f = Fixture::new("audit").await;
    let jobs: Vec<String> = (0..12).map(|n| format!("audited-{n}")).collect();
    let now = chrono::Utc::now().timestamp_millis();
    for (n, job) in jobs.iter().enumerate() {
        let p = (n as i32) % PARTITIONS;
        f.produce(p, now, &submitted(job, now)).await;
        f.produce(p, now + 1, &started(job, now + 1)).await;
        if n % 2 == 0 {
            f.produce(p, now + 2, &succeeded(job, now + 2)).await;
        }
    }
    let (api, stop, task, _store) = aggregator(&f).await;
    folded(&api, |stats| {
        jobs.iter()
            .enumerate()
            .all(|(n, j)| stats[j]["succeeded"] == if n % 2 == 0 { 1 } else { 0 })
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let run = |extra: &[&str], report: &Path| {
        let mut args = vec!["audit", "--api-url", api.as_str(), "--report"];
        let report = report.to_str().unwrap_or_default().to_owned();
        args.push(&report);
        args.extend_from_slice(extra);
        let out = scanstream(&f.scope, &args);
        let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap_or_default())
            .unwrap_or(Value::Null);
        (out, report)
    };
    let (out, first) = run(&[], &report);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(first["jobs_checked"], 12, "{first}");
    assert_eq!(first["equal"], 12);
    assert_eq!(first["events_folded"], 30);
    assert_eq!(first["api_checked"], true);
    let digest = first["digest"]["hex"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(digest.len(), 64);
    // The same range audited again: the same digest.
    let (_, again) = run(&[], &report);
    assert_eq!(again["digest"]["hex"], digest.as_str());
    // A range: only the jobs with events in it.
    let (out, ranged) = run(
        &["--from", &rfc3339(now + 2), "--to", &rfc3339(now + 3)],
        &dir.path().join("ranged.json"),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(ranged["jobs_checked"], 6, "{ranged}");
    assert_eq!(ranged["digest"]["records"], 6);

    // Tamper with one job's changelog record.
    let victim = JobId::from_name("audited-3");
    let changelog = f.names().name(Topic::JobState);
    let shown = stdout(&scanstream(
        &f.scope,
        &["replay", "--topic", "scans.job-state", "--job", "audited-3"],
    ));
    let last = lines(&shown)
        .pop()
        .unwrap_or_else(|| panic!("no changelog record: {shown}"));
    let mut state: JobState = serde_json::from_value(last["value"].clone()).unwrap();
    state.succeeded += 5;
    let payload = f.codec.encode(Topic::JobState, &state).await.unwrap();
    f.producer
        .send(
            FutureRecord::to(&changelog)
                .key(&victim.key())
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let (out, tampered) = run(&[], &dir.path().join("tampered.json"));
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains(&victim.to_string()) && printed.contains("audited-3"),
        "{printed}"
    );
    assert!(printed.contains("succeeded"), "{printed}");
    assert_eq!(tampered["differing"], 1, "{tampered}");
    assert_eq!(tampered["differences"][0]["job"], victim.to_string());
    assert_eq!(tampered["differences"][0]["source"], "changelog");
    // The history did not change: neither did its digest.
    assert_eq!(tampered["digest"]["hex"], digest.as_str());

    stop.cancel();
    let _ = task.await;
}

/// Waits until the aggregator's `GET /jobs/stats` satisfies `done`.
async fn folded(api: &str, done: impl Fn(&Value) -> bool) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats: Value = match http.get(format!("{api}/jobs/stats")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if done(&stats) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the aggregator never folded the events: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A poison record on scans.events fails the audit with its position named, until it is
/// acknowledged; two different records under one event id fail it whatever is acknowledged.
#[tokio::test]
async fn poison_is_named_and_can_be_acknowledged_and_conflicting_records_fail_the_audit() {
    let f = Fixture::new("audit-poison").await;
    let now = chrono::Utc::now().timestamp_millis();
    let job = "poisoned";
    f.produce(0, now, &submitted(job, now)).await;
    f.produce(0, now + 1, &started(job, now + 1)).await;
    // Offset 2 of partition 0: bytes no schema explains.
    let topic = f.names().name(Topic::Events);
    f.producer
        .send(
            FutureRecord::to(&topic)
                .key("poison")
                .payload("not avro at all")
                .partition(0)
                .timestamp(now + 2),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    f.produce(0, now + 3, &succeeded(job, now + 3)).await;

    let (api, stop, task, _store) = aggregator(&f).await;
    folded(&api, |stats| stats[job]["succeeded"] == 1).await;

    let dir = tempfile::tempdir().unwrap();
    let audit = |extra: &[&str], name: &str| {
        let report = dir.path().join(name);
        let mut args = vec!["audit", "--report", report.to_str().unwrap_or_default()];
        args.extend_from_slice(extra);
        let out = scanstream(&f.scope, &args);
        let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap_or_default())
            .unwrap_or(Value::Null);
        (out, report)
    };
    let (out, report) = audit(&[], "poisoned.json");
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains("UNFOLDABLE") && printed.contains("0:2"),
        "{printed}"
    );
    assert_eq!(report["undecodable_events"], 1, "{report}");
    assert_eq!(report["undecodable"][0]["partition"], 0);
    assert_eq!(report["undecodable"][0]["offset"], 2);

    // Acknowledged, on the command line or in a file: the audit gates again.
    let (out, report) = audit(&["--acknowledge", "0:2"], "acknowledged.json");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(report["acknowledged_events"], 1, "{report}");
    let file = dir.path().join("known-poison");
    std::fs::write(&file, "# seen on the first day\n0:2\n").unwrap();
    let (out, _) = audit(
        &["--acknowledge-file", file.to_str().unwrap_or_default()],
        "file.json",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let (out, _) = audit(&["--acknowledge", "0:1"], "wrong.json");
    assert_eq!(
        out.status.code(),
        Some(1),
        "only the named record is acknowledged"
    );

    // The same event id with another outcome: folded once, and reported.
    let mut conflicting = succeeded(job, now + 4);
    conflicting.payload = scanstream_contracts::event::EventPayload::ScanFailed(
        scanstream_contracts::event::ScanFailed {
            reason: "interrupted".into(),
            retryable: true,
            error_kind: "interrupted".into(),
        },
    );
    f.produce(0, now + 4, &conflicting).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (out, report) = loop {
        let (out, report) = audit(&["--acknowledge", "0:2"], "conflict.json");
        if report["conflicting_events"] == 1 || Instant::now() > deadline {
            break (out, report);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert_eq!(report["conflicting_events"], 1, "{report}");
    assert_eq!(
        report["conflicts"][0]["event_id"],
        conflicting.event_id.to_string()
    );
    assert_eq!(report["conflicts"][0]["second"]["offset"], 4);
    assert!(printed.contains("CONFLICT"), "{printed}");
    // The fold kept the first: the job is still counted as succeeded once.
    assert_eq!(report["differing"], 0, "{report}");

    stop.cancel();
    let _ = task.await;
}
