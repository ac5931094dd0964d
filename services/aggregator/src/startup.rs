//! Building and running the aggregator.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::web;
use metrics_exporter_prometheus::PrometheusHandle;
use scanstream_contracts::TopicNames;
use scanstream_platform::Settings;
use scanstream_platform::auth::Authenticator;
use scanstream_platform::kafka::{ClientRole, KafkaFactory};
use scanstream_platform::server::{Readiness, Role, ServeError, ServeOptions, Served, serve};
use scanstream_platform::shutdown::Tasks;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::changelog::{Progress, follow};
use crate::processor::{Processor, ProcessorConfig};
use crate::store::Store;
use scanstream_contracts::Topic;
use scanstream_contracts::schedule::Schedule;
use scanstream_platform::tail::{Table, TailSource};

#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Codec(#[from] scanstream_contracts::CodecError),
    #[error(transparent)]
    Server(#[from] ServeError),
}

/// The aggregator role: store open, changelog follower and processor started, routes ready
/// to be served.
pub struct Aggregator {
    state: web::Data<AppState>,
    progress: Arc<Progress>,
    folding: Arc<AtomicBool>,
    tasks: Tasks,
}

/// A running aggregator served alone on `api.listen`.
pub struct Application {
    aggregator: Arc<Aggregator>,
    server: Served,
    store: std::sync::Weak<Store>,
}

impl Aggregator {
    /// Opens the store and starts following the changelog and folding events. Serve the role
    /// with [`scanstream_platform::server::serve`]; call [`Aggregator::stop`] once the server
    /// has stopped.
    pub async fn start(settings: &Settings) -> Result<Arc<Aggregator>, AggregatorError> {
        let config = settings.aggregator.clone();
        let names = TopicNames::new(settings.topics.prefix.clone());
        let store = Arc::new(Store::open(&PathBuf::from(&config.data_dir))?);
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
            factory.clone(),
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
        let (schedules, schedules_task) = Table::<Schedule>::table(TailSource {
            factory: factory.clone(),
            role: ClientRole::Aggregator,
            codec: codec.clone(),
            topic: Topic::Schedules,
            stop: stop.clone(),
        });
        let state = web::Data::new(AppState {
            store,
            codec,
            auth,
            schedules,
        });
        Ok(Arc::new(Aggregator {
            state,
            progress,
            folding,
            tasks: Tasks::new(stop, vec![follower, processing, schedules_task]),
        }))
    }

    /// Stops the fold and the changelog follower (call once the server stopped).
    pub async fn stop(&self) {
        self.tasks.stop().await;
    }
}

impl Role for Aggregator {
    fn name(&self) -> &'static str {
        "aggregator"
    }

    fn routes(&self) -> &'static [(&'static str, &'static str)] {
        api::ROUTES
    }

    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.state.clone());
        api::configure(cfg);
    }

    /// Ready when the store is restored from the changelog and the fold is running.
    fn readiness(&self) -> Readiness {
        let restored = self.progress.restored();
        let folding = self.folding.load(Ordering::Acquire);
        Readiness::new(
            restored && folding,
            json!({"restored": restored, "folding": folding}),
        )
    }

    fn openapi(&self) -> Option<serde_json::Value> {
        Some(crate::openapi::document())
    }

    fn refresh_metrics(&self) {
        if let Ok(jobs) = self.state.store.len() {
            metrics::gauge!("scanstream_aggregator_store_keys").set(jobs as f64);
        }
    }
}

impl Application {
    /// Starts the aggregator and binds `api.listen` (port 0 picks a free port).
    pub async fn build(
        settings: &Settings,
        metrics: PrometheusHandle,
    ) -> Result<Application, AggregatorError> {
        let aggregator = Aggregator::start(settings).await?;
        let store = Arc::downgrade(&aggregator.state.store);
        let server = serve(
            &settings.api.listen,
            vec![aggregator.clone()],
            metrics,
            ServeOptions {
                label: "aggregator",
                workers: None,
                shutdown_timeout_seconds: 10,
            },
        )?;
        tracing::info!(port = server.port(), "aggregator listening");
        Ok(Application {
            aggregator,
            server,
            store,
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub async fn run_until_stopped(
        self,
        shutdown: CancellationToken,
    ) -> Result<(), AggregatorError> {
        shutdown.cancelled().await;
        tracing::info!("aggregator stopping");
        let served = self.server.stop(true).await;
        self.aggregator.stop().await;
        Ok(served?)
    }

    /// Stops like a killed process: tasks aborted mid-batch, nothing flushed, and returns once
    /// the store's file is closed so another instance can open it.
    pub async fn crash(self) {
        let tasks = self.aggregator.tasks.take();
        for task in &tasks {
            task.abort();
        }
        // Aborting cannot reach the changelog reader's blocking thread; the stop signal ends it
        // (it folds nothing, so this flushes nothing a killed process would not have).
        self.aggregator.tasks.cancel();
        let _ = self.server.stop(false).await;
        for task in tasks {
            let _ = task.await;
        }
        drop(self.aggregator);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.store.strong_count() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
