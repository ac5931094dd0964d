//! Reading repositories straight from their object database (gix): no checkout, each unique blob
//! read once. Symlinks and submodules are not content and are skipped.
//!
//! gix hands out whole objects only: a blob scanned in windows is still read whole first (a
//! packed blob is rebuilt from its delta chain), and the bytes of such blobs held at once by all
//! scans of the process are bounded by `LARGE_BLOB_BUDGET`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Condvar, Mutex, PoisonError};

pub use gix::ObjectId;
use gix::bstr::BString;
use gix::hashtable::HashSet;
use gix::objs::tree::EntryKind;
use gix::prelude::*;
use gix::revision::walk::Sorting;
use gix::traverse::commit::simple::CommitTimeOrder;

use crate::Error;
use crate::source::{Item, Place, Reader, Source};
use scanstream_platform::sync::lock;

/// A repository shared by the threads of a scan.
pub type Repo = gix::ThreadSafeRepository;

/// Decoded-object cache of the handle that walks commits and trees.
const WALK_CACHE_BYTES: usize = 64 << 20;

fn git_error(e: impl std::fmt::Display) -> Error {
    Error::Git(e.to_string())
}

/// Opens a bare mirror or a repository with a worktree (its root or its `.git`), ignoring the
/// user's and system's git configuration.
pub fn open(path: &Path) -> Result<Repo, Error> {
    gix::open_opts(path, gix::open::Options::isolated())
        .map(|repo| repo.into_sync())
        .map_err(|e| Error::Git(format!("{} is not a git repository: {e}", path.display())))
}

fn walker(repo: &Repo) -> gix::Repository {
    let mut local = repo.to_thread_local();
    local.object_cache_size_if_unset(WALK_CACHE_BYTES);
    local
}

/// The commit `spec` names (a branch, a tag, a full ref name or a full commit id), or HEAD's
/// when `None`; `Ok(None)` for an empty repository.
pub fn resolve(repo: &Repo, spec: Option<&str>) -> Result<Option<ObjectId>, Error> {
    let repo = repo.to_thread_local();
    let object = match spec {
        None => match repo.head().map_err(git_error)?.try_into_peeled_id() {
            Ok(Some(id)) => id.object().map_err(git_error)?,
            Ok(None) => return Ok(None),
            Err(e) => return Err(git_error(e)),
        },
        Some(spec) => match ObjectId::from_hex(spec.as_bytes()) {
            Ok(id) => repo
                .find_object(id)
                .map_err(|_| Error::RefNotFound(spec.to_owned()))?,
            Err(_) => repo
                .find_reference(spec)
                .map_err(|_| Error::RefNotFound(spec.to_owned()))?
                .peel_to_id()
                .map_err(git_error)?
                .object()
                .map_err(git_error)?,
        },
    };
    let commit = object
        .peel_to_commit()
        .map_err(|_| Error::RefNotFound(spec.unwrap_or("HEAD").to_owned()))?;
    Ok(Some(commit.id))
}

/// A full commit id in hex, if that commit exists.
pub fn parse_id(repo: &Repo, hex: &str) -> Option<ObjectId> {
    let id = ObjectId::from_hex(hex.as_bytes()).ok()?;
    let repo = repo.to_thread_local();
    let header = repo.find_header(id).ok()?;
    (header.kind() == gix::objs::Kind::Commit).then_some(id)
}

/// The tips of every branch and tag, peeled to commits.
pub fn branch_and_tag_tips(repo: &Repo) -> Result<Vec<ObjectId>, Error> {
    let repo = repo.to_thread_local();
    let refs = repo.references().map_err(git_error)?;
    let mut tips = Vec::new();
    let heads = refs
        .prefixed("refs/heads/")
        .map_err(git_error)?
        .peeled()
        .map_err(git_error)?;
    let tags = refs
        .tags()
        .map_err(git_error)?
        .peeled()
        .map_err(git_error)?;
    for reference in heads.chain(tags) {
        let id = reference.map_err(git_error)?.id().detach();
        if repo.find_header(id).map_err(git_error)?.kind() == gix::objs::Kind::Commit {
            tips.push(id);
        }
    }
    tips.sort();
    tips.dedup();
    Ok(tips)
}

fn commit_tree(
    repo: &gix::Repository,
    commit: ObjectId,
    buf: &mut Vec<u8>,
) -> Result<ObjectId, Error> {
    repo.objects
        .find_commit_iter(&commit, buf)
        .map_err(git_error)?
        .tree_id()
        .map_err(git_error)
}

/// Calls `each(path, blob id)` for every regular or executable blob under `root`. With `seen`,
/// a tree already in it is not entered again.
fn walk_tree(
    repo: &gix::Repository,
    root: ObjectId,
    mut seen: Option<&mut HashSet<ObjectId>>,
    each: &mut dyn FnMut(&[u8], ObjectId),
) -> Result<(), Error> {
    let mut stack = vec![(root, BString::default())];
    let mut buf = Vec::new();
    let mut path = BString::default();
    while let Some((tree, prefix)) = stack.pop() {
        if let Some(seen) = seen.as_deref_mut()
            && !seen.insert(tree)
        {
            continue;
        }
        for entry in repo
            .objects
            .find_tree_iter(&tree, &mut buf)
            .map_err(git_error)?
        {
            let entry = entry.map_err(git_error)?;
            path.clear();
            path.extend_from_slice(&prefix);
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(entry.filename);
            match entry.mode.kind() {
                EntryKind::Tree => stack.push((entry.oid.to_owned(), path.clone())),
                EntryKind::Blob | EntryKind::BlobExecutable => each(&path, entry.oid.to_owned()),
                EntryKind::Link | EntryKind::Commit => {}
            }
        }
    }
    Ok(())
}

/// The id (hex) of `commit`'s root tree: equal trees have equal ids, whatever the commit.
pub fn tree_id(repo: &Repo, commit: ObjectId) -> Result<String, Error> {
    let repo = repo.to_thread_local();
    commit_tree(&repo, commit, &mut Vec::new()).map(|tree| tree.to_string())
}

/// The content of the file `name` at the root of `commit`'s tree, if there is one.
pub fn read_path(repo: &Repo, commit: ObjectId, name: &str) -> Option<Vec<u8>> {
    let repo = repo.to_thread_local();
    let mut buf = Vec::new();
    let tree = commit_tree(&repo, commit, &mut buf).ok()?;
    let id = repo
        .objects
        .find_tree_iter(&tree, &mut buf)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.filename == name.as_bytes() && e.mode.is_blob())
        .map(|e| e.oid.to_owned())?;
    let mut data = Vec::new();
    let blob = repo.objects.find_blob(&id, &mut data).ok()?;
    Some(blob.data.to_vec())
}

/// A repository's blobs as a scan source.
pub struct GitSource {
    repo: Repo,
    items: Vec<Item>,
    /// For history sources: each walked commit's rank, oldest first (by commit time).
    ranks: HashMap<String, usize>,
}

impl GitSource {
    pub fn empty(repo: &Repo) -> Self {
        Self {
            repo: repo.clone(),
            items: Vec::new(),
            ranks: HashMap::new(),
        }
    }

    /// Every blob of `commit`'s tree; a blob at several paths is one item with several places.
    pub fn tree(repo: &Repo, commit: ObjectId) -> Result<Self, Error> {
        let local = walker(repo);
        let tree = commit_tree(&local, commit, &mut Vec::new())?;
        let commit_hex = commit.to_string();
        let mut places: HashMap<ObjectId, Vec<Place>> = HashMap::new();
        walk_tree(&local, tree, None, &mut |path, id| {
            places.entry(id).or_default().push(Place {
                path: String::from_utf8_lossy(path).into_owned(),
                commit: Some(commit_hex.clone()),
            });
        })?;
        Self::from_places(repo, &local, places)
    }

    /// Every unique blob reachable from `tips` and not from `hidden`, placed at the oldest
    /// commit (by commit time) and path it appears at.
    pub fn history(repo: &Repo, tips: &[ObjectId], hidden: &[ObjectId]) -> Result<Self, Error> {
        let local = walker(repo);
        let walk = local
            .rev_walk(tips.iter().copied())
            .sorting(Sorting::ByCommitTime(CommitTimeOrder::NewestFirst))
            .with_hidden(hidden.iter().copied())
            .all()
            .map_err(git_error)?;
        let mut commits = Vec::new();
        let mut parents = Vec::new();
        for info in walk {
            let info = info.map_err(git_error)?;
            parents.extend(info.parent_ids.iter().copied());
            commits.push(info.id);
        }
        let mut seen_trees: HashSet<ObjectId> = HashSet::default();
        let mut known: HashSet<ObjectId> = HashSet::default();
        let mut buf = Vec::new();
        // Blobs of the boundary (hidden parents of walked commits) were scanned before.
        let walked: HashSet<ObjectId> = commits.iter().copied().collect();
        parents.retain(|p| !walked.contains(p));
        parents.sort();
        parents.dedup();
        for parent in parents {
            let tree = commit_tree(&local, parent, &mut buf)?;
            walk_tree(&local, tree, Some(&mut seen_trees), &mut |_, id| {
                known.insert(id);
            })?;
        }
        // Oldest first and first sighting wins: a tree skipped as seen was fully recorded by an
        // older (or equally old) commit.
        let mut places: HashMap<ObjectId, Vec<Place>> = HashMap::new();
        for commit in commits.iter().rev() {
            let tree = commit_tree(&local, *commit, &mut buf)?;
            let hex = commit.to_string();
            walk_tree(&local, tree, Some(&mut seen_trees), &mut |path, id| {
                if !known.contains(&id) {
                    places.entry(id).or_insert_with(|| {
                        vec![Place {
                            path: String::from_utf8_lossy(path).into_owned(),
                            commit: Some(hex.clone()),
                        }]
                    });
                }
            })?;
        }
        let mut source = Self::from_places(repo, &local, places)?;
        source.ranks = commits
            .iter()
            .rev()
            .enumerate()
            .map(|(rank, commit)| (commit.to_string(), rank))
            .collect();
        Ok(source)
    }

    /// The rank of `commit` among a history source's commits, oldest first; `None` for other
    /// sources and unknown commits.
    pub fn commit_rank(&self, commit: &str) -> Option<usize> {
        self.ranks.get(commit).copied()
    }

    /// The blobs of the commits after `since` up to `commit` that `since`'s tree lacks.
    pub fn history_since(repo: &Repo, commit: ObjectId, since: ObjectId) -> Result<Self, Error> {
        let mut source = Self::history(repo, &[commit], &[since])?;
        // `since` itself may not be a parent of a walked commit (history rewritten): its tree
        // still counts as scanned.
        let local = walker(repo);
        let tree = commit_tree(&local, since, &mut Vec::new())?;
        let mut scanned: HashSet<ObjectId> = HashSet::default();
        walk_tree(&local, tree, None, &mut |_, id| {
            scanned.insert(id);
        })?;
        source.items.retain(|item| {
            item.oid
                .as_deref()
                .and_then(|o| ObjectId::try_from(o).ok())
                .is_none_or(|o| !scanned.contains(&o))
        });
        Ok(source)
    }

    fn from_places(
        repo: &Repo,
        local: &gix::Repository,
        places: HashMap<ObjectId, Vec<Place>>,
    ) -> Result<Self, Error> {
        let mut items = Vec::with_capacity(places.len());
        for (id, places) in places {
            let size = local.find_header(id).map_err(git_error)?.size();
            items.push(Item {
                oid: Some(id.as_bytes().into()),
                size,
                places,
            });
        }
        // Largest first keeps every core busy to the end of a scan.
        items.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.oid.cmp(&b.oid)));
        Ok(Self {
            repo: repo.clone(),
            items,
            ranks: HashMap::new(),
        })
    }
}

/// Bytes of whole large blobs (read for scanning in windows) held in memory at once by every
/// scan of the process together. A blob larger than this is read when no other is held.
const LARGE_BLOB_BUDGET: u64 = 512 << 20;

/// The bytes of large blobs held in memory, shared by every scan of the process.
struct Budget {
    held: Mutex<u64>,
    freed: Condvar,
}

static LARGE_BLOBS: Budget = Budget {
    held: Mutex::new(0),
    freed: Condvar::new(),
};

impl Budget {
    /// Waits until `bytes` more fit in the budget, or nothing is held.
    fn acquire(&'static self, bytes: u64) -> Permit {
        let mut held = lock(&self.held);
        while *held > 0 && held.saturating_add(bytes) > LARGE_BLOB_BUDGET {
            held = self
                .freed
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *held += bytes;
        Permit {
            budget: self,
            bytes,
        }
    }
}

/// Bytes of the budget held until dropped.
struct Permit {
    budget: &'static Budget,
    bytes: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut held = lock(&self.budget.held);
        *held = held.saturating_sub(self.bytes);
        drop(held);
        self.budget.freed.notify_all();
    }
}

/// A large blob read whole, streamed to the windows; holds its part of the budget.
struct WholeBlob {
    data: std::io::Cursor<Vec<u8>>,
    _permit: Permit,
}

impl std::io::Read for WholeBlob {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.data.read(buf)
    }
}

/// A worker thread's handle on the object database.
pub struct BlobReader {
    repo: gix::Repository,
    scratch: Vec<u8>,
}

impl BlobReader {
    /// Replaces `out`'s contents with blob `id`'s, decompressed into `out` directly (one copy
    /// of the blob in memory), or through `scratch` when the object database answers from
    /// elsewhere.
    fn find_into(&mut self, id: &ObjectId, out: &mut Vec<u8>) -> Result<(), Error> {
        let (start, len) = {
            let blob = self.repo.objects.find_blob(id, out).map_err(git_error)?;
            (blob.data.as_ptr(), blob.data.len())
        };
        if std::ptr::eq(start, out.as_ptr()) && len == out.len() {
            return Ok(());
        }
        let blob = self
            .repo
            .objects
            .find_blob(id, &mut self.scratch)
            .map_err(git_error)?;
        out.clear();
        out.extend_from_slice(blob.data);
        Ok(())
    }
}

fn item_id(item: &Item) -> Result<ObjectId, Error> {
    item.oid
        .as_deref()
        .and_then(|o| ObjectId::try_from(o).ok())
        .ok_or_else(|| Error::Git("an item without a blob id".into()))
}

impl Reader for BlobReader {
    fn read(&mut self, item: &Item, buf: &mut Vec<u8>) -> Result<(), Error> {
        let id = item_id(item)?;
        self.find_into(&id, buf)
    }

    /// gix gives whole objects only (a packed blob is rebuilt from its delta chain), so a large
    /// blob is read whole, then streamed to the windows; `LARGE_BLOB_BUDGET` bounds how many
    /// bytes of such blobs every scan of the process holds at once.
    fn open(&mut self, item: &Item) -> Result<Box<dyn std::io::Read>, Error> {
        let id = item_id(item)?;
        let permit = LARGE_BLOBS.acquire(item.size);
        let mut data = Vec::new();
        self.find_into(&id, &mut data)?;
        Ok(Box::new(WholeBlob {
            data: std::io::Cursor::new(data),
            _permit: permit,
        }))
    }
}

impl Source for GitSource {
    type Reader = BlobReader;

    fn items(&self) -> &[Item] {
        &self.items
    }

    fn reader(&self) -> Result<BlobReader, Error> {
        Ok(BlobReader {
            repo: self.repo.to_thread_local(),
            scratch: Vec::new(),
        })
    }
}
