//! The Docker backend: Apache Kafka's own image in KRaft mode and Apicurio Registry's image,
//! through the `testcontainers` crate, used when a Docker engine answers.
//!
//! The broker advertises `127.0.0.1:<host port>` to clients, so the host port is chosen before
//! the container starts and mapped to the client listener; the broker talks to itself on a
//! separate internal listener.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::ready::{kafka_answers, poll, registry_answers};
use crate::{Endpoints, Error, Result};

/// Image tags, kept in step with [`crate::artifacts::KAFKA_VERSION`] and
/// [`crate::artifacts::APICURIO_VERSION`].
const KAFKA_IMAGE: (&str, &str) = ("apache/kafka", "4.3.1");
const REGISTRY_IMAGE: (&str, &str) = ("apicurio/apicurio-registry", "3.0.9");

/// True when a Docker engine answers `/_ping` on its socket (`DOCKER_HOST=unix://…` or the
/// default `/var/run/docker.sock`). TCP engines are assumed to answer when `DOCKER_HOST` names
/// one.
pub fn engine_answers() -> bool {
    let socket = match std::env::var("DOCKER_HOST") {
        Ok(host) => match host.strip_prefix("unix://") {
            Some(path) => path.to_owned(),
            None => return host.starts_with("tcp://"),
        },
        Err(_) => "/var/run/docker.sock".to_owned(),
    };
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// Running containers; dropping this removes them.
pub struct DockerCluster {
    endpoints: Endpoints,
    _kafka: ContainerAsync<GenericImage>,
    _registry: ContainerAsync<GenericImage>,
}

impl DockerCluster {
    pub async fn start(ready_timeout: Duration) -> Result<Self> {
        let host_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(Error::io("choosing a host port"))?
            .port();
        let kafka = GenericImage::new(KAFKA_IMAGE.0, KAFKA_IMAGE.1)
            .with_wait_for(WaitFor::Nothing)
            .with_env_var("KAFKA_NODE_ID", "1")
            .with_env_var("KAFKA_PROCESS_ROLES", "broker,controller")
            .with_env_var(
                "KAFKA_LISTENERS",
                "PLAINTEXT://:9092,BROKER://:9094,CONTROLLER://:9093",
            )
            .with_env_var(
                "KAFKA_ADVERTISED_LISTENERS",
                format!("PLAINTEXT://127.0.0.1:{host_port},BROKER://localhost:9094"),
            )
            .with_env_var(
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
            )
            .with_env_var("KAFKA_INTER_BROKER_LISTENER_NAME", "BROKER")
            .with_env_var("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
            .with_env_var("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
            .with_env_var("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
            .with_env_var("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
            .with_env_var(
                "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
                "1",
            )
            .with_env_var("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", "1")
            .with_env_var("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            .with_mapped_port(host_port, 9092.tcp())
            .start()
            .await
            .map_err(|e| {
                Error::Docker(format!("starting {}:{}: {e}", KAFKA_IMAGE.0, KAFKA_IMAGE.1))
            })?;
        let registry = GenericImage::new(REGISTRY_IMAGE.0, REGISTRY_IMAGE.1)
            .with_exposed_port(8080.tcp())
            .with_wait_for(WaitFor::Nothing)
            .start()
            .await
            .map_err(|e| {
                Error::Docker(format!(
                    "starting {}:{}: {e}",
                    REGISTRY_IMAGE.0, REGISTRY_IMAGE.1
                ))
            })?;
        let registry_port = registry
            .get_host_port_ipv4(8080.tcp())
            .await
            .map_err(|e| Error::Docker(format!("registry port: {e}")))?;

        let endpoints = Endpoints {
            bootstrap_servers: format!("127.0.0.1:{host_port}"),
            registry_url: format!("http://127.0.0.1:{registry_port}/apis/ccompat/v7"),
        };
        let never_exits = || Ok(());
        poll(ready_timeout, never_exits, || {
            kafka_answers(&endpoints.bootstrap_servers, &[])
        })
        .await
        .map_err(|e| Error::Docker(format!("Kafka container not ready: {e:?}")))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        poll(ready_timeout, never_exits, || {
            registry_answers(&http, &endpoints.registry_url)
        })
        .await
        .map_err(|e| Error::Docker(format!("registry container not ready: {e:?}")))?;
        Ok(Self {
            endpoints,
            _kafka: kafka,
            _registry: registry,
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }
}
