//! `scanstream scan`: the scanner's engines on a laptop or in a CI step, without Kafka.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use scanstream_contracts::command::ScanMode;
use scanstream_platform::Settings;
use scanstream_scanner::command::{CommandEngines, Labels, ScanContext};
use scanstream_scanner::dir::DirSource;
use scanstream_scanner::report::Report;
use scanstream_scanner::runner::{EngineRun, Progress, SkipReason};
use scanstream_scanner::scan::{
    GITLEAKS_CONFIG, GITLEAKS_IGNORE, IGNORE_FILE, PlaceIgnore, Scanning, parse_gitleaks_ignore,
    parse_ignore,
};
use scanstream_scanner::source::{MemorySource, Source, StreamSource};
use scanstream_scanner::startup;
use tokio_util::sync::CancellationToken;

use crate::cli::{ScanArgs, ScanFormat};

/// Whether `target` names a remote repository rather than a local path.
fn is_url(target: &str) -> bool {
    ["https://", "http://", "ssh://", "git://", "file://"]
        .iter()
        .any(|scheme| target.starts_with(scheme))
}

/// What `scanstream scan` reads, decided once from its arguments.
enum Target {
    /// A repository URL: mirrored, then scanned as a repository.
    Url,
    /// Standard input (`-`).
    Stdin,
    /// What the next commit of the repository at the target adds (`--staged`).
    Staged,
    /// One file as it is.
    File(PathBuf),
    /// A local repository's history, a ref, or what came since a ref.
    Repository(PathBuf),
    /// A folder's files as they are, with their listing, started at once: listing is mostly
    /// the kernel reading folders, which a second thread barely speeds up, so it runs beside
    /// the rule pack's compilation, not after it.
    Folder(
        PathBuf,
        std::thread::JoinHandle<Result<DirSource, scanstream_scanner::Error>>,
    ),
}

impl Target {
    fn of(args: &ScanArgs) -> anyhow::Result<Self> {
        if is_url(&args.target) {
            return Ok(Self::Url);
        }
        if args.target == "-" {
            return Ok(Self::Stdin);
        }
        if args.staged {
            return Ok(Self::Staged);
        }
        let path = PathBuf::from(&args.target);
        if !path.exists() {
            bail!("{} does not exist", path.display());
        }
        if path.is_file() && !args.history && args.git_ref.is_none() {
            return Ok(Self::File(path));
        }
        if args.history || args.git_ref.is_some() || args.since.is_some() {
            return Ok(Self::Repository(path));
        }
        if !path.is_dir() {
            bail!(
                "{} is not a folder; scan a folder or a repository",
                path.display()
            );
        }
        let listed = path.clone();
        Ok(Self::Folder(
            path,
            std::thread::spawn(move || DirSource::walk(&listed)),
        ))
    }
}

/// Runs the scan and prints the report; true when there are findings.
pub async fn run(settings: &Settings, args: &ScanArgs) -> anyhow::Result<bool> {
    let mut scanner = settings.scanner.clone();
    scanner
        .rule_files
        .extend(args.rules.iter().map(|p| p.display().to_string()));
    // A local target's own gitleaks files, as gitleaks reads them.
    let mut place_ignores = Vec::new();
    if !is_url(&args.target) && !args.no_repo_config {
        let root = PathBuf::from(&args.target);
        let config = root.join(GITLEAKS_CONFIG);
        if config.is_file() {
            scanner.rule_files.push(config.display().to_string());
        }
        if let Ok(text) = std::fs::read_to_string(root.join(GITLEAKS_IGNORE)) {
            place_ignores = parse_gitleaks_ignore(&text);
        }
    }
    let target = Target::of(args)?;
    let scanning = Arc::new(startup::scanning(&scanner, args.cache_dir.as_deref(), &[])?);
    // Kept until the scan ends: the command engines' folder without --cache-dir.
    let mut _work = None;
    let mut ignored: HashSet<String> = HashSet::new();
    if let Some(file) = &args.ignore_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the ignore file {}", file.display()))?;
        ignored.extend(parse_ignore(&text));
    }
    let built_in = scanning.engine_ids();
    let known: Vec<String> = built_in
        .iter()
        .cloned()
        .chain(settings.engines.keys().cloned())
        .collect();
    if let Some(unknown) = args.engines.iter().find(|id| !known.contains(id)) {
        bail!(
            "unknown engine {unknown:?}; engines: {} (command engines are configured as [engines.<id>])",
            known.join(", ")
        );
    }
    // The built-in engines run in process; the others are command engines.
    let engines: Vec<String> = args
        .engines
        .iter()
        .filter(|id| built_in.contains(id))
        .cloned()
        .collect();
    let external: Vec<String> = args
        .engines
        .iter()
        .filter(|id| !built_in.contains(id))
        .cloned()
        .collect();
    if !external.is_empty() && (args.target == "-" || args.staged) {
        bail!(
            "command engines ({}) scan folders and repositories, not standard input or --staged",
            external.join(", ")
        );
    }
    // Command engines write worktrees and outputs under the cache folder.
    let work = match &args.cache_dir {
        Some(dir) => dir.clone(),
        None => {
            let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
            let path = dir.path().to_path_buf();
            _work = Some(dir);
            path
        }
    };
    let commands = if external.is_empty() {
        None
    } else {
        let mut local = settings.clone();
        local.scanner = scanner.clone();
        // Here, engines are child processes whatever the service's executor is, and only the
        // engines asked for are started (for their versions).
        local.scanner.executor = scanstream_platform::config::Executor::Local;
        local.engines.retain(|id, _| external.contains(id));
        Some(startup::commands(&local, &work, &scanning).await?)
    };
    let mode = if args.history {
        ScanMode::History
    } else {
        ScanMode::Tree
    };
    let progress = Arc::new(Progress::default());
    let cancel = Arc::new(AtomicBool::new(false));
    let bar = progress_bar(args, progress.clone());
    // Kept until the scan ends: the mirror's shared lock and, without --cache-dir, its folder.
    let mut _temp = None;
    let (runs, commit) = match target {
        Target::Url => {
            let cache = match &args.cache_dir {
                Some(dir) => dir.clone(),
                None => {
                    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
                    let path = dir.path().to_path_buf();
                    _temp = Some(dir);
                    path
                }
            };
            scanner.cache_dir = cache.display().to_string();
            let mirrors = startup::mirrors(&scanner);
            let acquired = mirrors
                .acquire(args.target.trim_end_matches('/'), &CancellationToken::new())
                .await?;
            let path = acquired.lease.path.clone();
            let result = scan_repository(
                &scanning,
                &path,
                args,
                mode,
                (&engines, &external, commands.as_ref()),
                &progress,
                &cancel,
                &ignored,
            )
            .await;
            drop(acquired);
            result?
        }
        Target::Stdin => {
            // Scanned as it is read, a window at a time: a pipe can be longer than memory.
            let source = StreamSource::new(args.stdin_name.clone(), Box::new(std::io::stdin()));
            let source = move || Ok(source);
            let runs =
                run_blocking(&scanning, source, &engines, &ignored, &progress, &cancel).await?;
            // Standard input that fails partway is the scan's error, not a file left unscanned.
            let unreadable = runs
                .iter()
                .flat_map(|run| &run.skipped)
                .find_map(|skipped| match skipped.reason {
                    SkipReason::Unreadable(kind) => Some(kind),
                    _ => None,
                });
            if let Some(kind) = unreadable {
                bail!("cannot read standard input: {kind}");
            }
            (runs, None)
        }
        Target::Staged => {
            let root = PathBuf::from(&args.target);
            ignored.extend(scanning.ignored_with(std::fs::read(root.join(IGNORE_FILE)).ok()));
            let staged = crate::staged::staged(&root)?;
            let added: Vec<(String, Vec<u32>)> = staged
                .iter()
                .map(|file| (file.path.clone(), file.added.clone()))
                .collect();
            let source = MemorySource::new(
                staged
                    .into_iter()
                    .map(|file| (file.path, file.content))
                    .collect(),
            );
            let source = move || Ok(source);
            let mut runs =
                run_blocking(&scanning, source, &engines, &ignored, &progress, &cancel).await?;
            // Only what the commit adds: a secret already in the file is not this commit's.
            for run in &mut runs {
                run.found.retain(|f| {
                    added
                        .iter()
                        .any(|(path, lines)| *path == f.place.path && lines.contains(&f.hit.line))
                });
            }
            (runs, None)
        }
        Target::File(path) => {
            if !external.is_empty() {
                bail!("command engines scan folders and repositories, not one file");
            }
            let file = move || DirSource::file(&path);
            (
                run_blocking(&scanning, file, &engines, &ignored, &progress, &cancel).await?,
                None,
            )
        }
        Target::Repository(path) => {
            scan_repository(
                &scanning,
                &path,
                args,
                mode,
                (&engines, &external, commands.as_ref()),
                &progress,
                &cancel,
                &ignored,
            )
            .await?
        }
        Target::Folder(path, listing) => {
            // The configured ignore file and the folder's own, as for repositories.
            ignored.extend(scanning.ignored_with(std::fs::read(path.join(IGNORE_FILE)).ok()));
            let folder = path.clone();
            let walk = move || {
                listing.join().unwrap_or_else(|_| {
                    Err(scanstream_scanner::Error::Source(format!(
                        "listing {} failed",
                        path.display()
                    )))
                })
            };
            let mut runs =
                run_blocking(&scanning, walk, &engines, &ignored, &progress, &cancel).await?;
            if let Some(commands) = &commands {
                let folder = std::path::absolute(&folder)
                    .with_context(|| format!("cannot resolve {}", folder.display()))?;
                runs.extend(
                    commands
                        .run_on_folder(&external, &folder, &CancellationToken::new())
                        .await?,
                );
            }
            (ordered(runs, &args.engines), None)
        }
    };
    let done = finish(args, &scanning, runs, commit, bar, &place_ignores);
    // The process exits next: the rule pack (hundreds of compiled regexes, each with its
    // caches) is left to the operating system, which frees it at once, where dropping it piece
    // by piece took 7 ms of a 0.12 s rescan. `run` is called once per process.
    std::mem::forget(scanning);
    done
}

/// Builds the source (`source`: a folder walk reads the disk) and scans it with the engines, on
/// a blocking thread.
async fn run_blocking<S: Source>(
    scanning: &Arc<Scanning>,
    source: impl FnOnce() -> Result<S, scanstream_scanner::Error> + Send + 'static,
    engines: &[String],
    ignored: &HashSet<String>,
    progress: &Arc<Progress>,
    cancel: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<EngineRun>> {
    let (scanning, engines, ignored, progress, cancel) = (
        scanning.clone(),
        engines.to_vec(),
        ignored.clone(),
        progress.clone(),
        cancel.clone(),
    );
    Ok(tokio::task::spawn_blocking(move || {
        scanning.run_engines(&source()?, &engines, &ignored, &progress, &cancel)
    })
    .await??)
}

/// The findings of an earlier JSON report, as (fingerprint, path).
fn baseline(file: &Path) -> anyhow::Result<HashSet<(String, String)>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the baseline {}", file.display()))?;
    let report: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "the baseline {} is not a JSON report (scanstream scan --format json)",
            file.display()
        )
    })?;
    let Some(findings) = report.get("findings").and_then(|f| f.as_array()) else {
        bail!(
            "the baseline {} has no \"findings\" list: write it with --format json or \
             --write-baseline",
            file.display()
        );
    };
    Ok(findings
        .iter()
        .filter_map(|f| {
            Some((
                f.get("fingerprint")?.as_str()?.to_owned(),
                f.get("path")?.as_str()?.to_owned(),
            ))
        })
        .collect())
}

/// Applies the place ignores, writes the baseline and the report; true when there are
/// findings (after --baseline).
fn finish(
    args: &ScanArgs,
    scanning: &Scanning,
    mut runs: Vec<EngineRun>,
    commit: Option<String>,
    bar: Option<ProgressBar>,
    place_ignores: &[PlaceIgnore],
) -> anyhow::Result<bool> {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    for run in &mut runs {
        run.found
            .retain(|f| !place_ignores.iter().any(|ignore| ignore.matches(f)));
    }
    let mut report = Report {
        target: args.target.clone(),
        commit,
        runs,
        rules: scanning.engines().iter().flat_map(|e| e.rules()).collect(),
    };
    if let Some(file) = &args.write_baseline {
        std::fs::write(file, format!("{:#}\n", report.json()))
            .with_context(|| format!("cannot write the baseline {}", file.display()))?;
    }
    if let Some(file) = &args.baseline {
        let known = baseline(file)?;
        let before = report.findings().len();
        for run in &mut report.runs {
            run.found
                .retain(|f| !known.contains(&(f.hit.fingerprint.clone(), f.place.path.clone())));
        }
        let hidden = before - report.findings().len();
        if hidden > 0 {
            eprintln!(
                "scanstream scan: {hidden} finding(s) of the baseline {} not reported",
                file.display()
            );
        }
    }
    let text = match args.format {
        ScanFormat::Human => report.human(),
        ScanFormat::Json => format!("{:#}\n", report.json()),
        ScanFormat::Sarif => format!("{:#}\n", report.sarif()),
        ScanFormat::Jsonl => report.jsonl(),
        ScanFormat::Csv => report.csv(),
    };
    match &args.out {
        Some(file) => std::fs::write(file, text)
            .with_context(|| format!("cannot write {}", file.display()))?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    // The human report says it itself; JSON and SARIF carry it in their structure, which a
    // terminal or a CI log does not show, so it is said on stderr too.
    if let Some(line) = report.not_scanned_summary()
        && (!matches!(args.format, ScanFormat::Human) || args.out.is_some())
    {
        eprintln!("scanstream scan: {line}");
    }
    let failures = report.engine_failures();
    if !failures.is_empty() {
        if !matches!(args.format, ScanFormat::Human) || args.out.is_some() {
            for line in &failures {
                eprintln!("scanstream scan: {line}");
            }
        }
        bail!("{} engine(s) gave no result", failures.len());
    }
    Ok(!report.findings().is_empty())
}

/// Runs in the order the engines were asked for.
fn ordered(mut runs: Vec<EngineRun>, asked: &[String]) -> Vec<EngineRun> {
    runs.sort_by_key(|run| asked.iter().position(|id| *id == run.engine));
    runs
}

/// The built-in engines asked for, the command engines asked for, and those engines.
type Engines<'a> = (&'a [String], &'a [String], Option<&'a CommandEngines>);

#[allow(clippy::too_many_arguments)]
async fn scan_repository(
    scanning: &Arc<scanstream_scanner::scan::Scanning>,
    path: &Path,
    args: &ScanArgs,
    mode: ScanMode,
    (engines, external, commands): Engines<'_>,
    progress: &Arc<Progress>,
    cancel: &Arc<AtomicBool>,
    ignored: &HashSet<String>,
) -> anyhow::Result<(Vec<scanstream_scanner::runner::EngineRun>, Option<String>)> {
    let (scanning, path, git_ref, engines, progress, cancel, ignored) = (
        scanning.clone(),
        path.to_path_buf(),
        args.git_ref.clone(),
        engines.to_vec(),
        progress.clone(),
        cancel.clone(),
        ignored.clone(),
    );
    let target = args.target.clone();
    let since = args.since.clone();
    let result = tokio::task::spawn_blocking(move || {
        let resolved = scanning.resolve(&path, git_ref.as_deref(), mode)?;
        let mut runs = match &since {
            Some(since) => scanning.scan_since(&resolved, &engines, since, &progress, &cancel)?,
            None => scanning.scan(
                &resolved,
                &engines,
                mode,
                &target,
                git_ref.as_deref(),
                &progress,
                &cancel,
            )?,
        };
        for run in &mut runs {
            run.found.retain(|f| !ignored.contains(&f.hit.fingerprint));
        }
        Ok::<_, scanstream_scanner::Error>((runs, resolved))
    })
    .await??;
    let (mut runs, resolved) = result;
    if let Some(commands) = commands {
        let scan = ScanContext {
            resolved: &resolved,
            labels: Labels {
                job: "local".into(),
                run: uuid::Uuid::new_v4().simple().to_string(),
                attempt: 1,
            },
        };
        runs.extend(
            commands
                .run(external, scan, &CancellationToken::new())
                .await?,
        );
    }
    Ok((ordered(runs, &args.engines), resolved.commit()))
}

/// A progress bar on stderr when it is a terminal: files and bytes scanned, and the rate.
fn progress_bar(args: &ScanArgs, progress: Arc<Progress>) -> Option<ProgressBar> {
    if args.no_progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let shown = bar.clone();
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        while !shown.is_finished() {
            let files = progress.files.load(Ordering::Relaxed);
            let bytes = progress.bytes.load(Ordering::Relaxed);
            let rate = bytes as f64 / 1e6 / started.elapsed().as_secs_f64().max(0.001);
            shown.set_message(format!(
                "{files} files, {:.1} MB scanned, {rate:.1} MB/s",
                bytes as f64 / 1e6
            ));
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    Some(bar)
}
