//! A plain folder as a scan source (`scanstream scan PATH` on files that are not read from git).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::Error;
use crate::source::{Item, Place, Reader, Source};

/// Every regular file under a root, `.git` folders and symlinks excluded.
#[derive(Debug)]
pub struct DirSource {
    root: PathBuf,
    items: Vec<Item>,
}

impl DirSource {
    /// Lists the files under `root`, folders read in parallel (on a large tree the walk is
    /// stat calls, and one thread would leave the others waiting before the scan starts).
    pub fn walk(root: &Path) -> Result<Self, Error> {
        let found = Mutex::new(Vec::new());
        let failed = Mutex::new(None);
        rayon::scope(|scope| visit(scope, root, root.to_path_buf(), &found, &failed));
        if let Some(error) = failed.into_inner().unwrap_or_else(PoisonError::into_inner) {
            return Err(error);
        }
        let mut items = found.into_inner().unwrap_or_else(PoisonError::into_inner);
        items.sort_by(|a: &Item, b: &Item| a.places[0].path.cmp(&b.places[0].path));
        Ok(Self {
            root: root.to_path_buf(),
            items,
        })
    }

    /// One file, named by its file name (its folder is the root).
    pub fn file(path: &Path) -> Result<Self, Error> {
        let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::Source(format!("{}: not a file name", path.display())))?;
        let root = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Ok(Self {
            root: root.to_path_buf(),
            items: vec![Item {
                oid: None,
                size: metadata.len(),
                places: vec![Place {
                    path: name,
                    commit: None,
                }],
            }],
        })
    }
}

/// Adds the files of `dir` to `found` and visits its folders (but `.git`) as tasks of their
/// own; the first error stops the walk and is kept in `failed`.
fn visit<'s>(
    scope: &rayon::Scope<'s>,
    root: &'s Path,
    dir: PathBuf,
    found: &'s Mutex<Vec<Item>>,
    failed: &'s Mutex<Option<Error>>,
) {
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
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => return fail(Error::io(&dir, e)),
    };
    let mut items = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return fail(Error::io(&dir, e)),
        };
        let path = entry.path();
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            Err(e) => return fail(Error::io(&path, e)),
        };
        if kind.is_dir() {
            if entry.file_name() != ".git" {
                scope.spawn(move |scope| visit(scope, root, path, found, failed));
            }
        } else if kind.is_file() {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let relative = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            items.push(Item {
                oid: None,
                size,
                places: vec![Place {
                    path: relative,
                    commit: None,
                }],
            });
        }
    }
    found
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(items);
}

pub struct FileReader {
    root: PathBuf,
}

impl FileReader {
    /// The file of `item` on disk; `None` for an item without a place.
    fn path(&self, item: &Item) -> Option<PathBuf> {
        item.places.first().map(|place| self.root.join(&place.path))
    }
}

impl Reader for FileReader {
    fn read(&mut self, item: &Item, buf: &mut Vec<u8>) -> Result<(), Error> {
        use std::io::Read;
        buf.clear();
        let Some(path) = self.path(item) else {
            return Ok(());
        };
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(buf))
            .map_err(|e| Error::io(&path, e))?;
        Ok(())
    }

    /// Streams the file from the disk: a file scanned in windows is never held whole.
    fn open(&mut self, item: &Item) -> Result<Box<dyn std::io::Read>, Error> {
        let Some(path) = self.path(item) else {
            return Ok(Box::new(std::io::empty()));
        };
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Box::new(file))
    }

    /// Hashes the file as it streams from the disk.
    fn blob_id(&mut self, item: &Item) -> Result<Vec<u8>, Error> {
        let Some(path) = self.path(item) else {
            return crate::source::blob_id(&[]);
        };
        let mut file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        crate::source::blob_id_of_stream(&mut file, len, &path)
    }
}

impl Source for DirSource {
    type Reader = FileReader;

    fn items(&self) -> &[Item] {
        &self.items
    }

    fn reader(&self) -> Result<FileReader, Error> {
        Ok(FileReader {
            root: self.root.clone(),
        })
    }
}
