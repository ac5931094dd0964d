//! `scanstream up` with its own local Kafka and registry, whose broker is killed (`kill -9`)
//! right after scans were accepted: readiness turns false within seconds, `up` starts the broker
//! again by itself, readiness returns, and every scan answered `202` — before or after the
//! kill — reaches a terminal state.
//!
//! One exception is allowed, because Kafka causes it: when the kill lands between a
//! transaction's commit and its last marker, the restarted single-node broker can drop the
//! missing marker and leave the transaction hanging, and consumers stop behind it. `up` finds
//! and aborts it (the remedy Kafka provides) and names its first record; a scan whose request
//! was in it is lost and must be named by `up`. Every other scan must end.
//! Set `SCANSTREAM_KEEP_TEST_DATA=1` to keep the data folder (the broker's log and data) of a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../services/scanner/tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use scanstream_contracts::ids::JobId;
use serde_json::{Value, json};

/// The test's data folder; kept when `SCANSTREAM_KEEP_TEST_DATA` is set.
struct Kept(Option<tempfile::TempDir>);

impl Kept {
    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if std::env::var_os("SCANSTREAM_KEEP_TEST_DATA").is_some() {
            let _ = self.0.take().map(tempfile::TempDir::keep);
        }
    }
}

/// Stops `up` (and so its cluster) however the test ends.
struct Stop(std::process::Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn git(dir: &Path, args: &[&str]) {
    support::git(dir, args, None);
}

async fn readyz(http: &reqwest::Client, url: &str) -> (u16, Value) {
    match http.get(format!("{url}/readyz")).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// Waits until `/readyz` answers `want` (200 or 503); returns how long that took.
async fn until_ready(http: &reqwest::Client, url: &str, want: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = readyz(http, url).await;
        if status == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "/readyz stayed {status} for {within:?}, wanted {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The broker killed under `up`: noticed, restarted, and scans accepted before and after it end.
async fn kill_the_broker() {
    let data = tempfile::tempdir().unwrap();
    if std::env::var_os("SCANSTREAM_KEEP_TEST_DATA").is_some() {
        eprintln!("data folder kept: {}", data.path().display());
    }
    let data = Kept(Some(data));
    let repo = data.path().join("repos").join("plain");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "nothing to see\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "initial"]);

    let mut up = Command::new(env!("CARGO_BIN_EXE_scanstream"))
        .args(["up", "--listen", "127.0.0.1:0", "--kafka-port", "0"])
        .args(["--registry-port", "0", "--data-dir"])
        .arg(data.path())
        // Only `up`'s own cluster: none of the test environment's.
        .env_remove("SCANSTREAM__KAFKA__BOOTSTRAP_SERVERS")
        .env_remove("SCANSTREAM__REGISTRY__URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = up.stdout.take().unwrap();
    let stderr = up.stderr.take().unwrap();
    let mut up = Stop(up);
    let (sender, urls) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("HTTP API:") {
                let _ = sender.send(url.trim().to_owned());
            }
        }
    });
    let (sender, said) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let url = urls
        .recv_timeout(Duration::from_secs(240))
        .expect("scanstream up never printed its URL");
    let token = std::fs::read_to_string(data.path().join("api-token"))
        .unwrap()
        .trim()
        .to_owned();
    let http = reqwest::Client::new();
    until_ready(&http, &url, 200, Duration::from_secs(60)).await;

    let submit = |name: String| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        let repo = format!("file://{}", repo.display());
        async move {
            http.post(format!("{url}/jobs"))
                .bearer_auth(&token)
                .json(&json!({"name": name, "repo": repo}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    let mut accepted = BTreeSet::new();
    for n in 0..5 {
        let name = format!("before-{n}");
        assert_eq!(submit(name.clone()).await, 202);
        accepted.insert(name);
    }

    let pid: i32 = std::fs::read_to_string(data.path().join("cluster/kafka/pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Scans submitted while the broker is gone: 503 (never 202) until it is back.
    // (`up` starts the broker again at once, so which part says so first varies: the writer,
    // the consumers, or the `kafka` probe.)
    let noticed = until_ready(&http, &url, 503, Duration::from_secs(15)).await;
    let back = until_ready(&http, &url, 200, Duration::from_secs(120)).await;
    eprintln!("readiness false {noticed:?} after the kill, true again {back:?} later");
    let mut lines: Vec<String> = std::iter::from_fn(|| said.try_recv().ok()).collect();
    let restarted = lines
        .iter()
        .any(|line| line.contains("exited") && line.contains("started it again"));
    assert!(restarted, "up did not say it restarted the broker");

    let deadline = Instant::now() + Duration::from_secs(60);
    for n in 0..5 {
        let name = format!("after-{n}");
        loop {
            match submit(name.clone()).await {
                202 => break,
                503 if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => panic!("{name}: {other}"),
            }
        }
        accepted.insert(name);
    }

    // Every accepted scan ends, or `up` names it as lost with a transaction it aborted.
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        lines.extend(std::iter::from_fn(|| said.try_recv().ok()));
        let aborted: Vec<&String> = lines
            .iter()
            .filter(|line| line.contains("aborted a transaction"))
            .collect();
        let stats: Value = http
            .get(format!("{url}/jobs/stats"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null);
        let open: Vec<&String> = accepted
            .iter()
            .filter(|name| stats[name.as_str()]["succeeded"] != json!(1))
            .filter(|name| {
                let id = JobId::from_name(name).to_string();
                !aborted.iter().any(|line| line.contains(&id))
            })
            .collect();
        if open.is_empty() {
            eprintln!("every accepted scan ended; up reported {aborted:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "accepted scans never ended: {open:?}\n{stats}\nup said: {aborted:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let stopped = Command::new("kill")
        .args(["-INT", &up.0.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let exit = up.0.wait().unwrap();
    assert!(exit.success(), "up exited with {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_is_noticed_and_restarted_and_every_accepted_scan_ends() {
    kill_the_broker().await;
}
