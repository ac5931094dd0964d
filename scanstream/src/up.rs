//! `scanstream up`: everything on one machine.
//!
//! Without a configured cluster it starts Apache Kafka and Apicurio Registry as local processes
//! (the same machinery as the test fixtures; artifacts cached after the first run). It ensures
//! topics and schemas, then runs ingest, scanner, aggregator and scheduler in this process behind
//! one HTTP port, with their state in one data folder, so a second `up` on the same folder keeps every
//! job. It runs until Ctrl-C or SIGTERM, then stops the roles and the local cluster cleanly.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use scanstream_aggregator::Aggregator;
use scanstream_ingest::Ingest;
use scanstream_platform::Settings;
use scanstream_platform::config::TokenSettings;
use scanstream_platform::kafka::{ClientRole, KafkaFactory};
use scanstream_platform::reachability::Reachability;
use scanstream_platform::server::{Application, Role, stop_roles};
use scanstream_scanner::Scanner;
use scanstream_scheduler::Scheduler;
use scanstream_testcontainers::{
    HangingTransaction, LocalCluster, LocalOptions, Supervision, TransactionTool,
};
use tokio_util::sync::CancellationToken;

use crate::cli::{GlobalArgs, UpArgs};
use crate::datadir::{data_dir, token_file};
use crate::settings;

mod secure;

/// How long the roles may take to become ready once Kafka answers.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    Config(#[from] scanstream_platform::ConfigError),
    #[error("{0}")]
    DataDir(String),
    #[error("starting the local Kafka and schema registry failed: {0}")]
    Cluster(#[from] scanstream_testcontainers::Error),
    #[error(transparent)]
    Topics(#[from] crate::topics::TopicsError),
    #[error(
        "topics drifted from what scanstream expects; fix them or run `scanstream topics ensure --allow-drift`"
    )]
    Drift,
    #[error(transparent)]
    Ingest(#[from] scanstream_ingest::IngestError),
    #[error(transparent)]
    Aggregator(#[from] scanstream_aggregator::AggregatorError),
    #[error(transparent)]
    Scanner(#[from] scanstream_scanner::Error),
    #[error(transparent)]
    Scheduler(#[from] scanstream_scheduler::SchedulerError),
    #[error(transparent)]
    Notifier(#[from] scanstream_notifier::NotifierError),
    #[error(transparent)]
    Serve(#[from] scanstream_platform::server::ServeError),
    #[error("{0} did not become ready within {1:?}; see the log for why")]
    NotReady(String, Duration),
    #[error("the demo failed: {0:#}")]
    Demo(anyhow::Error),
}

/// Where `up` logs unless told to log to the terminal.
pub fn log_file(args: &UpArgs) -> Option<PathBuf> {
    (!args.log_to_terminal).then(|| {
        data_dir(args.data_dir.clone())
            .join("logs")
            .join("scanstream.log")
    })
}

/// The folders of a data directory.
struct Layout {
    root: PathBuf,
    cluster: PathBuf,
    cache: PathBuf,
    store: PathBuf,
    repos: PathBuf,
}

impl Layout {
    fn new(root: PathBuf) -> Result<Layout, UpError> {
        let layout = Layout {
            cluster: root.join("cluster"),
            cache: root.join("cache"),
            store: root.join("store"),
            repos: root.join("repos"),
            root,
        };
        for dir in [&layout.root, &layout.cache, &layout.store, &layout.repos] {
            std::fs::create_dir_all(dir)
                .map_err(|e| UpError::DataDir(format!("cannot create {}: {e}", dir.display())))?;
        }
        Ok(layout)
    }

    /// Holds an exclusive lock on the folder while `up` runs, so a second `up` on it fails with
    /// a clear message instead of fighting over ports and files.
    fn lock(&self) -> Result<File, UpError> {
        let path = self.root.join("up.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| UpError::DataDir(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(UpError::DataDir(format!(
                "another `scanstream up` is using {}; stop it first or pass another --data-dir",
                self.root.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(UpError::DataDir(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }
}

pub async fn run(
    global: &GlobalArgs,
    args: &UpArgs,
    metrics: PrometheusHandle,
) -> Result<(), UpError> {
    let started = Instant::now();
    let layout = Layout::new(data_dir(args.data_dir.clone()))?;
    let _lock = layout.lock()?;
    let mut overrides = vec![
        ("scanner.cache_dir", layout.cache.display().to_string()),
        ("aggregator.data_dir", layout.store.display().to_string()),
    ];
    if let Some(listen) = &args.listen {
        overrides.push(("api.listen", listen.clone()));
    }
    if args.secure && settings::cluster_configured(global) {
        return Err(UpError::DataDir(
            "--secure starts a secured local cluster: it cannot be combined with a configured \
             cluster (--bootstrap, --config or SCANSTREAM__KAFKA__BOOTSTRAP_SERVERS)"
                .to_owned(),
        ));
    }
    // The principals (and so the ACLs) depend on the topic prefix and group names only, known
    // before the cluster runs.
    let principals = if args.secure {
        Some(secure::principals(&settings::load(global, &overrides)?))
    } else {
        None
    };
    let mut users = None;
    let cluster = if settings::cluster_configured(global) {
        None
    } else {
        secure::check_mode(&layout.cluster, args.secure)?;
        say!(
            "Starting a local Kafka and schema registry in {} …",
            layout.cluster.display()
        );
        let cluster = LocalCluster::start(LocalOptions {
            data_dir: layout.cluster.clone(),
            kafka_port: args.kafka_port,
            registry_port: args.registry_port,
            persistent_registry: true,
            cache_dir: scanstream_testcontainers::cache_dir(),
            ready_timeout: Duration::from_secs(180),
            users: principals
                .as_ref()
                .map(|p| p.iter().map(|p| p.name.to_owned()).collect()),
        })
        .await?;
        if let Some(principals) = &principals {
            users = Some(secure::Users::grant(&cluster, principals, &layout.cluster)?);
        }
        let endpoints = cluster.endpoints().clone();
        overrides.push(("kafka.bootstrap_servers", endpoints.bootstrap_servers));
        overrides.push(("registry.url", endpoints.registry_url));
        overrides.push(("topics.replication_factor", "1".to_owned()));
        Some(cluster)
    };
    let cluster = cluster.map(|c| Arc::new(tokio::sync::Mutex::new(c)));
    let settings = settings::load(global, &overrides)
        .map(|s| users.as_ref().map_or_else(|| s.clone(), |u| u.as_admin(&s)));
    let watching = CancellationToken::new();
    let watcher = cluster.clone().map(|cluster| {
        let kafka = settings
            .as_ref()
            .ok()
            .map(|s| KafkaFactory::new(s.kafka.clone()));
        tokio::spawn(watch_cluster(cluster, kafka, watching.clone()))
    });
    let result = match settings {
        Ok(settings) => run_roles(settings, users, &layout, args, metrics, started).await,
        Err(e) => Err(e.into()),
    };
    watching.cancel();
    if let Some(watcher) = watcher {
        let _ = watcher.await;
    }
    if let Some(cluster) = cluster.and_then(|c| Arc::try_unwrap(c).ok()) {
        say!("Stopping the local Kafka and schema registry …");
        cluster.into_inner().stop(Duration::from_secs(30)).await;
    }
    result
}

/// How long after each start of the local broker `up` looks for hanging transactions, and how
/// often. A crash leaves them within seconds of the restart (see
/// [`scanstream_testcontainers::transactions`]); they can be told from a live transaction
/// once they are a minute old.
const REPAIR_WINDOW: Duration = Duration::from_secs(300);
const REPAIR_EVERY: Duration = Duration::from_secs(20);

/// Keeps the local broker and registry running: one that exits is logged and started again,
/// with a growing pause while it keeps dying, and for a while after each start of the broker
/// hanging transactions are looked for and aborted. Runs as an async task, so the restarted
/// processes are tied to the runtime's long-lived worker threads.
async fn watch_cluster(
    cluster: Arc<tokio::sync::Mutex<LocalCluster>>,
    kafka: Option<KafkaFactory>,
    stop: CancellationToken,
) {
    let tool = cluster.lock().await.transactions();
    // The first start counts: an `up` killed with its broker leaves the same on its data folder.
    let mut repair_until = Instant::now() + REPAIR_WINDOW;
    let mut next_repair = Instant::now() + REPAIR_EVERY;
    let mut repairing: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let now = Instant::now();
        let idle = repairing
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished);
        if now >= next_repair && now < repair_until && idle {
            next_repair = now + REPAIR_EVERY;
            repairing = Some(tokio::spawn(repair_hanging(tool.clone(), kafka.clone())));
        }
        for seen in cluster.lock().await.supervise() {
            match seen {
                Supervision::Restarted { service, status } => {
                    tracing::error!(service, %status, "the local {service} exited; started it again");
                    eprintln!(
                        "scanstream up: the local {service} exited ({status}); started it again"
                    );
                    if service == "kafka" {
                        repair_until = Instant::now() + REPAIR_WINDOW;
                    }
                }
                Supervision::Waiting { service, status } => {
                    tracing::warn!(service, %status, "the local {service} is down; restarting it after a pause");
                }
                Supervision::RestartFailed { service, error } => {
                    tracing::error!(service, %error, "the local {service} could not be started again; retrying");
                    eprintln!(
                        "scanstream up: the local {service} could not be started again: {error}"
                    );
                }
            }
        }
    }
}

/// Finds the local broker's hanging transactions and aborts them, saying which record each
/// one held so that a scan request lost with it can be submitted again.
async fn repair_hanging(tool: TransactionTool, kafka: Option<KafkaFactory>) {
    let finder = tool.clone();
    let found = match tokio::task::spawn_blocking(move || finder.find_hanging()).await {
        Ok(Ok(found)) => found,
        Ok(Err(error)) => {
            tracing::warn!(%error, "looking for hanging transactions failed; trying again later");
            return;
        }
        Err(_) => return,
    };
    for hanging in found {
        let key = match &kafka {
            Some(kafka) => first_key(kafka.clone(), hanging.clone()).await,
            None => None,
        };
        let key = key.unwrap_or_else(|| "unknown".to_owned());
        let aborter = tool.clone();
        let target = hanging.clone();
        match tokio::task::spawn_blocking(move || aborter.abort(&target)).await {
            Ok(Ok(())) => {
                tracing::error!(
                    topic = %hanging.topic,
                    partition = hanging.partition,
                    offset = hanging.start_offset,
                    producer_id = hanging.producer_id,
                    record_key = %key,
                    "aborted a transaction the broker left open after a crash; consumers were \
                     stuck behind it. A scan request it held is lost: submit it again"
                );
                eprintln!(
                    "scanstream up: aborted a transaction the broker left open after a crash on \
                     {}-{} at offset {} (first record key {key}); consumers were stuck behind it. \
                     If it held a scan request, submit that scan again.",
                    hanging.topic, hanging.partition, hanging.start_offset
                );
            }
            Ok(Err(error)) => {
                tracing::error!(
                    topic = %hanging.topic,
                    partition = hanging.partition,
                    offset = hanging.start_offset,
                    %error,
                    "aborting a hanging transaction failed; trying again later"
                );
            }
            Err(_) => {}
        }
    }
}

/// The key of the first record of `hanging` (a job id on every scanstream topic), read
/// uncommitted since the transaction never ended.
async fn first_key(kafka: KafkaFactory, hanging: HangingTransaction) -> Option<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    tokio::task::spawn_blocking(move || {
        let mut config = kafka.client_config(ClientRole::Admin);
        config
            .set("group.id", "scanstream-up-repair")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_uncommitted");
        let consumer: BaseConsumer = config.create().ok()?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(
                &hanging.topic,
                hanging.partition,
                Offset::Offset(hanging.start_offset),
            )
            .ok()?;
        consumer.assign(&assignment).ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) {
                return Some(String::from_utf8_lossy(message.key()?).into_owned());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

async fn run_roles(
    mut settings: Settings,
    users: Option<secure::Users>,
    layout: &Layout,
    args: &UpArgs,
    metrics: PrometheusHandle,
    started: Instant,
) -> Result<(), UpError> {
    settings
        .ingest
        .file_roots
        .push(layout.repos.display().to_string());
    // Job-manager clients name a job and no repository (`POST /jobs {"name": "test10"}`): the
    // repository of that name under the data folder, unless a template is configured. One that
    // does not exist is refused at submit (`file-not-found`).
    if settings.ingest.repo_template.is_empty() {
        settings.ingest.repo_template = format!("file://{}/{{name}}", layout.repos.display());
    }
    if settings.kafka.group_instance_id.is_empty() {
        // Static membership, stable per data folder (which only one `up` can hold at a time):
        // after a crash the restarted process takes its partitions back at once.
        let folder = std::fs::canonicalize(&layout.root).unwrap_or_else(|_| layout.root.clone());
        let id = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            folder.to_string_lossy().as_bytes(),
        );
        settings.kafka.group_instance_id =
            format!("scanstream-up-{}", &id.simple().to_string()[..12]);
    }
    let token = if settings.api.auth_enabled && settings.api.tokens.is_empty() {
        let (token, file) = local_token(&layout.root)?;
        settings.api.tokens.push(TokenSettings {
            name: "up".to_owned(),
            sha256: scanstream_platform::auth::hash_token(&token),
            scopes: vec![
                "scans:write".to_owned(),
                "scans:read".to_owned(),
                "findings:triage".to_owned(),
            ],
        });
        Some((token, file))
    } else {
        None
    };

    if settings.api.session_key.is_none() {
        // The dashboard's session cookies are signed with this key; ingest and aggregator run
        // in this process and share it, and a restart on the same folder keeps the sessions.
        let key = local_secret(&layout.root.join("session-key"), "")?;
        settings.api.session_key = Some(key.into());
    }
    if !args.webhook.is_empty() {
        let secret = local_secret(&layout.root.join("webhook-secret"), "whs_")?;
        for (n, url) in args.webhook.iter().enumerate() {
            settings
                .notifier
                .destinations
                .push(scanstream_platform::config::DestinationSettings {
                    name: format!("webhook-{}", n + 1),
                    kind: scanstream_platform::config::DestinationKind::Webhook,
                    url: url.clone(),
                    secret: Some(secret.clone().into()),
                    min_severity: "info".to_owned(),
                    repos: Vec::new(),
                });
        }
        settings.notifier.validate()?;
    }

    let report = crate::topics::ensure(&settings, false).await?;
    if report.has_drift() {
        return Err(UpError::Drift);
    }
    let mut roles: Vec<Arc<dyn Role>> = Vec::new();
    // Ingest is served first: its `/jobs/schedule` routes must match before the aggregator's
    // `/jobs/{uuid}` (the server refuses the other order).
    for kind in [
        RoleKind::Ingest,
        RoleKind::Aggregator,
        RoleKind::Scanner,
        RoleKind::Scheduler,
        RoleKind::Notifier,
    ] {
        // Secured, each role connects as its own user (and so holds only its own ACLs).
        let role_settings = match &users {
            Some(users) => users.as_user(&settings, kind.user()),
            None => settings.clone(),
        };
        match kind.start(&role_settings).await {
            Ok(role) => roles.push(role),
            Err(e) => {
                stop_roles(&roles).await;
                return Err(e);
            }
        }
    }
    roles.push(Reachability::start(
        KafkaFactory::new(settings.kafka.clone()),
        ClientRole::Admin,
    ));
    let app = match Application::build(&settings.api.listen, roles.clone(), metrics) {
        Ok(app) => app,
        Err(e) => {
            stop_roles(&roles).await;
            return Err(e.into());
        }
    };
    let outcome =
        serve_until_stopped(&settings, app.port(), &roles, layout, args, token, started).await;
    say!("Stopping …");
    let _ = app.stop().await;
    outcome
}

/// The roles `up` runs, in the order they are served.
#[derive(Debug, Clone, Copy)]
enum RoleKind {
    Ingest,
    Aggregator,
    Scanner,
    Scheduler,
    Notifier,
}

impl RoleKind {
    /// The SCRAM user the role connects as under `--secure` (its principal's name).
    fn user(self) -> &'static str {
        match self {
            RoleKind::Ingest => "ingest",
            RoleKind::Aggregator => "aggregator",
            RoleKind::Scanner => "scanner",
            RoleKind::Scheduler => "scheduler",
            RoleKind::Notifier => "notifier",
        }
    }

    async fn start(self, settings: &Settings) -> Result<Arc<dyn Role>, UpError> {
        Ok(match self {
            RoleKind::Ingest => Ingest::start(settings).await?,
            RoleKind::Aggregator => Aggregator::start(settings).await?,
            RoleKind::Scanner => Scanner::start(settings).await?,
            RoleKind::Scheduler => Scheduler::start(settings).await?,
            RoleKind::Notifier => scanstream_notifier::Notifier::start(settings).await?,
        })
    }
}

async fn serve_until_stopped(
    settings: &Settings,
    port: u16,
    roles: &[Arc<dyn Role>],
    layout: &Layout,
    args: &UpArgs,
    token: Option<(String, PathBuf)>,
    started: Instant,
) -> Result<(), UpError> {
    let shutdown = scanstream_platform::shutdown::on_signal();
    let host = settings
        .api
        .listen
        .rsplit_once(':')
        .map_or("127.0.0.1", |(host, _)| host);
    let host = if host == "0.0.0.0" || host == "[::]" {
        "127.0.0.1"
    } else {
        host
    };
    let url = format!("http://{host}:{port}");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let waiting: Vec<&str> = roles
            .iter()
            .filter(|role| !role.readiness().ready)
            .map(|role| role.name())
            .collect();
        if waiting.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(UpError::NotReady(waiting.join(", "), READY_TIMEOUT));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    say!();
    say!(
        "scanstream is up (ready in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    say!("  Dashboard:        {url}/ui/");
    say!("  HTTP API:         {url}");
    say!(
        "                    POST /jobs · GET /jobs/stats · /jobs/{{uuid}} · /findings · /repos · /readyz · /metrics · /openapi.json · /asyncapi.json"
    );
    match &token {
        Some((_, file)) => say!(
            "  API token:        {} (scanstream submit/stats read it; curl: -H \"Authorization: Bearer $(cat {0})\")",
            file.display()
        ),
        None if settings.api.auth_enabled => {
            say!("  API token:        one of the configured api.tokens")
        }
        None => say!("  API token:        none (api.auth_enabled = false)"),
    }
    for destination in &settings.notifier.destinations {
        say!(
            "  Notifies:         {} ({:?}) when a secret becomes open",
            destination.name,
            destination.kind
        );
    }
    if !args.webhook.is_empty() {
        say!(
            "  Webhook key:      {} (HMAC-SHA256 of each body, header X-Scanstream-Signature)",
            layout.root.join("webhook-secret").display()
        );
    }
    say!("  Kafka bootstrap:  {}", settings.kafka.bootstrap_servers);
    if args.secure {
        say!(
            "  Kafka security:   SASL_SSL, SCRAM-SHA-512, an ACL per role; each role connects as its own user"
        );
        say!(
            "  Kafka users:      {}/<user>.properties (admin, ingest, scanner, …; CA {})",
            layout.cluster.join("users").display(),
            layout.cluster.join("ca.pem").display()
        );
    }
    say!("  Schema registry:  {}", settings.registry.url);
    if !settings.topics.prefix.is_empty() {
        say!("  Topic prefix:     {}", settings.topics.prefix);
    }
    say!("  Data folder:      {}", layout.root.display());
    say!(
        "  Repositories:     file:// URLs under {} may be scanned",
        layout.repos.display()
    );
    say!(
        "  Without a repo:   a job named NAME scans {}",
        settings.ingest.repo_template
    );
    if !args.log_to_terminal {
        say!(
            "  Log:              {}",
            layout.root.join("logs").join("scanstream.log").display()
        );
    }
    say!();
    if args.demo {
        let demo = crate::demo::run(
            settings,
            &url,
            token.map(|(token, _)| token),
            &layout.repos,
            &shutdown,
        );
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            result = demo => result.map_err(UpError::Demo)?,
        }
    } else {
        say!(
            "Try:  scanstream submit <repo>      (a git repository at {}/<repo>)",
            layout.repos.display()
        );
        say!("      scanstream stats");
    }
    if !args.once {
        say!("Press Ctrl-C to stop.");
        shutdown.cancelled().await;
    }
    Ok(())
}

/// The data folder's API token, created (0600) on first use. Returns it and its file.
fn local_token(root: &Path) -> Result<(String, PathBuf), UpError> {
    let file = token_file(root);
    Ok((local_secret(&file, "sst_")?, file))
}

/// The secret kept in `file` (mode 0600): `prefix` and 256 random bits, made the first time.
fn local_secret(file: &Path, prefix: &str) -> Result<String, UpError> {
    match std::fs::read_to_string(file) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(UpError::DataDir(format!(
                "cannot read {}: {e}",
                file.display()
            )));
        }
    }
    let token = format!(
        "{prefix}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let write = || -> std::io::Result<()> {
        let mut out = File::options()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(file)?;
        out.write_all(token.as_bytes())?;
        out.write_all(b"\n")?;
        out.sync_all()
    };
    write().map_err(|e| UpError::DataDir(format!("cannot write {}: {e}", file.display())))?;
    Ok(token)
}
