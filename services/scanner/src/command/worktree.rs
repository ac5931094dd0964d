//! The files of one commit, written once per scan for the command engines that read folders:
//! `<root>/<name>/tree` (read-only once written) and `<root>/<name>/out` (where engines write
//! their SARIF), on the shared cache volume so engine pods can mount it. The folder is removed
//! when the [`Worktree`] is dropped; folders left by a scanner that died are removed by the next
//! one after [`STALE_AFTER`].
//!
//! Only regular files are written: symbolic links and submodules are not (a link could point an
//! engine at the scanner's own files), nor entries whose names a checkout would refuse (`..`,
//! `.git`). Without `scanner.repo_config`, the repository's own gitleaks configuration is left
//! out too, so a repository cannot change what engines report about it.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rayon::prelude::*;

use crate::Error;
use crate::git::{GitSource, ObjectId, Repo};
use crate::scan::{GITLEAKS_CONFIG, GITLEAKS_IGNORE};
use crate::source::{Reader, Source};

/// Worktree folders older than this are a dead scanner's and are removed.
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Bounds on one worktree.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_bytes: u64,
    pub timeout: Duration,
}

/// A commit's files on disk; removed on drop.
#[derive(Debug)]
pub struct Worktree {
    root: PathBuf,
    pub files: u64,
    pub bytes: u64,
    /// Time spent writing it.
    pub took: Duration,
}

impl Worktree {
    /// The folder engines scan.
    pub fn tree(&self) -> PathBuf {
        self.root.join("tree")
    }

    /// The folder engines write their output to.
    pub fn out(&self) -> PathBuf {
        self.root.join("out")
    }

    /// Writes `commit`'s files under `parent/name`. Fails when the tree is larger than the
    /// bound, takes longer than its timeout, or `cancel` is set.
    pub fn write(
        repo: &Repo,
        commit: ObjectId,
        parent: &Path,
        name: &str,
        bounds: Bounds,
        repo_config: bool,
        cancel: &AtomicBool,
    ) -> Result<Worktree, Error> {
        let started = Instant::now();
        sweep(parent);
        let root = parent.join(name);
        let source = GitSource::tree(repo, commit)?;
        let total: u64 = source.items().iter().map(|i| i.size).sum();
        if total > bounds.max_bytes {
            return Err(Error::Worktree(format!(
                "the tree holds {total} bytes, more than scanner.worktree_max_bytes ({})",
                bounds.max_bytes
            )));
        }
        if root.exists() {
            remove(&root);
        }
        let tree = root.join("tree");
        for dir in [&tree, &root.join("out")] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        // From here on the folder goes when the value does, whatever fails.
        let mut worktree = Worktree {
            root,
            files: 0,
            bytes: 0,
            took: Duration::ZERO,
        };
        // Folders first, each once, so the writers below only create files.
        let mut folders: Vec<PathBuf> = source
            .items()
            .iter()
            .flat_map(|item| item.places.iter())
            .filter_map(|p| safe_relative(&p.path))
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        folders.sort_unstable();
        folders.dedup();
        for folder in &folders {
            let dir = tree.join(folder);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let deadline = started + bounds.timeout;
        let (files, bytes) = (AtomicU64::new(0), AtomicU64::new(0));
        source.items().par_iter().try_for_each_init(
            || (source.reader(), Vec::new()),
            |(reader, buf), item| -> Result<(), Error> {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Cancelled);
                }
                if Instant::now() > deadline {
                    return Err(Error::Worktree(format!(
                        "writing the worktree took longer than scanner.worktree_timeout_seconds ({} s)",
                        bounds.timeout.as_secs()
                    )));
                }
                let places: Vec<PathBuf> = item
                    .places
                    .iter()
                    .filter(|p| repo_config || !is_repository_config(&p.path))
                    .filter_map(|p| safe_relative(&p.path))
                    .collect();
                if places.is_empty() {
                    return Ok(());
                }
                let reader = reader.as_mut().map_err(|e| Error::Source(e.to_string()))?;
                reader.read(item, buf)?;
                for relative in places {
                    let path = tree.join(relative);
                    let mut file = File::create(&path).map_err(|e| Error::io(&path, e))?;
                    file.write_all(buf).map_err(|e| Error::io(&path, e))?;
                    files.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
                }
                Ok(())
            },
        )?;
        seal(&tree);
        worktree.files = files.into_inner();
        worktree.bytes = bytes.into_inner();
        worktree.took = started.elapsed();
        Ok(worktree)
    }
}

impl Drop for Worktree {
    fn drop(&mut self) {
        remove(&self.root);
    }
}

/// Root-level files through which a repository configures the engines that scan it.
fn is_repository_config(path: &str) -> bool {
    [GITLEAKS_CONFIG, GITLEAKS_IGNORE, ".semgrepignore"].contains(&path)
}

/// `path` as a relative path a checkout would write, or `None` (`..`, `.`, empty parts, a
/// `.git` folder, NUL).
fn safe_relative(path: &str) -> Option<PathBuf> {
    let ok = path.split('/').all(|part| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && !part.eq_ignore_ascii_case(".git")
            && !part.contains('\0')
    });
    ok.then(|| PathBuf::from(path))
}

/// Makes the tree read-only: files 0444, folders 0555.
fn seal(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => seal(&path),
            Ok(_) => {
                let _ = std::fs::set_permissions(&path, Permissions::from_mode(0o444));
            }
            Err(_) => {}
        }
    }
    let _ = std::fs::set_permissions(dir, Permissions::from_mode(0o555));
}

/// Removes a worktree folder, making its sealed folders writable first.
fn remove(root: &Path) {
    fn unseal(dir: &Path) {
        let _ = std::fs::set_permissions(dir, Permissions::from_mode(0o755));
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|k| k.is_dir()) {
                    unseal(&entry.path());
                }
            }
        }
    }
    unseal(root);
    if let Err(e) = std::fs::remove_dir_all(root)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %root.display(), error = %e, "worktree not removed");
    }
}

/// Removes worktrees older than [`STALE_AFTER`] under `parent`.
fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > STALE_AFTER);
        if old {
            remove(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_a_checkout_would_write_are_written() {
        assert!(safe_relative("src/main.rs").is_some());
        for bad in [
            "../x",
            "a/../../x",
            ".git/config",
            "a/.GIT/hooks/x",
            "/abs",
            "a//b",
            "./a",
        ] {
            assert!(safe_relative(bad).is_none(), "{bad}");
        }
        assert!(is_repository_config(".gitleaks.toml"));
        assert!(!is_repository_config("sub/.gitleaks.toml"));
    }

    #[test]
    fn a_sealed_tree_is_removed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("w");
        std::fs::create_dir_all(root.join("tree/a/b")).unwrap();
        std::fs::write(root.join("tree/a/b/f"), "x").unwrap();
        seal(&root.join("tree"));
        let mode = |p: &str| {
            std::fs::metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!((mode("tree/a/b/f"), mode("tree/a")), (0o444, 0o555));
        remove(&root);
        assert!(!root.exists());
    }
}
