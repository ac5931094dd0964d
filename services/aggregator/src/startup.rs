//! Building and running the aggregator.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
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
use crate::changelog::{Progress, follow};
use crate::processor::{Processor, ProcessorConfig};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Codec(#[from] scanstream_contracts::CodecError),
    #[error("the HTTP server failed: {0}")]
    Server(#[source] std::io::Error),
}

/// A running aggregator: store open, changelog follower and processor started, HTTP listening.
pub struct Application {
    server: ServerHandle,
    serving: JoinHandle<std::io::Result<()>>,
    port: u16,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// To tell when a crashed instance has let go of its store (blocking writes in flight
    /// outlive the aborted tasks that started them).
    store: std::sync::Weak<Store>,
}

async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    scanstream_platform::http::observe("aggregator", req, next).await
}

impl Application {
    pub async fn build(
        settings: &Settings,
        metrics: PrometheusHandle,
    ) -> Result<Application, AggregatorError> {
        let config = settings.aggregator.clone();
        let names = TopicNames::new(settings.topics.prefix.clone());
        let store = Arc::new(Store::open(&PathBuf::from(&config.data_dir))?);
        let store_ref = Arc::downgrade(&store);
        let codec = Arc::new(scanstream_platform::registry::codec(settings)?);
        let factory = KafkaFactory::new(settings.kafka.clone());
        let progress = Arc::new(Progress::default());
        let folding = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let group_id = format!("{}{}", settings.topics.prefix, config.group_id);

        let follower = tokio::spawn({
            let (factory, names, store, progress, stop, group_id) = (
                factory.clone(),
                names.clone(),
                store.clone(),
                progress.clone(),
                stop.clone(),
                group_id.clone(),
            );
            async move {
                while !stop.is_cancelled() {
                    let run = follow(
                        factory.clone(),
                        names.clone(),
                        group_id.clone(),
                        store.clone(),
                        progress.clone(),
                        stop.clone(),
                    );
                    if let Err(e) = run.await {
                        tracing::warn!(error = %e, "changelog follower restarts");
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        });
        let processor = Processor::new(
            factory,
            names,
            codec.clone(),
            store.clone(),
            progress.clone(),
            ProcessorConfig {
                group_id,
                transactional_id: format!(
                    "{}{}-aggregator-{}",
                    settings.topics.prefix,
                    settings.kafka.client_id,
                    config.instance()
                ),
                batch_max_events: config.batch_max_events,
                linger: Duration::from_millis(config.batch_linger_ms),
            },
        );
        let processing = tokio::spawn({
            let (folding, stop, codec) = (folding.clone(), stop.clone(), codec.clone());
            async move {
                // Subjects get BACKWARD compatibility before the first changelog write.
                while let Err(e) = codec.register_all().await {
                    tracing::warn!(error = %e, "schemas not registered yet; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
                processor.run(folding, stop).await;
            }
        });

        let auth = Authenticator::new(&settings.api);
        if !auth.enabled() {
            tracing::warn!(listen = %settings.api.listen, "AUTHENTICATION IS OFF: anyone who can reach this address can read job state (allowed only on loopback)");
        }
        let state = web::Data::new(AppState {
            store,
            codec,
            auth,
            progress,
            folding,
            metrics,
        });
        let listener =
            TcpListener::bind(&settings.api.listen).map_err(|source| AggregatorError::Bind {
                address: settings.api.listen.clone(),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(AggregatorError::Server)?
            .port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(observe))
                .configure(api::configure)
        })
        .disable_signals()
        .shutdown_timeout(10)
        .listen(listener)
        .map_err(AggregatorError::Server)?
        .run();
        tracing::info!(port, "aggregator listening");
        // Serving starts now: an actix server only accepts connections once polled.
        let handle = server.handle();
        let serving = tokio::spawn(server);
        Ok(Application {
            server: handle,
            serving,
            port,
            stop,
            tasks: vec![follower, processing],
            store: store_ref,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown`, then stops HTTP, finishes the batch in progress and stops.
    pub async fn run_until_stopped(
        self,
        shutdown: CancellationToken,
    ) -> Result<(), AggregatorError> {
        shutdown.cancelled().await;
        tracing::info!("aggregator stopping");
        self.server.stop(true).await;
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        match self.serving.await {
            Ok(result) => result.map_err(AggregatorError::Server),
            Err(e) => Err(AggregatorError::Server(std::io::Error::other(e))),
        }
    }

    /// Stops without any clean-up, as a crash would: tasks are aborted mid-batch and the HTTP
    /// server dropped. For failure tests.
    pub async fn crash(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.server.stop(false).await;
        let _ = self.serving.await;
        for task in self.tasks {
            let _ = task.await;
        }
        // Like a dead process, a crashed instance holds no file lock once this returns.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.store.strong_count() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
