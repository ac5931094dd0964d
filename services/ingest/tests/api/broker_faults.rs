//! A broker that cannot be reached, or dies under a running service: requests get 503 with
//! `Retry-After` within the write bound, never 202.

use std::time::{Duration, Instant};

use scanstream_testcontainers::{Endpoints, LocalCluster, LocalOptions, TestScope};

use crate::helpers::spawn_on;

#[tokio::test]
async fn an_unreachable_broker_means_503_within_the_bound() {
    let scope = TestScope::new("unreachable");
    let scope = TestScope {
        endpoints: Endpoints {
            bootstrap_servers: "127.0.0.1:1".into(),
            registry_url: scope.endpoints.registry_url.clone(),
        },
        ..scope
    };
    let app = spawn_on(scope, "[ingest]\nwrite_timeout_ms = 2000\n", false).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status().as_u16(), 503);
    for _ in 0..3 {
        let started = Instant::now();
        let response = app
            .post(r#"{"name": "x", "repo": "https://git.example.com/x.git"}"#)
            .await;
        assert_eq!(response.status().as_u16(), 503);
        assert!(response.headers().contains_key("retry-after"));
        assert!(
            started.elapsed() < Duration::from_millis(3000),
            "took {:?}",
            started.elapsed()
        );
    }
    app.shutdown().await;
}

/// A broker that dies under a running service: requests get 503 within the bound, never 202.
#[tokio::test]
async fn a_broker_stopped_mid_flight_gives_503_and_never_202() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(LocalOptions::ephemeral(dir.path().to_owned()))
        .await
        .unwrap();
    // The cluster is the test's own: no topic prefix.
    let scope = TestScope {
        endpoints: cluster.endpoints().clone(),
        topic_prefix: String::new(),
        group_id: "broker-stopped".into(),
    };
    let app = spawn_on(scope, "[ingest]\nwrite_timeout_ms = 2000\n", true).await;
    let ok = app
        .post(r#"{"name": "before", "repo": "https://git.example.com/b.git"}"#)
        .await;
    assert_eq!(ok.status().as_u16(), 202);

    cluster.kill_kafka();
    for i in 0..4 {
        let started = Instant::now();
        let response = app
            .post(&format!(
                r#"{{"name": "after-{i}", "repo": "https://git.example.com/b.git"}}"#
            ))
            .await;
        let elapsed = started.elapsed();
        assert_eq!(response.status().as_u16(), 503, "request {i}");
        assert!(response.headers().contains_key("retry-after"));
        assert!(
            elapsed < Duration::from_millis(2000 + 1500),
            "request {i} took {elapsed:?}"
        );
    }
    app.shutdown().await;
    cluster.stop(Duration::from_secs(5)).await;
}
