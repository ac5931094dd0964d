//! Notifications through the built binary (`scanstream up` with notifier destinations, on the
//! real broker and registry), to local HTTP receivers: one that is down for its first requests,
//! one that always fails, a Slack one that wants only critical items and one that follows other
//! repositories. Every opening arrives exactly once by idempotency key with a valid signature,
//! nothing arrives for ignored items, a re-leak notifies again, the failing receiver's
//! notifications end on scans.notifications.dlq while the others keep flowing, and an abort
//! between a delivery and its commit loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message};
use scanstream_contracts::inventory::ItemId;
use scanstream_scanner::rules::RulePack;
use scanstream_scanner::secrets::SecretsEngine;
use scanstream_testcontainers::TestScope;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;

use support::api::{Client, commit, git, github_token};
use support::{Up, log};

const FINGERPRINT_KEY: &str = "notifier-test-fingerprint-key";
const FLAKY_SECRET: &str = "flaky-signing-key-0123456789";

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    key: String,
    signature: String,
    body: Vec<u8>,
}

/// A local HTTP receiver: answers `fail_first` requests with 503 (down for a while), or every
/// request with 500 when `always_fail`; records the requests it accepted.
#[derive(Clone)]
struct Receiver {
    accepted: Arc<Mutex<Vec<Received>>>,
    requests: Arc<Mutex<u32>>,
    port: u16,
}

impl Receiver {
    async fn start(fail_first: u32, always_fail: bool) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            accepted: Arc::default(),
            requests: Arc::default(),
            port: listener.local_addr().unwrap().port(),
        };
        let state = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut socket).await else {
                        return;
                    };
                    let n = {
                        let mut count = state.requests.lock().unwrap();
                        *count += 1;
                        *count
                    };
                    let status = if always_fail {
                        "500 Internal Server Error"
                    } else if n <= fail_first {
                        "503 Service Unavailable"
                    } else {
                        state.accepted.lock().unwrap().push(request);
                        "200 OK"
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        receiver
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn accepted(&self) -> Vec<Received> {
        self.accepted.lock().unwrap().clone()
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut data = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        let n = socket.read(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buffer[..n]);
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.lines();
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length")?.parse().ok()?;
    while data.len() < head_end + length {
        let n = socket.read(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buffer[..n]);
    }
    Some(Received {
        path,
        key: headers.get("idempotency-key").cloned().unwrap_or_default(),
        signature: headers
            .get("x-scanstream-signature")
            .cloned()
            .unwrap_or_default(),
        body: data[head_end..head_end + length].to_vec(),
    })
}

/// The key of `item`'s opening number `reopened`, as the notifier derives it.
fn key(item: ItemId, reopened: i32) -> String {
    scanstream_contracts::ids::derived_uuid("notification", &[&item.key(), &reopened.to_string()])
        .to_string()
}

/// Waits until `receiver` accepted exactly the `keys` (as a set).
async fn wait_keys(
    receiver: &Receiver,
    keys: &BTreeSet<String>,
    what: &str,
    data_dir: &std::path::Path,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got: BTreeSet<String> = receiver.accepted().into_iter().map(|r| r.key).collect();
        if &got == keys {
            return;
        }
        assert!(
            got.is_subset(keys) && Instant::now() < deadline,
            "{what}: got {got:?}, want {keys:?}\n{}",
            log(data_dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The dead letters on the scope's `scans.notifications.dlq`: (destination, key) pairs.
fn dead_letters(scope: &TestScope) -> Vec<(String, String, Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &scope.endpoints.bootstrap_servers)
        .set(
            "group.id",
            format!("{}dlq-reader-{}", scope.topic_prefix, uuid::Uuid::new_v4()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer
        .subscribe(&[&format!("{}scans.notifications.dlq", scope.topic_prefix)])
        .unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let header = |name: &str| {
                m.headers()
                    .and_then(|h| h.iter().find(|x| x.key == name).and_then(|x| x.value))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            let body =
                serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or(Value::Null);
            out.push((
                header("notification-destination"),
                header("idempotency-key"),
                body,
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openings_reach_every_destination_once_and_failures_end_in_the_dlq() {
    let scope = TestScope::new("notifier");
    let flaky = Receiver::start(3, false).await;
    let broken = Receiver::start(0, true).await;
    let slack = Receiver::start(0, false).await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("scanstream.toml");
    std::fs::write(
        &config,
        format!(
            r#"[scanner]
fingerprint_key = "{FINGERPRINT_KEY}"

[notifier]
max_attempts = 6
initial_backoff_ms = 50
max_backoff_ms = 400
request_timeout_ms = 2000

[[notifier.destinations]]
name = "flaky"
kind = "webhook"
url = "{}"
secret = "{FLAKY_SECRET}"

[[notifier.destinations]]
name = "broken"
kind = "webhook"
url = "{}"
secret = "broken-signing-key-0123456789"

[[notifier.destinations]]
name = "chat"
kind = "slack"
url = "{}"
min_severity = "critical"

[[notifier.destinations]]
name = "elsewhere"
kind = "slack"
url = "{}"
repos = ["https://git.example.com/other/*"]
"#,
            flaky.url("/hook"),
            broken.url("/hook"),
            slack.url("/chat"),
            slack.url("/elsewhere"),
        ),
    )
    .unwrap();
    let repo_dir = data_dir.join("repos").join("notify");
    std::fs::create_dir_all(&repo_dir).unwrap();
    git(&repo_dir, &["init", "--quiet"]);
    let engine = SecretsEngine::new(
        RulePack::load(&[] as &[&str]).unwrap(),
        FINGERPRINT_KEY.as_bytes(),
    );
    let (p, q, r) = (github_token(), github_token(), github_token());
    let repo = format!("file://{}", repo_dir.display());
    let prefix = scope.topic_prefix.trim_end_matches('.').to_owned();
    let name = |n: u32| format!("{prefix}-notify-{n}");

    let mut up = Up::start(&scope, &config, &data_dir);
    let client = Client {
        http: reqwest::Client::new(),
        url: up.url.clone(),
        token: up.token(),
    };

    // Two new secrets: two openings.
    commit(
        &repo_dir,
        &[
            ("a.env", &format!("TOKEN={p}\n")),
            ("b.env", &format!("TOKEN={q}\n")),
        ],
        "tokens",
    );
    client.scan(&name(1), &repo, "tree", &data_dir).await;
    let page = client
        .list_until("/findings", "two items", |items| items.len() == 2)
        .await;
    let repo_url = page["items"][0]["repo_url"].as_str().unwrap().to_owned();
    let item = |secret: &str| {
        ItemId::of(
            &repo_url,
            &engine.fingerprint("github-pat", secret.as_bytes()),
        )
    };
    let (ip, iq, ir) = (item(&p), item(&q), item(&r));
    let mut expected: BTreeSet<String> = [key(ip, 0), key(iq, 0)].into();
    wait_keys(&flaky, &expected, "first openings", &data_dir).await;
    assert!(
        flaky.requests.lock().map(|n| *n).unwrap_or(0) >= 5,
        "the flaky receiver was down first"
    );
    wait_keys(&slack, &expected, "chat (critical)", &data_dir).await;

    // 1 (ignored) and 2 (resolved); then both are committed somewhere new.
    let (status, _) = client
        .patch(
            &format!("/findings/{iq}"),
            json!({"status": "ignored", "reason": "false_positive"}),
            None,
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = client
        .patch(
            &format!("/findings/{ip}"),
            json!({"status": "resolved", "reason": "revoked"}),
            None,
        )
        .await;
    assert_eq!(status, 202);
    client
        .item_until(iq, "ignored", |i| i["status"] == "IGNORED")
        .await;
    client
        .item_until(ip, "resolved", |i| i["status"] == "RESOLVED")
        .await;
    commit(&repo_dir, &[("c.env", &format!("A={p}\nB={q}\n"))], "again");
    client.scan(&name(2), &repo, "tree", &data_dir).await;
    client
        .item_until(ip, "re-leaked", |i| {
            i["status"] == "OPEN" && i["reopened"] == 1
        })
        .await;
    expected.insert(key(ip, 1));
    wait_keys(
        &flaky,
        &expected,
        "the re-leak, nothing for the ignored one",
        &data_dir,
    )
    .await;
    // Let the last offsets commit (asynchronously) before the kill.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Without a crash, each opening was accepted exactly once: later records of the same item
    // (every scan writes one) and the ignored item's re-sighting sent nothing.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for request in flaky.accepted() {
        *counts.entry(request.key).or_default() += 1;
    }
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    assert_eq!(slack.accepted().len(), 3, "chat: one message per opening");
    drop(up);

    // An abort after a delivery and before its commit: delivered again with the same key.
    commit(&repo_dir, &[("d.env", &format!("R={r}\n"))], "third");
    up = Up::start_with(
        &scope,
        &config,
        &data_dir,
        &[(
            scanstream_platform::fault::CRASH_AT,
            "notifier.before-commit",
        )],
    );
    let client = Client {
        http: reqwest::Client::new(),
        url: up.url.clone(),
        token: up.token(),
    };
    let response = client
        .http
        .post(format!("{}/jobs", client.url))
        .bearer_auth(&client.token)
        .json(&json!({"name": name(3), "repo": repo, "mode": "tree"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let status = up.wait_exit(Duration::from_secs(120));
    assert!(
        status.is_some_and(|s| !s.success()),
        "no crash ({status:?})\n{}",
        log(&data_dir)
    );
    drop(up);
    let up = Up::start(&scope, &config, &data_dir);
    expected.insert(key(ir, 0));
    wait_keys(&flaky, &expected, "after the abort", &data_dir).await;
    // Exactly once by key: what is delivered again (at least once) carries a key already seen,
    // and nothing else arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_keys(&flaky, &expected, "settled", &data_dir).await;

    // Every accepted body is signed with the destination's key and names its key and item.
    let accepted = flaky.accepted();
    for request in &accepted {
        assert_eq!(request.path, "/hook");
        assert_eq!(
            request.signature,
            scanstream_notifier::message::sign(FLAKY_SECRET.as_bytes(), &request.body),
            "{request:?}"
        );
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["idempotency_key"], request.key.as_str());
        assert_eq!(body["type"], "inventory.item.opened");
        for secret in [&p, &q, &r] {
            assert!(
                !String::from_utf8_lossy(&request.body).contains(secret.as_str()),
                "a secret in a notification"
            );
        }
    }
    assert!(
        slack.accepted().iter().all(|r| r.path == "/chat"),
        "the elsewhere destination follows other repositories"
    );

    // The broken receiver's notifications are dead letters, one per opening, and did not stop
    // the others.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let letters = dead_letters(&scope);
        let keys: BTreeSet<String> = letters
            .iter()
            .filter(|l| l.0 == "broken")
            .map(|l| l.1.clone())
            .collect();
        if keys == expected {
            assert!(
                letters
                    .iter()
                    .all(|l| l.2["item"]["fingerprint"].is_string())
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead letters {keys:?}, want {expected:?}"
        );
    }
    drop(up);
}
