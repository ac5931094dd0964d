//! `scanstream scan` as CI steps and commit hooks use it: standard input and single files, the
//! JSON-lines and CSV formats, `--staged`, baselines, `--exit-code`, SARIF checked against the
//! OASIS SARIF 2.1.0 schema with what code scanning reads, and the pre-commit hook run by
//! pre-commit itself. No Kafka.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// Tokens assembled at run time, so this file holds no secret a scan of it would report.
fn github_token() -> String {
    format!("ghp_{}", "Zq8WmR2tYv4LpX6nB0cF3hJ7kD9sA1eG5uTo")
}
fn stripe_key() -> String {
    format!("sk_{}_{}", "live", "9fQ2xLmN4pR7tV1wY3zB6cD8")
}

fn scan(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scanstream"))
        .current_dir(dir)
        .arg("scan")
        .args(args)
        .arg("--no-progress")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running scanstream");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("writing stdin");
    drop(input);
    child.wait_with_output().expect("scanstream ends")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The JSON-lines report on standard output, one value per line.
fn jsonl(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn both(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args([
            "-c",
            "commit.gpgSign=false",
            "-c",
            "core.hooksPath=/dev/null",
        ])
        .args(args)
        .status()
        .expect("running git");
    assert!(status.success(), "git {args:?}");
}

#[test]
fn standard_input_and_single_files_scan_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let env = format!("A=1\nGITHUB_TOKEN={}\n", github_token());
    // Standard input, named for the path-bound rules and the report.
    let out = scan(
        dir.path(),
        &["-", "--stdin-name", "ci/.env", "--format", "jsonl"],
        Some(&env),
    );
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let lines = jsonl(&out);
    assert_eq!(lines.len(), 1, "{}", stdout(&out));
    assert_eq!(lines[0]["rule"], "github-pat");
    assert_eq!(lines[0]["path"], "ci/.env");
    assert_eq!(lines[0]["line"], 2);
    assert!(
        !stdout(&out).contains(&github_token()),
        "the secret is in the report"
    );
    // One file, CSV, and --exit-code 0 reports without failing.
    std::fs::write(dir.path().join("app.env"), &env).unwrap();
    std::fs::write(
        dir.path().join("other.env"),
        format!("K={}\n", stripe_key()),
    )
    .unwrap();
    let out = scan(
        dir.path(),
        &["app.env", "--format", "csv", "--exit-code", "0"],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let mut rows = csv::Reader::from_reader(out.stdout.as_slice());
    let headers = rows.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "rule",
            "severity",
            "path",
            "line",
            "commit",
            "versions",
            "fingerprint",
            "preview",
            "engines"
        ]
    );
    let rows: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "only the file named, not its folder");
    assert_eq!(
        (&rows[0][0], &rows[0][2], &rows[0][3]),
        ("github-pat", "app.env", "2")
    );
    // Nothing found: 0 whatever --exit-code says.
    let out = scan(
        dir.path(),
        &["-", "--exit-code", "7"],
        Some("nothing here\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let out = scan(dir.path(), &["other.env", "--exit-code", "7"], None);
    assert_eq!(out.status.code(), Some(7), "{}", both(&out));
}

/// Standard input of several windows is scanned as it comes, to its end (that it is never held
/// whole, past the size bound too, is `large.rs`'s); standard input that cannot be read is an
/// error.
#[test]
fn long_standard_input_is_scanned_to_its_end_and_unreadable_input_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // Three 8 MiB windows of lines, then a token.
    let mut input = "x".repeat(99).to_owned() + "\n";
    input = input.repeat(3 * (8 << 20) / 100);
    input.push_str(&format!("GITHUB_TOKEN={}\n", github_token()));
    let lines = input.lines().count();
    let out = scan(dir.path(), &["-", "--format", "jsonl"], Some(&input));
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let found = jsonl(&out);
    assert_eq!(found.len(), 1, "{}", stdout(&out));
    assert_eq!(
        (&found[0]["rule"], &found[0]["line"]),
        (&"github-pat".into(), &lines.into())
    );

    // A folder as standard input: reading it fails at once.
    let out = Command::new(env!("CARGO_BIN_EXE_scanstream"))
        .current_dir(dir.path())
        .args(["scan", "-", "--no-progress"])
        .stdin(std::fs::File::open(dir.path()).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(
        both(&out).contains("standard input (stdin) cannot be read"),
        "{}",
        both(&out)
    );
}

#[test]
fn staged_scans_report_what_the_commit_adds_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q"]);
    std::fs::write(
        repo.join("old.env"),
        format!("A=1\nTOKEN={}\n", github_token()),
    )
    .unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "a secret already committed"]);
    // Nothing staged: nothing to report, though the tree holds a secret.
    let out = scan(repo, &["--staged", "."], None);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    // A staged line with a secret in the same file, and a new file; an unstaged change too.
    std::fs::write(
        repo.join("old.env"),
        format!(
            "A=1\nTOKEN={}\nB=2\nSTRIPE={}\n",
            github_token(),
            stripe_key()
        ),
    )
    .unwrap();
    git(repo, &["add", "old.env"]);
    std::fs::write(repo.join("unstaged.env"), format!("S={}\n", stripe_key())).unwrap();
    let out = scan(repo, &["--staged", ".", "--format", "json"], None);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let found: Vec<(String, String, u64)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [("stripe-live-key".to_owned(), "old.env".to_owned(), 4)]
    );
    // --staged is a repository's: elsewhere it is a clear error, exit 2.
    let plain = tempfile::tempdir().unwrap();
    let out = scan(plain.path(), &["--staged", "."], None);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(both(&out).contains("git"), "{}", both(&out));
}

#[test]
fn since_scans_what_the_commits_after_a_ref_add() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q"]);
    std::fs::write(repo.join("old.env"), format!("T={}\n", github_token())).unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "before"]);
    git(repo, &["tag", "v1"]);
    std::fs::write(repo.join("new.env"), format!("S={}\n", stripe_key())).unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "after"]);
    let out = scan(repo, &[".", "--since", "v1", "--format", "jsonl"], None);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let found = jsonl(&out);
    assert_eq!(found.len(), 1, "{}", stdout(&out));
    assert_eq!(found[0]["path"], "new.env");
    assert!(
        found[0]["commit"].as_str().is_some_and(|c| c.len() == 40),
        "{}",
        found[0]
    );
    // Nothing after HEAD; an unknown ref is an error.
    let out = scan(repo, &[".", "--since", "HEAD"], None);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let out = scan(repo, &[".", "--since", "no-such-ref"], None);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
}

#[test]
fn a_baseline_hides_known_findings_and_new_ones_still_fail() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a.env"), format!("T={}\n", github_token())).unwrap();
    let baseline = dir.path().join("baseline.json");
    let out = scan(
        &tree,
        &[".", "--write-baseline", baseline.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let out = scan(
        &tree,
        &[".", "--baseline", baseline.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert!(
        both(&out).contains("1 finding(s) of the baseline"),
        "{}",
        both(&out)
    );
    // The same secret at another path is new, and so is another secret.
    std::fs::write(tree.join("b.env"), format!("T={}\n", github_token())).unwrap();
    let out = scan(
        &tree,
        &[
            ".",
            "--baseline",
            baseline.to_str().unwrap(),
            "--format",
            "jsonl",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let paths: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(paths, ["b.env"]);
    // A baseline that is not a JSON report is refused, exit 2.
    std::fs::write(&baseline, "not json").unwrap();
    let out = scan(
        &tree,
        &[".", "--baseline", baseline.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(both(&out).contains("not a JSON report"), "{}", both(&out));
}

/// The OASIS SARIF 2.1.0 schema (errata 01), the scanner tests' fixture.
fn sarif_schema() -> Value {
    serde_json::from_str(include_str!(
        "../../services/scanner/tests/fixtures/sarif-schema-2.1.0.json"
    ))
    .unwrap()
}

#[test]
fn sarif_reports_are_valid_sarif_with_what_code_scanning_reads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.env"), format!("T={}\n", github_token())).unwrap();
    // A file not scanned: a notification.
    std::fs::write(dir.path().join("image.bin"), b"\x00\x01binary").unwrap();
    let out = scan(dir.path(), &[".", "--format", "sarif"], None);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let log: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let schema = sarif_schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&log)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let run = &log["runs"][0];
    assert_eq!(run["automationDetails"]["id"], "scanstream/");
    assert_eq!(run["invocations"][0]["executionSuccessful"], true);
    let notes = run["invocations"][0]["toolExecutionNotifications"]
        .as_array()
        .unwrap();
    assert!(
        notes.iter().any(
            |n| n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "image.bin"
        ),
        "{notes:#?}"
    );
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.len() > 200);
    // GitHub's limits: 25,000 rules, 20 tags a rule, 1,024 characters of description.
    assert!(rules.len() <= 25_000);
    for rule in rules {
        let severity: f64 = rule["properties"]["security-severity"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.1..=10.0).contains(&severity), "{rule}");
        assert!(!rule["help"]["text"].as_str().unwrap().is_empty(), "{rule}");
        assert!(rule["properties"]["tags"].as_array().unwrap().len() <= 20);
        assert!(rule["shortDescription"]["text"].as_str().unwrap().len() <= 1024);
    }
    let result = &run["results"][0];
    assert_eq!(result["ruleId"], "github-pat");
    let rule = &rules[result["ruleIndex"].as_u64().unwrap() as usize];
    assert_eq!(rule["id"], "github-pat");
    assert_eq!(rule["properties"]["security-severity"], "9.5");
}

#[test]
fn the_pre_commit_hook_blocks_a_commit_that_adds_a_secret() {
    let python = std::env::var("SCANSTREAM_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let pre_commit = Path::new(&python).with_file_name("pre-commit");
    assert!(
        pre_commit.is_file(),
        "no {} (scripts/test installs pre-commit into the venv of SCANSTREAM_PYTHON)",
        pre_commit.display()
    );
    // The hooks file of this checkout, as a hook repository.
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_scanstream"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let home = tempfile::tempdir().unwrap();
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q"]);
    let try_repo = |expect: i32| {
        let out = Command::new(&pre_commit)
            .current_dir(repo.path())
            .args(["try-repo", hooks.to_str().unwrap(), "scanstream"])
            .env("PATH", &path)
            .env("PRE_COMMIT_HOME", home.path())
            .env("GIT_CONFIG_COUNT", "2")
            .env("GIT_CONFIG_KEY_0", "user.name")
            .env("GIT_CONFIG_VALUE_0", "test")
            .env("GIT_CONFIG_KEY_1", "user.email")
            .env("GIT_CONFIG_VALUE_1", "test@example.invalid")
            .output()
            .expect("running pre-commit");
        assert_eq!(out.status.code(), Some(expect), "{}", both(&out));
        both(&out)
    };
    std::fs::write(repo.path().join("README.md"), "hello\n").unwrap();
    git(repo.path(), &["add", "README.md"]);
    let clean = try_repo(0);
    assert!(clean.contains("Passed"), "{clean}");
    std::fs::write(repo.path().join(".env"), format!("T={}\n", github_token())).unwrap();
    git(repo.path(), &["add", ".env"]);
    let blocked = try_repo(1);
    assert!(
        blocked.contains("Failed") && blocked.contains("github-pat"),
        "{blocked}"
    );
    assert!(
        !blocked.contains(&github_token()),
        "the secret is in the hook's output"
    );
}
