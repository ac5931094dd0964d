//! Starting the scanner role (the command consumer and the periodic cache clean-up), and the
//! engines, mirrors and clean-up a configuration describes. Served, the role answers only the
//! shared probes and `/metrics`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use scanstream_contracts::TopicNames;
use scanstream_platform::Settings;
use scanstream_platform::config::{Executor as ExecutorKind, ScannerSettings};
use scanstream_platform::kafka::{ClientRole, KafkaFactory};
use scanstream_platform::net::HostPolicy;
use scanstream_platform::server::{Readiness, Role, StopOrder};
use scanstream_platform::shutdown::Tasks;
use scanstream_platform::supervise::retry_until;
use secrecy::ExposeSecret;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::command::worktree::Bounds;
use crate::command::{CommandEngines, Executor, KubernetesExecutor, LocalExecutor, Workspace};
use crate::consumer::{CommandConsumer, ConsumerConfig};
use crate::emit::Emitter;
use crate::engine::Engine;
use crate::job::JobContext;
use crate::ledger::{Ledger, remove_files_older_than};
use crate::mirror::{Credential, MirrorConfig, Mirrors};
use crate::rules::RulePack;
use crate::runner::Limits;
use crate::scan::{Scanning, parse_ignore};
use crate::secrets::{DEFAULT_FINGERPRINT_KEY, SecretsEngine};

/// The engines and scan settings a configuration describes; shared by the service and
/// `scanstream scan`.
pub fn scanning(
    scanner: &ScannerSettings,
    cache_dir: Option<&Path>,
    file_roots: &[String],
) -> Result<Scanning, Error> {
    let pack = RulePack::load(&scanner.rule_files)?;
    let key = fingerprint_key(scanner);
    let engines: Vec<Arc<dyn Engine>> = vec![Arc::new(SecretsEngine::new(pack, &key))];
    let ignored = if scanner.ignore_file.is_empty() {
        HashSet::new()
    } else {
        let text = std::fs::read_to_string(&scanner.ignore_file)
            .map_err(|e| Error::io(Path::new(&scanner.ignore_file), e))?;
        parse_ignore(&text)
    };
    let scanning = Scanning::new(
        engines,
        cache_dir,
        Limits {
            max_blob_bytes: scanner.max_blob_bytes,
            window_bytes: scanner.window_bytes,
            ..Limits::default()
        },
        ignored,
        file_roots.iter().map(PathBuf::from).collect(),
    );
    Ok(if scanner.repo_config {
        scanning.with_repository_rules(scanner.rule_files.clone(), &key)
    } else {
        scanning
    })
}

/// The command engines (`[engines.<id>]`) a configuration describes, with the executor
/// `scanner.executor` names. Their versions are asked for now (the version commands run, or
/// the images are read). `scanning` supplies the engine that masks secrets in engine logs.
pub async fn commands(
    settings: &Settings,
    cache_dir: &Path,
    scanning: &Scanning,
) -> Result<CommandEngines, Error> {
    let scanner = &settings.scanner;
    let engines = settings
        .command_engines()
        .map_err(|e| Error::Source(e.to_string()))?;
    let executor: Arc<dyn Executor> = match scanner.executor {
        ExecutorKind::Local => Arc::new(LocalExecutor),
        ExecutorKind::Kubernetes if engines.is_empty() => Arc::new(LocalExecutor),
        ExecutorKind::Kubernetes => Arc::new(
            KubernetesExecutor::from_environment(scanner.kubernetes.clone(), cache_dir).await?,
        ),
    };
    Ok(CommandEngines::new(
        engines,
        executor,
        scanner.executor,
        Workspace {
            cache_dir: cache_dir.to_path_buf(),
            bounds: Bounds {
                max_bytes: scanner.worktree_max_bytes,
                timeout: scanner.worktree_timeout,
            },
            repo_config: scanner.repo_config,
        },
        &fingerprint_key(scanner),
        scanning.engines().first().cloned(),
    )
    .await)
}

/// The key of finding fingerprints: `scanner.fingerprint_key`, else the built-in one.
fn fingerprint_key(scanner: &ScannerSettings) -> Vec<u8> {
    scanner
        .fingerprint_key
        .as_ref()
        .map(|k| k.expose_secret().as_bytes().to_vec())
        .unwrap_or_else(|| DEFAULT_FINGERPRINT_KEY.as_bytes().to_vec())
}

/// The mirror cache a configuration describes.
pub fn mirrors(scanner: &ScannerSettings) -> Mirrors {
    Mirrors::new(MirrorConfig {
        root: PathBuf::from(&scanner.cache_dir).join("mirrors"),
        fetch_timeout: scanner.fetch_timeout,
        lock_timeout: scanner.lock_timeout,
        refetch_after: scanner.refetch_after,
        credentials: scanner
            .credentials
            .iter()
            .map(|c| Credential {
                host: c.host.clone(),
                username: c.username.clone(),
                token: c.token.clone(),
                ssh_key_file: c.ssh_key_file.as_ref().map(PathBuf::from),
            })
            .collect(),
    })
}

/// One clean-up pass: mirrors past their idle time or budget, old ledger entries, and what
/// scans left that nobody wrote again for as long as an idle mirror is kept: command engines'
/// cached results and history walks (`mirror_max_idle_hours`), kept engine logs
/// (`ledger_retention_hours`).
pub fn collect_garbage(scanner: &ScannerSettings) -> Result<crate::mirror::GcReport, Error> {
    let report = mirrors(scanner).gc(scanner.mirror_max_idle, scanner.mirror_budget_bytes)?;
    let cache = PathBuf::from(&scanner.cache_dir);
    let removed = Ledger::new(&cache.join("attempts")).gc(scanner.ledger_retention);
    let stale = ["engine-results", "walks"]
        .iter()
        .map(|dir| remove_files_older_than(&cache.join(dir), scanner.mirror_max_idle, true))
        .sum::<usize>();
    let logs = remove_files_older_than(&cache.join("engine-logs"), scanner.ledger_retention, true);
    tracing::info!(
        kept = report.kept,
        evicted = report.evicted,
        freed_bytes = report.bytes_freed,
        ledger_entries_removed = removed,
        stale_results_and_walks_removed = stale,
        engine_logs_removed = logs,
        "cache clean-up done"
    );
    Ok(report)
}

/// The scanner role: the command consumer and the periodic cache clean-up running. It has no
/// routes of its own; served, it answers the shared probes and `/metrics`.
pub struct Scanner {
    ready: Arc<AtomicBool>,
    tasks: Tasks,
}

impl Scanner {
    /// Starts consuming commands; stopping it ([`Role::stop`]) drains and leaves the group.
    pub async fn start(settings: &Settings) -> Result<Arc<Scanner>, Error> {
        crate::metrics::describe();
        let config = settings.scanner.clone();
        let cache_dir = PathBuf::from(&config.cache_dir);
        std::fs::create_dir_all(&cache_dir).map_err(|e| Error::io(&cache_dir, e))?;
        let names = TopicNames::new(settings.topics.prefix.clone());
        let codec = Arc::new(scanstream_platform::registry::codec(settings)?);
        let factory = KafkaFactory::new(settings.kafka.clone());
        let producer = factory.producer(ClientRole::Scanner)?;
        let scanning = Arc::new(scanning(
            &config,
            Some(&cache_dir),
            &settings.ingest.file_roots,
        )?);
        let commands = Arc::new(commands(settings, &cache_dir, &scanning).await?);
        let mut engines = scanning.engine_ids();
        engines.extend(commands.ids());
        let jobs = Arc::new(JobContext {
            commands,
            emitter: Emitter::new(producer, codec.clone(), names.clone(), config.instance()),
            mirrors: mirrors(&config),
            ledger: Ledger::new(&cache_dir.join("attempts")),
            scanning,
            hosts: HostPolicy::new(&settings.ingest.allowed_hosts)?,
            default_timeout: config.job_timeout.max(Duration::from_secs(1)),
            max_attempts: config.max_attempts,
            retry_backoff: config.retry_backoff,
        });
        let consumer = CommandConsumer::new(
            factory,
            names,
            codec.clone(),
            jobs,
            ConsumerConfig {
                group_id: scanstream_platform::access::group_id(settings, &config.group_id),
                concurrency: config.concurrency,
                queue_max: config.queue_max.max(1),
                drain_timeout: config.drain_timeout,
                engines,
            },
        );
        let stop = CancellationToken::new();
        let ready = Arc::new(AtomicBool::new(false));
        let consuming = tokio::spawn({
            let (ready, stop) = (ready.clone(), stop.clone());
            async move {
                let registered = || codec.register_all();
                let pause = Duration::from_secs(2);
                if retry_until("schemas not registered yet", pause, &stop, registered).await {
                    consumer.run(ready, stop).await;
                }
            }
        });
        let cleaning = tokio::spawn({
            let (config, stop) = (config.clone(), stop.clone());
            async move {
                let every = config.gc_interval.max(Duration::from_secs(60));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    let config = config.clone();
                    match tokio::task::spawn_blocking(move || collect_garbage(&config)).await {
                        Ok(Err(e)) => tracing::warn!(error = %e, "cache clean-up failed"),
                        Err(e) => tracing::warn!(error = %e, "cache clean-up task failed"),
                        Ok(Ok(_)) => {}
                    }
                }
            }
        });
        tracing::info!(cache_dir = %cache_dir.display(), "scanner started");
        Ok(Arc::new(Scanner {
            ready,
            tasks: Tasks::new(stop, vec![consuming, cleaning]),
        }))
    }
}

impl Role for Scanner {
    fn name(&self) -> &'static str {
        "scanner"
    }

    /// Ready once the consumer has joined the group.
    fn readiness(&self) -> Readiness {
        let consuming = self.ready.load(Ordering::Acquire);
        Readiness::new(consuming, json!({ "consuming": consuming }))
    }

    fn http_workers(&self) -> Option<usize> {
        Some(1)
    }

    /// Running scans drain while the probes still answer.
    fn stop_order(&self) -> StopOrder {
        StopOrder::BeforeServer
    }

    /// Drains running scans (see `scanner.drain_timeout_seconds`), commits and leaves the group.
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.tasks.stop())
    }
}
