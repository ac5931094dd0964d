//! The local-process backend: Apache Kafka in KRaft mode (one combined broker/controller) and
//! Apicurio Registry, each a JVM child process on loopback ports.
//!
//! Children are started with `PR_SET_PDEATHSIG`, so they die with the thread that started them
//! even when the parent is killed with SIGKILL or a test process exits without running
//! destructors. Start a cluster from a thread that lives as long as the cluster should: the
//! test fixture uses a dedicated thread, `scanstream up` its runtime's worker threads.

use std::ffi::OsString;
use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ready::{PollError, kafka_answers, poll, registry_answers};
use crate::secure::{Acl, Security};
use crate::transactions::TransactionTool;
use crate::{Endpoints, Error, Result, artifacts};

/// Options for [`LocalCluster::start`].
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Holds the broker's log dirs, the registry's database and both processes' logs. Reusing
    /// a folder keeps every topic and schema from the previous run.
    pub data_dir: PathBuf,
    /// Loopback port for Kafka clients; 0 picks a free one.
    pub kafka_port: u16,
    /// Loopback port for the registry; 0 picks a free one.
    pub registry_port: u16,
    /// Keep registered schemas in a file under `data_dir` instead of in memory.
    pub persistent_registry: bool,
    /// Where Maven artifacts are cached.
    pub cache_dir: PathBuf,
    /// How long each service may take to become ready.
    pub ready_timeout: Duration,
    /// `Some`: a secured cluster (SCRAM-SHA-512 over TLS, the standard authorizer, no access
    /// without an ACL) with a `broker-admin` super user and these SCRAM users ([`crate::secure`]);
    /// `None`: plaintext, no authorization.
    pub users: Option<Vec<String>>,
}

impl LocalOptions {
    /// Ephemeral options for tests: free ports, in-memory registry.
    pub fn ephemeral(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            kafka_port: 0,
            registry_port: 0,
            persistent_registry: false,
            cache_dir: crate::cache_dir(),
            ready_timeout: Duration::from_secs(120),
            users: None,
        }
    }
}

/// A running local Kafka + registry. Dropping it kills both; [`LocalCluster::stop`] shuts
/// them down gracefully; [`LocalCluster::supervise`] restarts one that died;
/// [`LocalCluster::transactions`] repairs what a broker crash can leave behind.
pub struct LocalCluster {
    endpoints: Endpoints,
    kafka: Option<Child>,
    registry: Option<Child>,
    kafka_launch: Launch,
    registry_launch: Launch,
    /// When each service may be restarted next, and the pause after that (doubling).
    kafka_backoff: Backoff,
    registry_backoff: Backoff,
    data_dir: PathBuf,
    transactions: TransactionTool,
    security: Option<Security>,
    java: PathBuf,
    classpath: String,
    /// How long each service took to become ready.
    pub kafka_ready_after: Duration,
    pub registry_ready_after: Duration,
}

/// How to start a service again: its command line and log.
#[derive(Debug, Clone)]
struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
    log: PathBuf,
    /// Written with the child's process id on every start.
    pid_file: PathBuf,
}

impl Launch {
    fn new(command: &Command, log: PathBuf, pid_file: PathBuf) -> Launch {
        Launch {
            program: PathBuf::from(command.get_program()),
            args: command.get_args().map(OsString::from).collect(),
            log,
            pid_file,
        }
    }

    /// Starts the service, tied to the calling thread (see [`spawn_tied`]).
    fn spawn(&self) -> Result<Child> {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        let child = spawn_tied(command, &self.log)?;
        let _ = fs::write(&self.pid_file, format!("{}\n", child.id()));
        Ok(child)
    }
}

/// Restart pacing of one service: the first restart at once, then doubling pauses up to a
/// minute while it keeps dying.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    not_before: Instant,
    pause: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(60);

    fn new() -> Backoff {
        Backoff {
            not_before: Instant::now(),
            pause: Backoff::FIRST,
        }
    }

    fn due(&self) -> bool {
        Instant::now() >= self.not_before
    }

    fn restarted(&mut self) {
        self.not_before = Instant::now() + self.pause;
        self.pause = (self.pause * 2).min(Backoff::MAX);
    }

    /// The service ran long enough after its restart: the next failure restarts at once.
    fn settle(&mut self) {
        if Instant::now() > self.not_before + Backoff::MAX {
            self.pause = Backoff::FIRST;
        }
    }
}

/// What [`LocalCluster::supervise`] saw and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Supervision {
    /// The service had exited (its status), and was started again.
    Restarted {
        service: &'static str,
        status: String,
    },
    /// The service had exited; it is restarted once its backoff allows.
    Waiting {
        service: &'static str,
        status: String,
    },
    /// Starting it again failed.
    RestartFailed {
        service: &'static str,
        error: String,
    },
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::io("binding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(Error::io("reading a bound port"))?
        .port();
    Ok(port)
}

fn port_or_free(port: u16) -> Result<u16> {
    if port == 0 { free_port() } else { Ok(port) }
}

/// Kafka's cluster ids are 16 random bytes in URL-safe base64 without padding. Like Kafka's own
/// generator, never one that starts with '-', which command-line tools read as an option.
fn kafka_cluster_id() -> String {
    loop {
        let id = encode_cluster_id(uuid::Uuid::new_v4().into_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn encode_cluster_id(bytes: [u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((buffer >> bits) & 0x3f) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(
            ALPHABET[((buffer << (6 - bits)) & 0x3f) as usize],
        ));
    }
    out
}

fn server_properties(
    node_dir: &Path,
    kafka_port: u16,
    controller_port: u16,
    security: Option<&Security>,
) -> String {
    let listener = if security.is_some() {
        "SASL_SSL"
    } else {
        "PLAINTEXT"
    };
    let secured = security
        .map(Security::server_properties)
        .unwrap_or_default();
    format!(
        "# Written by scanstream on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners={listener}://127.0.0.1:{kafka_port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners={listener}://127.0.0.1:{kafka_port}
controller.listener.names=CONTROLLER
listener.security.protocol.map={listener}:{listener},CONTROLLER:PLAINTEXT
inter.broker.listener.name={listener}
log.dirs={data}
auto.create.topics.enable=false
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.backoff.ms=1000
{secured}",
        data = node_dir.join("data").display()
    )
}

fn log4j_properties(log_file: &Path) -> String {
    format!(
        "rootLogger.level=INFO
rootLogger.appenderRef.file.ref=FILE
appender.file.type=File
appender.file.name=FILE
appender.file.fileName={}
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka
logger.kafka.level=INFO
logger.apache.name=org.apache.kafka
logger.apache.level=WARN
",
        log_file.display()
    )
}

/// Starts `command` so that it dies with the calling thread, its output appended to `log`.
#[allow(unsafe_code)]
fn spawn_tied(mut command: Command, log: &Path) -> Result<Child> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(Error::io(format!("opening {}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(Error::io(format!("opening {}", log.display())))?;
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent; this is the only
    // code run between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .spawn()
        .map_err(Error::io(format!("starting {:?}", command.get_program())))
}

fn exited(child: &mut Option<Child>) -> std::result::Result<(), String> {
    match child.as_mut().map(Child::try_wait) {
        Some(Ok(Some(status))) => Err(status.to_string()),
        Some(Err(e)) => Err(e.to_string()),
        _ => Ok(()),
    }
}

impl LocalCluster {
    /// Fetches the artifacts if needed, starts Kafka and the registry, and waits until both
    /// answer.
    pub async fn start(options: LocalOptions) -> Result<Self> {
        let cache = options.cache_dir.clone();
        let (java, libs, runner) = tokio::task::spawn_blocking(move || {
            let java = artifacts::java()?;
            let libs = artifacts::kafka_libs(&cache)?;
            let runner = artifacts::apicurio_runner(&cache)?;
            Ok::<_, Error>((java, libs, runner))
        })
        .await
        .map_err(|e| Error::Config(format!("artifact fetch task failed: {e}")))??;

        let kafka_dir = options.data_dir.join("kafka");
        let registry_dir = options.data_dir.join("registry");
        for dir in [&kafka_dir, &registry_dir] {
            fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        }
        let kafka_port = port_or_free(options.kafka_port)?;
        let controller_port = free_port()?;
        let registry_port = port_or_free(options.registry_port)?;

        let security = match &options.users {
            Some(users) => Some(Security::prepare(&kafka_dir.join("secure"), users)?),
            None => None,
        };
        let properties = kafka_dir.join("server.properties");
        fs::write(
            &properties,
            server_properties(&kafka_dir, kafka_port, controller_port, security.as_ref()),
        )
        .map_err(Error::io(format!("writing {}", properties.display())))?;
        let log4j = kafka_dir.join("log4j2.properties");
        let kafka_log = kafka_dir.join("kafka.log");
        fs::write(&log4j, log4j_properties(&kafka_dir.join("server.log")))
            .map_err(Error::io(format!("writing {}", log4j.display())))?;
        let classpath = format!("{}/*", libs.display());

        if !kafka_dir.join("data").join("meta.properties").is_file() {
            let format_log = kafka_dir.join("format.log");
            let out = File::create(&format_log)
                .map_err(Error::io(format!("creating {}", format_log.display())))?;
            let err = out
                .try_clone()
                .map_err(Error::io("opening the format log"))?;
            let status = Command::new(&java)
                .arg("-cp")
                .arg(&classpath)
                .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
                .args(["kafka.tools.StorageTool", "format", "-t"])
                .arg(kafka_cluster_id())
                .arg("-c")
                .arg(&properties)
                .args(security.iter().flat_map(Security::scram_arguments))
                .stdout(out)
                .stderr(err)
                .status()
                .map_err(Error::io("formatting Kafka storage"))?;
            if !status.success() {
                return Err(Error::Exited {
                    service: "kafka storage format",
                    status: status.to_string(),
                    log: format_log,
                });
            }
        }

        let mut kafka = Command::new(&java);
        kafka
            .args([
                "-Xms256m",
                "-Xmx1g",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
            ])
            .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
            .arg(format!("-Dkafka.logs.dir={}", kafka_dir.display()))
            .arg("-cp")
            .arg(&classpath)
            .arg("kafka.Kafka")
            .arg(&properties);
        let started = Instant::now();
        let kafka_launch = Launch::new(&kafka, kafka_log, kafka_dir.join("pid"));
        let kafka = kafka_launch.spawn()?;

        let mut registry = Command::new(&java);
        registry
            .args(["-Xms128m", "-Xmx512m", "-Djava.awt.headless=true"])
            .arg(format!("-Dquarkus.http.port={registry_port}"))
            .arg("-Dquarkus.http.host=127.0.0.1")
            .arg("-Dquarkus.log.level=WARN");
        if options.persistent_registry {
            registry.arg(format!(
                "-Dapicurio.datasource.url=jdbc:h2:file:{}",
                registry_dir.join("registry").display()
            ));
        }
        registry.arg("-jar").arg(&runner);
        let registry_log = registry_dir.join("registry.log");
        let registry_launch =
            Launch::new(&registry, registry_log.clone(), registry_dir.join("pid"));
        let registry = registry_launch.spawn()?;

        let bootstrap_servers = format!("127.0.0.1:{kafka_port}");
        let registry_url = format!("http://127.0.0.1:{registry_port}/apis/ccompat/v7");
        let mut cluster = LocalCluster {
            endpoints: Endpoints {
                bootstrap_servers: bootstrap_servers.clone(),
                registry_url: registry_url.clone(),
            },
            kafka: Some(kafka),
            registry: Some(registry),
            kafka_launch,
            registry_launch,
            kafka_backoff: Backoff::new(),
            registry_backoff: Backoff::new(),
            data_dir: options.data_dir.clone(),
            transactions: TransactionTool {
                java: java.clone(),
                classpath: classpath.clone(),
                bootstrap_servers: bootstrap_servers.clone(),
                broker_id: 1,
                command_config: match &security {
                    Some(s) => Some(s.admin_properties(&kafka_dir)?),
                    None => None,
                },
            },
            security: security.clone(),
            java: java.clone(),
            classpath: classpath.clone(),
            kafka_ready_after: Duration::ZERO,
            registry_ready_after: Duration::ZERO,
        };

        let admin_config = security
            .as_ref()
            .map(|s| s.client_config(crate::secure::ADMIN))
            .unwrap_or_default();
        let waited = poll(
            options.ready_timeout,
            || exited(&mut cluster.kafka),
            || kafka_answers(&bootstrap_servers, &admin_config),
        )
        .await;
        cluster.kafka_ready_after = match waited {
            Ok(_) => started.elapsed(),
            Err(e) => {
                return Err(not_ready(
                    "kafka",
                    e,
                    options.ready_timeout,
                    &kafka_dir.join("server.log"),
                ));
            }
        };

        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        let waited = poll(
            options.ready_timeout,
            || exited(&mut cluster.registry),
            || registry_answers(&http, &registry_url),
        )
        .await;
        cluster.registry_ready_after = match waited {
            Ok(_) => started.elapsed(),
            Err(e) => {
                return Err(not_ready(
                    "schema registry",
                    e,
                    options.ready_timeout,
                    &registry_log,
                ));
            }
        };
        tracing::info!(
            bootstrap = %cluster.endpoints.bootstrap_servers,
            registry = %cluster.endpoints.registry_url,
            kafka_ms = cluster.kafka_ready_after.as_millis() as u64,
            registry_ms = cluster.registry_ready_after.as_millis() as u64,
            "local Kafka and schema registry ready"
        );
        Ok(cluster)
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Sends SIGTERM to both services and waits up to `grace` for each to exit (Kafka flushes
    /// its logs and closes its partitions cleanly), then kills what is left.
    pub async fn stop(mut self, grace: Duration) {
        for child in [self.registry.take(), self.kafka.take()]
            .into_iter()
            .flatten()
        {
            terminate(child, grace).await;
        }
    }

    /// Checks both services and starts again one that exited (a crash, the OOM killer, a
    /// `kill -9`), from the calling thread, which the child is then tied to (call it from a
    /// thread that lives as long as the cluster: an async task of a long-lived runtime, not a
    /// blocking-pool thread). The exited child is reaped, so none stays a zombie. Restarts back
    /// off while a service keeps dying.
    pub fn supervise(&mut self) -> Vec<Supervision> {
        let mut seen = Vec::new();
        for service in ["kafka", "schema registry"] {
            let (child, launch, backoff) = if service == "kafka" {
                (&mut self.kafka, &self.kafka_launch, &mut self.kafka_backoff)
            } else {
                (
                    &mut self.registry,
                    &self.registry_launch,
                    &mut self.registry_backoff,
                )
            };
            let status = match child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => status.to_string(),
                Some(Err(e)) => e.to_string(),
                Some(Ok(None)) => {
                    backoff.settle();
                    continue;
                }
                // Stopped on purpose.
                None => continue,
            };
            if !backoff.due() {
                seen.push(Supervision::Waiting { service, status });
                continue;
            }
            backoff.restarted();
            match launch.spawn() {
                Ok(started) => {
                    *child = Some(started);
                    seen.push(Supervision::Restarted { service, status });
                }
                Err(e) => seen.push(Supervision::RestartFailed {
                    service,
                    error: e.to_string(),
                }),
            }
        }
        seen
    }

    /// Finds and aborts the broker's hanging transactions (see [`crate::transactions`]).
    /// The users, passwords and CA of a secured cluster; `None` for a plaintext one.
    pub fn security(&self) -> Option<&Security> {
        self.security.as_ref()
    }

    /// Creates `acls` as the admin of a secured cluster, in one Admin API call (Kafka's own
    /// client, run by `java`: the Rust client has no ACL API).
    pub fn create_acls(&self, acls: &[Acl]) -> Result<()> {
        let Some(security) = &self.security else {
            return Err(Error::Config("ACLs need a secured cluster".to_owned()));
        };
        let dir = self.data_dir.join("kafka");
        let tool = dir.join("CreateAcls.java");
        let input = dir.join("acls.tsv");
        fs::write(&tool, crate::secure::CREATE_ACLS_JAVA)
            .map_err(Error::io(format!("writing {}", tool.display())))?;
        fs::write(&input, crate::secure::acl_lines(acls))
            .map_err(Error::io(format!("writing {}", input.display())))?;
        let mut client = security.admin_properties(&dir)?;
        let properties = fs::read_to_string(&client)
            .map_err(Error::io(format!("reading {}", client.display())))?;
        client = dir.join("acl-client.properties");
        fs::write(
            &client,
            format!(
                "{properties}bootstrap.servers={}\n",
                self.endpoints.bootstrap_servers
            ),
        )
        .map_err(Error::io(format!("writing {}", client.display())))?;
        let output = Command::new(&self.java)
            .args(["-Xmx256m", "-cp"])
            .arg(&self.classpath)
            .arg(&tool)
            .arg(&client)
            .arg(&input)
            .output()
            .map_err(Error::io("running the ACL tool"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "creating ACLs failed: {}",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("at "))
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" | ")
            )))
        }
    }

    pub fn transactions(&self) -> TransactionTool {
        self.transactions.clone()
    }

    /// The broker's process id, while it runs.
    pub fn kafka_pid(&self) -> Option<u32> {
        self.kafka.as_ref().map(Child::id)
    }

    /// Kills the broker abruptly (for failure tests); the registry keeps running.
    pub fn kill_kafka(&mut self) {
        if let Some(mut child) = self.kafka.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn not_ready(service: &'static str, error: PollError, waited: Duration, log: &Path) -> Error {
    match error {
        PollError::Exited(status) => Error::Exited {
            service,
            status,
            log: log.to_owned(),
        },
        PollError::TimedOut(last_error) => Error::NotReady {
            service,
            waited,
            last_error,
            log: log.to_owned(),
        },
    }
}

async fn terminate(mut child: Child, grace: Duration) {
    if let Ok(pid) = i32::try_from(child.id()) {
        #[allow(unsafe_code)]
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in [self.registry.as_mut(), self.kafka.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::kafka_cluster_id;

    #[test]
    fn cluster_ids_are_22_url_safe_characters_never_starting_with_a_dash() {
        // 0xf8 encodes to '-' as the first character: the generator must never return that.
        assert!(super::encode_cluster_id([0xf8; 16]).starts_with('-'));
        for _ in 0..2000 {
            assert!(!kafka_cluster_id().starts_with('-'));
        }
        let id = kafka_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(id, kafka_cluster_id());
    }
}
