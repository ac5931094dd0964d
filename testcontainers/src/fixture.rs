//! The cluster the tests share, and per-test isolation.
//!
//! A test run starts one cluster: `scripts/test` (through `scanstream-testenv`) starts it once
//! for every test binary and passes it on as `SCANSTREAM_TEST_BOOTSTRAP`/`_REGISTRY`. A test
//! binary run on its own (`cargo test -p …`) starts one for itself on first use. Either way each
//! test takes a [`TestScope`]: its own topic prefix, consumer group and registry subjects, so
//! tests never see each other's records and can run in parallel.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use crate::docker::DockerCluster;
use crate::local::{LocalCluster, LocalOptions};
use crate::{Backend, ENV_BOOTSTRAP, ENV_REGISTRY, Endpoints, Error, Result};

static SHARED: OnceLock<Result<Endpoints, String>> = OnceLock::new();

/// The shared cluster's endpoints, starting it on first use. Panics with the reason when no
/// cluster can be had: a test that needs Kafka cannot run without one.
pub fn shared() -> &'static Endpoints {
    match SHARED.get_or_init(|| start_shared().map_err(|e| e.to_string())) {
        Ok(endpoints) => endpoints,
        Err(reason) => panic!("no Kafka + schema registry for the tests: {reason}"),
    }
}

fn start_shared() -> Result<Endpoints> {
    let backend = Backend::detect()?;
    if backend == Backend::External {
        return external();
    }
    let (tx, rx) = mpsc::channel();
    // The cluster lives on a thread of its own that never ends: local child processes die with
    // the thread that started them (PR_SET_PDEATHSIG), so they go exactly when this process does.
    std::thread::Builder::new()
        .name("scanstream-test-cluster".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(Error::io("building a runtime")(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let timeout = Duration::from_secs(180);
                match backend {
                    Backend::Docker => match DockerCluster::start(timeout).await {
                        Ok(cluster) => {
                            let _ = tx.send(Ok(cluster.endpoints().clone()));
                            let _keep = cluster;
                            std::future::pending::<()>().await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    },
                    _ => {
                        let options = LocalOptions::ephemeral(run_dir());
                        match LocalCluster::start(options).await {
                            Ok(cluster) => {
                                let _ = tx.send(Ok(cluster.endpoints().clone()));
                                let _keep = cluster;
                                std::future::pending::<()>().await;
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e));
                            }
                        }
                    }
                }
            });
        })
        .map_err(Error::io("starting the cluster thread"))?;
    rx.recv()
        .map_err(|_| Error::Config("the cluster thread ended without an answer".into()))?
}

fn external() -> Result<Endpoints> {
    let var = |name: &str| {
        std::env::var(name)
            .map_err(|_| Error::Config(format!("{name} must be set for the external backend")))
    };
    Ok(Endpoints {
        bootstrap_servers: var(ENV_BOOTSTRAP)?,
        registry_url: var(ENV_REGISTRY)?,
    })
}

/// A fresh data folder for this process's ephemeral cluster under `<cache>/runs/`; folders of
/// earlier runs whose process is gone are removed first.
pub fn run_dir() -> PathBuf {
    let runs = crate::cache_dir().join("runs");
    if let Ok(entries) = std::fs::read_dir(&runs) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_string_lossy()
                .split('-')
                .next()
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && !PathBuf::from(format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    runs.join(format!(
        "{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ))
}

/// One test's private corner of the shared cluster. [`crate::kafka`] adds what a test does with
/// it: settings, topics, a codec and reading topics back.
#[derive(Debug, Clone)]
pub struct TestScope {
    pub endpoints: Endpoints,
    /// Prefix for every topic name (and so every registry subject) the test uses.
    pub topic_prefix: String,
    /// Consumer group id for the test's consumers.
    pub group_id: String,
}

impl TestScope {
    /// A scope named after the test, unique across runs.
    pub fn new(test_name: &str) -> Self {
        let clean: String = test_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let unique = &uuid::Uuid::new_v4().simple().to_string()[..8];
        Self {
            endpoints: shared().clone(),
            topic_prefix: format!("t-{clean}-{unique}."),
            group_id: format!("t-{clean}-{unique}"),
        }
    }
}
