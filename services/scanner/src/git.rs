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

/// Delta-base cache of the handle that walks commits and trees.
const PACK_CACHE_BYTES: usize = 16 << 20;

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

/// A handle for walking commits and trees. It has no decoded-object cache: the walk reads each
/// commit once and never enters a tree twice, so such a cache only held memory (64 MiB of it on
/// each core cost 130 MB more at 80,000 commits, and time).
fn walker(repo: &Repo) -> gix::Repository {
    let mut local = repo.to_thread_local();
    with_pack_cache(&mut local);
    local
}

/// Delta bases by hash, bounded in bytes: the default 64-entry list is searched linearly on
/// every lookup, and walking many commits looks up bases all the time (1.5 s → 0.9 s on a
/// synthetic history of 20,000 commits; the scan's readers are faster without it).
fn with_pack_cache(repo: &mut gix::Repository) {
    repo.objects.set_pack_cache(|| {
        Box::new(gix::odb::pack::cache::lru::MemoryCappedHashmap::new(
            PACK_CACHE_BYTES,
        ))
    });
}

/// The commit `spec` names (a branch, a tag, a full ref name, a commit id, or a revision such
/// as `HEAD~1`), or HEAD's when `None`; `Ok(None)` for an empty repository. A HEAD naming a
/// branch that does not exist in a repository with other branches or tags is
/// [`Error::HeadUnborn`], not an empty repository: a bare repository made with
/// `git init --bare` and pushed another branch is like that, and scanning it as empty would
/// report no findings.
pub fn resolve(repo: &Repo, spec: Option<&str>) -> Result<Option<ObjectId>, Error> {
    let local = repo.to_thread_local();
    let object = match spec {
        None => match local.head().map_err(git_error)?.try_into_peeled_id() {
            Ok(Some(id)) => id.object().map_err(git_error)?,
            Ok(None) => {
                let refs = branches_and_tags(repo)?;
                if refs.is_empty() {
                    return Ok(None);
                }
                let head = local
                    .head_name()
                    .ok()
                    .flatten()
                    .map_or_else(|| "HEAD".to_owned(), |name| name.as_bstr().to_string());
                return Err(Error::HeadUnborn {
                    head,
                    refs: named(refs.iter().map(|(name, _)| name.as_str())),
                });
            }
            Err(e) => return Err(git_error(e)),
        },
        Some(spec) => match ObjectId::from_hex(spec.as_bytes()) {
            Ok(id) => local
                .find_object(id)
                .map_err(|_| Error::RefNotFound(spec.to_owned()))?,
            Err(_) => match local.find_reference(spec) {
                Ok(mut reference) => reference
                    .peel_to_id()
                    .map_err(git_error)?
                    .object()
                    .map_err(git_error)?,
                // Not a ref's name: a revision as git reads one (an abbreviated commit id,
                // `HEAD~1`, `v1.2^{commit}`).
                Err(_) => local
                    .rev_parse_single(spec)
                    .map_err(|_| Error::RefNotFound(spec.to_owned()))?
                    .object()
                    .map_err(git_error)?,
            },
        },
    };
    let commit = object
        .peel_to_commit()
        .map_err(|_| Error::RefNotFound(spec.unwrap_or("HEAD").to_owned()))?;
    Ok(Some(commit.id))
}

/// `error`, with why when it is an object missing from a partial clone (`git clone --filter`),
/// which lacks blobs by design: the scan needs every blob it reads.
pub fn explain_missing(repo: &Repo, error: Error) -> Error {
    match error {
        Error::Git(message) if is_partial_clone(repo) => Error::Git(format!(
            "{message}; the repository is a partial clone (git clone --filter), which lacks \
             objects the scan reads: clone it without --filter to scan it"
        )),
        other => other,
    }
}

/// Whether the repository is a partial clone, whose missing objects git fetches on demand: a
/// remote is its promisor (`extensions.partialClone` in older clones).
fn is_partial_clone(repo: &Repo) -> bool {
    let local = repo.to_thread_local();
    let config = local.config_snapshot();
    config.string("extensions.partialClone").is_some()
        || local
            .remote_names()
            .iter()
            .any(|name| config.boolean(format!("remote.{name}.promisor").as_str()) == Some(true))
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
    let mut tips: Vec<ObjectId> = branches_and_tags(repo)?
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    tips.sort();
    tips.dedup();
    Ok(tips)
}

/// The newest (by commit time) tip of every branch and tag; `None` without any.
pub fn newest_tip(repo: &Repo) -> Result<Option<ObjectId>, Error> {
    let local = repo.to_thread_local();
    let mut newest = None;
    for id in branch_and_tag_tips(repo)? {
        let time = local
            .find_commit(id)
            .map_err(git_error)?
            .time()
            .map_err(git_error)?
            .seconds;
        if newest.is_none_or(|(newest_time, _)| time > newest_time) {
            newest = Some((time, id));
        }
    }
    Ok(newest.map(|(_, id)| id))
}

/// Every branch and tag (short name) whose target peels to a commit, with that commit.
fn branches_and_tags(repo: &Repo) -> Result<Vec<(String, ObjectId)>, Error> {
    let repo = repo.to_thread_local();
    let refs = repo.references().map_err(git_error)?;
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
    let mut found = Vec::new();
    for reference in heads.chain(tags) {
        let reference = reference.map_err(git_error)?;
        let id = reference.id().detach();
        if repo.find_header(id).map_err(git_error)?.kind() == gix::objs::Kind::Commit {
            found.push((reference.name().shorten().to_string(), id));
        }
    }
    Ok(found)
}

/// The first few of `names`, for a message: `a, b, c and 4 more`.
fn named<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    const SHOWN: usize = 5;
    let total = names.len();
    let shown: Vec<&str> = names.take(SHOWN).collect();
    match total.saturating_sub(SHOWN) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
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
    // A tree is marked seen when found, so one seen before is never queued: most subtrees of a
    // history's commits were.
    if let Some(seen) = seen.as_deref_mut()
        && !seen.insert(root)
    {
        return Ok(());
    }
    let mut stack = vec![(root, BString::default())];
    let mut buf = Vec::new();
    let mut path = BString::default();
    while let Some((tree, prefix)) = stack.pop() {
        for entry in repo
            .objects
            .find_tree_iter(&tree, &mut buf)
            .map_err(git_error)?
        {
            let entry = entry.map_err(git_error)?;
            let kind = entry.mode.kind();
            if kind == EntryKind::Tree
                && let Some(seen) = seen.as_deref_mut()
                && !seen.insert(entry.oid.to_owned())
            {
                continue;
            }
            path.clear();
            path.extend_from_slice(&prefix);
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(entry.filename);
            match kind {
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

/// Where [`place_blobs`] records what it walks.
struct Placing<'a> {
    /// Trees entered (and so not entered again).
    trees: &'a mut HashSet<ObjectId>,
    /// Blobs placed already.
    placed: &'a mut HashSet<ObjectId>,
    blobs: &'a mut Vec<WalkedBlob>,
}

/// Walks `commits` in order (oldest first; the first is commit number `first` of the walk) and
/// places each blob `new` accepts at the first commit and path it is seen at.
fn place_blobs(
    local: &gix::Repository,
    commits: &[ObjectId],
    first: usize,
    into: Placing<'_>,
    new: &dyn Fn(&ObjectId) -> bool,
) -> Result<(), Error> {
    let mut buf = Vec::new();
    // Root trees from the commit-graph where the repository has one (a mirror does): no commit
    // is read then.
    let graph = local.commit_graph_if_enabled().ok().flatten();
    for (offset, commit) in commits.iter().enumerate() {
        let index = u32::try_from(first + offset).unwrap_or(u32::MAX);
        let tree = match graph.as_ref().and_then(|g| g.commit_by_id(commit)) {
            Some(found) => found.root_tree_id().to_owned(),
            None => commit_tree(local, *commit, &mut buf)?,
        };
        walk_tree(local, tree, Some(&mut *into.trees), &mut |path, id| {
            if new(&id) && into.placed.insert(id) {
                into.blobs.push(WalkedBlob {
                    id,
                    size: 0,
                    path: String::from_utf8_lossy(path).into_owned(),
                    commit: index,
                });
            }
        })?;
    }
    Ok(())
}

/// Blobs at their first sighting, and the trees entered, of part of a history.
type Walked = (Vec<WalkedBlob>, HashSet<ObjectId>);

/// Blobs whose size one task looks up.
const BLOBS_PER_TASK: usize = 2048;

/// Fewer commits than this per thread are walked on one thread.
const COMMITS_PER_PART: usize = 1000;

/// Parts per thread of a history walked on several: parts differ in work (a part's first tree
/// is walked whole), and with several each a thread that finishes early takes another instead
/// of waiting for the slowest.
const PARTS_PER_THREAD: usize = 4;

/// The blobs first seen in `commits` (oldest first), each at its first sighting, and the trees
/// entered. The commits are cut into consecutive parts walked on every core, each part as one
/// walk of its own (its first commit's whole tree, then what each commit adds), and the parts'
/// blobs are merged oldest part first, a blob kept where it was first seen: what one walk in
/// order gives, since a blob's first sighting is in the oldest part that has it, where no tree
/// holding it was entered before, and skipping entered trees does not change the order the
/// others are walked in. The trees come back only with `trees` (else the set is empty): only a
/// walk kept for the next scan needs them.
fn walk_commits(repo: &Repo, commits: &[ObjectId], trees: bool) -> Result<Walked, Error> {
    let parts = match rayon::current_num_threads() {
        1 => 1,
        threads => (threads * PARTS_PER_THREAD).min(commits.len() / COMMITS_PER_PART),
    };
    walk_parts(repo, commits, parts, trees)
}

/// [`walk_commits`] in `parts` parts.
fn walk_parts(
    repo: &Repo,
    commits: &[ObjectId],
    parts: usize,
    trees: bool,
) -> Result<Walked, Error> {
    use rayon::prelude::*;
    let parts = parts.max(1);
    let size = commits.len().div_ceil(parts).max(1);
    let walked: Vec<Walked> = commits
        .par_chunks(size)
        .enumerate()
        .map(|(part, chunk)| {
            let mut trees: HashSet<ObjectId> = HashSet::default();
            let mut blobs = Vec::new();
            let into = Placing {
                trees: &mut trees,
                placed: &mut HashSet::default(),
                blobs: &mut blobs,
            };
            place_blobs(&walker(repo), chunk, part * size, into, &|_| true)?;
            Ok((blobs, trees))
        })
        .collect::<Result<_, Error>>()?;
    let (part_blobs, mut part_trees): (Vec<_>, Vec<_>) = walked.into_iter().unzip();
    if !trees {
        part_trees.clear();
    }
    // The two merges side by side: each is one pass over every part. Each result is sized for
    // all the parts at once: grown step by step, every step left its old table or list freed
    // (with a history of 320,000 blobs the peak went from 166 MB to 289 MB during the merges).
    let (blobs, trees) = rayon::join(
        || {
            let total = part_blobs.iter().map(Vec::len).sum();
            let mut placed: HashSet<ObjectId> = HashSet::default();
            placed.reserve(total);
            let mut blobs = Vec::with_capacity(total);
            blobs.extend(
                part_blobs
                    .into_iter()
                    .flatten()
                    .filter(|b| placed.insert(b.id)),
            );
            blobs
        },
        || {
            // Into the largest set: its trees are not inserted again.
            let mut sets = part_trees;
            sets.sort_by_key(|set| std::cmp::Reverse(set.len()));
            let others: usize = sets.iter().skip(1).map(HashSet::len).sum();
            let mut sets = sets.into_iter();
            let mut trees = sets.next().unwrap_or_default();
            trees.reserve(others);
            for set in sets {
                trees.extend(set);
            }
            trees
        },
    );
    Ok((blobs, trees))
}

/// What a history walk found, kept between scans of a repository so that the next walk reads
/// only the commits added since ([`GitSource::history_resumed`]).
#[derive(Debug, Default)]
pub struct Walk {
    /// The tips walked from.
    tips: Vec<ObjectId>,
    /// Every commit walked, oldest first (by commit time).
    commits: Vec<ObjectId>,
    /// Every tree entered.
    trees: HashSet<ObjectId>,
    /// Every blob, at the oldest commit and path it was seen at.
    blobs: Vec<WalkedBlob>,
}

#[derive(Debug)]
struct WalkedBlob {
    id: ObjectId,
    size: u64,
    path: String,
    /// Index in [`Walk::commits`].
    commit: u32,
}

/// Version 1 of the walk file: ids are SHA-1 (20 bytes).
const WALK_MAGIC: &[u8] = b"SSWK\x01";
const SHA1_LEN: usize = 20;

impl Walk {
    /// The tips walked from and how many commits they reach: a resumed walk with the same
    /// extent as the one it resumed found nothing new (a walk only grows by the commits added
    /// since, and the same tips reach the same commits).
    pub fn extent(&self) -> (Vec<ObjectId>, usize) {
        (self.tips.clone(), self.commits.len())
    }

    /// Whether the walk can be written: the file holds SHA-1 ids only.
    pub fn is_sha1(&self) -> bool {
        self.tips
            .iter()
            .chain(&self.commits)
            .chain(self.trees.iter())
            .chain(self.blobs.iter().map(|b| &b.id))
            .all(|id| id.as_bytes().len() == SHA1_LEN)
    }

    /// Writes the walk file to `out` (buffer it: records go out a few bytes at a time). Only
    /// for a walk that [`Walk::is_sha1`]. Streamed, not built whole first: the file is tens of
    /// megabytes for a history of 100,000 blobs, and it is written while the engines scan.
    pub fn write_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        out.write_all(WALK_MAGIC)?;
        for list in [&self.tips, &self.commits] {
            out.write_all(&(list.len() as u64).to_le_bytes())?;
            for id in list {
                out.write_all(id.as_bytes())?;
            }
        }
        out.write_all(&(self.trees.len() as u64).to_le_bytes())?;
        for id in &self.trees {
            out.write_all(id.as_bytes())?;
        }
        out.write_all(&(self.blobs.len() as u64).to_le_bytes())?;
        for blob in &self.blobs {
            out.write_all(blob.id.as_bytes())?;
            out.write_all(&blob.size.to_le_bytes())?;
            out.write_all(&blob.commit.to_le_bytes())?;
            let path = blob.path.as_bytes();
            out.write_all(&(path.len() as u32).to_le_bytes())?;
            out.write_all(path)?;
        }
        Ok(())
    }

    /// A walk from a file's bytes; `None` when they are not one (another version, damage).
    pub fn decode(bytes: &[u8]) -> Option<Walk> {
        let mut input = Cursor(bytes.strip_prefix(WALK_MAGIC)?);
        let mut walk = Walk::default();
        for list in [&mut walk.tips, &mut walk.commits] {
            let count = input.count(SHA1_LEN)?;
            list.reserve(count);
            for _ in 0..count {
                list.push(input.id()?);
            }
        }
        // Sized from the counts once: growing a set of 100,000 trees rehashes it over and over.
        let trees = input.count(SHA1_LEN)?;
        walk.trees.reserve(trees);
        for _ in 0..trees {
            walk.trees.insert(input.id()?);
        }
        // A blob's record: id, size, commit, path length, then the path.
        let blobs = input.count(SHA1_LEN + 8 + 4 + 4)?;
        walk.blobs.reserve(blobs);
        for _ in 0..blobs {
            let id = input.id()?;
            let size = u64::from_le_bytes(input.take(8)?.try_into().ok()?);
            let commit = u32::from_le_bytes(input.take(4)?.try_into().ok()?);
            let len = u32::from_le_bytes(input.take(4)?.try_into().ok()?);
            let path = String::from_utf8(input.take(usize::try_from(len).ok()?)?.to_vec()).ok()?;
            if commit as usize >= walk.commits.len() {
                return None;
            }
            walk.blobs.push(WalkedBlob {
                id,
                size,
                path,
                commit,
            });
        }
        input.0.is_empty().then_some(walk)
    }
}

/// Reads a walk file front to back.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    /// A count of records at least `each` bytes long, bounded by what is left to read: a
    /// damaged count reserves no more than the file could hold.
    fn count(&mut self, each: usize) -> Option<usize> {
        let n = usize::try_from(u64::from_le_bytes(self.take(8)?.try_into().ok()?)).ok()?;
        (n <= self.0.len() / each).then_some(n)
    }

    fn id(&mut self) -> Option<ObjectId> {
        ObjectId::try_from(self.take(SHA1_LEN)?).ok()
    }
}

/// A repository's blobs as a scan source.
pub struct GitSource {
    repo: Repo,
    items: Vec<Item>,
    /// For history sources: each walked commit's rank, oldest first (by commit time).
    ranks: gix::hashtable::HashMap<ObjectId, usize>,
}

/// Frees `items` on every core: a history's items and walked blobs are hundreds of thousands of
/// small allocations, freed in about 10 ms per 40,000 on one core.
fn free_on_every_core<T: Send>(items: Vec<T>) {
    use rayon::prelude::*;
    items.into_par_iter().for_each(drop);
}

impl Drop for GitSource {
    fn drop(&mut self) {
        free_on_every_core(std::mem::take(&mut self.items));
    }
}

impl Drop for Walk {
    fn drop(&mut self) {
        free_on_every_core(std::mem::take(&mut self.blobs));
    }
}

impl GitSource {
    pub fn empty(repo: &Repo) -> Self {
        Self {
            repo: repo.clone(),
            items: Vec::new(),
            ranks: Default::default(),
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
        Ok(Self::walk_history(repo, tips, hidden, None, false)?.0)
    }

    /// [`GitSource::history`] of `tips` (nothing hidden), resuming `previous`, the walk of an
    /// earlier scan of the same repository: only the commits added since are read, and the
    /// blobs they add are placed at them; blobs the earlier walk found keep its places. The
    /// result is the full walk's as long as the new commits are not older (by commit time) than
    /// the ones walked before, which orders them. When an earlier tip is no longer reachable
    /// (a force push, a deleted branch) the whole history is walked again. With `keep`, returns
    /// the walk to keep for the next scan. Without, `previous` is not resumed and the walk is
    /// freed as the scan's items are built from it (its sets first): a scan with nowhere to
    /// keep its walk does not hold it in memory beside the scan.
    pub fn history_resumed(
        repo: &Repo,
        tips: &[ObjectId],
        previous: Option<Walk>,
        keep: bool,
    ) -> Result<(Self, Option<Walk>), Error> {
        // Resumed only when kept: a walk that cannot be resumed comes back as `None`.
        if let Some(previous) = previous.filter(|_| keep) {
            let hidden = previous.tips.clone();
            match Self::walk_history(repo, tips, &hidden, Some(previous), true) {
                Ok((source, Some(walk))) => return Ok((source, Some(walk))),
                Ok((_, None)) => {}
                // An earlier tip the repository no longer has (pruned): walked whole.
                Err(e) => tracing::debug!(error = %e, "the last walk is not resumed"),
            }
        }
        match Self::walk_history(repo, tips, &[], None, keep)? {
            (_, None) if keep => {
                // A walk with nothing hidden always yields its walk when asked to.
                Err(Error::Git("the history walk kept nothing".into()))
            }
            walked => Ok(walked),
        }
    }

    /// The walk of `tips` without what `hidden` reaches. With `previous` (whose tips are
    /// `hidden`) its blobs join the result, or `None` comes back as the walk when it cannot be
    /// resumed; without it the walk is returned when nothing is hidden. Only with `keep` is
    /// the walk returned at all: without, its sets are freed once walked and its blobs' paths
    /// move into the items.
    fn walk_history(
        repo: &Repo,
        tips: &[ObjectId],
        hidden: &[ObjectId],
        previous: Option<Walk>,
        keep: bool,
    ) -> Result<(Self, Option<Walk>), Error> {
        let local = walker(repo);
        let walk = local
            .rev_walk(tips.iter().copied())
            .sorting(Sorting::ByCommitTime(CommitTimeOrder::NewestFirst))
            .with_hidden(hidden.iter().copied())
            .all()
            .map_err(git_error)?;
        // A shallow clone (a CI checkout) lacks the parents of its boundary commits: they are
        // not a boundary whose trees could be read, the history starts there.
        let shallow: HashSet<ObjectId> = local
            .shallow_commits()
            .map_err(git_error)?
            .map(|boundary| boundary.iter().copied().collect())
            .unwrap_or_default();
        let mut commits = Vec::new();
        let mut parents = Vec::new();
        for info in walk {
            let info = info.map_err(git_error)?;
            if !shallow.contains(&info.id) {
                parents.extend(info.parent_ids.iter().copied());
            }
            commits.push(info.id);
        }
        commits.reverse();
        let walked: HashSet<ObjectId> = commits.iter().copied().collect();
        parents.retain(|p| !walked.contains(p));
        parents.sort();
        parents.dedup();
        let mut buf = Vec::new();
        let (mut walk, known) = match previous {
            Some(previous) => {
                // Resumable when every earlier tip is still reached: a tip now, or where the
                // new commits start.
                let reached: HashSet<ObjectId> =
                    tips.iter().chain(parents.iter()).copied().collect();
                if !previous.tips.iter().all(|t| reached.contains(t)) {
                    // Not resumed: the caller walks it whole.
                    return Ok((Self::empty(repo), None));
                }
                let known: HashMap<ObjectId, usize> = previous
                    .blobs
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (b.id, i))
                    .collect();
                (previous, Some(known))
            }
            None => (Walk::default(), None),
        };
        // A walk with something hidden is kept only when it resumes an earlier one.
        let keep = keep && (known.is_some() || hidden.is_empty());
        // Without an earlier walk, blobs of the boundary (hidden parents of walked commits)
        // were scanned before: they are known, not placed.
        let mut boundary: HashSet<ObjectId> = HashSet::default();
        if known.is_none() {
            for parent in &parents {
                let tree = commit_tree(&local, *parent, &mut buf)?;
                walk_tree(&local, tree, Some(&mut walk.trees), &mut |_, id| {
                    boundary.insert(id);
                })?;
            }
        }
        // Oldest first and first sighting wins: a tree skipped as seen was fully recorded by an
        // older (or equally old) commit.
        let first_new = walk.blobs.len();
        if known.is_none() && boundary.is_empty() && walk.blobs.is_empty() {
            // A whole history: on every core.
            let (blobs, trees) = walk_commits(repo, &commits, keep)?;
            walk.commits = commits.clone();
            walk.blobs = blobs;
            walk.trees = trees;
        } else {
            let into = Placing {
                trees: &mut walk.trees,
                placed: &mut HashSet::default(),
                blobs: &mut walk.blobs,
            };
            let new = |id: &ObjectId| {
                !known.as_ref().is_some_and(|k| k.contains_key(id)) && !boundary.contains(id)
            };
            place_blobs(&local, &commits, walk.commits.len(), into, &new)?;
            walk.commits.extend(commits.iter().copied());
        }
        // Sizes, items and their order on every core: serial, they took 30 ms of the 0.6 s a
        // history of 20,000 commits takes on two cores.
        use rayon::prelude::*;
        walk.blobs[first_new..]
            .par_chunks_mut(BLOBS_PER_TASK)
            .try_for_each_init(
                || walker(repo),
                |local, blobs| {
                    for blob in blobs {
                        blob.size = local.find_header(blob.id).map_err(git_error)?.size();
                    }
                    Ok::<(), Error>(())
                },
            )?;
        let item = |b: &WalkedBlob, path: String| Item {
            oid: Some(b.id.as_bytes().into()),
            size: b.size,
            places: vec![Place {
                path,
                commit: walk.commits.get(b.commit as usize).map(|c| c.to_string()),
            }],
        };
        let mut items: Vec<Item> = if keep {
            walk.blobs
                .par_iter()
                .map(|b| item(b, b.path.clone()))
                .collect()
        } else {
            // The walk goes with this call: its sets are freed before the items are built, and
            // its paths move into them.
            walk.trees = HashSet::default();
            std::mem::take(&mut walk.blobs)
                .into_par_iter()
                .map(|mut b| {
                    let path = std::mem::take(&mut b.path);
                    item(&b, path)
                })
                .collect()
        };
        // Largest first keeps every core busy to the end of a scan.
        items.par_sort_unstable_by(|a, b| b.size.cmp(&a.size).then_with(|| a.oid.cmp(&b.oid)));
        let source = Self {
            repo: repo.clone(),
            items,
            ranks: walk
                .commits
                .iter()
                .enumerate()
                .map(|(rank, commit)| (*commit, rank))
                .collect(),
        };
        walk.tips = tips.to_vec();
        Ok((source, keep.then_some(walk)))
    }

    /// The rank of `commit` among a history source's commits, oldest first; `None` for other
    /// sources and unknown commits.
    pub fn commit_rank(&self, commit: &str) -> Option<usize> {
        let id = ObjectId::from_hex(commit.as_bytes()).ok()?;
        self.ranks.get(&id).copied()
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
            ranks: Default::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str], when: u32) {
        let date = format!("2024-01-01T00:00:{when:02}Z");
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    #[test]
    fn a_history_walked_in_parts_places_every_blob_where_one_walk_does() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q", "-b", "main"], 0);
        // Files that move, come back, are copied and share folders, over 24 commits.
        for n in 0..24u32 {
            let folder = root.join(format!("d{}", n % 3));
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join(format!("f{}", n % 5)), format!("v{}", n % 11)).unwrap();
            std::fs::write(root.join("same.txt"), "constant").unwrap();
            if n % 4 == 0 {
                std::fs::write(root.join(format!("copy{n}.txt")), format!("v{}", n % 11)).unwrap();
            }
            if n % 6 == 5 {
                let _ = std::fs::remove_dir_all(root.join("d1"));
            }
            git(root, &["add", "-A"], n);
            git(root, &["commit", "-q", "--allow-empty", "-m", "c"], n);
        }
        let repo = open(root).unwrap();
        let local = walker(&repo);
        let tip = resolve(&repo, None).unwrap().unwrap();
        let mut commits: Vec<ObjectId> = local
            .rev_walk([tip])
            .sorting(Sorting::ByCommitTime(CommitTimeOrder::NewestFirst))
            .all()
            .unwrap()
            .map(|info| info.unwrap().id)
            .collect();
        commits.reverse();
        let shown = |(blobs, trees): Walked| {
            let mut blobs: Vec<(ObjectId, String, u32)> = blobs
                .into_iter()
                .map(|b| (b.id, b.path, b.commit))
                .collect();
            blobs.sort();
            let mut trees: Vec<ObjectId> = trees.into_iter().collect();
            trees.sort();
            (blobs, trees)
        };
        let one = shown(walk_parts(&repo, &commits, 1, true).unwrap());
        assert!(one.0.len() > 10, "{:?}", one.0);
        for parts in [2, 3, 5, 24] {
            assert_eq!(
                shown(walk_parts(&repo, &commits, parts, true).unwrap()),
                one,
                "{parts} parts"
            );
            // A walk not kept: the same blobs, and no trees held.
            let (blobs, trees) = shown(walk_parts(&repo, &commits, parts, false).unwrap());
            assert_eq!((blobs, trees.len()), (one.0.clone(), 0), "{parts} parts");
        }
        // Root trees read from a commit-graph instead of the commits: the same walk.
        git(root, &["commit-graph", "write", "--reachable"], 0);
        let repo = open(root).unwrap();
        assert!(walker(&repo).commit_graph_if_enabled().unwrap().is_some());
        for parts in [1, 2, 5] {
            assert_eq!(
                shown(walk_parts(&repo, &commits, parts, true).unwrap()),
                one,
                "{parts} parts, with a commit-graph"
            );
        }
    }

    #[test]
    fn a_walk_file_reads_back_and_a_count_longer_than_the_file_is_refused() {
        let id = |n: u8| ObjectId::from_bytes_or_panic(&[n; SHA1_LEN]);
        let walk = Walk {
            tips: vec![id(2)],
            commits: vec![id(1), id(2)],
            trees: [id(3), id(4)].into_iter().collect(),
            blobs: vec![WalkedBlob {
                id: id(5),
                size: 7,
                path: "src/a b.txt".into(),
                commit: 1,
            }],
        };
        assert!(walk.is_sha1());
        let mut bytes = Vec::new();
        walk.write_to(&mut bytes).unwrap();
        let back = Walk::decode(&bytes).unwrap();
        assert_eq!((&back.tips, &back.commits), (&walk.tips, &walk.commits));
        assert_eq!(back.trees, walk.trees);
        let blob = &back.blobs[0];
        assert_eq!(
            (blob.id, blob.size, blob.path.as_str(), blob.commit),
            (id(5), 7, "src/a b.txt", 1)
        );
        assert_eq!(back.blobs.len(), 1);

        // The blob count: after the magic, tips, commits and trees (each a count and ids).
        let at = WALK_MAGIC.len() + (8 + SHA1_LEN) + (8 + 2 * SHA1_LEN) + (8 + 2 * SHA1_LEN);
        assert_eq!(bytes[at..at + 8], 1u64.to_le_bytes());
        // Two blob records need 72 bytes at least; 47 are left.
        let mut damaged = bytes.clone();
        damaged[at..at + 8].copy_from_slice(&2u64.to_le_bytes());
        assert!(Walk::decode(&damaged).is_none());
        // A tree count past the end is refused before anything is reserved for it.
        let mut damaged = bytes;
        let trees = at - (8 + 2 * SHA1_LEN);
        damaged[trees..trees + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Walk::decode(&damaged).is_none());
    }
}
