//! The mirror cache against real git repositories: create, update, follow a renamed default
//! branch, evict.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use scanstream_scanner::mirror::{MirrorConfig, Mirrors};
use tokio_util::sync::CancellationToken;

mod support;

fn mirrors(root: &Path) -> Mirrors {
    Mirrors::new(MirrorConfig {
        root: root.join("mirrors"),
        fetch_timeout: Duration::from_secs(60),
        lock_timeout: Duration::from_secs(5),
        refetch_after: Duration::ZERO,
        credentials: vec![],
    })
}

fn head_of(mirror: &Path) -> String {
    support::git(mirror, &["symbolic-ref", "HEAD"], None)
}

/// Whether the mirror's commit-graph holds its HEAD commit (history walks read it).
fn graph_has_head(mirror: &Path) -> bool {
    let tip = support::git(mirror, &["rev-parse", "HEAD"], None);
    let tip = gix::ObjectId::from_hex(tip.as_bytes()).unwrap();
    gix::open(mirror)
        .unwrap()
        .commit_graph()
        .is_ok_and(|graph| graph.lookup(tip).is_some())
}

#[tokio::test]
async fn mirrors_are_created_updated_and_follow_the_default_branch() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin");
    std::fs::create_dir_all(&origin).unwrap();
    support::git(&origin, &["init", "-q", "-b", "main"], None);
    std::fs::write(origin.join("a.txt"), "one\n").unwrap();
    support::git(&origin, &["add", "-A"], None);
    support::git(&origin, &["commit", "-q", "-m", "one"], None);
    let url = format!("file://{}", origin.display());
    let cache = mirrors(dir.path());
    let stop = CancellationToken::new();

    let first = cache.acquire(&url, &stop).await.unwrap();
    assert!(!first.cache_hit);
    let mirror = first.lease.path.clone();
    assert_eq!(head_of(&mirror), "refs/heads/main");
    assert!(graph_has_head(&mirror), "a new mirror has a commit-graph");
    drop(first);

    std::fs::write(origin.join("a.txt"), "two\n").unwrap();
    support::git(&origin, &["commit", "-q", "-am", "two"], None);
    support::git(&origin, &["branch", "-m", "main", "trunk"], None);
    let second = cache.acquire(&url, &stop).await.unwrap();
    assert!(second.cache_hit);
    assert_eq!(head_of(&mirror), "refs/heads/trunk");
    let tip = support::git(&mirror, &["rev-parse", "HEAD"], None);
    assert_eq!(tip, support::git(&origin, &["rev-parse", "HEAD"], None));
    assert!(
        graph_has_head(&mirror),
        "the fetched commit is in the commit-graph"
    );

    // In use: never evicted. Released and idle: evicted.
    let report = cache.gc(Duration::ZERO, 0).unwrap();
    assert_eq!((report.evicted, report.busy), (0, 1));
    drop(second);
    std::thread::sleep(Duration::from_millis(20));
    let report = cache.gc(Duration::from_millis(1), 0).unwrap();
    assert_eq!(report.evicted, 1);
    assert!(!mirror.exists());

    let missing = cache
        .acquire(
            &format!("file://{}", dir.path().join("nope").display()),
            &stop,
        )
        .await;
    match missing {
        Err(scanstream_scanner::Error::Fetch { retryable, .. }) => assert!(!retryable),
        other => panic!("{other:?}"),
    }
}
