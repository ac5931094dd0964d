//! Command engines: programs that scan a folder and write SARIF 2.1.0 (`[engines.<id>]`).
//!
//! For one scan, the command engines it names share one [`Worktree`] of the scanned commit,
//! written from the mirror (only when some engine has no cached result for the commit's tree),
//! each runs through the [`Executor`] configured (`scanner.executor`: a child process, or a
//! Kubernetes Job), and its SARIF becomes [`Found`]s ([`sarif`]). Results are cached by (tree id,
//! engine key) under `<cache-dir>/engine-results`. An engine that fails or runs past its
//! timeout yields an [`EngineRun`] saying so; the caller decides what that means for the scan
//! ([`CommandEngine::required`]).

pub mod kubernetes;
mod local;
pub mod sarif;
pub mod worktree;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use scanstream_contracts::event::EngineOutcome;
use scanstream_contracts::finding::Severity;
use scanstream_platform::config::{CommandEngineSettings, Executor as ExecutorKind};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::engine::{Engine, Hit};
use crate::git;
use crate::runner::{EngineRun, Found};
use crate::scan::{Resolved, write_whole};
use crate::source::Place;
use worktree::{Bounds, Worktree};

pub use kubernetes::KubernetesExecutor;
pub use local::LocalExecutor;

/// The largest SARIF document read from an engine.
const MAX_OUTPUT_BYTES: u64 = 256 << 20;
/// Bytes of an engine's log (standard error, or its pod's log) kept for a failure report.
pub const LOG_TAIL_BYTES: usize = 16 << 10;
/// Changes when the cached form of command-engine results changes.
const CACHE_REVISION: &str = "sarif/1";

/// One engine run as the executor sees it: the command line with its placeholders filled in.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub engine: String,
    pub argv: Vec<String>,
    /// The folder scanned; also the working folder.
    pub worktree: PathBuf,
    /// Where the SARIF is expected; when the command line has no `{output}`, the executor
    /// writes the engine's standard output there.
    pub output: PathBuf,
    pub output_from_stdout: bool,
    pub timeout: Duration,
    pub env: Vec<(String, String)>,
    /// Names the scan, for labels and log files: job id, run id, attempt.
    pub job: String,
    pub run: String,
    pub attempt: i32,
}

/// How an engine process (or pod) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Status(i32),
    TimedOut,
    /// It could not be started or watched: the reason.
    Failed(String),
}

/// What an executor reports about one run.
#[derive(Debug, Clone)]
pub struct Ran {
    pub exit: Exit,
    /// The last [`LOG_TAIL_BYTES`] of its log, unredacted: only [`redact_log`] output may be
    /// kept or logged.
    pub log_tail: String,
}

impl Ran {
    /// An engine that could not be started or watched, with no log.
    pub fn failed(reason: impl Into<String>) -> Self {
        Ran {
            exit: Exit::Failed(reason.into()),
            log_tail: String::new(),
        }
    }
}

/// Runs an engine's command somewhere: locally or in a Kubernetes Job.
pub trait Executor: Send + Sync {
    /// Runs `invocation` to its end, its timeout, or `cancel` (then [`Error::Cancelled`]).
    fn run<'a>(
        &'a self,
        invocation: &'a Invocation,
        engine: &'a CommandEngine,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Ran, Error>>;

    /// The engine's version, for reports and the cache key.
    fn version<'a>(&'a self, engine: &'a CommandEngineSettings) -> BoxFuture<'a, Option<String>>;
}

/// One configured command engine.
#[derive(Debug, Clone)]
pub struct CommandEngine {
    pub settings: CommandEngineSettings,
    pub version: Option<String>,
    /// Identifies everything besides the tree that decides its results.
    pub key: String,
}

impl CommandEngine {
    pub fn id(&self) -> &str {
        &self.settings.id
    }

    /// A failure of a required engine fails the attempt.
    pub fn required(&self) -> bool {
        self.settings.required
    }
}

/// The command engines of a scanner and what runs them.
pub struct CommandEngines {
    engines: Vec<CommandEngine>,
    executor: Arc<dyn Executor>,
    /// `<cache-dir>`: worktrees, cached results and failure logs live under it.
    cache_dir: PathBuf,
    bounds: Bounds,
    repo_config: bool,
    key: Vec<u8>,
    /// Masks secrets in engine logs before they are kept.
    redactor: Option<Arc<dyn Engine>>,
}

/// Where command engines work: the cache folder (worktrees, cached results, kept logs), the
/// worktrees' bounds, and whether a repository's own engine configuration is kept in them.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub cache_dir: PathBuf,
    pub bounds: Bounds,
    pub repo_config: bool,
}

/// What the scan needs to know to run command engines for it.
pub struct ScanContext<'a> {
    /// The repository at the scanned commit.
    pub resolved: &'a Resolved,
    pub labels: Labels,
}

/// Names the scan an engine run belongs to: Job labels and log file names.
#[derive(Debug, Clone)]
pub struct Labels {
    pub job: String,
    pub run: String,
    pub attempt: i32,
}

/// The folder an engine scans and the one it writes to.
struct Target {
    tree: PathBuf,
    out: PathBuf,
    files: u64,
    bytes: u64,
}

impl CommandEngines {
    /// Resolves each engine's version (through the executor) and cache key.
    pub async fn new(
        settings: Vec<CommandEngineSettings>,
        executor: Arc<dyn Executor>,
        executor_kind: ExecutorKind,
        workspace: Workspace,
        fingerprint_key: &[u8],
        redactor: Option<Arc<dyn Engine>>,
    ) -> Self {
        let mut engines = Vec::new();
        for settings in settings {
            let version = executor.version(&settings).await;
            if version.is_none() && executor_kind == ExecutorKind::Local {
                tracing::warn!(engine = %settings.id, "the engine's version command named no version (is the engine installed? A scan naming it reports it failed when it cannot run)");
            }
            let key = engine_key(
                &settings,
                version.as_deref(),
                executor_kind,
                fingerprint_key,
            );
            engines.push(CommandEngine {
                settings,
                version,
                key,
            });
        }
        Self {
            engines,
            executor,
            cache_dir: workspace.cache_dir,
            bounds: workspace.bounds,
            repo_config: workspace.repo_config,
            key: fingerprint_key.to_vec(),
            redactor,
        }
    }

    pub fn ids(&self) -> Vec<String> {
        self.engines.iter().map(|e| e.id().to_owned()).collect()
    }

    pub fn get(&self, id: &str) -> Option<&CommandEngine> {
        self.engines.iter().find(|e| e.id() == id)
    }

    /// Runs the command engines among `ids` (others are ignored) on `scan`'s commit, in the
    /// order of `ids`. Fails only when the scan is cancelled; an engine that fails, and a
    /// worktree that cannot be written, make failed [`EngineRun`]s.
    pub async fn run(
        &self,
        ids: &[String],
        scan: ScanContext<'_>,
        cancel: &CancellationToken,
    ) -> Result<Vec<EngineRun>, Error> {
        let engines: Vec<&CommandEngine> = ids.iter().filter_map(|id| self.get(id)).collect();
        if engines.is_empty() {
            return Ok(Vec::new());
        }
        let Some(commit) = scan.resolved.commit_id() else {
            return Ok(engines.iter().map(|e| self.empty_run(e)).collect());
        };
        let repo = scan.resolved.repo().clone();
        let tree_id = tokio::task::spawn_blocking(move || git::tree_id(&repo, commit))
            .await
            .map_err(|e| Error::Source(format!("worktree task failed: {e}")))??;
        let mut runs: Vec<Option<EngineRun>> = engines
            .iter()
            .map(|e| self.cached(e, &tree_id, &commit.to_string()))
            .collect();
        if runs.iter().all(Option::is_some) {
            return Ok(runs.into_iter().flatten().collect());
        }
        let labels = &scan.labels;
        let name = format!("{}-{}-{}", labels.job, labels.run, labels.attempt);
        let worktree = {
            let (repo, parent, bounds, repo_config) = (
                scan.resolved.repo().clone(),
                self.cache_dir.join("worktrees"),
                self.bounds,
                self.repo_config,
            );
            let flag = Arc::new(AtomicBool::new(false));
            let guard = {
                let (flag, cancel) = (flag.clone(), cancel.clone());
                tokio::spawn(async move {
                    cancel.cancelled().await;
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                })
            };
            let written = tokio::task::spawn_blocking(move || {
                Worktree::write(&repo, commit, &parent, &name, bounds, repo_config, &flag)
            })
            .await
            .map_err(|e| Error::Source(format!("worktree task failed: {e}")));
            guard.abort();
            written?
        };
        let worktree = match worktree {
            Ok(worktree) => worktree,
            Err(Error::Cancelled) => return Err(Error::Cancelled),
            Err(e) => {
                tracing::warn!(job = %labels.job, error = %e, "no worktree for the command engines");
                return Ok(engines
                    .iter()
                    .zip(runs)
                    .map(|(engine, cached)| {
                        cached.unwrap_or_else(|| {
                            self.failed_run(engine, EngineOutcome::Failed, e.to_string(), 0)
                        })
                    })
                    .collect());
            }
        };
        metrics::histogram!(crate::metrics::WORKTREE_DURATION).record(worktree.took.as_secs_f64());
        tracing::debug!(job = %labels.job, files = worktree.files, bytes = worktree.bytes, ms = worktree.took.as_millis() as u64, "worktree written");
        let target = Target {
            tree: worktree.tree(),
            out: worktree.out(),
            files: worktree.files,
            bytes: worktree.bytes,
        };
        let pending: Vec<usize> = (0..engines.len()).filter(|i| runs[*i].is_none()).collect();
        let commit_hex = commit.to_string();
        let fresh = futures::future::join_all(pending.iter().map(|&i| {
            self.run_one(
                engines[i],
                &target,
                labels,
                Some(&commit_hex),
                Some(&tree_id),
                cancel,
            )
        }))
        .await;
        for (i, run) in pending.into_iter().zip(fresh) {
            let mut run = run?;
            run.worktree_ms = duration_ms(worktree.took);
            runs[i] = Some(run);
        }
        drop(worktree);
        Ok(runs.into_iter().flatten().collect())
    }

    /// Runs the command engines among `ids` on a folder as it is (`scanstream scan` of a
    /// folder, with the local executor): no worktree, no result cache.
    pub async fn run_on_folder(
        &self,
        ids: &[String],
        folder: &Path,
        cancel: &CancellationToken,
    ) -> Result<Vec<EngineRun>, Error> {
        let out = tempfile::tempdir().map_err(|e| Error::io(Path::new("temporary folder"), e))?;
        let target = Target {
            tree: folder.to_path_buf(),
            out: out.path().to_path_buf(),
            files: 0,
            bytes: 0,
        };
        let labels = Labels {
            job: "local".into(),
            run: uuid::Uuid::new_v4().simple().to_string(),
            attempt: 1,
        };
        let engines: Vec<&CommandEngine> = ids.iter().filter_map(|id| self.get(id)).collect();
        futures::future::join_all(
            engines
                .iter()
                .map(|e| self.run_one(e, &target, &labels, None, None, cancel)),
        )
        .await
        .into_iter()
        .collect()
    }

    /// Runs one engine on a folder and reads its SARIF; caches the result under `tree_id`.
    async fn run_one(
        &self,
        engine: &CommandEngine,
        target: &Target,
        labels: &Labels,
        commit: Option<&str>,
        tree_id: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<EngineRun, Error> {
        let started = Instant::now();
        let tree = &target.tree;
        let output = target.out.join(format!("{}.sarif", engine.id()));
        let invocation = self.invocation(engine, tree, &output, commit.unwrap_or(""), labels);
        let ran = self.executor.run(&invocation, engine, cancel).await?;
        let ms = started.elapsed();
        metrics::histogram!(crate::metrics::ENGINE_DURATION, "engine" => engine.id().to_owned())
            .record(ms.as_secs_f64());
        let failed =
            |outcome, reason: String| Ok(self.failed_run(engine, outcome, reason, duration_ms(ms)));
        let status = match &ran.exit {
            Exit::Status(code) if engine.settings.ok_exit_codes.contains(code) => *code,
            exit => {
                let (outcome, reason) = match exit {
                    Exit::TimedOut => (
                        EngineOutcome::TimedOut,
                        format!(
                            "ran past its timeout of {} s and was stopped",
                            engine.settings.timeout.as_secs()
                        ),
                    ),
                    Exit::Status(code) => (
                        EngineOutcome::Failed,
                        format!(
                            "exited with status {code} (success: {:?})",
                            engine.settings.ok_exit_codes
                        ),
                    ),
                    Exit::Failed(reason) => (EngineOutcome::Failed, reason.clone()),
                };
                self.keep_log(engine, labels, &reason, &ran.log_tail);
                return failed(outcome, reason);
            }
        };
        let bytes = match read_bounded(&output) {
            Ok(bytes) => bytes,
            Err(reason) => {
                let reason = format!("exited with status {status} but {reason}");
                self.keep_log(engine, labels, &reason, &ran.log_tail);
                return failed(EngineOutcome::Failed, reason);
            }
        };
        let fallback = Severity::ALL
            .into_iter()
            .find(|s| s.name() == engine.settings.default_severity)
            .unwrap_or(Severity::Medium);
        let read = match sarif::read(&bytes, engine.id(), fallback, tree, &self.key, commit) {
            Ok(read) => read,
            Err(e) => {
                let reason = e.to_string();
                self.keep_log(engine, labels, &reason, &ran.log_tail);
                return failed(EngineOutcome::Failed, reason);
            }
        };
        if read.skipped > 0 {
            tracing::warn!(engine = %engine.id(), skipped = read.skipped, "results without a readable location in the worktree were skipped");
        }
        let mut found = read.found;
        sort(&mut found);
        let run = EngineRun {
            engine: engine.id().to_owned(),
            files: target.files,
            bytes: target.bytes,
            duration_ms: duration_ms(started.elapsed()),
            found,
            version: engine.version.clone(),
            ..EngineRun::default()
        };
        if let Some(tree_id) = tree_id {
            self.store(engine, tree_id, &run);
        }
        Ok(run)
    }

    fn invocation(
        &self,
        engine: &CommandEngine,
        tree: &Path,
        output: &Path,
        commit: &str,
        labels: &Labels,
    ) -> Invocation {
        let settings = &engine.settings;
        let fill = |arg: &str| {
            arg.replace("{worktree}", &tree.display().to_string())
                .replace("{output}", &output.display().to_string())
                .replace("{ref}", commit)
                .replace("{config}", settings.config.as_deref().unwrap_or(""))
        };
        Invocation {
            engine: settings.id.clone(),
            argv: settings.command.iter().map(|a| fill(a)).collect(),
            worktree: tree.to_path_buf(),
            output: output.to_path_buf(),
            output_from_stdout: !settings.command.iter().any(|a| a.contains("{output}")),
            timeout: settings.timeout,
            env: settings
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
                .collect(),
            job: labels.job.clone(),
            run: labels.run.clone(),
            attempt: labels.attempt,
        }
    }

    fn empty_run(&self, engine: &CommandEngine) -> EngineRun {
        EngineRun {
            engine: engine.id().to_owned(),
            version: engine.version.clone(),
            ..EngineRun::default()
        }
    }

    fn failed_run(
        &self,
        engine: &CommandEngine,
        outcome: EngineOutcome,
        reason: String,
        duration_ms: u64,
    ) -> EngineRun {
        tracing::warn!(engine = %engine.id(), outcome = outcome.name(), %reason, "command engine gave no result");
        EngineRun {
            engine: engine.id().to_owned(),
            version: engine.version.clone(),
            outcome,
            error: Some(reason),
            duration_ms,
            ..EngineRun::default()
        }
    }

    /// Keeps a failed engine's log, redacted, under `<cache-dir>/engine-logs/<job>/`.
    fn keep_log(&self, engine: &CommandEngine, labels: &Labels, reason: &str, tail: &str) {
        let dir = self.cache_dir.join("engine-logs").join(&labels.job);
        let path = dir.join(format!(
            "{}-{}-{}.log",
            labels.run,
            labels.attempt,
            engine.id()
        ));
        let text = format!(
            "{reason}\n---\n{}",
            redact_log(tail, self.redactor.as_deref())
        );
        let written = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text));
        match written {
            Ok(()) => {
                tracing::warn!(engine = %engine.id(), job = %labels.job, log = %path.display(), %reason, "command engine failed; its log (redacted) is kept");
            }
            Err(e) => {
                tracing::warn!(engine = %engine.id(), error = %e, "command engine log not kept")
            }
        }
    }

    /// Results depend on the tree and, through the worktree, on whether the repository's own
    /// engine configuration is in it (`scanner.repo_config`).
    fn cache_path(&self, engine: &CommandEngine, tree_id: &str) -> PathBuf {
        let variant = if self.repo_config { "-repo-config" } else { "" };
        self.cache_dir
            .join("engine-results")
            .join(&engine.key)
            .join(format!("{tree_id}{variant}.json"))
    }

    /// The engine's cached results for the tree, placed at `commit`.
    fn cached(&self, engine: &CommandEngine, tree_id: &str, commit: &str) -> Option<EngineRun> {
        let bytes = std::fs::read(self.cache_path(engine, tree_id)).ok()?;
        let cached: Cached = serde_json::from_slice(&bytes).ok()?;
        let found = cached
            .found
            .into_iter()
            .map(|f| Found {
                hit: Hit {
                    rule: f.rule,
                    severity: f.severity,
                    line: f.line,
                    fingerprint: f.fingerprint,
                    secret_id: f.secret_id,
                    preview: f.preview,
                    shadowed_by: Vec::new(),
                },
                place: Place {
                    path: f.path,
                    commit: Some(commit.to_owned()),
                },
                versions: 1,
            })
            .collect();
        let files = cached.files;
        Some(EngineRun {
            engine: engine.id().to_owned(),
            files,
            bytes: cached.bytes,
            found,
            version: engine.version.clone(),
            cached: files,
            from_cache: true,
            ..EngineRun::default()
        })
    }

    fn store(&self, engine: &CommandEngine, tree_id: &str, run: &EngineRun) {
        let cached = Cached {
            files: run.files,
            bytes: run.bytes,
            found: run
                .found
                .iter()
                .map(|f| CachedFound {
                    rule: f.hit.rule.clone(),
                    severity: f.hit.severity,
                    line: f.hit.line,
                    fingerprint: f.hit.fingerprint.clone(),
                    secret_id: f.hit.secret_id.clone(),
                    preview: f.hit.preview.clone(),
                    path: f.place.path.clone(),
                })
                .collect(),
        };
        let written = serde_json::to_vec(&cached)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_whole(&self.cache_path(engine, tree_id), &bytes));
        if let Err(e) = written {
            // Only a future cache hit is lost.
            tracing::warn!(engine = %engine.id(), error = %e, "command engine results not cached");
        }
    }
}

/// Cached results of one engine on one tree: fingerprints, ids and redacted previews only.
#[derive(Serialize, Deserialize)]
struct Cached {
    files: u64,
    bytes: u64,
    found: Vec<CachedFound>,
}

#[derive(Serialize, Deserialize)]
struct CachedFound {
    rule: String,
    severity: Severity,
    line: u32,
    fingerprint: String,
    secret_id: String,
    preview: String,
    path: String,
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn sort(found: &mut [Found]) {
    found.sort_by(|a, b| {
        (&a.place.path, a.hit.line, &a.hit.rule).cmp(&(&b.place.path, b.hit.line, &b.hit.rule))
    });
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let size = std::fs::metadata(path)
        .map_err(|_| "wrote no output file".to_owned())?
        .len();
    if size > MAX_OUTPUT_BYTES {
        return Err(format!(
            "its output holds {size} bytes, more than the {MAX_OUTPUT_BYTES} read"
        ));
    }
    std::fs::read(path).map_err(|e| format!("its output could not be read ({})", e.kind()))
}

/// An engine log with every line the built-in engine finds a secret on withheld, cut to its
/// last [`LOG_TAIL_BYTES`].
pub fn redact_log(text: &str, redactor: Option<&dyn Engine>) -> String {
    let flagged: HashSet<u32> = match redactor {
        Some(engine) => engine
            .scan(text.as_bytes())
            .iter()
            .map(|h| h.line)
            .collect(),
        None => HashSet::new(),
    };
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
            if flagged.contains(&number) || redactor.is_none() {
                "[line withheld: it may hold a secret]".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect();
    let joined = lines.join("\n");
    let start = joined.len().saturating_sub(LOG_TAIL_BYTES);
    let start = (start..joined.len())
        .find(|i| joined.is_char_boundary(*i))
        .unwrap_or(joined.len());
    joined[start..].to_owned()
}

/// The cache key of an engine: its command line, version, success statuses, environment (its
/// values keyed, never stored), image for Jobs, the content of its `config` file or folder,
/// and the fingerprint key (cached results hold fingerprints).
fn engine_key(
    settings: &CommandEngineSettings,
    version: Option<&str>,
    executor: ExecutorKind,
    fingerprint_key: &[u8],
) -> String {
    let mut hash = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    part(CACHE_REVISION.as_bytes());
    part(settings.id.as_bytes());
    for arg in &settings.command {
        part(arg.as_bytes());
    }
    part(version.unwrap_or("").as_bytes());
    part(format!("{:?}", settings.ok_exit_codes).as_bytes());
    for (name, value) in &settings.env {
        part(name.as_bytes());
        part(
            crate::secrets::secret_id(fingerprint_key, value.expose_secret().as_bytes()).as_bytes(),
        );
    }
    if executor == ExecutorKind::Kubernetes {
        part(settings.image.as_bytes());
    }
    if let Some(config) = &settings.config {
        part(&content_digest(Path::new(config)));
    }
    part(crate::secrets::secret_id(fingerprint_key, b"engine-results").as_bytes());
    hex::encode(&hash.finalize()[..16])
}

/// A digest of a file's content, or of every file under a folder (by relative path).
fn content_digest(path: &Path) -> Vec<u8> {
    let mut hash = Sha256::new();
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        match std::fs::read_dir(&p) {
            Ok(entries) => stack.extend(entries.flatten().map(|e| e.path())),
            Err(_) => files.push(p),
        }
    }
    files.sort();
    for file in files {
        hash.update(file.display().to_string().as_bytes());
        hash.update(std::fs::read(&file).unwrap_or_default());
    }
    hash.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_cut_and_lose_the_lines_a_secret_is_on() {
        let pack = crate::rules::RulePack::load(&[] as &[String]).unwrap();
        let engine = crate::secrets::SecretsEngine::new(pack, b"k");
        let log = "starting\nkey=AKIAQ7RZ4MWXK2PLZTJH found\ndone\n";
        let kept = redact_log(log, Some(&engine));
        assert!(!kept.contains("AKIA"), "{kept}");
        assert!(kept.contains("starting") && kept.contains("done"), "{kept}");
        assert!(!redact_log(log, None).contains("AKIA"));
        let long = "é".repeat(LOG_TAIL_BYTES);
        assert!(redact_log(&long, Some(&engine)).len() <= LOG_TAIL_BYTES);
    }
}
