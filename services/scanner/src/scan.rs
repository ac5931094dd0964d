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
use crate::git::{self, GitSource, Repo};
use crate::results::ResultCache;
use crate::runner::{self, EngineRun, Limits, Progress};
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
}

pub struct Scanning {
    engines: Vec<Arc<dyn Engine>>,
    caches: HashMap<String, Arc<ResultCache>>,
    limits: Limits,
    ignored: HashSet<String>,
    /// `<cache-dir>/incremental`: the last scanned commit per repository and ref.
    state_dir: Option<PathBuf>,
    /// Which repository URLs commands may name: the rules ingest applies, shared.
    repos: RepoRules,
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
            repos,
        }
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

    /// Opens the repository at `path` and resolves `git_ref` (HEAD when `None`).
    pub fn resolve(&self, path: &Path, git_ref: Option<&str>) -> Result<Resolved, Error> {
        let repo = git::open(path)?;
        let commit = git::resolve(&repo, git_ref)?;
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
        let source = match mode {
            ScanMode::Tree => GitSource::tree(repo, commit)?,
            ScanMode::History => {
                let tips = match git_ref {
                    Some(_) => vec![commit],
                    None => git::branch_and_tag_tips(repo)?,
                };
                GitSource::history(repo, &tips, &[])?
            }
            ScanMode::Incremental => {
                match self.last_scanned(repo_url, git_ref).and_then(|last| {
                    // The last scanned commit may be gone (force push); then scan it all.
                    git::parse_id(repo, &last)
                }) {
                    Some(last) if last == commit => GitSource::empty(repo),
                    Some(last) => GitSource::history_since(repo, commit, last)?,
                    None => GitSource::tree(repo, commit)?,
                }
            }
        };
        let ignored = self.ignored_with(git::read_path(repo, commit, IGNORE_FILE));
        self.run_engines(&source, engine_ids, &ignored, progress, cancel)
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
        let mut runs = Vec::new();
        for id in engine_ids {
            let engine = self
                .engines
                .iter()
                .find(|e| e.id() == id)
                .ok_or_else(|| Error::Source(format!("no engine {id:?} in this scanner")))?;
            let cache = self.caches.get(id);
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
        let dir = self.state_dir.as_ref()?;
        let key = format!("{repo_url}\n{}", git_ref.unwrap_or("HEAD"));
        Some(dir.join(hex::encode(&Sha256::digest(key.as_bytes())[..16])))
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
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
            std::fs::write(&tmp, commit)?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            tracing::warn!(error = %e, "incremental scan state not written; the next one reads the whole tree");
        }
    }
}

/// Fingerprints of an ignore file: one per line, `#` starts a comment.
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
    fn ignore_files_take_comments_and_blank_lines() {
        let set = parse_ignore("# ours\nABCDEF0123 # the fixture key\n\n  0011  \n");
        assert_eq!(
            set,
            HashSet::from(["abcdef0123".to_owned(), "0011".to_owned()])
        );
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
