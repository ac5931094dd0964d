//! Bad input to `POST /jobs` and the other routes: problem bodies (`application/problem+json`
//! naming the field and the rule that failed, never echoing a credential), and nothing written
//! to scans.commands or scans.events.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::Message;
use scanstream_contracts::Topic;
use scanstream_platform::auth::hash_token;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, spawn_app};

/// A request `POST /jobs` must refuse: (content type, body, status, field, rule).
type Case = (
    Option<&'static str>,
    String,
    u16,
    Option<&'static str>,
    Option<&'static str>,
);

const JSON: Option<&str> = Some("application/json");

/// A JSON body refused with 400, naming `field` (if any) and `rule`.
fn bad(body: impl Into<String>, field: Option<&'static str>, rule: &'static str) -> Case {
    (JSON, body.into(), 400, field, Some(rule))
}

/// Every refused `POST /jobs` request.
fn cases() -> Vec<Case> {
    let repo = "https://git.example.com/r.git";
    let long_name = "a".repeat(64);
    let huge = format!(
        r#"{{"name": "big", "repo": "{repo}", "ref": "{}"}}"#,
        "x".repeat(70_000)
    );
    let name = Some("name");
    vec![
        // Not JSON, or not an object.
        (None, r#"{"name": "a"}"#.into(), 415, None, None),
        (
            Some("text/plain"),
            r#"{"name": "a"}"#.into(),
            415,
            None,
            None,
        ),
        bad("{", None, "json-syntax"),
        bad("", None, "json-syntax"),
        bad("[]", None, "type"),
        // A struct also reads from an array of its fields; a body must be an object.
        bad(r#"["a", null]"#, None, "type"),
        bad(r#""a""#, None, "type"),
        // The name.
        bad(format!(r#"{{"repo": "{repo}"}}"#), name, "required"),
        bad(
            format!(r#"{{"name": "", "repo": "{repo}"}}"#),
            name,
            "required",
        ),
        bad(
            format!(r#"{{"name": "Test10", "repo": "{repo}"}}"#),
            name,
            "kubernetes-name",
        ),
        bad(
            format!(r#"{{"name": "{long_name}", "repo": "{repo}"}}"#),
            name,
            "kubernetes-name",
        ),
        bad(
            format!(r#"{{"name": "a_b", "repo": "{repo}"}}"#),
            name,
            "kubernetes-name",
        ),
        bad(
            format!(r#"{{"name": "ab-", "repo": "{repo}"}}"#),
            name,
            "kubernetes-name",
        ),
        bad(r#"{"name": 5}"#, None, "type"),
        bad(
            format!(r#"{{"name": "a", "repo": "{repo}", "nmae": "b"}}"#),
            Some("nmae"),
            "unknown-field",
        ),
        // The repository.
        bad(r#"{"name": "a"}"#, Some("repo"), "required"),
        bad(
            r#"{"name": "a", "repo": "http://git.example.com/r.git"}"#,
            Some("repo"),
            "scheme",
        ),
        bad(
            r#"{"name": "a", "repo": "https://bob:hunter2@git.example.com/r.git"}"#,
            Some("repo"),
            "no-credentials",
        ),
        bad(
            r#"{"name": "a", "repo": "file:///etc/passwd"}"#,
            Some("repo"),
            "file-root",
        ),
        bad(
            r#"{"name": "a", "repo": "https://git.example.com/a/../../b"}"#,
            Some("repo"),
            "path-traversal",
        ),
        bad(
            r#"{"name": "a", "repo": "https://127.0.0.1/r.git"}"#,
            Some("repo"),
            "private-address",
        ),
        bad(
            r#"{"name": "a", "repo": "https://169.254.169.254/latest/meta-data"}"#,
            Some("repo"),
            "private-address",
        ),
        bad(
            r#"{"name": "a", "repo": "ssh://git@localhost/r.git"}"#,
            Some("repo"),
            "private-address",
        ),
        bad(
            r#"{"name": "a", "repo": "https://[::1]/r.git"}"#,
            Some("repo"),
            "private-address",
        ),
        bad(
            r#"{"name": "a", "repo": "not a url"}"#,
            Some("repo"),
            "url-form",
        ),
        // Parts git would hand to ssh as options, in every spelling (issue 17, item 9).
        bad(
            r#"{"name": "a", "repo": "ssh://-oProxyCommand=calc/r.git"}"#,
            Some("repo"),
            "option-injection",
        ),
        bad(
            r#"{"name": "a", "repo": "ssh://-user@git.example.com/r.git"}"#,
            Some("repo"),
            "option-injection",
        ),
        bad(
            r#"{"name": "a", "repo": "git@git.example.com:-oProxyCommand=calc"}"#,
            Some("repo"),
            "option-injection",
        ),
        bad(
            r#"{"name": "a", "repo": "-oProxyCommand=calc@git.example.com:r.git"}"#,
            Some("repo"),
            "option-injection",
        ),
        bad(
            r#"{"name": "a", "repo": "git@-oProxyCommand=calc:r.git"}"#,
            Some("repo"),
            "option-injection",
        ),
        bad(
            r#"{"name": "a", "repo": "https://git.example.com/r.git?x=1"}"#,
            Some("repo"),
            "url-form",
        ),
        // The ref, the engines, the mode.
        bad(
            format!(r#"{{"name": "a", "repo": "{repo}", "ref": "a..b"}}"#),
            Some("ref"),
            "git-ref",
        ),
        bad(
            format!(r#"{{"name": "a", "repo": "{repo}", "ref": "-rf"}}"#),
            Some("ref"),
            "git-ref",
        ),
        bad(
            format!(r#"{{"name": "a", "repo": "{repo}", "engines": ["nope"]}}"#),
            Some("engines"),
            "known-engine",
        ),
        bad(
            format!(r#"{{"name": "a", "repo": "{repo}", "engines": []}}"#),
            Some("engines"),
            "required",
        ),
        bad(
            format!(r#"{{"name": "a", "repo": "{repo}", "engines": ["secrets", "secrets"]}}"#),
            Some("engines"),
            "unique",
        ),
        bad(
            format!(r#"{{"name": "a", "repo": "{repo}", "mode": "deep"}}"#),
            Some("mode"),
            "enum",
        ),
        // Over the body limit.
        (JSON, huge, 413, None, None),
    ]
}

/// Posts `case` to `/jobs` and checks its problem answer.
async fn assert_refused(app: &TestApp, (content_type, body, status, field, rule): &Case) {
    let mut request = app
        .http
        .post(format!("{}/jobs", app.base))
        .body(body.clone());
    if let Some(ct) = content_type {
        request = request.header("content-type", *ct);
    }
    let response = request.send().await.unwrap();
    let shown: String = body.chars().take(80).collect();
    assert_eq!(response.status().as_u16(), *status, "{shown}");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{shown}"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["status"], *status, "{shown}");
    assert!(
        problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{shown}"
    );
    assert!(
        !problem.to_string().contains("hunter2"),
        "a credential was echoed"
    );
    if let Some(field) = field {
        assert_eq!(problem["field"], *field, "{shown}: {problem}");
    }
    if let Some(rule) = rule {
        assert_eq!(problem["rule"], *rule, "{shown}: {problem}");
    }
}

/// Posts one good request first, so the topics hold something the rejections must not add to;
/// answers the high watermarks of scans.commands and scans.events after it.
async fn one_good_request(app: &TestApp) -> (i64, i64) {
    let ok = app
        .post(r#"{"name": "ok", "repo": "https://git.example.com/ok.git"}"#)
        .await;
    assert_eq!(ok.status().as_u16(), 202);
    settled(app).await
}

/// The high watermarks of scans.commands and scans.events once they stopped moving.
async fn settled(app: &TestApp) -> (i64, i64) {
    (
        app.settled_watermark(Topic::Commands).await,
        app.settled_watermark(Topic::Events).await,
    )
}

/// Nothing was written since [`one_good_request`] answered `before`.
fn assert_nothing_written(app: &TestApp, (commands_before, events_before): (i64, i64)) {
    assert_eq!(
        app.reader.watermark(Topic::Commands),
        commands_before,
        "a rejected request wrote a command"
    );
    assert_eq!(
        app.reader.watermark(Topic::Events),
        events_before,
        "a rejected request wrote an event"
    );
}

#[tokio::test]
async fn bad_requests_get_problem_bodies_and_write_nothing() {
    let app = spawn_app("bad", "").await;
    let before = one_good_request(&app).await;
    let cases = cases();
    assert!(cases.len() >= 25);
    for case in &cases {
        assert_refused(&app, case).await;
    }
    assert_nothing_written(&app, before);
    app.shutdown().await;
}

#[tokio::test]
async fn other_routes_refuse_bad_input_and_write_nothing() {
    let app = spawn_app("bad-routes", "").await;
    let before = one_good_request(&app).await;
    let bad_key = app
        .http
        .post(format!("{}/jobs", app.base))
        .header("content-type", "application/json")
        .header("idempotency-key", "has space")
        .body(r#"{"name": "a", "repo": "https://git.example.com/r.git"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status().as_u16(), 400);
    let bad_uuid = app
        .http
        .delete(format!("{}/jobs/not-a-uuid", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_uuid.status().as_u16(), 400);
    let unknown = app.get("/nope").await;
    assert_eq!(unknown.status().as_u16(), 404);
    let wrong_method = app
        .http
        .put(format!("{}/jobs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status().as_u16(), 405);
    // The methods the path has, as RFC 9110 requires of a 405.
    assert_eq!(
        wrong_method
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let schedule = app
        .http
        .post(format!("{}/jobs/schedule/nightly", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(schedule.status().as_u16(), 405);
    assert_eq!(
        schedule
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("DELETE, GET, PATCH, PUT")
    );
    // A path that a parameter pattern would also take (`/jobs/{uuid}`) has its own methods.
    let options = app
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/jobs/schedule", app.base),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(options.status().as_u16(), 405);
    assert_eq!(
        options.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, POST")
    );
    // DELETE /jobs/{uuid} does not take a sibling's literal path as a job id.
    let delete = app
        .http
        .delete(format!("{}/jobs/schedule", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status().as_u16(), 405);
    assert_eq!(
        delete.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, POST")
    );
    assert_nothing_written(&app, before);
    app.shutdown().await;
}

/// `file://` repositories are checked where they really are (issue 17, item 8): a link under
/// `ingest.file_roots` that leads outside is refused, and so is a path that does not exist; a
/// link that stays under the root is accepted, as the repository it leads to.
#[cfg(unix)]
#[tokio::test]
async fn local_repositories_are_checked_where_they_really_are() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let root = base.join("repos");
    std::fs::create_dir_all(root.join("inside")).unwrap();
    std::fs::create_dir_all(base.join("outside")).unwrap();
    std::os::unix::fs::symlink(base.join("outside"), root.join("escape")).unwrap();
    std::os::unix::fs::symlink(root.join("inside"), root.join("alias")).unwrap();
    let app = spawn_app(
        "bad-local",
        &format!("[ingest]\nfile_roots = [\"{}\"]\n", root.display()),
    )
    .await;
    let repo = |path: &Path| {
        format!(
            r#"{{"name": "local", "repo": "file://{}"}}"#,
            path.display()
        )
    };

    let accepted = app.post(&repo(&root.join("alias"))).await;
    assert_eq!(accepted.status().as_u16(), 202);
    let before = settled(&app).await;
    let keys: Vec<String> = app
        .reader
        .read_all(Topic::Commands)
        .iter()
        .filter_map(|m| m.key().map(|k| String::from_utf8_lossy(k).into_owned()))
        .collect();
    assert_eq!(
        keys,
        vec![format!("file://{}", root.join("inside").display())],
        "a link under the root is keyed as the repository it leads to"
    );

    let cases = [
        bad(repo(&root.join("escape")), Some("repo"), "file-root"),
        bad(repo(&root.join("escape/sub")), Some("repo"), "file-root"),
        bad(repo(&root.join("missing")), Some("repo"), "file-not-found"),
    ];
    for case in &cases {
        assert_refused(&app, case).await;
    }
    assert_nothing_written(&app, before);
    app.shutdown().await;
}

/// An authenticated client that trickles its body slower than `ingest.body_read_timeout_ms` gets
/// `408` within the bound and a margin, and nothing is written (issue 17, item 12).
#[tokio::test]
async fn slow_bodies_are_timed_out_and_write_nothing() {
    let bound = Duration::from_millis(1000);
    let margin = Duration::from_secs(4);
    let toml = format!(
        "[api]\nauth_enabled = true\n[[api.tokens]]\nname = \"slow\"\nsha256 = \"{}\"\nscopes = [\"scans:write\"]\n[ingest]\nbody_read_timeout_ms = {}\n",
        hash_token("slow-token"),
        bound.as_millis()
    );
    let app = spawn_app("bad-slow-body", &toml).await;
    let body = r#"{"name": "slow", "repo": "https://git.example.com/slow.git"}"#;
    let ok = app
        .http
        .post(format!("{}/jobs", app.base))
        .header("content-type", "application/json")
        .header("authorization", "Bearer slow-token")
        .body(r#"{"name": "fast", "repo": "https://git.example.com/fast.git"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 202);
    let before = settled(&app).await;

    let address = app.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /jobs HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer slow-token\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let started = Instant::now();
    write.write_all(head.as_bytes()).await.unwrap();
    // One byte every 250 ms: the whole body would take about 15 s.
    let trickle = tokio::spawn(async move {
        for byte in body.bytes() {
            if write.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        write
    });

    let answer = read_answer(&mut read, started + bound + margin).await;
    let elapsed = started.elapsed();
    trickle.abort();
    let answer = answer.unwrap_or_else(|| {
        panic!(
            "no answer within {} ms of a slow body",
            (bound + margin).as_millis()
        )
    });
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {elapsed:?}: {answer}"
    );
    assert!(answer.contains("/problems/request-timeout"), "{answer}");
    assert!(elapsed >= bound - Duration::from_millis(100), "{elapsed:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_nothing_written(&app, before);
    app.shutdown().await;
}

/// An HTTP/1.1 answer read from `read`: until its body (by `Content-Length`) is complete or the
/// server closes; `None` when `until` passes first.
async fn read_answer(read: &mut tokio::net::tcp::OwnedReadHalf, until: Instant) -> Option<String> {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = until.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, read.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
        }
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())
                    .flatten()
            });
            if length.is_some_and(|length| rest.len() >= length) {
                break;
            }
        }
    }
    Some(String::from_utf8_lossy(&answer).into_owned())
}
