//! `scanstream submit` and `scanstream stats` against real `scanstream ingest` and
//! `scanstream aggregator` processes on the real broker and registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use scanstream_testcontainers::TestScope;

/// A `scanstream` command with the scope's settings in its environment.
fn scanstream(scope: &TestScope, dir: &std::path::Path) -> Command {
    let store = dir.join("store").display().to_string();
    let mut command = Command::new(env!("CARGO_BIN_EXE_scanstream"));
    command.envs(scope.env(&[
        ("topics.partitions", "2"),
        ("api.auth_enabled", "false"),
        ("ingest.repo_template", "https://git.example.com/{name}.git"),
        ("aggregator.data_dir", &store),
        ("telemetry.log_filter", "warn"),
    ]));
    command
}

/// Starts a role and returns it with the port it printed.
fn start(mut command: Command, role: &str) -> (Child, u16) {
    let mut child = command
        .arg(role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().expect("no stdout");
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let port = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{role} said {line:?}"));
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    (child, port)
}

fn run(mut command: Command, args: &[&str]) -> Output {
    command.args(args).output().unwrap()
}

fn out(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn submit_and_stats_talk_to_the_rest_api() {
    let scope = TestScope::new("clients");
    let dir = tempfile::tempdir().unwrap();
    let ensured = run(scanstream(&scope, dir.path()), &["topics", "ensure"]);
    assert!(ensured.status.success(), "{}", out(&ensured));
    let (mut ingest, ingest_port) = start(scanstream(&scope, dir.path()), "ingest");
    let (mut aggregator, aggregator_port) = start(scanstream(&scope, dir.path()), "aggregator");
    let ingest_url = format!("http://127.0.0.1:{ingest_port}");
    let aggregator_url = format!("http://127.0.0.1:{aggregator_port}");

    // Ingest answers 503 until its producer is ready: retry for a while.
    let deadline = Instant::now() + Duration::from_secs(60);
    let accepted = loop {
        let output = run(
            scanstream(&scope, dir.path()),
            &[
                "submit",
                "demo-1",
                "--mode",
                "history",
                "--api-url",
                &ingest_url,
            ],
        );
        if output.status.success() || Instant::now() > deadline {
            break output;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(accepted.status.success(), "{}", out(&accepted));
    let answer: serde_json::Value = serde_json::from_slice(&accepted.stdout).unwrap();
    assert_eq!(answer["status"], "queued");
    let uuid = answer["uuid"].as_str().unwrap_or_default().to_owned();

    let refused = run(
        scanstream(&scope, dir.path()),
        &["submit", "Not A Name", "--api-url", &ingest_url],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", out(&refused));
    assert!(out(&refused).contains("400"), "{}", out(&refused));

    // The aggregator folds the JobSubmitted event: the job shows in the seed's format.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stats = loop {
        let output = run(
            scanstream(&scope, dir.path()),
            &["stats", "--api-url", &aggregator_url],
        );
        if String::from_utf8_lossy(&output.stdout).contains("demo-1") || Instant::now() > deadline {
            break output;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let body: serde_json::Value =
        serde_json::from_slice(&stats.stdout).unwrap_or_else(|e| panic!("{}: {e}", out(&stats)));
    assert_eq!(body["demo-1"]["uuid"], uuid.as_str());
    assert_eq!(body["demo-1"]["jobtype"], "normal");

    let job = run(
        scanstream(&scope, dir.path()),
        &["stats", "--job", &uuid, "--api-url", &aggregator_url],
    );
    assert!(job.status.success(), "{}", out(&job));
    assert!(
        String::from_utf8_lossy(&job.stdout).contains("\"QUEUED\""),
        "{}",
        out(&job)
    );

    let unreachable = run(
        scanstream(&scope, dir.path()),
        &["stats", "--api-url", "http://127.0.0.1:1"],
    );
    assert_eq!(unreachable.status.code(), Some(2), "{}", out(&unreachable));

    let _ = ingest.kill();
    let _ = aggregator.kill();
    let _ = ingest.wait();
    let _ = aggregator.wait();
}
