//! Entry point: parse the command line, set up telemetry, run the subcommand.

use std::process::ExitCode;

use clap::Parser;
use scanstream::cli::{AclsCommand, CacheCommand, Cli, Command, TokenCommand, TopicsCommand};
use scanstream::{client, scan, settings, topics, up};
use scanstream_platform::server::Application;

// A faster allocator than the system's for the scanner's many short-lived buffers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scanstream: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(run(cli))));
    // A blocking thread still running (a client waiting on a broker that is gone) must not keep
    // a process that is done, or that panicked, alive: give them a moment, then exit anyway.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    match outcome {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("scanstream: {e:#}");
            ExitCode::FAILURE
        }
        // The panic hook has printed the message.
        Err(_) => ExitCode::FAILURE,
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Token(TokenCommand::Hash) = cli.command {
        let mut token = String::new();
        std::io::stdin().read_line(&mut token)?;
        if token.trim().is_empty() {
            anyhow::bail!("no token on standard input");
        }
        println!("{}", scanstream_platform::auth::hash_token(&token));
        return Ok(ExitCode::SUCCESS);
    }
    let mut overrides: Vec<(&str, Option<String>)> = Vec::new();
    match &cli.command {
        Command::Ingest(args) => overrides.push(("api.listen", args.listen.clone())),
        Command::Aggregator(args) => {
            overrides.push(("api.listen", args.listen.clone()));
            overrides.push(("aggregator.data_dir", args.data_dir.clone()));
        }
        Command::Scheduler(args) => {
            overrides.push(("api.listen", args.listen.clone()));
            overrides.push(("scheduler.instance_id", args.instance_id.clone()));
        }
        Command::Notifier(args) => overrides.push(("api.listen", args.listen.clone())),
        Command::Scanner(args) => {
            overrides.push(("api.listen", args.listen.clone()));
            overrides.push(("scanner.cache_dir", args.cache_dir.clone()));
            overrides.push((
                "scanner.concurrency",
                args.concurrency.map(|n| n.to_string()),
            ));
        }
        Command::Cache(CacheCommand::Gc(args)) => {
            overrides.push(("scanner.cache_dir", args.cache_dir.clone()));
        }
        _ => {}
    }
    let overrides: Vec<(&str, String)> = overrides
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| (key, v)))
        .collect();
    let base = settings::load(&cli.global, &overrides)?;
    match &cli.command {
        Command::Acls(AclsCommand::Render(args)) => {
            let yaml = scanstream_platform::access::strimzi_users(&base, &args.cluster);
            return write_rendered(args, &yaml);
        }
        Command::Topics(TopicsCommand::Render(args)) => {
            let names = scanstream_contracts::TopicNames::new(base.topics.prefix.clone());
            let yaml = scanstream_platform::topics::strimzi(&names, &base.topics, &args.cluster);
            return write_rendered(args, &yaml);
        }
        Command::Submit(args) => return client::submit(&base, args).await,
        Command::Stats(args) => return client::stats(&base, args).await,
        Command::Replay(args) => return run_replay(&base, args).await,
        Command::Audit(args) => return run_audit(&base, args).await,
        _ => {}
    }
    if let Command::Scan(args) = &cli.command {
        // Findings go to stdout; logs only when asked for.
        return match scan::run(&base, args).await {
            Ok(true) => Ok(ExitCode::from(args.exit_code)),
            Ok(false) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                eprintln!("scanstream scan: {e:#}");
                Ok(ExitCode::from(2))
            }
        };
    }
    let log_file = match &cli.command {
        Command::Up(args) => up::log_file(args),
        _ => None,
    };
    let metrics = scanstream_platform::telemetry::init(&base.telemetry, log_file.as_deref())?;
    let result = run_command(cli.command, cli.global, &base, metrics).await;
    // Spans still batched are exported before the process ends.
    scanstream_platform::telemetry::shutdown();
    result
}

/// Writes rendered resources to `--out`, or to standard output.
fn write_rendered(
    args: &scanstream::cli::StrimziRenderArgs,
    yaml: &str,
) -> anyhow::Result<ExitCode> {
    match &args.out {
        Some(path) => std::fs::write(path, yaml)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        None => print!("{yaml}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a command that logs and serves (the telemetry is installed).
async fn run_command(
    command: Command,
    global: scanstream::cli::GlobalArgs,
    base: &scanstream_platform::Settings,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Topics(TopicsCommand::Ensure(args)) => {
            let report = topics::ensure(base, args.skip_schemas).await?;
            if report.has_drift() && !args.allow_drift {
                eprintln!(
                    "scanstream topics ensure: {} difference(s) between the cluster and scanstream's \
                     topic definitions (see DRIFT above); scanstream never changes existing topics. \
                     Fix them, or pass --allow-drift to accept them.",
                    report.drift.len()
                );
                return Ok(ExitCode::from(3));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest(_) => {
            serve(scanstream_ingest::Ingest::start(base).await?, base, metrics).await
        }
        Command::Aggregator(_) => {
            serve(
                scanstream_aggregator::Aggregator::start(base).await?,
                base,
                metrics,
            )
            .await
        }
        Command::Scheduler(_) => {
            serve(
                scanstream_scheduler::Scheduler::start(base).await?,
                base,
                metrics,
            )
            .await
        }
        Command::Notifier(_) => {
            serve(
                scanstream_notifier::Notifier::start(base).await?,
                base,
                metrics,
            )
            .await
        }
        Command::Scanner(_) => {
            serve(
                scanstream_scanner::Scanner::start(base).await?,
                base,
                metrics,
            )
            .await
        }
        Command::Cache(CacheCommand::Gc(_)) => {
            let scanner = base.scanner.clone();
            let report = tokio::task::spawn_blocking(move || {
                scanstream_scanner::startup::collect_garbage(&scanner)
            })
            .await??;
            println!(
                "mirrors kept {} ({} bytes), evicted {} ({} bytes freed), in use {}",
                report.kept, report.bytes_kept, report.evicted, report.bytes_freed, report.busy
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Up(args) => {
            up::run(&global, &args, metrics).await?;
            Ok(ExitCode::SUCCESS)
        }
        _ => Ok(ExitCode::from(2)),
    }
}

/// Serves one started role, and whether Kafka answers, on `api.listen` until SIGINT or SIGTERM,
/// then stops it.
async fn serve(
    role: std::sync::Arc<dyn scanstream_platform::server::Role>,
    settings: &scanstream_platform::Settings,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<ExitCode> {
    let name = role.name();
    let kafka = scanstream_platform::reachability::Reachability::start(
        scanstream_platform::KafkaFactory::new(settings.kafka.clone()),
        scanstream_platform::kafka::ClientRole::Admin,
    );
    let app = Application::build(&settings.api.listen, vec![role, kafka], metrics)?;
    println!("scanstream {name} listening on port {}", app.port());
    app.run_until_stopped(scanstream_platform::shutdown::on_signal())
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// `scanstream replay`: records to stdout or a file, a summary on stderr.
async fn run_replay(
    settings: &scanstream_platform::Settings,
    args: &scanstream::cli::ReplayArgs,
) -> anyhow::Result<ExitCode> {
    use scanstream::replay::{Filters, ReplayOptions, Source, Window, replay};
    let names = scanstream_contracts::TopicNames::new(settings.topics.prefix.clone());
    let source = match Source::resolve(&names, &args.topic, args.like.as_deref()) {
        Ok(source) => source,
        Err(e) => {
            eprintln!("scanstream replay: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let jobs = args
        .job
        .iter()
        .map(|j| match uuid::Uuid::parse_str(j) {
            Ok(u) => scanstream_contracts::JobId(u),
            Err(_) => scanstream_contracts::JobId::from_name(j),
        })
        .collect();
    let options = ReplayOptions {
        source,
        window: Window {
            from: args.from.clone(),
            to: args.to.clone(),
        },
        filters: Filters {
            jobs,
            repos: args.repo.clone(),
            event_types: args.event_type.clone(),
        },
        format: args.format,
        out: args.out.clone(),
        canonical: args.canonical,
        into: args.into.clone(),
        into_bootstrap: args.into_bootstrap.clone(),
        rate: args.rate,
    };
    let summary = match replay(settings, options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("scanstream replay: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    // Quiet in pipes: the summary, like the progress bar, is for a terminal.
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "{}: {} records read, {} selected in {:.1} s ({:.0} records/s); sha256 of the canonical lines {}",
        summary.topic,
        summary.read,
        summary.selected,
        summary.seconds,
        summary.read as f64 / summary.seconds.max(1e-9),
        summary.sha256
    );
    Ok(ExitCode::SUCCESS)
}

/// `scanstream audit`: 0 consistent, 1 differences, 2 could not run.
async fn run_audit(
    settings: &scanstream_platform::Settings,
    args: &scanstream::cli::AuditArgs,
) -> anyhow::Result<ExitCode> {
    use scanstream::audit::{AuditOptions, audit, print};
    let api = match &args.api.api_url {
        Some(_) => Some(client::Api::from_args(settings, &args.api)?),
        None => None,
    };
    let mut acknowledged: std::collections::BTreeSet<(i32, i64)> =
        args.acknowledge.iter().copied().collect();
    if let Some(file) = &args.acknowledge_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let position = scanstream::cli::parse_position(line)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", file.display(), number + 1))?;
            acknowledged.insert(position);
        }
    }
    let options = AuditOptions {
        from: args.from.clone(),
        to: args.to.clone(),
        api,
        acknowledged,
    };
    let report = match audit(settings, &options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scanstream audit: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    print(&report, args.show);
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(if report.consistent() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
