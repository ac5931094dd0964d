//! Command engines next to the built-in one, in a `scanstream scanner` on the real broker: one
//! scan with `secrets`, gitleaks and semgrep (the real programs, installed by `tools/engines`),
//! an engine that exits non-zero and one that runs past its timeout.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::Message;
use scanstream_contracts::command::Command as Cmd;
use scanstream_contracts::event::{EngineCompleted, EngineOutcome, EventPayload, ScanEvent};
use scanstream_contracts::finding::Finding;
use scanstream_contracts::{RunId, Topic};

use crate::harness::{Harness, ended, request};
use crate::support;

/// Fake, but shaped as the real ones: found by the built-in rules and by gitleaks.
const AWS_KEY: &str = "AKIAQ7RZ4MWXK2PLZTJH";
const PASSWORD: &str = "hunter2hunter2hunter2";

const SEMGREP_RULES: &str = r#"rules:
  - id: hardcoded-password-assignment
    languages: [python]
    severity: ERROR
    message: A password is assigned a literal
    patterns:
      - pattern: $VAR = "..."
      - metavariable-regex:
          metavariable: $VAR
          regex: (?i).*passw(or)?d.*
"#;

fn engine_events(events: &[ScanEvent], run: RunId) -> HashMap<String, EngineCompleted> {
    events
        .iter()
        .filter(|e| e.run_id == run)
        .filter_map(|e| match &e.payload {
            EventPayload::EngineCompleted(c) => Some((c.engine.clone(), c.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_gitleaks_and_semgrep_report_one_deduplicated_redacted_set_of_findings() {
    let engines = scanstream_testcontainers::engines::installed().expect("gitleaks and semgrep");
    let h = Harness::new("scanner-engines").await;
    let repo = h.repos().join("service");
    std::fs::create_dir_all(repo.join("deploy")).unwrap();
    std::fs::write(
        repo.join("deploy/aws.ini"),
        format!("[default]\naws_access_key_id = {AWS_KEY}\nregion = eu-west-1\n"),
    )
    .unwrap();
    std::fs::write(
        repo.join("app.py"),
        format!(
            "import os\n\ndef connect():\n    password = \"{PASSWORD}\"\n    return password\n"
        ),
    )
    .unwrap();
    support::git(&repo, &["init", "-q", "-b", "main"], None);
    support::git(&repo, &["add", "-A"], None);
    support::git(&repo, &["commit", "-q", "-m", "service"], None);
    let rules = h.cache().with_file_name("semgrep-rules.yaml");
    std::fs::write(&rules, SEMGREP_RULES).unwrap();
    let path_of =
        |exe: &std::path::Path| format!("{}:/usr/bin:/bin", exe.parent().unwrap().display());
    let config = h.config(
        "",
        &format!(
            "[engines.gitleaks]\npreset = \"gitleaks\"\nenv = {{ PATH = \"{}\" }}\n\
             [engines.semgrep]\npreset = \"semgrep\"\nconfig = \"{}\"\nenv = {{ PATH = \"{}\" }}\n\
             [engines.broken]\ncommand = [\"sh\", \"-c\", \"echo 'aws_access_key_id = {AWS_KEY}' >&2; echo giving up >&2; exit 3\", \"{{worktree}}\"]\n\
             [engines.slow]\ncommand = [\"sh\", \"-c\", \"sleep 60\", \"{{worktree}}\"]\ntimeout_seconds = 1\n\
             [engines.mandatory]\ncommand = [\"sh\", \"-c\", \"exit 4\", \"{{worktree}}\"]\nrequired = true\n",
            path_of(&engines.gitleaks),
            rules.display(),
            path_of(&engines.semgrep),
        ),
    );
    let url = format!("file://{}", repo.display());
    let mut first = request("engines", &url, None, None);
    first.engines = ["secrets", "gitleaks", "semgrep", "broken", "slow"]
        .map(String::from)
        .to_vec();
    let mut second = first.clone();
    second.run_id = RunId::derived(first.job_id, "2");
    // A required engine that fails fails its attempt.
    let mut required = request("engines-required", &url, None, None);
    required.engines = vec!["secrets".into(), "mandatory".into()];
    let mut scanner = h.spawn(&config, "scanner");
    h.send(&url, Cmd::RequestScan(first.clone())).await;
    h.events_until(|e| ended(e, first.job_id), Duration::from_secs(120))
        .await;
    // The same tree again: the command engines' results come from the cache.
    h.send(&url, Cmd::RequestScan(second.clone())).await;
    h.send(&url, Cmd::RequestScan(required.clone())).await;
    let (events, raw_events) = h
        .events_until(
            |e| {
                ended(e, required.job_id)
                    && e.iter().any(|e| {
                        e.run_id == second.run_id
                            && matches!(e.payload, EventPayload::ScanSucceeded(_))
                    })
            },
            Duration::from_secs(120),
        )
        .await;
    let _ = scanner.kill();
    let _ = scanner.wait();

    // Failing engines are reported as such; the run completes with the others' findings.
    assert!(
        events.iter().any(
            |e| e.run_id == first.run_id && matches!(e.payload, EventPayload::ScanSucceeded(_))
        ),
        "{events:#?}"
    );
    let completed = engine_events(&events, first.run_id);
    assert_eq!(completed.len(), 5, "{completed:#?}");
    for id in ["secrets", "gitleaks", "semgrep"] {
        let c = &completed[id];
        assert_eq!(c.outcome, EngineOutcome::Completed, "{c:?}");
        assert!(c.error.is_none() && !c.cached, "{c:?}");
        assert!(c.findings >= 1, "{c:?}");
    }
    assert!(
        completed["secrets"]
            .version
            .as_deref()
            .is_some_and(|v| v.starts_with("rules-"))
    );
    assert_eq!(completed["gitleaks"].version.as_deref(), Some("8.30.1"));
    assert_eq!(completed["semgrep"].version.as_deref(), Some("1.185.0"));
    let broken = &completed["broken"];
    assert_eq!(broken.outcome, EngineOutcome::Failed, "{broken:?}");
    assert!(
        broken.error.as_deref().unwrap_or("").contains("status 3"),
        "{broken:?}"
    );
    let slow = &completed["slow"];
    assert_eq!(slow.outcome, EngineOutcome::TimedOut, "{slow:?}");
    assert!(slow.duration_ms < 10_000, "{slow:?}");
    let again = engine_events(&events, second.run_id);
    assert!(
        again["gitleaks"].cached && again["semgrep"].cached,
        "{again:#?}"
    );
    assert!(!again["secrets"].cached);

    let failed: Vec<&ScanEvent> = events
        .iter()
        .filter(|e| e.job_id == required.job_id)
        .collect();
    assert!(
        failed
            .iter()
            .any(|e| matches!(&e.payload, EventPayload::ScanFailed(f)
            if f.error_kind == "engine" && !f.retryable && f.reason.contains("mandatory"))),
        "{failed:#?}"
    );
    assert_eq!(
        engine_events(&events, required.run_id)["mandatory"].outcome,
        EngineOutcome::Failed
    );

    // One finding per secret and place, naming every engine that found it.
    let raw_findings = h
        .read(Topic::Findings, |_| false, Duration::from_secs(3))
        .await;
    let mut findings: Vec<Finding> = Vec::new();
    for m in &raw_findings {
        let finding: Finding = h
            .codec
            .decode(m.payload().unwrap_or_default())
            .await
            .unwrap();
        assert_ne!(
            finding.job_id, required.job_id,
            "a failed attempt wrote findings"
        );
        if finding.run_id == first.run_id {
            findings.push(finding);
        }
    }
    let at = |path: &str| -> Vec<&Finding> { findings.iter().filter(|f| f.path == path).collect() };
    let aws = at("deploy/aws.ini");
    assert_eq!(aws.len(), 1, "{aws:#?}");
    assert_eq!((aws[0].engine.as_str(), aws[0].line), ("secrets", 2));
    assert_eq!(aws[0].engines, ["secrets", "gitleaks"], "{aws:#?}");
    let semgrep: Vec<&Finding> = findings.iter().filter(|f| f.engine == "semgrep").collect();
    assert!(
        semgrep.iter().any(|f| f.path == "app.py"
            && f.line == 4
            && f.rule_id.starts_with("semgrep/")
            && f.rule_id.ends_with("hardcoded-password-assignment")),
        "{findings:#?}"
    );
    for f in &findings {
        assert!(
            f.rule_id.starts_with(&format!("{}/", f.engine)) || f.engine == "secrets",
            "{f:?}"
        );
    }

    // No secret in any record, nor in the failed engine's kept log.
    for m in raw_findings.iter().chain(&raw_events) {
        let bytes = m.payload().unwrap_or_default();
        for secret in [AWS_KEY, PASSWORD] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a record holds a secret"
            );
        }
    }
    let logs = h.cache().join("engine-logs").join(first.job_id.to_string());
    let kept: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(kept.iter().any(|l| l.contains("giving up")), "{kept:?}");
    assert!(kept.iter().all(|l| !l.contains(AWS_KEY)), "{kept:?}");
    // The worktrees are gone.
    let left: Vec<_> = std::fs::read_dir(h.cache().join("worktrees"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
