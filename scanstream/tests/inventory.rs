//! The inventory through the built binary (`scanstream up` on the real broker and registry):
//! one repository scanned as it changes — a secret committed, removed, another added, the first
//! one committed again elsewhere — with triage decisions in between. One item per secret, its
//! `in_tip`, status, locations and trail follow; a revoked secret seen somewhere new reopens;
//! bad triage requests change nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use scanstream_contracts::JobId;
use scanstream_contracts::inventory::ItemId;
use scanstream_scanner::rules::RulePack;
use scanstream_scanner::secrets::SecretsEngine;
use scanstream_testcontainers::TestScope;
use serde_json::{Value, json};

mod support;

use support::api::{Client, commit, git, github_token, urlencode};
use support::{Up, log};

const FINGERPRINT_KEY: &str = "inventory-test-fingerprint-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_follow_a_repository_through_scans_and_triage() {
    let scope = TestScope::new("inventory");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("scanstream.toml");
    std::fs::write(
        &config,
        format!("[scanner]\nfingerprint_key = \"{FINGERPRINT_KEY}\"\n"),
    )
    .unwrap();
    let repo_dir = data_dir.join("repos").join("inventory");
    std::fs::create_dir_all(&repo_dir).unwrap();
    git(&repo_dir, &["init", "--quiet"]);
    let engine = SecretsEngine::new(
        RulePack::load(&[] as &[&str]).unwrap(),
        FINGERPRINT_KEY.as_bytes(),
    );
    let (first, second) = (github_token(), github_token());

    let up = Up::start(&scope, &config, &data_dir);
    let client = Client {
        http: reqwest::Client::new(),
        url: up.url.clone(),
        token: up.token(),
    };
    let repo = format!("file://{}", repo_dir.display());
    let prefix = scope.topic_prefix.trim_end_matches('.').to_owned();
    let name = |n: u32| format!("{prefix}-inventory-{n}");

    // 1. A secret is committed; a tree scan finds it in the tip.
    commit(
        &repo_dir,
        &[("app.env", &format!("GITHUB_TOKEN={first}\n"))],
        "add config",
    );
    client.scan(&name(1), &repo, "tree", &data_dir).await;
    let page = client
        .list_until("/findings?status=open", "first item", |items| {
            !items.is_empty()
        })
        .await;
    let listed = page["items"].as_array().cloned().unwrap_or_default();
    // The item id is the repository's key and the fingerprint, whatever the scanner normalized.
    let a = ItemId::parse(
        listed
            .first()
            .and_then(|i| i["item_id"].as_str())
            .unwrap_or_default(),
    )
    .unwrap_or_else(|| panic!("no item after the first scan: {page}"));
    let repo_url = listed[0]["repo_url"].as_str().unwrap().to_owned();
    let fingerprint_a = engine.fingerprint("github-pat", first.as_bytes());
    assert_eq!(a, ItemId::of(&repo_url, &fingerprint_a));
    let item = client
        .item_until(a, "first item in the tip", |i| i["in_tip"] == true)
        .await;
    assert_eq!(item["status"], "OPEN");
    assert_eq!(item["rule_id"], "github-pat");
    assert_eq!(item["locations"][0]["path"], "app.env");
    assert!(
        !item.to_string().contains(&first),
        "the secret is in the item"
    );

    // 2. The secret is removed from the tip: the item stays open and says it is not in the tip.
    commit(
        &repo_dir,
        &[("app.env", "GITHUB_TOKEN=${GITHUB_TOKEN}\n")],
        "use the environment",
    );
    client.scan(&name(2), &repo, "tree", &data_dir).await;
    let item = client
        .item_until(a, "first item out of the tip", |i| i["in_tip"] == false)
        .await;
    assert_eq!(item["status"], "OPEN", "{item}");
    assert_eq!(
        item["locations"].as_array().map(Vec::len),
        Some(1),
        "{item}"
    );

    // 3. Another secret is added: a second item, in the tip; the first one unchanged.
    commit(
        &repo_dir,
        &[("deploy.sh", &format!("export GH_TOKEN={second}\n"))],
        "deploy script",
    );
    client.scan(&name(3), &repo, "tree", &data_dir).await;
    let b = ItemId::of(
        &repo_url,
        &engine.fingerprint("github-pat", second.as_bytes()),
    );
    let item_b = client
        .item_until(b, "second item", |i| i["in_tip"] == true)
        .await;
    assert_eq!(item_b["status"], "OPEN");
    let (_, page) = client
        .get(&format!("/findings?repo={}", urlencode(&repo_url)))
        .await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2), "{page}");
    let (_, page) = client.get("/findings?in_tip=false").await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["items"][0]["item_id"], a.to_string());

    // Bad triage requests are refused and change nothing.
    let path_a = format!("/findings/{a}");
    for (body, field) in [
        (json!({"status": "resolved"}), "reason"),
        (json!({"status": "ignored", "reason": "revoked"}), "reason"),
        (json!({"status": "closed"}), "status"),
        (json!({"status": "open", "reason": "wont_fix"}), "reason"),
        (
            json!({"status": "ignored", "reason": "false_positive", "extra": 1}),
            "body",
        ),
    ] {
        let (status, problem) = client.patch(&path_a, body.clone(), None).await;
        assert_eq!(status, 400, "{body}: {problem}");
        if field != "body" {
            assert_eq!(problem["field"], field, "{problem}");
        }
    }
    let (status, _) = client
        .patch(
            &format!("/findings/{}", uuid::Uuid::new_v4()),
            json!({"status": "open"}),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = client
        .patch("/findings/not-a-uuid", json!({"status": "open"}), None)
        .await;
    assert_eq!(status, 400);

    // 4. The first secret is revoked; the decision is recorded once, even when retried.
    let body =
        json!({"status": "resolved", "reason": "revoked", "comment": "rotated in the vault"});
    let (status, decision) = client.patch(&path_a, body.clone(), Some("rotate-1")).await;
    assert_eq!(status, 202, "{decision}");
    assert_eq!(decision["from_status"], "OPEN");
    assert_eq!(decision["actor"], "up");
    let (status, again) = client.patch(&path_a, body, Some("rotate-1")).await;
    assert_eq!(status, 202);
    assert_eq!(again["decision_id"], decision["decision_id"]);
    let item = client
        .item_until(a, "first item resolved", |i| i["status"] == "RESOLVED")
        .await;
    assert_eq!(item["reason"], "REVOKED");
    assert_eq!(item["triage"].as_array().map(Vec::len), Some(1), "{item}");
    assert_eq!(item["triage"][0]["comment"], "rotated in the vault");
    assert_eq!(item["triage"][0]["from_status"], "OPEN");
    // The second one is a test fixture: ignored, it stops counting as open.
    let (status, _) = client
        .patch(
            &format!("/findings/{b}"),
            json!({"status": "ignored", "reason": "used_in_tests"}),
            None,
        )
        .await;
    assert_eq!(status, 202);
    client
        .item_until(b, "second item ignored", |i| i["status"] == "IGNORED")
        .await;
    let (_, repos) = client.get("/repos").await;
    let ours = repos
        .as_array()
        .and_then(|r| r.iter().find(|r| r["repo_url"] == repo_url.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("{repos}"));
    assert_eq!(
        ours["open"]["critical"].as_i64().unwrap_or(0) + ours["open"]["high"].as_i64().unwrap_or(0),
        0,
        "{ours}"
    );
    assert_eq!(ours["resolved"], 1, "{ours}");
    assert_eq!(ours["ignored"], 1, "{ours}");
    assert_eq!(ours["last_scan"]["status"], "SUCCEEDED", "{ours}");

    // 5. A history scan sees the revoked secret where it always was: still resolved.
    client.scan(&name(4), &repo, "history", &data_dir).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let item = client
        .item_until(a, "history location", |i| {
            i["locations"][0]["commit"].is_string()
        })
        .await;
    assert_eq!(item["status"], "RESOLVED", "{item}");

    // 6. The revoked secret is committed again somewhere new: re-leaked, open again, in the tip.
    commit(
        &repo_dir,
        &[("old.env", &format!("TOKEN={first}\n"))],
        "restore old config",
    );
    client.scan(&name(5), &repo, "tree", &data_dir).await;
    let item = client
        .item_until(a, "first item reopened", |i| i["status"] == "OPEN")
        .await;
    assert_eq!(item["reopened"], 1, "{item}");
    assert_eq!(item["in_tip"], true, "{item}");
    assert_eq!(
        item["locations"].as_array().map(Vec::len),
        Some(2),
        "{item}"
    );
    // The ignored one stays ignored although every scan still reports it.
    let (_, item_b) = client.get(&format!("/findings/{b}")).await;
    assert_eq!(item_b["status"], "IGNORED", "{item_b}");
    drop(up);

    // 7. Crashes while folding (an abort, like kill -9): before the transaction commits, then
    //    after it committed but before the store was written. Restarted each time on the same
    //    data folder, the inventory ends equal to the fold of its inputs.
    let third = github_token();
    commit(
        &repo_dir,
        &[("ci.env", &format!("CI_TOKEN={third}\n"))],
        "ci token",
    );
    let c = ItemId::of(
        &repo_url,
        &engine.fingerprint("github-pat", third.as_bytes()),
    );
    for point in [
        "aggregator.inventory.before-commit",
        "aggregator.inventory.after-commit",
    ] {
        let mut crashing = Up::start_with(
            &scope,
            &config,
            &data_dir,
            &[(scanstream_platform::fault::CRASH_AT, point)],
        );
        if point.ends_with("before-commit") {
            let client = Client {
                http: reqwest::Client::new(),
                url: crashing.url.clone(),
                token: crashing.token(),
            };
            // Only a new sighting makes the fold commit: scan; the process dies meanwhile.
            let response = client
                .http
                .post(format!("{}/jobs", client.url))
                .bearer_auth(&client.token)
                .json(&json!({"name": name(6), "repo": repo, "mode": "tree"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 202);
        }
        let status = crashing.wait_exit(Duration::from_secs(120));
        assert!(
            status.is_some_and(|s| !s.success()),
            "{point}: no crash ({status:?})\n{}",
            log(&data_dir)
        );
    }
    let up = Up::start(&scope, &config, &data_dir);
    let client = Client {
        http: reqwest::Client::new(),
        url: up.url.clone(),
        token: up.token(),
    };
    let item_c = client
        .item_until(c, "third item after the crashes", |i| i["in_tip"] == true)
        .await;
    assert_eq!(item_c["status"], "OPEN", "{item_c}");
    client
        .list_until(
            &format!("/findings?repo={}", urlencode(&repo_url)),
            "three items",
            |items| items.len() == 3,
        )
        .await;
    // The job the crashes interrupted finishes (its scan is re-run: sightings written twice
    // are folded once).
    let deadline = Instant::now() + Duration::from_secs(120);
    while client
        .get(&format!("/jobs/{}", JobId::from_name(&name(6))))
        .await
        .1["status"]
        != "SUCCEEDED"
    {
        assert!(Instant::now() < deadline, "{}", log(&data_dir));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // scanstream audit: the inventory on scans.inventory and behind GET /findings/{id} equals
    // the fold of scans.sightings and scans.triage.
    let report_path = dir.path().join("audit.json");
    let output = Command::new(env!("CARGO_BIN_EXE_scanstream"))
        .args(["--bootstrap", &scope.endpoints.bootstrap_servers])
        .args(["--registry", &scope.endpoints.registry_url])
        .args(["--topic-prefix", &scope.topic_prefix])
        .args(["audit", "--api-url", &up.url, "--token-file"])
        .arg(data_dir.join("api-token"))
        .arg("--report")
        .arg(&report_path)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap_or_default())
        .unwrap_or(Value::Null);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}\n{report}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let inventory = &report["inventory"];
    assert_eq!(inventory["items_checked"], 3, "{inventory}");
    assert_eq!(inventory["equal"], 3, "{inventory}");
    assert!(
        inventory["inputs_folded"].as_u64().unwrap_or(0) >= 8,
        "{inventory}"
    );
    drop(up);
}
