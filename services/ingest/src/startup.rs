//! Starting the ingest role; [`scanstream_platform::server::Application`] serves and stops it.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use futures::future::BoxFuture;
use scanstream_contracts::TopicNames;
use scanstream_platform::Settings;
use scanstream_platform::auth::Authenticator;
use scanstream_platform::http::BodyReadTimeout;
use scanstream_platform::kafka::{ClientRole, KafkaFactory};
use scanstream_platform::server::{Readiness, Role, ServeError};
use scanstream_platform::shutdown::Tasks;
use scanstream_platform::writer::{OnFatal, Writer, WriterConfig, producer_settings};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::creates::Creator;
use crate::domain::{EngineSet, RepoPolicy};
use crate::idempotency::IdempotencyStore;
use crate::schedules::{self, Schedules};
use scanstream_contracts::Topic;
use scanstream_contracts::schedule::Schedule;
use scanstream_platform::tail::{Table, TailSource};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("configuration: {0}")]
    Config(#[from] crate::domain::RepoUrlError),
    #[error(transparent)]
    Codec(#[from] scanstream_contracts::CodecError),
    #[error(transparent)]
    Server(#[from] ServeError),
}

/// The ingest role: its writer running and its routes ready to be served.
pub struct Ingest {
    state: web::Data<AppState>,
    schedules: web::Data<Schedules>,
    writer: Writer,
    writer_tasks: Tasks,
    shutdown_timeout: Duration,
    /// The AsyncAPI document of this deployment's topics.
    asyncapi: serde_json::Value,
}

/// The transactional id of this instance: unique per process (ingest writes no
/// read-process-write transactions, so it needs no id that survives restarts).
fn transactional_id(settings: &Settings) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
    let unique = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{}{host}-{}",
        scanstream_platform::access::ingest_transactional_prefix(settings),
        &unique[..8]
    )
}

impl Ingest {
    /// Starts the writer and the schedules' follower; serve the role with
    /// [`scanstream_platform::server::Application`], which stops it after the server.
    pub async fn start(settings: &Settings) -> Result<Arc<Ingest>, IngestError> {
        let mut ingest = settings.ingest.clone();
        // Requests may name the built-in engines and every configured command engine.
        ingest.engines = settings.engine_ids();
        let names = TopicNames::new(settings.topics.prefix.clone());
        let codec = Arc::new(scanstream_platform::registry::codec(settings)?);
        let policy = RepoPolicy::new(&ingest.file_roots, &ingest.allowed_hosts)?;
        let kafka = producer_settings(&settings.kafka, ingest.write_timeout);
        let writer_stop = CancellationToken::new();
        let (writer, writer_tasks) = Writer::start(
            KafkaFactory::new(kafka),
            codec.clone(),
            names,
            WriterConfig {
                role: ClientRole::Ingest,
                transactional_id: transactional_id(settings),
                exact_id: false,
                on_fatal: OnFatal::Reinitialize,
                writers: ingest.writers,
                max_requests: ingest.batch_max_requests,
                linger: ingest.batch_linger,
                write_timeout: ingest.write_timeout,
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
            idempotency: IdempotencyStore::new(ingest.idempotency_ttl, ingest.idempotency_capacity),
            settings: ingest.clone(),
            auth,
            codec,
            writer: writer.clone(),
            policy,
            instance: std::env::var("HOSTNAME").unwrap_or_else(|_| "ingest".to_owned()),
        });

        let (table, table_task) = Table::<Schedule>::table(TailSource {
            factory: KafkaFactory::new(settings.kafka.clone()),
            role: ClientRole::Ingest,
            codec: state.codec.clone(),
            topic: Topic::Schedules,
            stop: writer_stop.clone(),
        });
        let mut writer_tasks = writer_tasks;
        writer_tasks.push(table_task);
        let schedules = web::Data::new(Schedules {
            table,
            clock: scanstream_scheduler::clock::from_settings(&settings.scheduler),
            creator: Creator {
                factory: KafkaFactory::new(producer_settings(
                    &settings.kafka,
                    ingest.write_timeout,
                )),
                names: TopicNames::new(settings.topics.prefix.clone()),
                transactional_prefix: format!(
                    "{}schedule-",
                    scanstream_platform::access::ingest_transactional_prefix(settings)
                ),
                write_timeout: ingest.write_timeout,
                turn: tokio::sync::Mutex::new(()),
            },
        });
        Ok(Arc::new(Ingest {
            state,
            schedules,
            writer,
            writer_tasks: Tasks::new(writer_stop, writer_tasks),
            shutdown_timeout: ingest.write_timeout + Duration::from_secs(5),
            asyncapi: scanstream_contracts::asyncapi::document(
                &TopicNames::new(settings.topics.prefix.clone()),
                settings.topics.partitions,
                settings.topics.replication_factor,
                &settings.registry.url,
            ),
        }))
    }
}

impl Role for Ingest {
    fn name(&self) -> &'static str {
        "ingest"
    }

    fn routes(&self) -> &'static [(&'static str, &'static str)] {
        api::ROUTES
    }

    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.state.clone())
            .app_data(self.schedules.clone())
            .app_data(BodyReadTimeout(self.state.settings.body_read_timeout));
        // Before `/jobs/{uuid}` routes of any role: `/jobs/schedule` is not a job id.
        schedules::configure(cfg);
        api::configure(cfg);
    }

    /// Ready when the producer is connected and its transactions initialized, and the
    /// schedules have been read.
    fn readiness(&self) -> Readiness {
        if !self.writer.ready() {
            Readiness::new(
                false,
                json!({"reason": "Kafka producer not connected or transactions not initialized"}),
            )
        } else if !self.schedules.table.caught_up() {
            Readiness::new(
                false,
                json!({"reason": "scans.schedules not read to its end yet"}),
            )
        } else {
            Readiness::new(true, json!({}))
        }
    }

    fn openapi(&self) -> Option<utoipa::openapi::OpenApi> {
        Some(crate::openapi::document(&self.state.settings.engines))
    }

    fn asyncapi(&self) -> Option<serde_json::Value> {
        Some(self.asyncapi.clone())
    }

    /// In-flight requests may take a write's deadline.
    fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    /// Stops the writer after the last request's transaction.
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.writer_tasks.stop())
    }
}
