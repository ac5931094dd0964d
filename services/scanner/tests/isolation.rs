//! What the scanner lets a command fetch: exactly what ingest accepts, by the same check
//! (`scanstream_platform::repo::RepoRules`). A `file://` repository is compared with
//! `ingest.file_roots` after its symbolic links are followed, so a link under a root cannot lead
//! a scan outside it; no user name, host or path may start with `-` (an option for ssh); and the
//! scp-style URLs and `ssh://` user names ingest accepts are not dead-lettered here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use scanstream_contracts::RepoKey;
use scanstream_platform::repo::RepoRules;
use scanstream_scanner::scan::Scanning;

mod support;

/// The scanner's scanning setup with `roots` as `ingest.file_roots`.
fn scanning(roots: &[&Path]) -> Scanning {
    Scanning::new(
        vec![],
        None,
        Default::default(),
        HashSet::new(),
        roots.iter().map(|r| r.to_path_buf()).collect(),
    )
}

/// A one-commit repository at `dir`.
fn make_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    support::git(dir, &["init", "-q", "-b", "main"], None);
    std::fs::write(dir.join("README"), "a repository\n").unwrap();
    support::git(dir, &["add", "-A"], None);
    support::git(dir, &["commit", "-q", "-m", "initial"], None);
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

struct Layout {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
}

/// `<base>/repos` (the root) holding `inside` (a repository), `alias` (a link to it) and
/// `escape` (a link to `<base>/outside`, a repository outside the root).
fn layout() -> Layout {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let root = base.join("repos");
    make_repo(&root.join("inside"));
    make_repo(&base.join("outside"));
    symlink(base.join("outside"), root.join("escape")).unwrap();
    symlink(root.join("inside"), root.join("alias")).unwrap();
    Layout {
        _dir: dir,
        base,
        root,
    }
}

#[test]
fn a_symbolic_link_under_a_root_does_not_lead_a_scan_outside_it() {
    let l = layout();
    let scanning = scanning(&[l.root.as_path()]);
    assert!(
        scanning
            .check_url(&file_url(&l.root.join("inside")))
            .is_ok()
    );
    // A link that stays under the root is fine.
    assert!(scanning.check_url(&file_url(&l.root.join("alias"))).is_ok());
    // `repos/escape -> outside`: under the root as text, outside it in fact.
    let refused = scanning
        .check_url(&file_url(&l.root.join("escape")))
        .expect_err("the repository outside the root was let through");
    assert!(refused.contains("file-root"), "{refused}");
    assert!(
        scanning
            .check_url(&file_url(&l.root.join("escape/.git")))
            .is_err()
    );
    // A link that leads nowhere cannot be shown to stay under the root.
    symlink(l.base.join("gone"), l.root.join("dangling")).unwrap();
    assert!(
        scanning
            .check_url(&file_url(&l.root.join("dangling")))
            .is_err()
    );
    // A repository removed after ingest accepted it is not dead-lettered: its fetch fails.
    assert!(
        scanning
            .check_url(&file_url(&l.root.join("removed")))
            .is_ok()
    );
}

#[test]
fn a_root_reached_through_a_link_is_resolved_too() {
    let l = layout();
    let linked = l.base.join("linked-repos");
    symlink(&l.root, &linked).unwrap();
    let scanning = scanning(&[linked.as_path()]);
    assert!(
        scanning
            .check_url(&file_url(&linked.join("inside")))
            .is_ok()
    );
    assert!(
        scanning
            .check_url(&file_url(&l.root.join("inside")))
            .is_ok()
    );
    assert!(
        scanning
            .check_url(&file_url(&linked.join("escape")))
            .is_err()
    );
}

#[test]
fn the_scanner_accepts_the_urls_ingest_writes_and_refuses_options() {
    let none: [&Path; 0] = [];
    let scanning = scanning(&none);
    for accepted in [
        // What ingest writes for `git@github.com:acme/payments.git`.
        "ssh://git@github.com/acme/payments.git",
        // And the scp form itself, rewritten by the same code.
        "git@github.com:acme/payments.git",
        "ssh://deploy@git.example.com:2222/team/repo.git",
        "https://github.com/acme/payments.git",
        "git://git.example.com/team/repo.git",
    ] {
        assert_eq!(scanning.check_url(accepted), Ok(()), "{accepted}");
    }
    for refused in [
        "ssh://-oProxyCommand=touch/r.git",
        "ssh://%2doProxyCommand=touch/r.git",
        "ssh://-user@git.example.com/r.git",
        "ssh://git@git.example.com/-r.git",
        "git@git.example.com:-oProxyCommand=touch",
        "-oProxyCommand=touch@git.example.com:r.git",
        "git@-oProxyCommand=touch:r.git",
    ] {
        let reason = scanning.check_url(refused).expect_err(refused);
        assert!(reason.contains("option-injection"), "{refused}: {reason}");
        assert!(!reason.contains("touch"), "{reason}");
    }
    for refused in [
        "ssh://git:secret@github.com/acme/payments.git",
        "http://github.com/acme/payments.git",
        "file:///etc/passwd",
    ] {
        let reason = scanning.check_url(refused).expect_err(refused);
        assert!(!reason.contains("secret"), "{reason}");
    }
}

#[test]
fn the_scp_form_and_its_ssh_form_share_one_key() {
    let rules = RepoRules::default();
    let key = |text: &str| RepoKey::from_normalized(&rules.check(text).unwrap().normalized);
    let scp = key("git@github.com:acme/payments.git");
    assert_eq!(scp.as_str(), "ssh://git@github.com/acme/payments.git");
    assert_eq!(scp, key("ssh://git@GitHub.com:22/acme/payments.git/"));
    assert_eq!(scp, key("ssh://git@github.com/acme/payments.git"));
}
