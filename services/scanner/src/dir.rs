//! A plain folder as a scan source (`scanstream scan PATH` on files that are not read from git).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::Error;
use crate::source::{Item, Place, Reader, Source};

/// Every regular file under a root, `.git` folders and symlinks excluded. Files are opened
/// beneath the root without following any symbolic link ([`open_beneath`]): a file replaced by
/// a link between the listing and the read is refused, not followed out of the root. A file
/// that cannot be read (gone since the listing, no permission) is [`Error::Unreadable`]: the
/// scan lists it as not scanned and goes on; so is a folder below the root that cannot be
/// listed (no permission, a path longer than the system takes), as an item of its own.
#[derive(Debug)]
pub struct DirSource {
    root: PathBuf,
    items: Vec<Item>,
    /// Paths (as listed) known unreadable when listed, with the kind of error and why: folders
    /// that could not be listed (`dir/`), and a path that several files whose names are not
    /// UTF-8 are listed at alike.
    refused: Arc<HashMap<String, Refusal>>,
    /// The real path under the root of each file whose path is not UTF-8: it is listed (and
    /// reported) with U+FFFD in place of the bytes that are not, and opened by this one.
    real: Arc<HashMap<String, PathBuf>>,
}

/// Why a listed path is not read.
type Refusal = (std::io::ErrorKind, String);

/// What a folder walk collects from every task.
#[derive(Default)]
struct Listing {
    /// The folder walked.
    root: PathBuf,
    items: Mutex<Vec<Item>>,
    refused: Mutex<Vec<(String, Refusal)>>,
    /// [`DirSource::real`], as found.
    real: Mutex<Vec<(String, PathBuf)>>,
    /// The first error; it stops the walk.
    failed: Mutex<Option<Error>>,
}

/// Why a path is not read when several files whose names are not UTF-8 are listed at it alike.
fn listed_alike() -> Refusal {
    (
        std::io::ErrorKind::InvalidFilename,
        "several files whose names are not UTF-8 are listed at this path alike".to_owned(),
    )
}

impl DirSource {
    /// Lists the files under `root`, folders read in parallel (one thread would leave the
    /// others waiting before the scan starts). A file's size is not asked here: asking each
    /// file for it took 6–11 % of a tree scan's CPU; a file says it when it is read
    /// ([`Reader::size`]).
    pub fn walk(root: &Path) -> Result<Self, Error> {
        let listing = Listing {
            root: root.to_path_buf(),
            ..Listing::default()
        };
        let folder = Folder {
            path: root.to_path_buf(),
            listed: String::new(),
            utf8: true,
        };
        rayon::scope(|scope| visit(scope, folder, &listing));
        let Listing {
            items,
            refused,
            real,
            failed,
            ..
        } = listing;
        if let Some(error) = failed.into_inner().unwrap_or_else(PoisonError::into_inner) {
            return Err(error);
        }
        let mut items = items.into_inner().unwrap_or_else(PoisonError::into_inner);
        items.sort_by(|a: &Item, b: &Item| a.places[0].path.cmp(&b.places[0].path));
        let mut refused: HashMap<String, Refusal> = by_path(refused);
        let mut real: HashMap<String, PathBuf> = by_path(real);
        // Names that are not UTF-8 can read alike (`caf\xe9` and `caf\xe8` both as `caf\u{fffd}`,
        // or as a UTF-8 name holding U+FFFD): which file such a path means is unknown, so it
        // is listed once and not read.
        if !real.is_empty() {
            items.dedup_by(|next, first| {
                let alike = next.places[0].path == first.places[0].path;
                if alike {
                    real.remove(&first.places[0].path);
                    refused.insert(first.places[0].path.clone(), listed_alike());
                }
                alike
            });
        }
        Ok(Self {
            root: root.to_path_buf(),
            items,
            refused: Arc::new(refused),
            real: Arc::new(real),
        })
    }

    /// One file, named by its file name (its folder is the root). A symbolic link named on the
    /// command line is followed here, once: the file read is its target.
    pub fn file(path: &Path) -> Result<Self, Error> {
        let resolved;
        let path = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                resolved = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
                resolved.as_path()
            }
            _ => path,
        };
        let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let file_name = path
            .file_name()
            .ok_or_else(|| Error::Source(format!("{}: not a file name", path.display())))?;
        let name = file_name.to_string_lossy().into_owned();
        let real = match file_name.to_str() {
            Some(_) => HashMap::new(),
            None => HashMap::from([(name.clone(), PathBuf::from(file_name))]),
        };
        let root = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Ok(Self {
            root: root.to_path_buf(),
            items: vec![listed_item(name, metadata.len())],
            refused: Arc::default(),
            real: Arc::new(real),
        })
    }
}

/// A folder to list: its path, and its path as listed (under the root, `/`-separated, ending
/// with `/`; empty for the root) with whether that is UTF-8 as it is.
struct Folder {
    path: PathBuf,
    listed: String,
    utf8: bool,
}

/// Adds the files of `folder` to the listing and visits its folders (but `.git`) as tasks of
/// their own. A folder below the root that cannot be listed becomes an item of its own, refused
/// with why; any other error stops the walk and is kept in the listing. A listed path is its
/// folder's and the entry's name: the full path is not taken apart again for each file (that
/// took a fifth to a third of the listing's time).
fn visit<'s>(scope: &rayon::Scope<'s>, folder: Folder, listing: &'s Listing) {
    let failed = &listing.failed;
    let fail = |error: Error| {
        failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(error);
    };
    if failed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_some()
    {
        return;
    }
    let is_root = folder.listed.is_empty();
    let mut items = Vec::new();
    let mut refused = Vec::new();
    let mut real = Vec::new();
    let mut unlisted = None;
    match std::fs::read_dir(&folder.path) {
        Err(e) if is_root => return fail(Error::io(&folder.path, e)),
        Err(e) => unlisted = Some(e),
        Ok(entries) => {
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) if is_root => return fail(Error::io(&folder.path, e)),
                    Err(e) => {
                        unlisted = Some(e);
                        break;
                    }
                };
                let kind = match entry.file_type() {
                    Ok(kind) => kind,
                    Err(e) => return fail(Error::io(&entry.path(), e)),
                };
                if !kind.is_dir() && !kind.is_file() {
                    continue;
                }
                let name = entry.file_name();
                if kind.is_dir() && name == ".git" {
                    continue;
                }
                let lossy = name.to_string_lossy();
                let mut listed = String::with_capacity(folder.listed.len() + lossy.len() + 1);
                listed.push_str(&folder.listed);
                listed.push_str(&lossy);
                let utf8 = folder.utf8 && matches!(lossy, std::borrow::Cow::Borrowed(_));
                if kind.is_dir() {
                    listed.push('/');
                    let child = Folder {
                        path: entry.path(),
                        listed,
                        utf8,
                    };
                    scope.spawn(move |scope| visit(scope, child, listing));
                } else {
                    if !utf8 {
                        // The listed path cannot name it: it is opened by its real one.
                        let path = entry.path();
                        let under_root = path.strip_prefix(&listing.root).unwrap_or(&path);
                        real.push((listed.clone(), under_root.to_path_buf()));
                    }
                    items.push(listed_item(listed, 0));
                }
            }
        }
    }
    // A folder that could not be listed is an item, refused: it is reported as not scanned.
    if let Some(error) = unlisted {
        let listed = folder.listed;
        refused.push((listed.clone(), (error.kind(), error.to_string())));
        items.push(listed_item(listed, 0));
    }
    append(&listing.items, items);
    append(&listing.refused, refused);
    append(&listing.real, real);
}

/// What every task found, by listed path.
fn by_path<T>(found: Mutex<Vec<(String, T)>>) -> HashMap<String, T> {
    found
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .collect()
}

/// Adds what one folder's task found to the listing's (nothing to lock when it found none).
fn append<T>(to: &Mutex<Vec<T>>, found: Vec<T>) {
    if !found.is_empty() {
        to.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(found);
    }
}

fn listed_item(path: String, size: u64) -> Item {
    Item {
        oid: None,
        size,
        places: vec![Place { path, commit: None }],
    }
}

pub struct FileReader {
    root: PathBuf,
    /// The root folder, opened once: files are opened relative to it.
    dir: std::fs::File,
    /// [`DirSource::refused`].
    refused: Arc<HashMap<String, Refusal>>,
    /// [`DirSource::real`].
    real: Arc<HashMap<String, PathBuf>>,
    /// The file [`Reader::size`] opened and read from, for the `read` or `open` that follows.
    ahead: Option<Ahead>,
    /// A buffer to read ahead into, kept from file to file.
    spare: Vec<u8>,
}

/// A file opened and read from by [`Reader::size`].
struct Ahead {
    /// The item's address (the same item is asked next).
    item: usize,
    file: std::fs::File,
    /// Its bytes read so far.
    content: Vec<u8>,
    /// `content` holds the whole file.
    whole: bool,
}

impl FileReader {
    /// Opens the file of `item` ([`open_beneath`]) and returns it with its path under the
    /// root; `None` for an item without a place.
    fn open_file<'i>(&self, item: &'i Item) -> Result<Option<(std::fs::File, &'i str)>, Error> {
        let Some(relative) = item.first_path() else {
            return Ok(None);
        };
        // Most folders refuse nothing: no lookup per file then.
        if !self.refused.is_empty()
            && let Some((kind, why)) = self.refused.get(relative)
        {
            return Err(Error::Unreadable {
                path: self.root.join(relative),
                source: std::io::Error::new(*kind, why.clone()),
            });
        }
        // Most folders hold no name that is not UTF-8: no lookup per file then either.
        let real = if self.real.is_empty() {
            None
        } else {
            self.real.get(relative)
        };
        match open_beneath(
            &self.dir,
            real.map_or(Path::new(relative), PathBuf::as_path),
        ) {
            Ok(file) => Ok(Some((file, relative))),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                Err(Error::Source(format!(
                    "{}: a symbolic link appeared in its path after the folder was listed; not followed",
                    self.root.join(relative).display()
                )))
            }
            Err(source) => Err(self.unreadable(relative, source)),
        }
    }

    /// What [`Reader::size`] read of `item`, if it was the last item asked.
    fn take_ahead(&mut self, item: &Item) -> Option<Ahead> {
        let ahead = self.ahead.take()?;
        if ahead.item == std::ptr::from_ref(item).addr() {
            return Some(ahead);
        }
        self.spare = ahead.content;
        None
    }

    /// The file at `relative` could not be read.
    fn unreadable(&self, relative: &str, source: std::io::Error) -> Error {
        Error::Unreadable {
            path: self.root.join(relative),
            source,
        }
    }
}

/// Opens `relative` (a path under `dir`, `/`-separated) for reading without following a
/// symbolic link anywhere in it and without leaving `dir` (Linux `openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`); where `openat2` does not exist, only the last
/// component is protected (`O_NOFOLLOW`).
fn open_beneath(dir: &std::fs::File, relative: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::ResolveFlags;
        match rustix::fs::openat2(
            dir,
            relative,
            flags,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
        ) {
            Err(rustix::io::Errno::NOSYS) => {}
            opened => return opened.map(std::fs::File::from).map_err(Into::into),
        }
    }
    rustix::fs::openat(dir, relative, flags, Mode::empty())
        .map(std::fs::File::from)
        .map_err(Into::into)
}

/// Reads `file` on from where it is, after what `buf` holds, until its end (`true`) or until
/// `buf` holds at least `limit` bytes (`false`). The bytes go into the buffer's spare capacity,
/// never zeroed first, and no system call asks the file's size or position: a file that fits
/// the buffer (kept from file to file) takes one read and one that returns nothing, where
/// `read_to_end` makes two more.
fn read_into(file: &std::fs::File, buf: &mut Vec<u8>, limit: usize) -> std::io::Result<bool> {
    loop {
        if buf.len() >= limit {
            return Ok(false);
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity().max(8192).min(limit - buf.len()));
        }
        match rustix::io::read(file, rustix::buffer::spare_capacity(buf)) {
            Ok(0) => return Ok(true),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

impl Reader for FileReader {
    /// Opens the file and reads it, `ahead` bytes and one more at most: a file that ends
    /// before is read whole and its size is what was read; only a larger one is asked its size.
    fn size(&mut self, item: &Item, ahead: u64) -> Result<u64, Error> {
        if let Some(last) = self.ahead.take() {
            self.spare = last.content;
        }
        let Some((file, relative)) = self.open_file(item)? else {
            return Ok(0);
        };
        let mut content = std::mem::take(&mut self.spare);
        content.clear();
        let limit = usize::try_from(ahead)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let whole = match read_into(&file, &mut content, limit) {
            Ok(whole) => whole,
            Err(source) => {
                self.spare = content;
                return Err(self.unreadable(relative, source));
            }
        };
        let size = if whole {
            content.len() as u64
        } else {
            let listed = file
                .metadata()
                .map_err(|source| self.unreadable(relative, source))?;
            listed.len().max(content.len() as u64)
        };
        self.ahead = Some(Ahead {
            item: std::ptr::from_ref(item).addr(),
            file,
            content,
            whole,
        });
        Ok(size)
    }

    fn read(&mut self, item: &Item, buf: &mut Vec<u8>) -> Result<(), Error> {
        buf.clear();
        let (file, whole) = match self.take_ahead(item) {
            Some(mut ahead) => {
                // What was read ahead becomes the content; the caller's buffer is kept for the
                // next file.
                std::mem::swap(buf, &mut ahead.content);
                self.spare = ahead.content;
                (ahead.file, ahead.whole)
            }
            None => match self.open_file(item)? {
                Some((file, _)) => (file, false),
                None => return Ok(()),
            },
        };
        if whole {
            return Ok(());
        }
        match read_into(&file, buf, usize::MAX) {
            Ok(_) => Ok(()),
            Err(source) => {
                buf.clear();
                let relative = item.first_path().unwrap_or("");
                Err(self.unreadable(relative, source))
            }
        }
    }

    /// Streams the file from the disk: a file scanned in windows is never held whole (only
    /// what [`Reader::size`] read ahead, streamed first).
    fn open(&mut self, item: &Item) -> Result<Box<dyn std::io::Read>, Error> {
        use std::io::Read;
        if let Some(ahead) = self.take_ahead(item) {
            let read = std::io::Cursor::new(ahead.content);
            return Ok(if ahead.whole {
                Box::new(read)
            } else {
                Box::new(read.chain(ahead.file))
            });
        }
        let Some((file, _)) = self.open_file(item)? else {
            return Ok(Box::new(std::io::empty()));
        };
        Ok(Box::new(file))
    }

    /// Hashes the file as it streams from the disk.
    fn blob_id(&mut self, item: &Item) -> Result<(Vec<u8>, u64), Error> {
        let Some((mut file, relative)) = self.open_file(item)? else {
            return Ok((crate::source::blob_id(&[])?, 0));
        };
        let path = self.root.join(relative);
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        Ok((
            crate::source::blob_id_of_stream(&mut file, len, &path)?,
            len,
        ))
    }
}

impl Source for DirSource {
    type Reader = FileReader;

    fn items(&self) -> &[Item] {
        &self.items
    }

    fn reader(&self) -> Result<FileReader, Error> {
        let dir = std::fs::File::open(&self.root).map_err(|e| Error::io(&self.root, e))?;
        Ok(FileReader {
            root: self.root.clone(),
            dir,
            refused: self.refused.clone(),
            real: self.real.clone(),
            ahead: None,
            spare: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// How far the tests' reads look ahead: less than some files hold.
    const AHEAD: u64 = 64;

    fn item<'s>(source: &'s DirSource, path: &str) -> &'s Item {
        source
            .items()
            .iter()
            .find(|i| i.places[0].path == path)
            .unwrap_or_else(|| panic!("{path} not listed"))
    }

    /// Reads a file as a scan does: asked its size first, then read.
    fn read(source: &DirSource, path: &str) -> Result<Vec<u8>, Error> {
        let item = item(source, path);
        let mut reader = source.reader()?;
        let size = reader.size(item, AHEAD)?;
        let mut buf = Vec::new();
        reader.read(item, &mut buf)?;
        assert_eq!(size, buf.len() as u64, "{path}");
        Ok(buf)
    }

    #[test]
    fn a_file_is_read_once_whatever_its_size_and_whichever_way_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let long = "0123456789".repeat(1000);
        std::fs::write(dir.path().join("short"), "a short file").unwrap();
        std::fs::write(dir.path().join("long"), &long).unwrap();
        let source = DirSource::walk(dir.path()).unwrap();
        let (short, long_item) = (item(&source, "short"), item(&source, "long"));
        assert_eq!((short.size, long_item.size), (0, 0), "listed without sizes");
        let mut reader = source.reader().unwrap();
        // Streamed: what was read ahead, then the rest of the file.
        assert_eq!(reader.size(long_item, AHEAD).unwrap(), long.len() as u64);
        let mut streamed = Vec::new();
        reader
            .open(long_item)
            .unwrap()
            .read_to_end(&mut streamed)
            .unwrap();
        assert_eq!(streamed, long.as_bytes());
        // Whole, from what was read ahead; then a read of another item than the one asked.
        assert_eq!(reader.size(short, AHEAD).unwrap(), 12);
        let mut buf = Vec::new();
        reader.read(short, &mut buf).unwrap();
        assert_eq!(buf, b"a short file");
        reader.size(short, AHEAD).unwrap();
        reader.read(long_item, &mut buf).unwrap();
        assert_eq!(buf, long.as_bytes());
        // A stream of a file read whole ahead.
        reader.size(short, AHEAD).unwrap();
        let mut streamed = Vec::new();
        reader
            .open(short)
            .unwrap()
            .read_to_end(&mut streamed)
            .unwrap();
        assert_eq!(streamed, b"a short file");
    }

    #[test]
    fn a_file_changed_since_the_listing_is_read_as_it_is_now() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("grows", "12345"), ("shrinks", "123456789"), ("empty", "")] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let source = DirSource::walk(dir.path()).unwrap();
        let grown = "0123456789".repeat(1000);
        std::fs::write(dir.path().join("grows"), &grown).unwrap();
        std::fs::write(dir.path().join("shrinks"), "12").unwrap();
        assert_eq!(read(&source, "grows").unwrap(), grown.as_bytes());
        assert_eq!(read(&source, "shrinks").unwrap(), b"12");
        assert_eq!(read(&source, "empty").unwrap(), b"");
    }

    #[test]
    fn a_file_swapped_for_a_link_after_the_listing_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("a.txt"), "inside a").unwrap();
        std::fs::write(root.join("sub/b.txt"), "inside b").unwrap();
        std::fs::write(root.join("c.txt"), "inside c").unwrap();
        std::fs::write(outside.join("b.txt"), "outside").unwrap();
        std::fs::write(outside.join("secret"), "outside").unwrap();
        let source = DirSource::walk(&root).unwrap();
        assert_eq!(read(&source, "c.txt").unwrap(), b"inside c");
        // The file itself becomes a link, and a folder on its path becomes one.
        std::fs::remove_file(root.join("a.txt")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("a.txt")).unwrap();
        std::fs::rename(root.join("sub"), dir.path().join("old-sub")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("sub")).unwrap();
        for path in ["a.txt", "sub/b.txt"] {
            let refused = read(&source, path).map(String::from_utf8);
            assert!(
                matches!(&refused, Err(e) if e.to_string().contains("symbolic link")),
                "{path}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_link_named_on_the_command_line_is_read_as_its_target() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("target.env"), "value").unwrap();
        std::os::unix::fs::symlink(dir.path().join("target.env"), dir.path().join("link")).unwrap();
        let source = DirSource::file(&dir.path().join("link")).unwrap();
        assert_eq!(read(&source, "target.env").unwrap(), b"value");
    }
}
