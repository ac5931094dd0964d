//! Starting the aggregator role; [`scanstream_platform::server::Application`] serves and stops
//! it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::web;
use futures::future::BoxFuture;
use scanstream_contracts::TopicNames;
use scanstream_platform::Settings;
use scanstream_platform::auth::Authenticator;
use scanstream_platform::kafka::{ClientRole, KafkaFactory};
use scanstream_platform::server::{Readiness, Role};
use scanstream_platform::shutdown::Tasks;
use scanstream_platform::supervise::{Supervised, retry_until, supervise};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::changelog::{Changelog, INVENTORY, JOB_STATE, Progress, follow};
use crate::freshness::Freshness;
use crate::inventory::processor::InventoryProcessor;
use crate::processor::{Parts, Processor, ProcessorConfig};
use crate::store::Store;
use scanstream_contracts::Topic;
use scanstream_contracts::schedule::Schedule;
use scanstream_platform::tail::{Table, TailSource};

/// The API's routes and the dashboard's.
static ROUTES: std::sync::LazyLock<Vec<(&'static str, &'static str)>> =
    std::sync::LazyLock::new(|| [api::ROUTES, crate::ui::ROUTES].concat());

/// How often a start retries registering the schemas while the registry does not answer.
const REGISTER_PAUSE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Codec(#[from] scanstream_contracts::CodecError),
    #[error(transparent)]
    Kafka(#[from] scanstream_platform::kafka::KafkaError),
}

/// The aggregator role: store open, changelog follower and processor started, routes ready
/// to be served.
pub struct Aggregator {
    state: web::Data<AppState>,
    progress: Arc<Progress>,
    inventory_progress: Arc<Progress>,
    folding: Arc<AtomicBool>,
    inventory_folding: Arc<AtomicBool>,
    tasks: Tasks,
}

impl Aggregator {
    /// Opens the store and starts following the changelog and folding events; serve the role
    /// with [`scanstream_platform::server::Application`], which stops it after the server.
    pub async fn start(settings: &Settings) -> Result<Arc<Aggregator>, AggregatorError> {
        crate::metrics::describe();
        let config = settings.aggregator.clone();
        let names = TopicNames::new(settings.topics.prefix.clone());
        let store = Arc::new(Store::open(&PathBuf::from(&config.data_dir))?);
        let codec = Arc::new(scanstream_platform::registry::codec(settings)?);
        let factory = KafkaFactory::new(settings.kafka.clone());
        let progress = Arc::new(Progress::default());
        let folding = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let group_id = scanstream_platform::access::group_id(settings, &config.group_id);

        let inventory_progress = Arc::new(Progress::default());
        let follow_changelog = |changelog: Changelog, progress: Arc<Progress>| {
            let (factory, names, store, stop, group_id) = (
                factory.clone(),
                names.clone(),
                store.clone(),
                stop.clone(),
                group_id.clone(),
            );
            tokio::spawn(async move {
                let supervised = Supervised {
                    task: "changelog follower",
                    resumes: "from the store's checkpoints",
                    restarts: None,
                    pause: Duration::from_secs(1),
                };
                supervise(
                    supervised,
                    &stop,
                    || {},
                    || {
                        follow(
                            changelog,
                            factory.clone(),
                            names.clone(),
                            group_id.clone(),
                            store.clone(),
                            progress.clone(),
                            stop.clone(),
                        )
                    },
                )
                .await;
            })
        };
        let follower = follow_changelog(JOB_STATE, progress.clone());
        let inventory_follower = follow_changelog(INVENTORY, inventory_progress.clone());
        let freshness = Arc::new(Freshness::new(
            &factory,
            &names,
            &group_id,
            progress.clone(),
            store.clone(),
        )?);
        let processor = Processor::new(Parts {
            factory: factory.clone(),
            names: names.clone(),
            codec: codec.clone(),
            store: store.clone(),
            progress: progress.clone(),
            config: ProcessorConfig {
                group_id: group_id.clone(),
                transactional_id: format!(
                    "{}{}",
                    scanstream_platform::access::aggregator_transactional_prefix(settings),
                    config.instance()
                ),
                batch_max_events: config.batch_max_events,
                linger: config.batch_linger,
            },
        });
        let inventory = InventoryProcessor::new(Parts {
            factory: factory.clone(),
            names: names.clone(),
            codec: codec.clone(),
            store: store.clone(),
            progress: inventory_progress.clone(),
            config: ProcessorConfig {
                group_id: scanstream_platform::access::inventory_group(&group_id),
                transactional_id: format!(
                    "{}inventory-{}",
                    scanstream_platform::access::aggregator_transactional_prefix(settings),
                    config.instance()
                ),
                batch_max_events: config.batch_max_events,
                linger: config.batch_linger,
            },
        });
        let inventory_folding = Arc::new(AtomicBool::new(false));
        let processing = tokio::spawn({
            let (folding, inventory_folding, stop, codec) = (
                folding.clone(),
                inventory_folding.clone(),
                stop.clone(),
                codec.clone(),
            );
            async move {
                // Subjects get BACKWARD compatibility before the first changelog write.
                let registered = || codec.register_all();
                if retry_until(
                    "schemas not registered yet",
                    REGISTER_PAUSE,
                    &stop,
                    registered,
                )
                .await
                {
                    tokio::join!(
                        processor.run(folding, stop.clone()),
                        inventory.run(inventory_folding, stop)
                    );
                }
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
        let triage = crate::inventory::api::TriageWriter {
            producer: factory.producer(ClientRole::Aggregator)?,
            names: TopicNames::new(settings.topics.prefix.clone()),
            codec: codec.clone(),
            partitions: tokio::sync::OnceCell::new(),
        };
        let index = Arc::new(crate::index::Index::default());
        let indexing = tokio::spawn(index.clone().follow(
            store.clone(),
            codec.clone(),
            stop.clone(),
        ));
        let state = web::Data::new(AppState {
            store,
            codec,
            auth,
            schedules,
            freshness,
            triage,
            index,
        });
        Ok(Arc::new(Aggregator {
            state,
            progress,
            inventory_progress,
            folding,
            inventory_folding,
            tasks: Tasks::new(
                stop.clone(),
                vec![
                    follower,
                    inventory_follower,
                    processing,
                    schedules_task,
                    indexing,
                ],
            ),
        }))
    }
}

impl Role for Aggregator {
    fn name(&self) -> &'static str {
        "aggregator"
    }

    fn routes(&self) -> &'static [(&'static str, &'static str)] {
        ROUTES.as_slice()
    }

    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.state.clone());
        api::configure(cfg);
        crate::ui::configure(cfg);
    }

    /// Ready when the store is restored from both changelogs and both folds are running.
    fn readiness(&self) -> Readiness {
        let restored = self.progress.restored();
        let folding = self.folding.load(Ordering::Acquire);
        let inventory_restored = self.inventory_progress.restored();
        let inventory_folding = self.inventory_folding.load(Ordering::Acquire);
        Readiness::new(
            restored && folding && inventory_restored && inventory_folding,
            json!({
                "restored": restored,
                "folding": folding,
                "inventory_restored": inventory_restored,
                "inventory_folding": inventory_folding,
            }),
        )
    }

    fn openapi(&self) -> Option<utoipa::openapi::OpenApi> {
        Some(crate::openapi::document())
    }

    fn refresh_metrics(&self) {
        crate::inventory::gauge_items(&self.state.index);
        if let Ok(jobs) = self.state.store.len(crate::store::Table::Jobs) {
            metrics::gauge!(crate::metrics::STORE_KEYS).set(jobs as f64);
        }
    }

    fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }

    /// Stops the fold and the changelog follower.
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.tasks.stop())
    }

    /// Aborts the tasks mid-batch, flushing nothing, and returns once nothing but this role
    /// holds the store, so that dropping it closes the store's file.
    fn kill(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let tasks = self.tasks.take();
            for task in &tasks {
                task.abort();
            }
            // Aborting cannot reach the changelog reader's blocking thread; the stop signal ends
            // it (it folds nothing, so this flushes nothing a killed process would not have).
            self.tasks.cancel();
            for task in tasks {
                let _ = task.await;
            }
            // The stopped HTTP workers' app data is the last other holder of the store: once
            // it is gone, dropping this role closes the store's file.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while Arc::strong_count(&self.state) > 1 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    }
}
