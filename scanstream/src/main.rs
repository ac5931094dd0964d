//! Entry point: parse the command line, set up telemetry, run the subcommand.

use std::process::ExitCode;

use clap::Parser;
use scanstream::cli::{CacheCommand, Cli, Command, TokenCommand, TopicsCommand};
use scanstream::{client, scan, settings, topics, up};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(name) = cli.command.not_yet() {
        eprintln!("scanstream {name}: not available yet in this version of scanstream.");
        return ExitCode::from(2);
    }
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
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("scanstream: {e:#}");
            ExitCode::FAILURE
        }
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
        Command::Submit(args) => return client::submit(&base, args).await,
        Command::Stats(args) => return client::stats(&base, args).await,
        _ => {}
    }
    if let Command::Scan(args) = &cli.command {
        // Findings go to stdout; logs only when asked for.
        return match scan::run(&base, args).await {
            Ok(true) => Ok(ExitCode::from(1)),
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
    match cli.command {
        Command::Topics(TopicsCommand::Ensure(args)) => {
            let report = topics::ensure(&base, args.skip_schemas).await?;
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
            let app = scanstream_ingest::Application::build(&base, metrics).await?;
            println!("scanstream ingest listening on port {}", app.port());
            app.run_until_stopped(scanstream_platform::shutdown::on_signal())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Aggregator(_) => {
            let app = scanstream_aggregator::Application::build(&base, metrics).await?;
            println!("scanstream aggregator listening on port {}", app.port());
            app.run_until_stopped(scanstream_platform::shutdown::on_signal())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Scheduler(_) => {
            let app = scanstream_scheduler::Application::build(&base, metrics).await?;
            println!("scanstream scheduler listening on port {}", app.port());
            app.run_until_stopped(scanstream_platform::shutdown::on_signal())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Scanner(_) => {
            let app = scanstream_scanner::Application::build(&base, metrics).await?;
            println!("scanstream scanner listening on port {}", app.port());
            app.run_until_stopped(scanstream_platform::shutdown::on_signal())
                .await?;
            Ok(ExitCode::SUCCESS)
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
            up::run(&cli.global, &args, metrics).await?;
            Ok(ExitCode::SUCCESS)
        }
        _ => Ok(ExitCode::from(2)),
    }
}
