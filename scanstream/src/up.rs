//! `scanstream up`: the development stack.
//!
//! Without a configured cluster it starts Apache Kafka and Apicurio Registry as local processes
//! (the same machinery as the test fixtures; artifacts cached after the first run) with their
//! data under `--data-dir`, so a second `up` on the same folder keeps everything. It then
//! ensures topics and schemas and runs until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use scanstream_testcontainers::{LocalCluster, LocalOptions};

use crate::cli::{GlobalArgs, UpArgs};
use crate::settings;

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    Config(#[from] scanstream_platform::ConfigError),
    #[error("starting the local Kafka and schema registry failed: {0}")]
    Cluster(#[from] scanstream_testcontainers::Error),
    #[error(transparent)]
    Topics(#[from] crate::topics::TopicsError),
    #[error(
        "topics drifted from what scanstream expects; fix them or run `scanstream topics ensure --allow-drift`"
    )]
    Drift,
}

/// The default data folder: `$XDG_DATA_HOME/scanstream`, else `~/.local/share/scanstream`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("scanstream");
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".local").join("share").join("scanstream")
}

pub async fn run(global: &GlobalArgs, args: &UpArgs) -> Result<(), UpError> {
    let started = Instant::now();
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let (cluster, settings) = if settings::cluster_configured(global) {
        (None, settings::load(global, &[])?)
    } else {
        println!(
            "starting a local Kafka and schema registry in {}",
            data_dir.display()
        );
        let cluster = LocalCluster::start(LocalOptions {
            data_dir: data_dir.join("cluster"),
            kafka_port: args.kafka_port,
            registry_port: args.registry_port,
            persistent_registry: true,
            cache_dir: scanstream_testcontainers::cache_dir(),
            ready_timeout: Duration::from_secs(180),
        })
        .await?;
        let endpoints = cluster.endpoints().clone();
        let settings = settings::load(
            global,
            &[
                ("kafka.bootstrap_servers", endpoints.bootstrap_servers),
                ("registry.url", endpoints.registry_url),
                ("topics.replication_factor", "1".to_owned()),
            ],
        )?;
        (Some(cluster), settings)
    };

    let report = crate::topics::ensure(&settings, false).await;
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            stop(cluster).await;
            return Err(e.into());
        }
    };
    println!();
    println!(
        "Kafka bootstrap servers: {}",
        settings.kafka.bootstrap_servers
    );
    println!("Schema registry:         {}", settings.registry.url);
    println!("Topic prefix:            {:?}", settings.topics.prefix);
    println!("Ready in {:.1}s.", started.elapsed().as_secs_f64());
    println!(
        "`up` does not run the roles yet: start `scanstream ingest`, `scanstream scanner` and \
         `scanstream aggregator` (they use these addresses by default)."
    );
    if report.has_drift() {
        stop(cluster).await;
        return Err(UpError::Drift);
    }
    if !args.once {
        println!("Press Ctrl-C to stop.");
        scanstream_platform::shutdown::signal().await;
    }
    stop(cluster).await;
    Ok(())
}

async fn stop(cluster: Option<LocalCluster>) {
    if let Some(cluster) = cluster {
        println!("stopping the local Kafka and schema registry");
        cluster.stop(Duration::from_secs(30)).await;
    }
}
