//! Scans of real git repositories built in temporary folders: secrets in the tree, only in old
//! history, on another branch, in allowlisted places, silenced inline or by the ignore file, and
//! placeholders that must not match. Every assertion names the exact findings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use scanstream_contracts::command::ScanMode;
use scanstream_scanner::dir::DirSource;
use scanstream_scanner::engine::{Engine, Hit, RuleInfo, Window, WindowScan};
use scanstream_scanner::report::Report;
use scanstream_scanner::rules::RulePack;
use scanstream_scanner::runner::{EngineRun, Progress, SkipReason};
use scanstream_scanner::scan::Scanning;
use scanstream_scanner::secrets::{DEFAULT_FINGERPRINT_KEY, SecretsEngine};

mod support;

use support::{sample, samples};

fn git(dir: &Path, args: &[&str], date: &str) -> String {
    support::git(dir, args, Some(date))
}

fn write(dir: &Path, path: &str, text: &str) {
    let file = dir.join(path);
    std::fs::create_dir_all(file.parent().unwrap_or(dir)).unwrap();
    std::fs::write(file, text).unwrap();
}

fn commit(dir: &Path, message: &str, date: &str) -> String {
    git(dir, &["add", "-A"], date);
    git(dir, &["commit", "-q", "-m", message], date);
    git(dir, &["rev-parse", "HEAD"], date)
}

fn engine() -> SecretsEngine {
    SecretsEngine::new(
        RulePack::builtin().unwrap(),
        DEFAULT_FINGERPRINT_KEY.as_bytes(),
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    first: String,
    second: String,
    feature: String,
    secrets: Vec<String>,
    /// The AWS key sits after two lines of its own.
    aws_line: u32,
}

/// main: c1 plants a token in src/config.py and an AWS key in old/creds.txt; c2 deletes the AWS
/// key, copies config.py, and adds allowlisted, silenced, ignored and placeholder content.
/// feature (from c2): c3 plants a SendGrid key.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let d1 = "2024-01-01T00:00:00Z";
    git(&repo, &["init", "-q", "-b", "main"], d1);
    let (pat, pat_secret) = sample("github-pat");
    let (aws, aws_secret) = sample("aws-access-key-id");
    write(&repo, "src/config.py", &format!("# settings\n{pat}"));
    write(&repo, "old/creds.txt", &format!("one\ntwo\n{aws}"));
    write(&repo, "README.md", "nothing to see\n");
    let first = commit(&repo, "c1", d1);

    let d2 = "2024-02-01T00:00:00Z";
    std::fs::remove_file(repo.join("old/creds.txt")).unwrap();
    write(&repo, "src/copy.py", &format!("# settings\n{pat}"));
    let (hook, hook_secret) = sample("slack-webhook-url");
    write(&repo, "web/node_modules/pkg/index.js", &hook);
    let (stripe, stripe_secret) = sample("stripe-live-key");
    write(
        &repo,
        "docs/example.md",
        &format!("{} # scanstream:allow\n", stripe.trim_end()),
    );
    let (pem, pem_secret) = sample("private-key");
    write(&repo, "tests/fixture.pem", &pem);
    let fingerprint = engine().fingerprint("private-key", pem_secret.as_bytes());
    write(
        &repo,
        ".scanstreamignore",
        &format!("# test key\n{fingerprint}\n"),
    );
    // Negative samples that hold at any path; those tied to a path (a source file, a test
    // folder) are negatives only there.
    let placeholders: String = samples()
        .negative
        .iter()
        .filter(|n| n.path == "sample.txt")
        .map(|n| format!("{}\n", n.text.concat()))
        .collect();
    write(&repo, "config/placeholders.env", &placeholders);
    // A key store: reported whole, by its path.
    let store = repo.join("certs/client.p12");
    std::fs::create_dir_all(repo.join("certs")).unwrap();
    std::fs::write(&store, b"0\x82\x00\x01 not really PKCS#12 \x00\xff").unwrap();
    let second = commit(&repo, "c2", d2);

    let d3 = "2024-03-01T00:00:00Z";
    git(&repo, &["checkout", "-q", "-b", "feature"], d3);
    let (grid, grid_secret) = sample("sendgrid-api-key");
    write(&repo, "keys/key.txt", &grid);
    let feature = commit(&repo, "c3", d3);
    git(&repo, &["checkout", "-q", "main"], d3);
    Fixture {
        _dir: dir,
        repo,
        first,
        second,
        feature,
        aws_line: 3 + aws[..aws.find(&aws_secret).unwrap_or(0)]
            .matches('\n')
            .count() as u32,
        secrets: vec![
            pat_secret,
            aws_secret,
            hook_secret,
            stripe_secret,
            pem_secret,
            grid_secret,
        ],
    }
}

fn scanning(cache: Option<&Path>) -> Scanning {
    Scanning::new(
        vec![Arc::new(engine())],
        cache,
        Default::default(),
        HashSet::new(),
        vec![],
    )
}

fn scan(scanning: &Scanning, repo: &Path, git_ref: Option<&str>, mode: ScanMode) -> EngineRun {
    let resolved = scanning.resolve(repo, git_ref, mode).unwrap();
    let mut runs = scanning
        .scan(
            &resolved,
            &["secrets".to_owned()],
            mode,
            "file:///fixture",
            git_ref,
            &Progress::default(),
            &AtomicBool::new(false),
        )
        .unwrap();
    assert_eq!(runs.len(), 1);
    runs.remove(0)
}

/// (rule, path, line, commit) of every finding: [`placed`] without version counts.
fn found(run: &EngineRun) -> BTreeSet<(String, String, u32, Option<String>)> {
    placed(run)
        .into_iter()
        .map(|(rule, path, line, commit, _)| (rule, path, line, commit))
        .collect()
}

fn set(items: &[(&str, &str, u32, &str)]) -> BTreeSet<(String, String, u32, Option<String>)> {
    items
        .iter()
        .map(|(r, p, l, c)| ((*r).into(), (*p).into(), *l, Some((*c).into())))
        .collect()
}

/// The findings of the fixture's whole history: every branch, each blob at its first commit.
fn whole_history(f: &Fixture) -> BTreeSet<(String, String, u32, Option<String>)> {
    set(&[
        ("github-pat", "src/config.py", 2, &f.first),
        ("aws-access-key-id", "old/creds.txt", f.aws_line, &f.first),
        ("pkcs12-file", "certs/client.p12", 1, &f.second),
        ("sendgrid-api-key", "keys/key.txt", 1, &f.feature),
    ])
}

#[test]
fn the_tree_at_head_reports_each_path_of_a_secret_and_nothing_allowlisted() {
    let f = fixture();
    let head = git(&f.repo, &["rev-parse", "main"], "2024-04-01T00:00:00Z");
    let run = scan(&scanning(None), &f.repo, None, ScanMode::Tree);
    assert_eq!(
        found(&run),
        set(&[
            ("github-pat", "src/config.py", 2, &head),
            ("github-pat", "src/copy.py", 2, &head),
            ("pkcs12-file", "certs/client.p12", 1, &head),
        ])
    );
    let on_branch = scan(&scanning(None), &f.repo, Some("feature"), ScanMode::Tree);
    assert!(found(&on_branch).contains(&(
        "sendgrid-api-key".into(),
        "keys/key.txt".into(),
        1,
        Some(f.feature.clone())
    )));
    assert!(matches!(
        scanning(None).resolve(&f.repo, Some("no-such-branch"), ScanMode::Tree),
        Err(scanstream_scanner::Error::RefNotFound(_))
    ));
}

/// Refs as people type them: abbreviated commit ids and revisions, besides names and full ids.
#[test]
fn refs_resolve_as_git_reads_them() {
    let f = fixture();
    let resolved = |spec: &str| {
        scanning(None)
            .resolve(&f.repo, Some(spec), ScanMode::Tree)
            .map(|r| r.commit())
    };
    for (spec, commit) in [
        ("main", &f.second),
        ("feature", &f.feature),
        (f.first.as_str(), &f.first),
        (&f.second[..7], &f.second),
        ("main~1", &f.first),
        ("feature^", &f.second),
        ("refs/heads/main^{commit}", &f.second),
    ] {
        assert_eq!(resolved(spec).unwrap(), Some(commit.clone()), "{spec}");
    }
    for missing in ["no-such-branch", "main~5", "0000000"] {
        assert!(
            matches!(resolved(missing), Err(scanstream_scanner::Error::RefNotFound(ref s)) if s == missing),
            "{missing}"
        );
    }
}

#[test]
fn history_scans_each_blob_once_at_the_commit_that_introduced_it() {
    let f = fixture();
    let run = scan(&scanning(None), &f.repo, None, ScanMode::History);
    assert_eq!(found(&run), whole_history(&f));
    let main_only = scan(&scanning(None), &f.repo, Some("main"), ScanMode::History);
    assert_eq!(
        found(&main_only),
        set(&[
            ("github-pat", "src/config.py", 2, &f.first),
            ("aws-access-key-id", "old/creds.txt", f.aws_line, &f.first),
            ("pkcs12-file", "certs/client.p12", 1, &f.second),
        ])
    );
}

/// `git init --bare` names `master` in HEAD; a repository pushed only `main` (and `feature`)
/// then has a HEAD that names nothing. That is not an empty repository: a tree scan says what
/// to name instead, and a history scan reads every branch and tag as it would otherwise.
#[test]
fn a_head_naming_a_missing_branch_is_refused_for_the_tree_and_not_needed_for_the_history() {
    let f = fixture();
    git(
        &f.repo,
        &["symbolic-ref", "HEAD", "refs/heads/master"],
        "2024-04-01T00:00:00Z",
    );
    let error = match scanning(None).resolve(&f.repo, None, ScanMode::Tree) {
        Err(error) => error,
        Ok(resolved) => panic!("resolved at {:?}", resolved.commit()),
    };
    assert!(
        matches!(&error, scanstream_scanner::Error::HeadUnborn { head, refs }
            if head == "refs/heads/master" && refs == "feature, main"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("refs/heads/master") && message.contains("feature, main"));
    assert!(matches!(
        scanning(None).resolve(&f.repo, None, ScanMode::Incremental),
        Err(scanstream_scanner::Error::HeadUnborn { .. })
    ));
    let resolved = scanning(None)
        .resolve(&f.repo, None, ScanMode::History)
        .unwrap();
    // The newest tip stands for the scan: the feature branch's commit is the newest.
    assert_eq!(resolved.commit(), Some(f.feature.clone()));
    let run = scan(&scanning(None), &f.repo, None, ScanMode::History);
    assert_eq!(found(&run), whole_history(&f));
}

/// A CI checkout is often shallow (`--depth 1`): its history starts at the boundary commit,
/// whose parents the repository does not have, and is scanned from there.
#[test]
fn a_shallow_clone_has_its_history_scanned_from_the_boundary() {
    let f = fixture();
    let clone = f.repo.with_file_name("shallow");
    let url = format!("file://{}", f.repo.display());
    let date = "2024-04-01T00:00:00Z";
    git(
        f.repo.parent().unwrap(),
        &["clone", "-q", "--depth", "1", &url, clone.to_str().unwrap()],
        date,
    );
    assert_eq!(
        git(&clone, &["rev-parse", "--is-shallow-repository"], date),
        "true"
    );
    let run = scan(&scanning(None), &clone, None, ScanMode::History);
    assert_eq!(
        found(&run),
        // The copy is the same blob: a history reports a blob at its first place.
        set(&[
            ("github-pat", "src/config.py", 2, &f.second),
            ("pkcs12-file", "certs/client.p12", 1, &f.second),
        ])
    );
}

/// A partial clone (`--filter=blob:none`) lacks the blobs of its history: its history scan
/// fails saying so, where it only named a missing object; its tree is all there.
#[test]
fn a_partial_clone_history_scan_says_why_blobs_are_missing() {
    let f = fixture();
    let date = "2024-04-01T00:00:00Z";
    git(&f.repo, &["config", "uploadpack.allowFilter", "true"], date);
    let clone = f.repo.with_file_name("partial");
    let url = format!("file://{}", f.repo.display());
    git(
        f.repo.parent().unwrap(),
        &[
            "clone",
            "-q",
            "--filter=blob:none",
            &url,
            clone.to_str().unwrap(),
        ],
        date,
    );
    let scanning = scanning(None);
    let resolved = scanning.resolve(&clone, None, ScanMode::History).unwrap();
    let failed = scanning.scan(
        &resolved,
        &["secrets".to_owned()],
        ScanMode::History,
        "file:///partial",
        None,
        &Progress::default(),
        &AtomicBool::new(false),
    );
    let message = match failed {
        Err(scanstream_scanner::Error::Git(message)) => message,
        other => panic!("{other:?}"),
    };
    assert!(message.contains("could not be found"), "{message}");
    assert!(message.contains("partial clone"), "{message}");
    let tree = scan(&scanning, &clone, None, ScanMode::Tree);
    assert!(found(&tree).contains(&(
        "github-pat".into(),
        "src/config.py".into(),
        2,
        Some(f.second.clone())
    )));
}

#[test]
fn an_empty_repository_scans_to_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("empty.git");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "--bare"], "2024-01-01T00:00:00Z");
    for mode in [ScanMode::Tree, ScanMode::History, ScanMode::Incremental] {
        let resolved = scanning(None).resolve(&repo, None, mode).unwrap();
        assert_eq!(resolved.commit(), None, "{mode:?}");
        assert!(scan(&scanning(None), &repo, None, mode).found.is_empty());
    }
}

#[test]
fn history_reports_a_secret_kept_through_edits_once_at_the_commit_that_introduced_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"], "2024-01-01T00:00:00Z");
    let (line, _) = sample("github-pat");
    write(&repo, "app/settings.py", &format!("DEBUG = True\n{line}"));
    let introduced = commit(&repo, "add settings", "2024-01-01T00:00:00Z");
    // Three more versions of the file, each keeping the secret; another file with it too.
    for (n, date) in [
        "2024-01-02T00:00:00Z",
        "2024-01-03T00:00:00Z",
        "2024-01-04T00:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        write(
            &repo,
            "app/settings.py",
            &format!("DEBUG = True\nVERSION = {n}\n{line}"),
        );
        commit(&repo, "edit settings", date);
    }
    write(&repo, "app/copy.py", &line);
    let copied = commit(&repo, "copy", "2024-01-05T00:00:00Z");

    let run = scan(&scanning(None), &repo, None, ScanMode::History);
    let shown: Vec<(String, Option<String>, u32)> = run
        .found
        .iter()
        .map(|f| (f.place.path.clone(), f.place.commit.clone(), f.versions))
        .collect();
    assert_eq!(
        shown,
        vec![
            ("app/copy.py".to_owned(), Some(copied), 1),
            ("app/settings.py".to_owned(), Some(introduced), 4),
        ]
    );
    // Reports say how many versions carried it.
    let report = Report {
        target: repo.display().to_string(),
        commit: None,
        runs: vec![run],
        rules: engine().rules(),
    };
    assert!(
        report.human().contains("(in 4 versions)"),
        "{}",
        report.human()
    );
    assert_eq!(report.json()["findings"][1]["versions"], 4);
}

/// Every finding with its place and version count, for comparing whole results.
fn placed(run: &EngineRun) -> Vec<(String, String, u32, Option<String>, u32)> {
    let mut out: Vec<_> = run
        .found
        .iter()
        .map(|f| {
            (
                f.hit.rule.clone(),
                f.place.path.clone(),
                f.hit.line,
                f.place.commit.clone(),
                f.versions,
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_history_rescan_resumes_the_last_walk_and_reports_what_a_full_walk_does() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"], "2024-01-01T00:00:00Z");
    let (token, _) = sample("github-pat");
    let (aws, _) = sample("aws-access-key-id");
    let (slack, _) = sample("slack-webhook-url");
    write(&repo, "a.env", &token);
    write(&repo, "src/lib.rs", "fn main() {}\n");
    commit(&repo, "one", "2024-01-01T00:00:00Z");
    write(&repo, "src/lib.rs", &format!("fn main() {{}}\n{aws}"));
    let kept = commit(&repo, "two", "2024-01-02T00:00:00Z");
    git(&repo, &["rm", "-q", "a.env"], "2024-01-03T00:00:00Z");
    commit(&repo, "three", "2024-01-03T00:00:00Z");
    let resuming = scanning(Some(&cache));
    let full = |label: &str| {
        let run = scan(&scanning(None), &repo, None, ScanMode::History);
        assert!(!run.found.is_empty(), "{label}");
        placed(&run)
    };
    assert_eq!(
        placed(&scan(&resuming, &repo, None, ScanMode::History)),
        full("first")
    );
    // The walk file's inode: a write replaces the file (a new one renamed into place).
    let walk_file = || {
        use std::os::unix::fs::MetadataExt;
        let entries: Vec<_> = cache.join("walks").read_dir().unwrap().collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries[0].as_ref().unwrap().metadata().unwrap().ino()
    };
    let first = walk_file();

    // New commits: the deleted file's blob again at another path (still placed where it first
    // was), an edit keeping the key (one more version), a new secret, and a tagged branch.
    write(&repo, "restored/a.env", &token);
    write(
        &repo,
        "src/lib.rs",
        &format!("// edited\nfn main() {{}}\n{aws}"),
    );
    commit(&repo, "four", "2024-01-04T00:00:00Z");
    git(
        &repo,
        &["checkout", "-q", "-b", "feature"],
        "2024-01-05T00:00:00Z",
    );
    write(&repo, "hooks.txt", &slack);
    commit(&repo, "five", "2024-01-05T00:00:00Z");
    git(&repo, &["tag", "v1"], "2024-01-05T00:00:00Z");
    git(&repo, &["checkout", "-q", "main"], "2024-01-05T00:00:00Z");
    let resumed = placed(&scan(&resuming, &repo, None, ScanMode::History));
    assert_eq!(resumed, full("after new commits"));
    // The walk grew: written back.
    assert_ne!(walk_file(), first);
    assert!(resumed.iter().any(|f| f.1 == "hooks.txt"), "{resumed:?}");
    assert!(
        resumed.iter().any(|f| f.1 == "src/lib.rs" && f.4 == 2),
        "{resumed:?}"
    );
    assert!(
        !resumed.iter().any(|f| f.1 == "restored/a.env"),
        "{resumed:?}"
    );
    // Nothing new: the same again, and the walk file is not written again.
    let written = walk_file();
    assert_eq!(
        placed(&scan(&resuming, &repo, None, ScanMode::History)),
        resumed
    );
    assert_eq!(walk_file(), written);

    // History rewritten: the branch, its tag and main's last commits are gone. The earlier
    // tips are not reached any more, so the whole history is walked again.
    git(
        &repo,
        &["branch", "-q", "-D", "feature"],
        "2024-01-06T00:00:00Z",
    );
    git(&repo, &["tag", "-d", "v1"], "2024-01-06T00:00:00Z");
    git(
        &repo,
        &["reset", "-q", "--hard", &kept],
        "2024-01-06T00:00:00Z",
    );
    let rewritten = placed(&scan(&resuming, &repo, None, ScanMode::History));
    assert_eq!(rewritten, full("after the rewrite"));
    assert!(
        !rewritten.iter().any(|f| f.1 == "hooks.txt"),
        "{rewritten:?}"
    );

    // A damaged walk file is a full walk, not an error.
    for entry in cache.join("walks").read_dir().unwrap() {
        std::fs::write(entry.unwrap().path(), b"SSWK\x01garbage").unwrap();
    }
    assert_eq!(
        placed(&scan(&resuming, &repo, None, ScanMode::History)),
        rewritten
    );

    // So is a walk whose tips the repository does not have (another repository at the URL).
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    git(
        &other,
        &["init", "-q", "-b", "main"],
        "2024-02-01T00:00:00Z",
    );
    write(&other, "notes.txt", &slack);
    commit(&other, "other", "2024-02-01T00:00:00Z");
    let elsewhere = placed(&scan(&resuming, &other, None, ScanMode::History));
    assert_eq!(
        elsewhere,
        placed(&scan(&scanning(None), &other, None, ScanMode::History))
    );
    assert_eq!(elsewhere.len(), 1, "{elsewhere:?}");
}

#[test]
fn a_repositorys_own_gitleaks_files_count_only_when_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"], "2024-01-01T00:00:00Z");
    // A team rule for its own token format, with the default rules kept.
    write(
        &repo,
        ".gitleaks.toml",
        "[extend]\nuseDefault = true\n[[rules]]\nid = \"team-token\"\n\
         regex = '''tmt_([a-z0-9]{30})'''\nkeywords = [\"tmt_\"]\n",
    );
    let (pat, _) = sample("github-pat");
    write(
        &repo,
        "a.txt",
        "team = tmt_q8z2m4x7c1v9b3n6k0j5h2g8p4r7s1\n",
    );
    write(&repo, "b.txt", &pat);
    write(&repo, "c.txt", &pat);
    // b.txt's token is a known test value.
    write(&repo, ".gitleaksignore", "b.txt:github-pat:1\n");
    commit(&repo, "init", "2024-01-01T00:00:00Z");

    let rules = |run: &EngineRun| -> Vec<(String, String)> {
        run.found
            .iter()
            .map(|f| (f.place.path.clone(), f.hit.rule.clone()))
            .collect()
    };
    let plain = scan(&scanning(None), &repo, None, ScanMode::Tree);
    assert_eq!(
        rules(&plain),
        vec![
            ("b.txt".to_owned(), "github-pat".to_owned()),
            ("c.txt".to_owned(), "github-pat".to_owned()),
        ]
    );
    let honouring =
        scanning(None).with_repository_rules(Vec::new(), DEFAULT_FINGERPRINT_KEY.as_bytes());
    let own = scan(&honouring, &repo, None, ScanMode::Tree);
    assert_eq!(
        rules(&own),
        vec![
            ("a.txt".to_owned(), "team-token".to_owned()),
            ("c.txt".to_owned(), "github-pat".to_owned()),
        ]
    );
    // A repository may not make the scanner read its files: the default rules run instead.
    write(
        &repo,
        ".gitleaks.toml",
        "[extend]\npath = \"/etc/hostname\"\n",
    );
    commit(&repo, "extend", "2024-01-02T00:00:00Z");
    let refused = scan(&honouring, &repo, None, ScanMode::Tree);
    assert_eq!(
        rules(&refused),
        vec![("c.txt".to_owned(), "github-pat".to_owned())]
    );
}

#[test]
fn incremental_scans_read_only_what_is_new_and_the_result_cache_answers_rescans() {
    let f = fixture();
    let cache = tempfile::tempdir().unwrap();
    let scanning = scanning(Some(cache.path()));
    let first = scan(&scanning, &f.repo, Some("main"), ScanMode::Incremental);
    assert_eq!(
        found(&first).len(),
        3,
        "the first incremental scan reads the tree"
    );
    assert_eq!(first.cached, 0);
    let head = git(&f.repo, &["rev-parse", "main"], "2024-04-01T00:00:00Z");
    scanning.mark_scanned("file:///fixture", Some("main"), &head);

    let (npm, _) = sample("npm-token");
    write(&f.repo, "web/.npmrc", &npm);
    write(&f.repo, "README.md", "still nothing\n");
    let next = commit(&f.repo, "c4", "2024-04-01T00:00:00Z");
    let second = scan(&scanning, &f.repo, Some("main"), ScanMode::Incremental);
    assert_eq!(
        found(&second),
        set(&[("npm-token", "web/.npmrc", 1, &next)])
    );
    assert_eq!(second.files, 2, "only the two new blobs");

    let rescan = scan(&scanning, &f.repo, Some("main"), ScanMode::Tree);
    assert!(rescan.files > 0);
    assert_eq!(
        rescan.cached, rescan.files,
        "the incremental scans read every blob before"
    );
    let mut expected = set(&[
        ("github-pat", "src/config.py", 2, &next),
        ("github-pat", "src/copy.py", 2, &next),
        ("npm-token", "web/.npmrc", 1, &next),
        ("pkcs12-file", "certs/client.p12", 1, &next),
    ]);
    assert_eq!(found(&rescan), expected);
    // A scanner in another process reads the same cache.
    let other = self::scanning(Some(cache.path()));
    let shared = scan(&other, &f.repo, Some("main"), ScanMode::Tree);
    assert_eq!(shared.cached, shared.files);
    assert_eq!(found(&shared), std::mem::take(&mut expected));
}

/// The built-in engine, failing (a panic, as a bug would) in the middle of any window that holds
/// [`FAILS_HERE`]: after the inner scan took the window in.
struct FailingEngine(SecretsEngine);

const FAILS_HERE: &str = "the engine fails on this line";

/// The inner scan, and whether it failed: a scan that failed halfway is in no state to be used
/// again, and this one fails every window after.
struct FailingScan<'a>(Box<dyn WindowScan + 'a>, bool);

impl WindowScan for FailingScan<'_> {
    fn window(&mut self, content: &[u8], window: &Window) {
        assert!(!self.1, "a scan used again after it failed");
        self.0.window(content, window);
        self.1 = content
            .windows(FAILS_HERE.len())
            .any(|w| w == FAILS_HERE.as_bytes());
        assert!(
            !self.1,
            "a bug whose message quotes the content: {}",
            String::from_utf8_lossy(content)
        );
    }

    fn finish(&mut self) -> Vec<Hit> {
        self.0.finish()
    }
}

impl Engine for FailingEngine {
    fn id(&self) -> &str {
        self.0.id()
    }
    fn cache_key(&self) -> &str {
        self.0.cache_key()
    }
    fn scan(&self, content: &[u8]) -> Vec<Hit> {
        self.0.scan(content)
    }
    fn windows(&self) -> Box<dyn WindowScan + '_> {
        Box::new(FailingScan(self.0.windows(), false))
    }
    fn accepts(&self, hit: &Hit, path: &str) -> bool {
        self.0.accepts(hit, path)
    }
    fn wants_path(&self, path: &str) -> bool {
        self.0.wants_path(path)
    }
    fn reports_file(&self, path: &str) -> bool {
        self.0.reports_file(path)
    }
    fn file_hits(&self, path: &str, blob_id: &[u8], size: u64) -> Vec<Hit> {
        self.0.file_hits(path, blob_id, size)
    }
    fn rules(&self) -> Vec<RuleInfo> {
        self.0.rules()
    }
}

/// An engine that fails on one blob fails that blob alone: it is listed as not scanned
/// (`failed`), the worker scans the next blobs afresh (nothing of the failed one's scan leaks
/// into them), every report says so, and nothing is cached for it: the fixed engine finds its
/// secret on the rescan.
#[test]
fn a_blob_the_engine_fails_on_is_listed_as_not_scanned_and_the_others_are_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let date = "2024-01-01T00:00:00Z";
    git(&repo, &["init", "-q", "-b", "main"], date);
    let (pat, _) = sample("github-pat");
    let (npm, _) = sample("npm-token");
    // The failing blob holds a secret the engine took in before failing; it is the largest, so
    // scanned first (largest first), and the blobs after it by the same worker hold none.
    write(&repo, "a/fails.py", &format!("{pat}\n# {FAILS_HERE}\n"));
    for n in 1..=4 {
        write(
            &repo,
            &format!("b/clean-{n}.txt"),
            &format!("nothing to see {n}\n"),
        );
    }
    write(&repo, "c/.npmrc", &npm);
    let head = commit(&repo, "c1", date);
    let cache = tempfile::tempdir().unwrap();
    let failing = Scanning::new(
        vec![Arc::new(FailingEngine(engine()))],
        Some(cache.path()),
        Default::default(),
        HashSet::new(),
        vec![],
    );
    // One thread: the blobs are scanned in order, by a worker that keeps its scan for several.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let run = pool.install(|| scan(&failing, &repo, None, ScanMode::Tree));
    assert_eq!(found(&run), set(&[("npm-token", "c/.npmrc", 1, &head)]));
    assert_eq!(
        (run.files, run.skipped_failed, run.not_scanned()),
        (5, 1, 1)
    );
    let skipped: Vec<(&str, SkipReason)> = run
        .skipped
        .iter()
        .map(|s| (s.place.path.as_str(), s.reason))
        .collect();
    assert_eq!(skipped, [("a/fails.py", SkipReason::Failed)]);

    let report = Report {
        target: "repo".into(),
        commit: Some(head.clone()),
        runs: vec![run],
        rules: Vec::new(),
    };
    assert_eq!(
        report.not_scanned_summary().as_deref(),
        Some("1 file not scanned: 1 failed")
    );
    assert!(report.human().contains("a/fails.py"), "{}", report.human());
    let json = report.json();
    assert_eq!(json["summary"]["engines"][0]["skipped_failed"], 1, "{json}");
    assert_eq!(
        json["summary"]["engines"][0]["skipped_files"][0]["reason"],
        "failed"
    );
    let sarif = report.sarif();
    let errors = support::sarif_errors(&sarif);
    assert!(errors.is_empty(), "{errors:#?}");
    let notification = &sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"][0];
    assert_eq!(notification["level"], "error", "{notification}");
    assert_eq!(
        notification["descriptor"]["id"],
        "scanstream/not-scanned/failed"
    );
    let descriptors = &sarif["runs"][0]["tool"]["driver"]["notifications"];
    let index = notification["descriptor"]["index"].as_u64().unwrap() as usize;
    assert_eq!(descriptors[index]["id"], notification["descriptor"]["id"]);

    let fixed = scan(&scanning(Some(cache.path())), &repo, None, ScanMode::Tree);
    assert_eq!(
        found(&fixed),
        set(&[
            ("github-pat", "a/fails.py", 1, &head),
            ("npm-token", "c/.npmrc", 1, &head)
        ])
    );
    assert_eq!((fixed.files, fixed.cached, fixed.skipped_failed), (6, 5, 0));
}

#[test]
fn folders_are_scanned_as_files_on_disk() {
    let f = fixture();
    let scanning = scanning(None);
    let source = DirSource::walk(&f.repo).unwrap();
    let ignored = scanning.ignored_with(std::fs::read(f.repo.join(".scanstreamignore")).ok());
    let run = scan_folder(&scanning, &source, &ignored);
    let paths: BTreeSet<(String, String)> = run
        .found
        .iter()
        .map(|f| (f.hit.rule.clone(), f.place.path.clone()))
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            ("github-pat".to_owned(), "src/config.py".to_owned()),
            ("github-pat".to_owned(), "src/copy.py".to_owned()),
            ("pkcs12-file".to_owned(), "certs/client.p12".to_owned()),
        ])
    );
    // A file reported whole has the same fingerprint on disk as in the repository.
    let fingerprint = |run: &EngineRun| {
        run.found
            .iter()
            .find(|f| f.hit.rule == "pkcs12-file")
            .map(|f| f.hit.fingerprint.clone())
    };
    let in_git = scan(&scanning, &f.repo, None, ScanMode::Tree);
    assert!(fingerprint(&in_git).is_some());
    assert_eq!(fingerprint(&run), fingerprint(&in_git));
}

/// The `secrets` engine's run over a folder.
fn scan_folder(scanning: &Scanning, source: &DirSource, ignored: &HashSet<String>) -> EngineRun {
    let mut runs = scanning
        .run_engines(
            source,
            &["secrets".to_owned()],
            ignored,
            &Progress::default(),
            &AtomicBool::new(false),
        )
        .unwrap();
    assert_eq!(runs.len(), 1);
    runs.remove(0)
}

/// A file that ends in a backslash (an escape cut short, as a window of a large file may) is
/// scanned like any other, and so are the others: it once stopped the whole scan.
#[test]
fn a_file_ending_in_a_backslash_is_scanned_and_so_are_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (line, _) = sample("github-pat");
    write(dir.path(), "app/settings.py", &line);
    write(dir.path(), "scripts/run.sh", "exec tool --flag \\");
    write(dir.path(), "notes.json", "{\"a\": \"b\\");
    let source = DirSource::walk(dir.path()).unwrap();
    let run = scan_folder(&scanning(None), &source, &HashSet::new());
    let found: Vec<&str> = run.found.iter().map(|f| f.place.path.as_str()).collect();
    assert_eq!(found, ["app/settings.py"]);
    assert_eq!((run.files, run.skipped_unreadable), (3, 0));
}

/// A file gone between the listing and the read is listed as not scanned (unreadable, with
/// why); the folder's other files are scanned all the same.
#[test]
fn a_folder_file_that_cannot_be_read_is_listed_and_the_others_are_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let (line, _) = sample("github-pat");
    write(dir.path(), "app/settings.py", &line);
    write(dir.path(), "app/gone.txt", &line);
    // A key store is reported whole, from its content: gone, it is listed like the others.
    write(dir.path(), "certs/gone.p12", "not really a key store");
    // Larger than a window: read as a stream, which fails once the file is a folder.
    let large = format!("{line}\n").repeat((9 << 20) / (line.len() + 1));
    write(dir.path(), "logs/large.log", &large);
    let source = DirSource::walk(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("app/gone.txt")).unwrap();
    std::fs::remove_file(dir.path().join("certs/gone.p12")).unwrap();
    std::fs::remove_file(dir.path().join("logs/large.log")).unwrap();
    std::fs::create_dir(dir.path().join("logs/large.log")).unwrap();
    let run = scan_folder(&scanning(None), &source, &HashSet::new());
    let found: Vec<(&str, &str)> = run
        .found
        .iter()
        .map(|f| (f.hit.rule.as_str(), f.place.path.as_str()))
        .collect();
    assert_eq!(found, [("github-pat", "app/settings.py")]);
    assert_eq!((run.files, run.skipped_unreadable), (1, 3));
    let skipped: Vec<(&str, SkipReason)> = run
        .skipped
        .iter()
        .map(|s| (s.place.path.as_str(), s.reason))
        .collect();
    assert_eq!(
        skipped,
        [
            (
                "app/gone.txt",
                SkipReason::Unreadable(std::io::ErrorKind::NotFound)
            ),
            (
                "certs/gone.p12",
                SkipReason::Unreadable(std::io::ErrorKind::NotFound)
            ),
            (
                "logs/large.log",
                SkipReason::Unreadable(std::io::ErrorKind::IsADirectory)
            ),
        ]
    );
    let report = Report {
        target: dir.path().display().to_string(),
        commit: None,
        runs: vec![run.clone()],
        rules: vec![],
    };
    assert_eq!(
        report.not_scanned_summary().as_deref(),
        Some("3 files not scanned: 3 unreadable")
    );
    let human = report.human();
    assert!(
        human.contains(
            "app/gone.txt\n         not scanned: it could not be read (entity not found)"
        ),
        "{human}"
    );
    let sarif = report.sarif().to_string();
    assert!(
        sarif.contains("scanstream/not-scanned/unreadable"),
        "{sarif}"
    );
}

/// A file whose name is not UTF-8, or that lies in such a folder, is scanned: reported with
/// U+FFFD in place of the bytes that are not UTF-8, opened by its real name. Only a path that
/// several such names read as alike (which file it means is unknown) is listed as not scanned.
#[test]
fn folder_files_whose_names_are_not_utf8_are_scanned() {
    use std::os::unix::ffi::OsStrExt;
    let name = |bytes: &[u8]| std::ffi::OsStr::from_bytes(bytes).to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (line, _) = sample("github-pat");
    let (npm, _) = sample("npm-token");
    write(dir.path(), "app/settings.py", "nothing here\n");
    std::fs::write(dir.path().join("app").join(name(b"caf\xe9.env")), &line).unwrap();
    let odd_folder = dir.path().join(name(b"d\xe9p"));
    std::fs::create_dir(&odd_folder).unwrap();
    std::fs::write(odd_folder.join("plain.env"), &npm).unwrap();
    // Two names that read alike, with a secret in each.
    std::fs::write(dir.path().join(name(b"x\xe8.env")), &line).unwrap();
    std::fs::write(dir.path().join(name(b"x\xe9.env")), &npm).unwrap();
    let run = scan_folder(
        &scanning(None),
        &DirSource::walk(dir.path()).unwrap(),
        &HashSet::new(),
    );
    let found: Vec<(&str, &str)> = run
        .found
        .iter()
        .map(|f| (f.hit.rule.as_str(), f.place.path.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("github-pat", "app/caf\u{fffd}.env"),
            ("npm-token", "d\u{fffd}p/plain.env")
        ]
    );
    assert_eq!((run.files, run.skipped_unreadable), (3, 1));
    assert_eq!(run.skipped[0].place.path, "x\u{fffd}.env");
    assert_eq!(
        run.skipped[0].reason,
        SkipReason::Unreadable(std::io::ErrorKind::InvalidFilename)
    );
    // One such file named on the command line.
    let one = DirSource::file(&dir.path().join("app").join(name(b"caf\xe9.env"))).unwrap();
    let run = scan_folder(&scanning(None), &one, &HashSet::new());
    let found: Vec<&str> = run.found.iter().map(|f| f.place.path.as_str()).collect();
    assert_eq!(found, ["caf\u{fffd}.env"]);
}

/// A folder below the root that cannot be listed (here: its path is longer than the system
/// takes, as deep `node_modules` trees can be) is listed as not scanned, and the rest is
/// scanned. Made folder by folder, each relative to the one before: no single path names it.
#[test]
fn a_folder_that_cannot_be_listed_is_reported_and_the_others_are_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let (line, _) = sample("github-pat");
    write(dir.path(), "top.env", &line);
    let component = "d".repeat(200);
    let (flags, mode) = (
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::from_raw_mode(0o755),
    );
    let mut folder = rustix::fs::open(dir.path(), flags, mode).unwrap();
    for _ in 0..24 {
        rustix::fs::mkdirat(&folder, component.as_str(), mode).unwrap();
        folder = rustix::fs::openat(&folder, component.as_str(), flags, mode).unwrap();
    }
    let deep = rustix::fs::openat(
        &folder,
        "deep.env",
        rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY,
        mode,
    )
    .unwrap();
    std::io::Write::write_all(&mut std::fs::File::from(deep), line.as_bytes()).unwrap();
    let source = DirSource::walk(dir.path()).unwrap();
    let run = scan_folder(&scanning(None), &source, &HashSet::new());
    let found: Vec<&str> = run.found.iter().map(|f| f.place.path.as_str()).collect();
    assert_eq!(found, ["top.env"]);
    assert_eq!(run.skipped_unreadable, 1);
    let skipped = &run.skipped[0];
    assert_eq!(
        skipped.reason,
        SkipReason::Unreadable(std::io::ErrorKind::InvalidFilename)
    );
    let depth = skipped.place.path.matches(&component).count();
    assert!(
        skipped.place.path.ends_with('/') && (19..=24).contains(&depth),
        "{} components",
        depth
    );
}

#[test]
fn reports_are_valid_sarif_and_never_hold_a_secret() {
    let f = fixture();
    let run = scan(&scanning(None), &f.repo, None, ScanMode::History);
    let report = Report {
        target: f.repo.display().to_string(),
        commit: None,
        runs: vec![run],
        rules: engine().rules(),
    };
    let sarif = report.sarif();
    let errors = support::sarif_errors(&sarif);
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(
        sarif["runs"][0]["results"].as_array().map(Vec::len),
        Some(4)
    );
    // The schema check is not vacuous: a broken level is refused.
    let mut broken = sarif.clone();
    broken["runs"][0]["results"][0]["level"] = "critical".into();
    assert!(!support::sarif_validator().is_valid(&broken));
    let outputs = [sarif.to_string(), report.json().to_string(), report.human()];
    for output in outputs {
        for secret in &f.secrets {
            assert!(
                !output.contains(secret.as_str()),
                "a secret leaked into a report"
            );
        }
    }
}
