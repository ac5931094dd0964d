//! Building and running the ingest service.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpServer, web};
use metrics_exporter_prometheus::PrometheusHandle;
use scanstream_contracts::TopicNames;
use scanstream_platform::Settings;
use scanstream_platform::auth::Authenticator;
use scanstream_platform::kafka::KafkaFactory;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::domain::{EngineSet, RepoPolicy};
use crate::idempotency::IdempotencyStore;
use crate::writer::{Writer, WriterConfig};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Codec(#[from] scanstream_contracts::CodecError),
    #[error("the HTTP server failed: {0}")]
    Server(#[source] std::io::Error),
}

/// A built ingest service: listening, with its writer started.
pub struct Application {
    server: Server,
    port: u16,
    writer_tasks: Vec<JoinHandle<()>>,
    writer_stop: CancellationToken,
    writer: Writer,
}

async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    scanstream_platform::http::observe("ingest", req, next).await
}

/// The transactional id of this instance: unique per process (ingest writes no
/// read-process-write transactions, so it needs no id that survives restarts).
fn transactional_id(settings: &Settings) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
    let unique = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{}{}-ingest-{host}-{}",
        settings.topics.prefix,
        settings.kafka.client_id,
        &unique[..8]
    )
}

impl Application {
    /// Binds `api.listen` (port 0 picks a free port) and starts the writer.
    pub async fn build(
        settings: &Settings,
        metrics: PrometheusHandle,
    ) -> Result<Application, IngestError> {
        let ingest = settings.ingest.clone();
        let names = TopicNames::new(settings.topics.prefix.clone());
        let codec = Arc::new(scanstream_platform::registry::codec(settings)?);
        let policy = RepoPolicy::new(&ingest.file_roots, &ingest.allowed_hosts)
            .map_err(|e| IngestError::Config(e.to_string()))?;
        let mut kafka = settings.kafka.clone();
        // A record that cannot be delivered within the write deadline fails the transaction
        // instead of lingering past the client's 503.
        kafka
            .extra
            .entry("message.timeout.ms".to_owned())
            .or_insert_with(|| ingest.write_timeout_ms.to_string());
        kafka
            .extra
            .entry("transaction.timeout.ms".to_owned())
            // librdkafka requires socket.timeout.ms <= transaction.timeout.ms + 100.
            .or_insert_with(|| {
                (ingest.write_timeout_ms + 10_000)
                    .max(settings.kafka.request_timeout_ms)
                    .to_string()
            });
        kafka
            .extra
            .entry("linger.ms".to_owned())
            .or_insert_with(|| "1".to_owned());
        let writer_stop = CancellationToken::new();
        let (writer, writer_tasks) = Writer::start(
            KafkaFactory::new(kafka),
            codec.clone(),
            names,
            WriterConfig {
                transactional_id: transactional_id(settings),
                writers: ingest.writers,
                max_requests: ingest.batch_max_requests,
                linger: Duration::from_millis(ingest.batch_linger_ms),
                write_timeout: ingest.write_timeout(),
                queue_capacity: ingest.batch_max_requests * 20,
            },
            writer_stop.clone(),
        );
        let auth = Authenticator::new(&settings.api);
        if auth.enabled() && settings.api.tokens.is_empty() {
            tracing::warn!(
                "auth is on but api.tokens is empty: every POST and DELETE will get 401"
            );
        }
        if !auth.enabled() {
            tracing::warn!(listen = %settings.api.listen, "AUTHENTICATION IS OFF: anyone who can reach this address can submit scans (allowed only on loopback)");
        }
        let state = web::Data::new(AppState {
            engines: EngineSet::new(ingest.engines.clone(), ingest.default_engines.clone()),
            idempotency: IdempotencyStore::new(
                Duration::from_secs(ingest.idempotency_ttl_seconds),
                ingest.idempotency_capacity,
            ),
            settings: ingest.clone(),
            auth,
            codec,
            writer: writer.clone(),
            policy,
            metrics,
            instance: std::env::var("HOSTNAME").unwrap_or_else(|_| "ingest".to_owned()),
        });

        let listener =
            TcpListener::bind(&settings.api.listen).map_err(|source| IngestError::Bind {
                address: settings.api.listen.clone(),
                source,
            })?;
        let port = listener.local_addr().map_err(IngestError::Server)?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(observe))
                .configure(api::configure)
        })
        .disable_signals()
        .shutdown_timeout(ingest.write_timeout_ms.div_ceil(1000) + 5)
        .listen(listener)
        .map_err(IngestError::Server)?
        .run();
        tracing::info!(port, "ingest listening");
        Ok(Application {
            server,
            port,
            writer_tasks,
            writer_stop,
            writer,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// True once the writer can accept requests.
    pub fn ready(&self) -> bool {
        self.writer.ready()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting connections, lets in-flight
    /// requests finish their transactions, and stops the writer.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), IngestError> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        shutdown.cancelled().await;
        tracing::info!("ingest draining");
        handle.stop(true).await;
        let served = server.await;
        self.writer_stop.cancel();
        for task in self.writer_tasks {
            let _ = task.await;
        }
        match served {
            Ok(result) => result.map_err(IngestError::Server),
            Err(e) => Err(IngestError::Server(std::io::Error::other(e))),
        }
    }
}
