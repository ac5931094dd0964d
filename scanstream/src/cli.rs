//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Fleet-scale secret scanning on Apache Kafka.
///
/// Settings are layered: built-in defaults, then --config FILE, then SCANSTREAM__SECTION__KEY
/// environment variables (for example SCANSTREAM__KAFKA__BOOTSTRAP_SERVERS), then the flags
/// below. docs/configuration.md lists every key.
#[derive(Debug, Parser)]
#[command(name = "scanstream", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML configuration file, layered over the built-in defaults.
    #[arg(long, global = true, value_name = "FILE", env = "SCANSTREAM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers (kafka.bootstrap_servers).
    #[arg(long, global = true, value_name = "HOST:PORT,…")]
    pub bootstrap_servers: Option<String>,
    /// Base URL of the Confluent-compatible schema registry API (registry.url).
    #[arg(long, global = true, value_name = "URL")]
    pub registry_url: Option<String>,
    /// Prefix of every topic name and registry subject (topics.prefix).
    #[arg(long, global = true, value_name = "PREFIX")]
    pub topic_prefix: Option<String>,
    /// Log format (telemetry.log_format).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage scanstream's Kafka topics and their registry subjects.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Run a development stack: a local Kafka and schema registry unless one is configured,
    /// topics and schemas ensured.
    Up(UpArgs),
    /// Run the REST API that accepts scan requests and writes them to Kafka (POST /jobs,
    /// DELETE /jobs/{uuid}, /health_check, /livez, /readyz, /metrics, /openapi.json).
    Ingest(IngestArgs),
    /// API token helpers.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Scanner consumer group (not available yet).
    Scanner(NotYet),
    /// Run the aggregator: fold scans.events into job state exactly once (changelog
    /// scans.job-state), keep it in a local store, and serve GET /jobs/stats, /jobs/{uuid},
    /// /jobs, /stats/summary, /health_check, /livez, /readyz, /metrics, /openapi.json.
    Aggregator(AggregatorArgs),
    /// Scheduler that fires scheduled scans (not available yet).
    Scheduler(NotYet),
    /// Submit a scan through the REST API (not available yet).
    Submit(NotYet),
    /// Show job stats from the REST API (not available yet).
    Stats(NotYet),
    /// Scan a local path or repository without Kafka (not available yet).
    Scan(NotYet),
    /// Read a topic by time range (not available yet).
    Replay(NotYet),
    /// Prove that job state equals the folded event history (not available yet).
    Audit(NotYet),
}

impl Command {
    /// The name of a subcommand that is not built yet, if this is one.
    pub fn not_yet(&self) -> Option<&'static str> {
        match self {
            Command::Scanner(_) => Some("scanner"),
            Command::Scheduler(_) => Some("scheduler"),
            Command::Submit(_) => Some("submit"),
            Command::Stats(_) => Some("stats"),
            Command::Scan(_) => Some("scan"),
            Command::Replay(_) => Some("replay"),
            Command::Audit(_) => Some("audit"),
            Command::Topics(_)
            | Command::Up(_)
            | Command::Ingest(_)
            | Command::Aggregator(_)
            | Command::Token(_) => None,
        }
    }
}

/// Arguments of a subcommand that does not exist yet are accepted and ignored, so the message
/// about it is what the user sees.
#[derive(Debug, Args)]
pub struct NotYet {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Address to listen on (api.listen), e.g. 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct AggregatorArgs {
    /// Address to listen on (api.listen), e.g. 0.0.0.0:8081.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Folder of the local store (aggregator.data_dir); rebuilt from the changelog when empty.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print the SHA-256 of a token read from standard input, for api.tokens[].sha256.
    Hash,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create every scanstream topic that is missing and register every value schema (BACKWARD
    /// compatibility). Idempotent. Existing topics whose partitions, replication or configs
    /// differ are reported as drift and make the command fail unless --allow-drift.
    Ensure(EnsureArgs),
}

#[derive(Debug, Args)]
pub struct EnsureArgs {
    /// Report drift but exit 0.
    #[arg(long)]
    pub allow_drift: bool,
    /// Only manage topics; do not touch the schema registry.
    #[arg(long)]
    pub skip_schemas: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Folder for the local broker's data, the registry's database and (later) the scanners'
    /// cache and the aggregator's store. Reusing it keeps every earlier job.
    /// Default: $XDG_DATA_HOME/scanstream or ~/.local/share/scanstream.
    #[arg(long, value_name = "DIR", env = "SCANSTREAM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Port of the local Kafka broker (ignored when a cluster is configured).
    #[arg(long, default_value_t = 9092)]
    pub kafka_port: u16,
    /// Port of the local schema registry (ignored when a cluster is configured).
    #[arg(long, default_value_t = 8081)]
    pub registry_port: u16,
    /// Start, ensure topics and schemas, print the addresses, then stop (for scripts and CI).
    #[arg(long)]
    pub once: bool,
}
