//! Entry point: parse the command line, set up telemetry, run the subcommand.

use std::process::ExitCode;

use clap::Parser;
use scanstream::cli::{Cli, Command, TopicsCommand};
use scanstream::{settings, topics, up};

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
    let base = settings::load(&cli.global, &[])?;
    scanstream_platform::telemetry::init(&base.telemetry)?;
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
        Command::Up(args) => {
            up::run(&cli.global, &args).await?;
            Ok(ExitCode::SUCCESS)
        }
        _ => Ok(ExitCode::from(2)),
    }
}
