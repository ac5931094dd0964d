//! What a scan is, shared by the scanner service and `scanstream scan`: the engines, their result
//! caches, limits, ignored fingerprints, and how each scan mode picks the blobs to read.
//!
//! Modes:
//! - **tree**: every blob of the tree at the ref (default: the repository's HEAD).
//! - **history**: every unique blob reachable from the ref (default: every branch and tag),
//!   each scanned once and reported at the oldest commit and path it appears at.
//! - **incremental**: the blobs of the commits since the last successful scan of the same
//!   repository and ref that are not in that scan's tree; the whole tree the first time.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use scanstream_contracts::command::ScanMode;
use scanstream_platform::repo::RepoRules;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::engine::Engine;
use crate::git::{self, GitSource, ObjectId, Repo, Walk};
use crate::results::ResultCache;
use crate::rules::RulePack;
use crate::runner::{self, EngineRun, Found, Limits, Progress};
use crate::secrets::SecretsEngine;
use crate::source::Source;

/// The name of the ignore file read from the root of a scanned tree or folder.
pub const IGNORE_FILE: &str = ".scanstreamignore";

/// A repository opened at the commit a scan reads.
pub struct Resolved {
    repo: Repo,
    commit: Option<git::ObjectId>,
}

impl Resolved {
    /// The commit id in hex; `None` for an empty repository.
    pub fn commit(&self) -> Option<String> {
        self.commit.map(|c| c.to_string())
    }

    pub(crate) fn repo(&self) -> &Repo {
        &self.repo
    }

    pub(crate) fn commit_id(&self) -> Option<ObjectId> {
        self.commit
    }
}

pub struct Scanning {
    engines: Vec<Arc<dyn Engine>>,
    caches: HashMap<String, Arc<ResultCache>>,
    limits: Limits,
    ignored: HashSet<String>,
    /// `<cache-dir>/incremental`: the last scanned commit per repository and ref.
    state_dir: Option<PathBuf>,
    /// `<cache-dir>/walks`: the last history walk per repository and ref.
    walk_dir: Option<PathBuf>,
    /// Which repository URLs commands may name: the rules ingest applies, shared.
    repos: RepoRules,
    /// Set when scanned repositories' own `.gitleaks.toml`/`.gitleaksignore` are honoured.
    repository_rules: Option<RepositoryRules>,
}

/// What a scan needs to build the `secrets` engine again with a repository's own rules.
struct RepositoryRules {
    rule_files: Vec<String>,
    fingerprint_key: Vec<u8>,
}

impl Scanning {
    /// `cache_dir` enables the result cache and incremental state; `ignored` holds fingerprints
    /// never reported; `file_roots` are the folders `file://` repositories may be in.
    pub fn new(
        engines: Vec<Arc<dyn Engine>>,
        cache_dir: Option<&Path>,
        limits: Limits,
        ignored: HashSet<String>,
        file_roots: Vec<PathBuf>,
    ) -> Self {
        let repos = RepoRules::new(file_roots.as_slice()).unwrap_or_else(|error| {
            // Ingest refuses to start with such a root; a scanner refuses every file:// URL.
            tracing::error!(%error, "file:// repositories are refused until ingest.file_roots is fixed");
            RepoRules::default()
        });
        let caches = match cache_dir {
            Some(dir) => engines
                .iter()
                .map(|e| {
                    let cache = ResultCache::new(&dir.join("results"), e.cache_key());
                    (e.id().to_owned(), Arc::new(cache))
                })
                .collect(),
            None => HashMap::new(),
        };
        Self {
            engines,
            caches,
            limits,
            ignored,
            state_dir: cache_dir.map(|d| d.join("incremental")),
            walk_dir: cache_dir.map(|d| d.join("walks")),
            repos,
            repository_rules: None,
        }
    }

    /// Honours scanned repositories' own `.gitleaks.toml` (merged after `rule_files`, with the
    /// same fingerprint key) and `.gitleaksignore`.
    pub fn with_repository_rules(
        mut self,
        rule_files: Vec<String>,
        fingerprint_key: &[u8],
    ) -> Self {
        self.repository_rules = Some(RepositoryRules {
            rule_files,
            fingerprint_key: fingerprint_key.to_vec(),
        });
        self
    }

    /// A `secrets` engine with the repository's `.gitleaks.toml` merged, and its
    /// `.gitleaksignore`, when they are honoured and present at `commit`. A rule file that does
    /// not load is reported (its first line only: the rest quotes the file) and not used.
    fn repository_config(
        &self,
        repo: &Repo,
        commit: git::ObjectId,
    ) -> (Option<Arc<dyn Engine>>, Vec<PlaceIgnore>) {
        let Some(config) = &self.repository_rules else {
            return (None, Vec::new());
        };
        let ignores = git::read_path(repo, commit, GITLEAKS_IGNORE)
            .map(|bytes| parse_gitleaks_ignore(&String::from_utf8_lossy(&bytes)))
            .unwrap_or_default();
        let engine = git::read_path(repo, commit, GITLEAKS_CONFIG).and_then(|bytes| {
            let text = String::from_utf8_lossy(&bytes);
            match RulePack::load_with_repository(&config.rule_files, &text) {
                Ok(pack) => {
                    Some(Arc::new(SecretsEngine::new(pack, &config.fingerprint_key))
                        as Arc<dyn Engine>)
                }
                Err(error) => {
                    let error = error.to_string();
                    let first = error.lines().next().unwrap_or_default();
                    tracing::warn!(error = first, "the repository's .gitleaks.toml is not used");
                    None
                }
            }
        });
        (engine, ignores)
    }

    pub fn engine_ids(&self) -> Vec<String> {
        self.engines.iter().map(|e| e.id().to_owned()).collect()
    }

    pub fn engines(&self) -> &[Arc<dyn Engine>] {
        &self.engines
    }

    /// The scanner's own check of a command's repository URL: the same rules as ingest's
    /// ([`RepoRules::check`]), so the scanner accepts exactly what ingest writes (scp-style URLs
    /// and `ssh://` user names included) and refuses what it refuses: other schemes,
    /// credentials, parts git would read as options, and `file://` paths outside
    /// `ingest.file_roots` once symbolic links are followed. A local path that does not exist
    /// passes (ingest refused it then): its fetch fails, permanently.
    pub fn check_url(&self, text: &str) -> Result<(), String> {
        self.repos
            .check(text)
            .map(|_| ())
            .map_err(|refused| format!("repo_url refused ({}): {}", refused.rule, refused.message))
    }

    /// Opens the repository at `path` and resolves `git_ref` (HEAD when `None`) for a scan in
    /// `mode`. A history scan without a ref reads every branch and tag and does not need HEAD:
    /// where HEAD names a branch that does not exist, the newest tip stands for the scan (its
    /// commit is the one reported, and whose repository rules apply).
    pub fn resolve(
        &self,
        path: &Path,
        git_ref: Option<&str>,
        mode: ScanMode,
    ) -> Result<Resolved, Error> {
        let repo = git::open(path)?;
        let commit = match git::resolve(&repo, git_ref) {
            Err(Error::HeadUnborn { .. }) if mode == ScanMode::History && git_ref.is_none() => {
                git::newest_tip(&repo)?
            }
            resolved => resolved?,
        };
        Ok(Resolved { repo, commit })
    }

    /// Runs `engine_ids` over the blobs `mode` selects.
    #[allow(clippy::too_many_arguments)]
    pub fn scan(
        &self,
        resolved: &Resolved,
        engine_ids: &[String],
        mode: ScanMode,
        repo_url: &str,
        git_ref: Option<&str>,
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<Vec<EngineRun>, Error> {
        let Some(commit) = resolved.commit else {
            // An empty repository: nothing to read, every engine reports zero.
            return Ok(engine_ids
                .iter()
                .map(|id| EngineRun {
                    engine: id.clone(),
                    max_blob_bytes: self.limits.max_blob_bytes,
                    ..EngineRun::default()
                })
                .collect());
        };
        let repo = &resolved.repo;
        let explain = |error| git::explain_missing(repo, error);
        // A history scan's walk, kept for the next one, and whether it changed since read.
        let (source, walk) = match mode {
            ScanMode::Tree => (GitSource::tree(repo, commit).map_err(explain)?, None),
            ScanMode::History => {
                let tips = match git_ref {
                    Some(_) => vec![commit],
                    None => git::branch_and_tag_tips(repo)?,
                };
                // The last walk is read while the engines' result caches load: each holds
                // every blob seen before, and each is read on a core of its own.
                let (previous, loaded) = rayon::join(
                    || self.last_walk(repo_url, git_ref),
                    || {
                        engine_ids
                            .iter()
                            .filter_map(|id| self.caches.get(id))
                            .try_for_each(|cache| cache.refresh())
                    },
                );
                loaded?;
                let before = previous.as_ref().map(Walk::extent);
                // Without a cache folder there is nowhere to keep the walk: it is not held
                // beside the scan.
                let keep = self.walk_dir.is_some();
                let (source, walk) =
                    GitSource::history_resumed(repo, &tips, previous, keep).map_err(explain)?;
                // Written back only when it grew: a scheduled rescan of a repository with no
                // new commit does not rewrite its walk on the shared cache volume.
                let walk = walk.map(|walk| {
                    let changed = before != Some(walk.extent());
                    (walk, changed)
                });
                (source, walk)
            }
            ScanMode::Incremental => {
                let source = match self.last_scanned(repo_url, git_ref).and_then(|last| {
                    // The last scanned commit may be gone (force push); then scan it all.
                    git::parse_id(repo, &last)
                }) {
                    Some(last) if last == commit => GitSource::empty(repo),
                    Some(last) => GitSource::history_since(repo, commit, last).map_err(explain)?,
                    None => GitSource::tree(repo, commit).map_err(explain)?,
                };
                (source, None)
            }
        };
        // The walk is written while the engines run: neither needs the other, and on a rescan
        // writing it takes as long as the scan. It is freed as soon as it is written (or at
        // once when it did not change), not held to the end of the scan.
        std::thread::scope(|scope| {
            if let Some((walk, changed)) = walk {
                scope.spawn(move || {
                    if changed {
                        self.keep_walk(repo_url, git_ref, &walk);
                    }
                });
            }
            self.scan_source(
                repo,
                commit,
                &source,
                engine_ids,
                mode != ScanMode::Tree,
                progress,
                cancel,
            )
        })
    }

    /// Runs `engine_ids` over the blobs the commits after `since` (a branch, tag or commit id)
    /// up to the resolved commit add: what changed since `since`, each finding at the commit
    /// that introduced it.
    pub fn scan_since(
        &self,
        resolved: &Resolved,
        engine_ids: &[String],
        since: &str,
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<Vec<EngineRun>, Error> {
        let repo = &resolved.repo;
        let Some(since_id) = git::resolve(repo, Some(since))? else {
            return Err(Error::Git(format!(
                "{since}: not a commit of the repository"
            )));
        };
        let Some(commit) = resolved.commit else {
            return Err(Error::Git("the repository has no commit".into()));
        };
        let source = if since_id == commit {
            GitSource::empty(repo)
        } else {
            GitSource::history_since(repo, commit, since_id)
                .map_err(|error| git::explain_missing(repo, error))?
        };
        self.scan_source(repo, commit, &source, engine_ids, true, progress, cancel)
    }

    /// Runs the engines over `source` (blobs of `repo`, read at `commit` for the repository's
    /// own configuration), applies the place ignores and, for histories, reports each secret
    /// once per path.
    #[allow(clippy::too_many_arguments)]
    fn scan_source(
        &self,
        repo: &Repo,
        commit: ObjectId,
        source: &GitSource,
        engine_ids: &[String],
        history: bool,
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<Vec<EngineRun>, Error> {
        let ignored = self.ignored_with(git::read_path(repo, commit, IGNORE_FILE));
        let (own_engine, place_ignores) = self.repository_config(repo, commit);
        let mut runs = self.run_engines_with(
            source,
            engine_ids,
            &ignored,
            progress,
            cancel,
            own_engine.as_ref(),
        )?;
        for run in &mut runs {
            run.found
                .retain(|f| !place_ignores.iter().any(|ignore| ignore.matches(f)));
        }
        if history {
            for run in &mut runs {
                collapse_versions(&mut run.found, |commit| source.commit_rank(commit));
            }
        }
        Ok(runs)
    }

    /// Runs engines over any source (a repository's blobs or a folder's files).
    pub fn run_engines<S: Source>(
        &self,
        source: &S,
        engine_ids: &[String],
        ignored: &HashSet<String>,
        progress: &Progress,
        cancel: &AtomicBool,
    ) -> Result<Vec<EngineRun>, Error> {
        self.run_engines_with(source, engine_ids, ignored, progress, cancel, None)
    }

    /// [`Scanning::run_engines`], with `instead` replacing the engine of the same id (a
    /// repository's own rules); its results are not cached.
    fn run_engines_with<S: Source>(
        &self,
        source: &S,
        engine_ids: &[String],
        ignored: &HashSet<String>,
        progress: &Progress,
        cancel: &AtomicBool,
        instead: Option<&Arc<dyn Engine>>,
    ) -> Result<Vec<EngineRun>, Error> {
        let mut runs = Vec::new();
        for id in engine_ids {
            let replaced = instead.filter(|e| e.id() == id);
            let engine = replaced
                .or_else(|| self.engines.iter().find(|e| e.id() == id))
                .ok_or_else(|| Error::Source(format!("no engine {id:?} in this scanner")))?;
            let cache = if replaced.is_some() {
                None
            } else {
                self.caches.get(id)
            };
            if let Some(cache) = cache {
                cache.refresh()?;
            }
            let mut run = runner::run(
                engine.as_ref(),
                source,
                cache.map(|c| c.as_ref()),
                self.limits,
                progress,
                cancel,
            )?;
            if let Some(cache) = cache
                && let Err(e) = cache.persist()
            {
                // Only future cache hits are lost.
                tracing::warn!(error = %e, "result cache not written");
            }
            run.found.retain(|f| !ignored.contains(&f.hit.fingerprint));
            runs.push(run);
        }
        Ok(runs)
    }

    /// The configured ignored fingerprints plus those of an ignore file's text.
    pub fn ignored_with(&self, ignore_file: Option<Vec<u8>>) -> HashSet<String> {
        let mut ignored = self.ignored.clone();
        if let Some(bytes) = ignore_file {
            ignored.extend(parse_ignore(&String::from_utf8_lossy(&bytes)));
        }
        ignored
    }

    fn state_path(&self, repo_url: &str, git_ref: Option<&str>) -> Option<PathBuf> {
        Some(self.state_dir.as_ref()?.join(state_name(repo_url, git_ref)))
    }

    /// The history walk the last history scan of the repository and ref kept, if any.
    fn last_walk(&self, repo_url: &str, git_ref: Option<&str>) -> Option<Walk> {
        let path = self.walk_dir.as_ref()?.join(state_name(repo_url, git_ref));
        Walk::decode(&std::fs::read(path).ok()?)
    }

    /// Keeps `walk` for the next history scan of the repository and ref (whole or not at all:
    /// written to a temporary name and renamed).
    fn keep_walk(&self, repo_url: &str, git_ref: Option<&str>, walk: &Walk) {
        // Without a cache folder there is nowhere to keep it: not even written to memory.
        let Some(dir) = &self.walk_dir else {
            return;
        };
        if !walk.is_sha1() {
            return;
        }
        let path = dir.join(state_name(repo_url, git_ref));
        let written = write_whole_with(&path, |file| {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
            walk.write_to(&mut out)?;
            std::io::Write::flush(&mut out)
        });
        if let Err(e) = written {
            tracing::warn!(error = %e, "history walk not kept; the next history scan walks it all");
        }
    }

    fn last_scanned(&self, repo_url: &str, git_ref: Option<&str>) -> Option<String> {
        let path = self.state_path(repo_url, git_ref)?;
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Remembers `commit` as the last successful scan of the repository and ref.
    pub fn mark_scanned(&self, repo_url: &str, git_ref: Option<&str>, commit: &str) {
        let Some(path) = self.state_path(repo_url, git_ref) else {
            return;
        };
        if let Err(e) = write_whole(&path, commit.as_bytes()) {
            tracing::warn!(error = %e, "incremental scan state not written; the next one reads the whole tree");
        }
    }
}

/// The file name of a repository and ref's state (last scanned commit, last walk).
fn state_name(repo_url: &str, git_ref: Option<&str>) -> String {
    let key = format!("{repo_url}\n{}", git_ref.unwrap_or("HEAD"));
    hex::encode(&Sha256::digest(key.as_bytes())[..16])
}

/// Writes `bytes` to a temporary name next to `path` and renames it into place: readers see
/// the old file or the new one, whole. A write that fails leaves no temporary file behind.
pub(crate) fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_whole_with(path, |file| std::io::Write::write_all(file, bytes))
}

/// [`write_whole`] with the content written by `write` into the temporary file.
pub(crate) fn write_whole_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| write(&mut file))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Fingerprints of an ignore file: one per line, `#` starts a comment.
/// One finding per rule, secret and path: a secret kept while a file was edited is in every
/// version (blob) of the file after it was introduced, and each version is scanned. The finding
/// kept is the one at the oldest commit (`rank`: oldest first; unknown commits last), and it
/// counts the versions.
pub fn collapse_versions(found: &mut Vec<Found>, rank: impl Fn(&str) -> Option<usize>) {
    let mut kept: HashMap<(String, String, String), usize> = HashMap::new();
    let mut out: Vec<Found> = Vec::with_capacity(found.len());
    for f in found.drain(..) {
        let key = (
            f.hit.rule.clone(),
            f.hit.fingerprint.clone(),
            f.place.path.clone(),
        );
        match kept.get(&key) {
            Some(&at) => {
                let versions = out[at].versions + f.versions;
                let older = |f: &Found| {
                    f.place
                        .commit
                        .as_deref()
                        .and_then(&rank)
                        .unwrap_or(usize::MAX)
                };
                if older(&f) < older(&out[at]) {
                    out[at] = f;
                }
                out[at].versions = versions;
            }
            None => {
                kept.insert(key, out.len());
                out.push(f);
            }
        }
    }
    *found = out;
}

/// A repository's gitleaks rule file, read by `scanstream scan` (and by pipeline scans when
/// `scanner.repo_config` is on).
pub const GITLEAKS_CONFIG: &str = ".gitleaks.toml";
/// A repository's gitleaks ignore file: findings to skip by place.
pub const GITLEAKS_IGNORE: &str = ".gitleaksignore";

/// One line of a `.gitleaksignore`: `[commit:]path:rule:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceIgnore {
    pub commit: Option<String>,
    pub path: String,
    pub rule: String,
    pub line: u32,
}

impl PlaceIgnore {
    pub fn matches(&self, found: &Found) -> bool {
        found.hit.line == self.line
            && found.hit.rule == self.rule
            && found.place.path == self.path
            && self
                .commit
                .as_deref()
                .is_none_or(|c| found.place.commit.as_deref() == Some(c))
    }
}

/// Reads a `.gitleaksignore`: `[commit:]path:rule:line` per line (gitleaks' finding
/// fingerprints); blank lines, `#` comments and lines that do not parse are skipped.
pub fn parse_gitleaks_ignore(text: &str) -> Vec<PlaceIgnore> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (rest, line) = l.rsplit_once(':')?;
            let line: u32 = line.parse().ok()?;
            let (rest, rule) = rest.rsplit_once(':')?;
            let (commit, path) = match rest.split_once(':') {
                Some((commit, path))
                    if commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    (Some(commit.to_ascii_lowercase()), path)
                }
                _ => (None, rest),
            };
            Some(PlaceIgnore {
                commit,
                path: path.to_owned(),
                rule: rule.to_owned(),
                line,
            })
        })
        .collect()
}

pub fn parse_ignore(text: &str) -> HashSet<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitleaksignore_lines_name_places_with_or_without_a_commit() {
        let text = "# known\n\
                    0123456789abcdef0123456789abcdef01234567:src/a:b.py:aws-access-key-id:12\n\
                    config/app.env:generic-secret-assignment:3\n\
                    not a fingerprint\n";
        assert_eq!(
            parse_gitleaks_ignore(text),
            vec![
                PlaceIgnore {
                    commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
                    path: "src/a:b.py".into(),
                    rule: "aws-access-key-id".into(),
                    line: 12,
                },
                PlaceIgnore {
                    commit: None,
                    path: "config/app.env".into(),
                    rule: "generic-secret-assignment".into(),
                    line: 3,
                },
            ]
        );
    }

    #[test]
    fn ignore_files_take_comments_and_blank_lines() {
        let set = parse_ignore("# ours\nABCDEF0123 # the fixture key\n\n  0011  \n");
        assert_eq!(
            set,
            HashSet::from(["abcdef0123".to_owned(), "0011".to_owned()])
        );
    }

    #[test]
    fn a_failed_whole_write_keeps_the_old_file_and_leaves_no_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("walk");
        write_whole(&path, b"old").unwrap();
        let failed = write_whole_with(&path, |file| {
            std::io::Write::write_all(file, b"half of the new")?;
            Err(std::io::Error::other("disk full"))
        });
        assert_eq!(failed.unwrap_err().to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["walk"]);
        write_whole_with(&path, |file| std::io::Write::write_all(file, b"new")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn repository_urls_are_checked_again_by_the_scanner() {
        let scanning = Scanning::new(
            vec![],
            None,
            Limits::default(),
            HashSet::new(),
            vec![PathBuf::from("/srv/repos")],
        );
        assert!(scanning.check_url("https://github.com/a/b.git").is_ok());
        assert!(scanning.check_url("file:///srv/repos/a").is_ok());
        for bad in [
            "file:///etc/passwd",
            "https://user:pw@github.com/a/b",
            "ftp://example.com/a",
            "not a url",
        ] {
            assert!(scanning.check_url(bad).is_err(), "{bad}");
        }
    }
}
