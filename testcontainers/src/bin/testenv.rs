//! `scanstream-testenv [--] COMMAND…`: starts one Kafka broker and schema registry (Docker or
//! local processes, see the crate docs), runs COMMAND with `SCANSTREAM_TEST_BOOTSTRAP` and
//! `SCANSTREAM_TEST_REGISTRY` pointing at them, stops them, and exits with COMMAND's status.
//! With an external cluster already configured it just runs COMMAND.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use scanstream_testcontainers::docker::DockerCluster;
use scanstream_testcontainers::fixture::run_dir;
use scanstream_testcontainers::{
    Backend, ENV_BACKEND, ENV_BOOTSTRAP, ENV_REGISTRY, LocalCluster, LocalOptions,
};

const USAGE: &str = "usage: scanstream-testenv [--] COMMAND [ARGS…]

Starts Apache Kafka (KRaft) and a Confluent-compatible schema registry, runs COMMAND with
SCANSTREAM_TEST_BOOTSTRAP and SCANSTREAM_TEST_REGISTRY set, then stops them.
SCANSTREAM_TEST_BACKEND=external|docker|local forces a backend.";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--") {
        args.remove(0);
    }
    if args.is_empty() || args[0].starts_with('-') {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let command = args;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scanstream-testenv: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(command))
}

enum Running {
    None,
    Local(Box<LocalCluster>),
    Docker(Box<DockerCluster>),
}

async fn run(command: Vec<String>) -> ExitCode {
    let backend = match Backend::detect() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("scanstream-testenv: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let running = match backend {
        Backend::External => Ok(Running::None),
        Backend::Docker => DockerCluster::start(Duration::from_secs(180))
            .await
            .map(|c| Running::Docker(Box::new(c))),
        Backend::Local => LocalCluster::start(LocalOptions::ephemeral(run_dir()))
            .await
            .map(|c| Running::Local(Box::new(c))),
    };
    let running = match running {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scanstream-testenv: {e}");
            return ExitCode::from(2);
        }
    };
    let mut child = Command::new(&command[0]);
    child.args(&command[1..]);
    match &running {
        Running::None => {}
        Running::Local(c) => {
            eprintln!(
                "scanstream-testenv: local Kafka {} ready in {:.1}s, registry {} ready in {:.1}s",
                c.endpoints().bootstrap_servers,
                c.kafka_ready_after.as_secs_f64(),
                c.endpoints().registry_url,
                c.registry_ready_after.as_secs_f64(),
            );
            child
                .env(ENV_BOOTSTRAP, &c.endpoints().bootstrap_servers)
                .env(ENV_REGISTRY, &c.endpoints().registry_url)
                .env(ENV_BACKEND, "external");
        }
        Running::Docker(c) => {
            eprintln!(
                "scanstream-testenv: Kafka and registry containers ready in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            child
                .env(ENV_BOOTSTRAP, &c.endpoints().bootstrap_servers)
                .env(ENV_REGISTRY, &c.endpoints().registry_url)
                .env(ENV_BACKEND, "external");
        }
    }
    let status = child.status();
    if let Running::Local(cluster) = running {
        cluster.stop(Duration::from_secs(20)).await;
    }
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => ExitCode::from(u8::try_from(s.code().unwrap_or(1)).unwrap_or(1)),
        Err(e) => {
            eprintln!("scanstream-testenv: running {:?}: {e}", command[0]);
            ExitCode::from(2)
        }
    }
}
