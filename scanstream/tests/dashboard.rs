//! The dashboard in a real browser (Debian's chromium through chromedriver, driven by selenium in
//! tests/browser/dashboard.py) against `scanstream up` on the real broker and registry: log in,
//! submit a scan from the form and watch it go from queued to succeeded without a reload, open
//! its finding and mark it a false positive, create and suspend a schedule, check the jobs page
//! and the overview (keyboard, a phone-sized window), and that a read-only token is offered no
//! triage. This test then finds the triage decision on `scans.triage`. Screenshots are kept in
//! `$CARGO_TARGET_TMPDIR/dashboard/` (or `SCANSTREAM_ARTIFACTS`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rdkafka::Message;
use scanstream_contracts::Topic;
use scanstream_contracts::inventory::{ItemStatus, TriageDecision, TriageReason};
use scanstream_platform::auth::hash_token;
use scanstream_testcontainers::TestScope;
use serde_json::Value;

mod support;

use support::api::{Client, commit, git, github_token};
use support::{Up, log};

const ADMIN: &str = "dashboard-admin-token-0123456789";
const READER: &str = "dashboard-reader-token-0123456789";

fn python() -> PathBuf {
    PathBuf::from(std::env::var("SCANSTREAM_PYTHON").unwrap_or_else(|_| "python3".to_owned()))
}

fn artifacts() -> PathBuf {
    std::env::var_os("SCANSTREAM_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).to_owned())
        .join("dashboard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_real_browser() {
    let scope = TestScope::new("dashboard");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("scanstream.toml");
    // Two tokens: one that may do everything the dashboard offers, one that may only read. One
    // scan at a time, so a scan held at its mirror keeps the next one queued.
    std::fs::write(
        &config,
        format!(
            "[api]\n\
             [[api.tokens]]\nname = \"admin\"\nsha256 = \"{}\"\nscopes = [\"scans:write\", \"scans:read\", \"findings:triage\"]\n\
             [[api.tokens]]\nname = \"reader\"\nsha256 = \"{}\"\nscopes = [\"scans:read\"]\n\n\
             [scanner]\nconcurrency = 1\n",
            hash_token(ADMIN),
            hash_token(READER)
        ),
    )
    .unwrap();
    let secret = github_token();
    let leaky = data_dir.join("repos").join("leaky");
    let blocker = data_dir.join("repos").join("blocker");
    for (repo, files) in [
        (
            &leaky,
            vec![("deploy.env", format!("GITHUB_TOKEN={secret}\n"))],
        ),
        (&blocker, vec![("README.md", "nothing here\n".to_owned())]),
    ] {
        std::fs::create_dir_all(repo).unwrap();
        git(repo, &["init", "--quiet"]);
        let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
        commit(repo, &files, "first");
    }

    let up = Up::start(&scope, &config, &data_dir);
    let client = Client {
        http: reqwest::Client::new(),
        url: up.url.clone(),
        token: ADMIN.to_owned(),
    };
    client.wait_ready(&data_dir).await;
    let (leaky_url, blocker_url) = (
        format!("file://{}", leaky.display()),
        format!("file://{}", blocker.display()),
    );
    // Warm-up scans make both mirrors, so the browser's part can hold one of them.
    client
        .scan("warmup-leaky", &leaky_url, "tree", &data_dir)
        .await;
    client
        .scan("warmup-blocker", &blocker_url, "tree", &data_dir)
        .await;

    let out = artifacts();
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py"))
        .env("DASHBOARD_URL", &up.url)
        .env("ADMIN_TOKEN", ADMIN)
        .env("READER_TOKEN", READER)
        .env("REPO_URL", &leaky_url)
        .env("BLOCKER_URL", &blocker_url)
        .env("MIRRORS", data_dir.join("cache").join("mirrors"))
        .env("SECRET", &secret)
        .env("OUT", &out)
        .env("SE_AVOID_STATS", "true")
        .status()
        .expect(
            "cannot run python: scripts/test makes the virtual environment of SCANSTREAM_PYTHON",
        );
    assert!(
        status.success(),
        "the browser test failed (screenshots in {}); log:\n{}",
        out.display(),
        log(&data_dir)
    );
    let result: Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    let item = result["item"].as_str().unwrap().to_owned();
    for shot in [
        "overview.png",
        "job.png",
        "finding.png",
        "schedules.png",
        "reader.png",
    ] {
        assert!(out.join(shot).exists(), "no {shot}");
    }

    // The dialog's decision is a record on scans.triage, keyed by the item, by the admin.
    let codec = scope.codec();
    let mut found = Vec::new();
    for message in scope.reader().read_all(Topic::Triage) {
        if message.key() == Some(item.as_bytes()) {
            let decision: TriageDecision = codec
                .decode(message.payload().unwrap_or_default())
                .await
                .unwrap();
            found.push(decision);
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    let decision = &found[0];
    assert_eq!(decision.to_status, ItemStatus::Ignored);
    assert_eq!(decision.reason, Some(TriageReason::FalsePositive));
    assert_eq!(decision.actor, "admin");
    assert_eq!(
        decision.comment.as_deref(),
        Some("test fixture, not a real key")
    );
    // Nothing the browser did put the secret in the log.
    let whole_log =
        std::fs::read_to_string(data_dir.join("logs/scanstream.log")).unwrap_or_default();
    assert!(!whole_log.contains(&secret), "the secret is in the log");
    println!("screenshots: {}", out.display());
}
