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
    /// TOML configuration file, layered over the built-in defaults. Repeat it (or separate
    /// files with commas in SCANSTREAM_CONFIG) to layer several; a later file wins.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "SCANSTREAM_CONFIG",
        value_delimiter = ','
    )]
    pub config: Vec<PathBuf>,
    /// Kafka bootstrap servers (kafka.bootstrap_servers).
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT,…",
        visible_alias = "bootstrap"
    )]
    pub bootstrap_servers: Option<String>,
    /// Base URL of the Confluent-compatible schema registry API (registry.url).
    #[arg(long, global = true, value_name = "URL", visible_alias = "registry")]
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
    /// The Kafka access (ACLs) each role needs: topics, consumer groups, transactional ids.
    #[command(subcommand)]
    Acls(AclsCommand),
    /// Run everything on one machine: a local Kafka and schema registry unless a cluster is
    /// configured (--bootstrap-servers/--registry-url, SCANSTREAM__KAFKA__BOOTSTRAP_SERVERS or
    /// --config), topics and schemas ensured, and ingest, scanner, aggregator and scheduler in
    /// this process behind one HTTP port. A local broker or registry that dies is started again.
    /// Ctrl-C stops everything cleanly.
    Up(UpArgs),
    /// Run the REST API that accepts scan requests and writes them to Kafka (POST /jobs,
    /// DELETE /jobs/{uuid}, POST/GET /jobs/schedule, GET/PUT/PATCH/DELETE /jobs/schedule/{name},
    /// /health_check, /livez, /readyz, /metrics, /openapi.json, /asyncapi.json).
    Ingest(IngestArgs),
    /// API token helpers.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Run a scanner: consume scans.commands in the scanner group, mirror repositories into the
    /// shared cache, run the engines and write scans.events and scans.findings. Serves
    /// /health_check, /livez, /readyz and /metrics.
    Scanner(ScannerArgs),
    /// Run the aggregator: fold scans.events into job state exactly once (changelog
    /// scans.job-state), keep it in a local store, and serve GET /jobs/stats, /jobs/{uuid},
    /// /jobs, /stats/summary, /health_check, /livez, /readyz, /metrics, /openapi.json.
    Aggregator(AggregatorArgs),
    /// Run a scheduler: fires the schedules of scans.schedules (created through
    /// /jobs/schedule) with Kubernetes CronJob semantics. Run two or more for failover: the
    /// member of the scheduler group that owns partition 0 of scans.schedules leads, the others
    /// stand by, and every tick fires exactly once. Serves /health_check, /livez, /readyz and
    /// /metrics.
    Scheduler(SchedulerArgs),
    /// Run a notifier: reads inventory changes (scans.inventory) and tells the destinations of
    /// notifier.destinations when a secret becomes open (new, or found again somewhere new after
    /// it was resolved): JSON webhooks signed with HMAC-SHA256 over the body
    /// (X-Scanstream-Signature), or Slack incoming webhooks; an Idempotency-Key per
    /// notification, retries with backoff, dead letters on scans.notifications.dlq. Serves
    /// /health_check, /livez, /readyz and /metrics.
    Notifier(NotifierArgs),
    /// Submit a scan through the REST API (POST /jobs) and print the answer. Exit status: 0
    /// accepted, 1 refused (the problem is printed), 2 the API could not be reached.
    Submit(SubmitArgs),
    /// Print job stats from the REST API: GET /jobs/stats in the job manager's format, or one
    /// job's full state with --job. Exit status: 0, 1 when the API answers with an error, 2
    /// when it cannot be reached.
    Stats(StatsArgs),
    /// Scan a folder, a file, standard input, a local repository or a repository URL with the
    /// scanner's engines, without Kafka. Exit status: 0 no findings, 1 findings (--exit-code), 2
    /// the scan could not run.
    Scan(ScanArgs),
    /// Manage the scanners' shared cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Read any scanstream topic by time or offset range (--from inclusive, --to exclusive),
    /// decoded and filtered, as JSON lines or an Avro container file; or copy the selected records
    /// into another topic or cluster with --into. Reads only committed records and changes no
    /// consumer group. A progress bar shows on a terminal.
    Replay(ReplayArgs),
    /// Prove that job state and the inventory equal history: fold scans.events from the
    /// beginning with the aggregator's fold, compare every job with an event in the range against
    /// the changelog (scans.job-state) and, with --api-url, the aggregator's API; fold
    /// scans.sightings and scans.triage and compare every inventory item with scans.inventory
    /// (and GET /findings/{id}). Exit status: 0 consistent, 1 differences (the first are
    /// printed), 2 the audit could not run.
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The topic: a scanstream topic (scans.events, scans.commands, scans.findings,
    /// scans.job-state, scans.schedules, scans.schedule-ticks, scans.commands.dlq; the
    /// deployment's topics.prefix is added), or any topic name holding one's records (see --like).
    #[arg(long, value_name = "TOPIC")]
    pub topic: String,
    /// For a topic that is not a scanstream topic (a copy): which scanstream topic's records it
    /// holds. Default: the scanstream topic name it ends with.
    #[arg(long, value_name = "TOPIC")]
    pub like: Option<String>,
    /// Start, inclusive: an RFC 3339 time (2026-11-21T10:00:00Z), an offset for every partition
    /// (1200) or partition:offset pairs (0:1200,1:800). Default: the beginning.
    #[arg(long, value_name = "WHEN")]
    pub from: Option<crate::replay::Bound>,
    /// End, exclusive, in the same forms. Default: the end each partition has when the replay
    /// starts.
    #[arg(long, value_name = "WHEN")]
    pub to: Option<crate::replay::Bound>,
    /// Only records of these jobs (uuid or job name; repeatable).
    #[arg(long, value_name = "JOB")]
    pub job: Vec<String>,
    /// Only records that name this repository (normalized URL; repeatable): commands, job
    /// submissions, findings, job states, schedules.
    #[arg(long, value_name = "URL")]
    pub repo: Vec<String>,
    /// Only these command or event types (RequestScan, CancelScan, JobSubmitted, ScanStarted,
    /// RepoFetched, EngineCompleted, ScanSucceeded, ScanFailed, ScanCancelled; repeatable).
    #[arg(long, value_name = "TYPE")]
    pub event_type: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::replay::Format::Jsonl)]
    pub format: crate::replay::Format,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// JSON lines without topic and offset: the same records copied elsewhere give the same lines.
    #[arg(long)]
    pub canonical: bool,
    /// Copy the selected records into this topic (created like the source when missing), keeping
    /// keys, headers, timestamps and, when the partition counts match, partitions. Values are
    /// copied as they are, so the target must use the same schema registry.
    #[arg(long, value_name = "TOPIC")]
    pub into: Option<String>,
    /// The cluster of --into when it is not this deployment's.
    #[arg(long, value_name = "HOST:PORT,…", requires = "into")]
    pub into_bootstrap: Option<String>,
    /// Most records per second written by --into (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub rate: u64,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Check the jobs with an event at or after this time (RFC 3339) or offset. Default: all.
    #[arg(long, value_name = "WHEN")]
    pub from: Option<crate::replay::Bound>,
    /// … and before this one (exclusive).
    #[arg(long, value_name = "WHEN")]
    pub to: Option<crate::replay::Bound>,
    /// Write the full report (counts, differences, the SHA-256 digest of the range's canonical
    /// records) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Differences printed.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub show: usize,
    /// A record of scans.events known to be unfoldable (undecodable, or without a value), as
    /// PARTITION:OFFSET (repeatable): reported, but it no longer fails the audit. The audit's
    /// UNFOLDABLE line names the positions.
    #[arg(long, value_name = "PARTITION:OFFSET", value_parser = parse_position)]
    pub acknowledge: Vec<(i32, i64)>,
    /// A file of such positions, one PARTITION:OFFSET per line (`#` starts a comment), e.g. kept
    /// next to the CI job that gates on the audit.
    #[arg(long, value_name = "FILE")]
    pub acknowledge_file: Option<PathBuf>,
    /// Compare with a running aggregator's GET /jobs/{uuid} and GET /findings/{id} too (only
    /// when --api-url or SCANSTREAM_API_URL is given).
    #[command(flatten)]
    pub api: ApiClientArgs,
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

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Address of the probe and metrics endpoint (api.listen), e.g. 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Name of this instance in tick records and logs (scheduler.instance_id; default
    /// $HOSTNAME).
    #[arg(long, value_name = "NAME")]
    pub instance_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct NotifierArgs {
    /// Address of the probe and metrics endpoint (api.listen), e.g. 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct ScannerArgs {
    /// Address of the probe and metrics endpoint (api.listen), e.g. 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Shared cache folder: mirrors, result cache, attempt ledger (scanner.cache_dir).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<String>,
    /// Scans run at once (scanner.concurrency).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScanFormat {
    /// One line per finding and a summary.
    Human,
    /// One JSON document: findings and a summary.
    Json,
    /// SARIF 2.1.0, for code-scanning services.
    Sarif,
    /// One JSON object per finding and line (the summary goes to standard error).
    Jsonl,
    /// CSV with a header row, one finding per row.
    Csv,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// A folder (its files as they are on disk), one file, `-` (standard input, scanned as it
    /// comes, however long), a local
    /// repository (with --ref, --history or --staged) or a repository URL (https://, ssh://,
    /// git://, file://; its default branch unless --ref).
    pub target: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ScanFormat::Human)]
    pub format: ScanFormat,
    /// Engines to run, comma-separated or repeated: `secrets` (built in) and any command
    /// engine of the configuration (`[engines.<id>]`, e.g. gitleaks, semgrep), run here as
    /// child processes on the folder, or on a worktree of the repository's commit. Not for
    /// standard input, one file or --staged.
    #[arg(
        long,
        alias = "engine",
        value_name = "ID,...",
        value_delimiter = ',',
        default_value = "secrets"
    )]
    pub engines: Vec<String>,
    /// Write the report to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Scan every unique blob of the history (all branches and tags, or what --ref reaches)
    /// instead of one tree; each finding names the commit that introduced it.
    #[arg(long)]
    pub history: bool,
    /// Branch, tag, commit id (full or abbreviated) or revision (`HEAD~1`) to scan (read from
    /// the repository, not the disk).
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// Extra rule file, merged onto the built-in rules: the built-in pack's TOML format, or a
    /// gitleaks config (`[extend] useDefault = true` keeps the built-in rules; without it only
    /// the file's rules run).
    /// Repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
    /// Ignore the target's own .gitleaks.toml (rules) and .gitleaksignore (findings to skip,
    /// `[commit:]file:rule:line`), which are honoured by default for folders and local
    /// repositories.
    #[arg(long)]
    pub no_repo_config: bool,
    /// File of fingerprints to ignore, one per line. A .scanstreamignore at the root of the
    /// scanned folder or tree is always read.
    #[arg(long, value_name = "FILE")]
    pub ignore_file: Option<PathBuf>,
    /// Cache folder for mirrors of URLs and for results (rescans then read only new blobs).
    /// Without it, URLs are cloned to a temporary folder and nothing is cached.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Only what the next commit would add: the staged version of every staged file, findings
    /// on added lines only (what a pre-commit hook wants). TARGET is the repository's work tree.
    #[arg(long, conflicts_with_all = ["history", "git_ref"])]
    pub staged: bool,
    /// Only what the commits after REF (a branch, tag, commit id or revision such as `HEAD~3`)
    /// up to HEAD (or --ref) add:
    /// each finding at the commit that introduced it (a CI step on a pull request:
    /// `--since origin/main`).
    #[arg(long, value_name = "REF", conflicts_with_all = ["history", "staged"])]
    pub since: Option<String>,
    /// Exit status when there are findings (0 to report without failing).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub exit_code: u8,
    /// A JSON report of an earlier scan (--format json): findings it holds (same fingerprint at
    /// the same path) are not reported again, so only new findings show and fail the build.
    #[arg(long, value_name = "REPORT")]
    pub baseline: Option<PathBuf>,
    /// Also write every finding of this scan, before --baseline, as a JSON report to FILE: the
    /// baseline of the next scans.
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,
    /// Name of the content read from standard input (`-`), for paths in the report and
    /// path-bound rules (`.env`, `id_rsa`).
    #[arg(long, value_name = "PATH", default_value = "stdin")]
    pub stdin_name: String,
}

/// Where the REST API is and how to authenticate.
#[derive(Debug, Args)]
pub struct ApiClientArgs {
    /// Base URL of the API. Default: http://<api.listen>.
    #[arg(long, value_name = "URL", env = "SCANSTREAM_API_URL")]
    pub api_url: Option<String>,
    /// File holding the bearer token. Default: the SCANSTREAM_TOKEN environment variable, else
    /// the token `scanstream up` keeps in its data folder (DATA_DIR/api-token), when present. It
    /// is never taken as a flag, so it never shows in a process list.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The job's name (a Kubernetes name); posting the same name again runs the same job again.
    pub name: String,
    /// Repository URL; default: the server's ingest.repo_template for the name.
    #[arg(long, value_name = "URL")]
    pub repo: Option<String>,
    /// Branch, tag or commit to scan; default: the default branch.
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// Engine to run (repeatable); default: the server's ingest.default_engines.
    #[arg(long = "engine", value_name = "ID")]
    pub engines: Vec<String>,
    /// tree (default), history or incremental.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// Idempotency-Key header: a retried submit with the same key queues nothing new.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub api: ApiClientArgs,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// One job's full state (GET /jobs/{uuid}) instead of every job's counts.
    #[arg(long, value_name = "UUID")]
    pub job: Option<String>,
    #[command(flatten)]
    pub api: ApiClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Evict mirrors unused for longer than scanner.mirror_max_idle_hours, then the least
    /// recently used ones beyond scanner.mirror_budget_bytes, and expired attempt-ledger
    /// entries. Mirrors in use are never touched. Scanners also do this every
    /// scanner.gc_interval_seconds.
    Gc(CacheGcArgs),
}

#[derive(Debug, Args)]
pub struct CacheGcArgs {
    /// The cache folder (scanner.cache_dir).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AclsCommand {
    /// Print one user per role with exactly the ACLs its code needs, from the access each role
    /// declares (topic names, groups and transactional ids follow topics.prefix,
    /// kafka.client_id and the roles' group_id settings): Strimzi KafkaUser resources with
    /// SCRAM-SHA-512 and simple authorization.
    Render(StrimziRenderArgs),
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
    /// Print the topics as Kubernetes resources, from the same definitions `ensure` uses
    /// (partitions, replication and configs from the settings: topics.partitions,
    /// topics.replication_factor, topics.prefix): Strimzi KafkaTopic resources.
    Render(StrimziRenderArgs),
}

/// Where `topics render` and `acls render` write their Strimzi resources.
#[derive(Debug, Args)]
pub struct StrimziRenderArgs {
    /// Strimzi resources (kafka.strimzi.io/v1); the only format so far.
    #[arg(long, required = true)]
    pub strimzi: bool,
    /// The Strimzi Kafka cluster the resources belong to (label strimzi.io/cluster).
    #[arg(long, value_name = "NAME", default_value = "scanstream")]
    pub cluster: String,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
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
    /// Folder for everything `up` keeps: the local broker's and registry's data (cluster/), the
    /// scanner's cache (cache/), the aggregator's store (store/), repositories it may scan
    /// (repos/), the API token (api-token) and the log (logs/scanstream.log). Reusing it keeps
    /// every earlier job. Default: $XDG_DATA_HOME/scanstream or ~/.local/share/scanstream.
    #[arg(long, value_name = "DIR", env = "SCANSTREAM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTP port serving every role's routes (api.listen); port 0 picks a free
    /// one.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Port of the local Kafka broker (ignored when a cluster is configured).
    #[arg(long, default_value_t = 9092)]
    pub kafka_port: u16,
    /// Port of the local schema registry (ignored when a cluster is configured).
    #[arg(long, default_value_t = 8081)]
    pub registry_port: u16,
    /// Once ready, create a small repository with planted fake secrets under repos/, scan it
    /// through the REST API and show the scans going through, the job stats and the
    /// (redacted) findings.
    #[arg(long)]
    pub demo: bool,
    /// Stop once ready (after the demo with --demo) instead of running until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Log to the terminal (stderr) instead of DATA_DIR/logs/scanstream.log.
    #[arg(long)]
    pub log_to_terminal: bool,
    /// Tell this URL (a JSON webhook) about every secret that becomes open (repeatable). The
    /// bodies are signed with the key in DATA_DIR/webhook-secret (HMAC-SHA256, header
    /// X-Scanstream-Signature: sha256=<hex>).
    #[arg(long, value_name = "URL")]
    pub webhook: Vec<String>,
    /// Start the local Kafka as production runs it: SCRAM-SHA-512 over TLS (a CA made at first
    /// start), the standard authorizer with no access without an ACL, and one user per role
    /// with exactly the ACLs of `scanstream acls render`; every role connects as its own user.
    /// Each user's client settings are written to DATA_DIR/cluster/users/<user>.properties and
    /// the CA to DATA_DIR/cluster/ca.pem (mode 0600). Not with a configured cluster; a data
    /// folder keeps the mode it was first started with.
    #[arg(long)]
    pub secure: bool,
}

/// `PARTITION:OFFSET`, both non-negative.
pub fn parse_position(text: &str) -> Result<(i32, i64), String> {
    let (partition, offset) = text
        .trim()
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not PARTITION:OFFSET"))?;
    let partition: i32 = partition
        .parse()
        .map_err(|_| format!("{text:?}: the partition is not a number"))?;
    let offset: i64 = offset
        .parse()
        .map_err(|_| format!("{text:?}: the offset is not a number"))?;
    if partition < 0 || offset < 0 {
        return Err(format!("{text:?}: partition and offset cannot be negative"));
    }
    Ok((partition, offset))
}
