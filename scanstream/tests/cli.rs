//! The built `scanstream` binary against the real broker and registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use scanstream_testcontainers::TestScope;

fn scanstream(scope: &TestScope, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scanstream"))
        .args([
            "--bootstrap-servers",
            &scope.endpoints.bootstrap_servers,
            "--registry-url",
            &scope.endpoints.registry_url,
            "--topic-prefix",
            &scope.topic_prefix,
        ])
        .args(args)
        .env("SCANSTREAM__TOPICS__REPLICATION_FACTOR", "1")
        .env("SCANSTREAM__TOPICS__PARTITIONS", "2")
        .output()
        .expect("running scanstream")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn topics_ensure_twice_creates_then_changes_nothing() {
    let scope = TestScope::new("cli-ensure");
    let first = scanstream(&scope, &["topics", "ensure"]);
    assert!(first.status.success(), "{}", text(&first));
    let first_out = String::from_utf8_lossy(&first.stdout);
    assert_eq!(
        first_out.matches("created ").count(),
        scanstream_contracts::Topic::ALL.len(),
        "{first_out}"
    );
    assert_eq!(
        first_out.matches("BACKWARD").count(),
        scanstream_contracts::schema::SchemaFile::ALL.len(),
        "{first_out}"
    );

    let second = scanstream(&scope, &["topics", "ensure"]);
    assert!(second.status.success(), "{}", text(&second));
    let second_out = String::from_utf8_lossy(&second.stdout);
    assert_eq!(second_out.matches("created ").count(), 0, "{second_out}");
    assert_eq!(
        second_out.matches("unchanged ").count(),
        scanstream_contracts::Topic::ALL.len(),
        "{second_out}"
    );
    // Same schema ids both times: nothing new registered.
    let ids = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.starts_with("schema"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(ids(&first_out), ids(&second_out));
}

#[tokio::test]
async fn topics_ensure_fails_on_drift_unless_allowed() {
    let scope = TestScope::new("cli-drift");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &scope.endpoints.bootstrap_servers)
        .create()
        .unwrap();
    let name = format!("{}scans.findings", scope.topic_prefix);
    let topic = NewTopic::new(&name, 5, TopicReplication::Fixed(1));
    let created = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap();
    assert!(created[0].is_ok(), "{created:?}");

    let strict = scanstream(&scope, &["topics", "ensure"]);
    assert_eq!(strict.status.code(), Some(3), "{}", text(&strict));
    let out = text(&strict);
    assert!(
        out.contains(&format!(
            "DRIFT     {name}: partitions is 5 but scanstream expects 2"
        )),
        "{out}"
    );
    assert!(out.contains("--allow-drift"), "{out}");

    let lenient = scanstream(&scope, &["topics", "ensure", "--allow-drift"]);
    assert!(lenient.status.success(), "{}", text(&lenient));
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_scanstream"))
        .args(["topics", "ensure"])
        .env("SCANSTREAM__TOPICS__PARTITIONS", "zero")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("partitions"), "{err}");
}

#[path = "../../services/scanner/tests/support/mod.rs"]
mod support;

/// `scanstream scan` needs no Kafka: exit 0 for a clean folder, 1 with findings, 2 when it
/// cannot scan.
#[test]
fn scan_exit_codes_tell_clean_from_findings_from_errors() {
    let samples = support::samples();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "nothing secret here\n").unwrap();
    let scan = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_scanstream"))
            .arg("scan")
            .args(args)
            .output()
            .unwrap()
    };
    let target = dir.path().display().to_string();
    assert_eq!(scan(&[&target]).status.code(), Some(0));

    let sample = &samples.positive[0];
    std::fs::write(dir.path().join("app.cfg"), sample.text.concat()).unwrap();
    let found = scan(&[&target, "--format", "json"]);
    assert_eq!(found.status.code(), Some(1), "{}", text(&found));
    let report: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(report["summary"]["findings"], 1);
    assert!(!text(&found).contains(&sample.secret.concat()));

    // The configured ignore file applies to folders as it does to repositories.
    let fingerprint = report["findings"][0]["fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ignore = dir.path().join("ignored.txt");
    std::fs::write(&ignore, format!("{fingerprint}\n")).unwrap();
    let config = dir.path().join("scanstream.toml");
    std::fs::write(
        &config,
        format!("[scanner]\nignore_file = \"{}\"\n", ignore.display()),
    )
    .unwrap();
    let quiet = scan(&[&target, "--config", &config.display().to_string()]);
    assert_eq!(quiet.status.code(), Some(0), "{}", text(&quiet));

    let missing = scan(&["/no/such/folder"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("does not exist"));
}

/// A folder's own `.gitleaks.toml` and `.gitleaksignore` count as gitleaks counts them, unless
/// `--no-repo-config`.
#[test]
fn scan_honours_a_folders_gitleaks_files() {
    let dir = tempfile::tempdir().unwrap();
    let scan = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_scanstream"))
            .arg("scan")
            .args(args)
            .args(["--format", "json"])
            .output()
            .unwrap();
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
        let mut found: Vec<(String, String)> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().unwrap().to_owned(),
                    f["rule"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        found.sort();
        found
    };
    std::fs::write(
        dir.path().join(".gitleaks.toml"),
        "[extend]\nuseDefault = true\n[[rules]]\nid = \"team-token\"\n\
         regex = '''tmt_([a-z0-9]{30})'''\nkeywords = [\"tmt_\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.txt"),
        "team = tmt_q8z2m4x7c1v9b3n6k0j5h2g8p4r7s1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.txt"),
        "known = tmt_z9y8x7w6v5u4t3s2r1q0p9o8n7m6l5\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".gitleaksignore"), "b.txt:team-token:1\n").unwrap();
    let target = dir.path().display().to_string();
    assert_eq!(
        scan(&[&target]),
        vec![("a.txt".to_owned(), "team-token".to_owned())]
    );
    assert!(scan(&[&target, "--no-repo-config"]).is_empty());
}
