//! What a scan reads content from: items (content scanned once wherever it appears) and the
//! places they were seen. A repository's blobs ([`crate::git`]) and a folder's files
//! ([`crate::dir`]) are sources.

use crate::Error;

/// Where an item's content was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// `/`-separated path relative to the repository or folder root.
    pub path: String,
    /// The commit it was seen in (the commit that introduced it, for history scans).
    pub commit: Option<String>,
}

/// One piece of content to scan, scanned once wherever it appears.
#[derive(Debug, Clone)]
pub struct Item {
    /// Git object id, when the content is a blob: the result cache key.
    pub oid: Option<Box<[u8]>>,
    /// In bytes, as listed; a folder's files are listed without it (0), and their size is
    /// asked when they are read ([`Reader::size`]).
    pub size: u64,
    pub places: Vec<Place>,
}

impl Item {
    /// The path it is first listed at (a folder's file has one), if any.
    pub fn first_path(&self) -> Option<&str> {
        self.places.first().map(|place| place.path.as_str())
    }

    /// Its blob id and size when it was listed with an id (a git blob): nothing to read.
    pub fn listed_blob_id(&self) -> Option<(Vec<u8>, u64)> {
        self.oid.as_ref().map(|oid| (oid.to_vec(), self.size))
    }
}

/// What a scan reads content from.
pub trait Source: Sync {
    type Reader: Reader;
    fn items(&self) -> &[Item];
    /// A reader for one worker thread.
    fn reader(&self) -> Result<Self::Reader, Error>;
}

pub trait Reader {
    /// The item's size in bytes, asked before it is read: its listed size, or, for a source
    /// that lists none (a folder), what the content holds now. A reader may read ahead for it
    /// (at most `ahead` bytes and one more) and hand what it read to the `read` or `open` of
    /// the same item that follows.
    fn size(&mut self, item: &Item, ahead: u64) -> Result<u64, Error> {
        let _ = ahead;
        Ok(item.size)
    }

    /// Replaces `buf`'s contents with the item's content.
    fn read(&mut self, item: &Item, buf: &mut Vec<u8>) -> Result<(), Error>;

    /// The item's content as a stream, for items scanned in windows (larger than one window).
    /// Sources that can stream never hold the whole content; the default reads it whole.
    fn open(&mut self, item: &Item) -> Result<Box<dyn std::io::Read>, Error> {
        let mut buf = Vec::new();
        self.read(item, &mut buf)?;
        Ok(Box::new(std::io::Cursor::new(buf)))
    }

    /// The git blob id of the item's content (its `oid`, or computed from the content) and
    /// its size in bytes.
    fn blob_id(&mut self, item: &Item) -> Result<(Vec<u8>, u64), Error> {
        if let Some(listed) = item.listed_blob_id() {
            return Ok(listed);
        }
        let mut buf = Vec::new();
        self.read(item, &mut buf)?;
        Ok((blob_id(&buf)?, buf.len() as u64))
    }
}

/// The git blob id of `data` (what `git hash-object` prints), as bytes.
pub fn blob_id(data: &[u8]) -> Result<Vec<u8>, Error> {
    gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, data)
        .map(|id| id.as_bytes().to_vec())
        .map_err(|e| Error::Git(e.to_string()))
}

/// The git blob id of the first `len` bytes of the file `path` opened as `stream`, read in
/// chunks (never held whole).
pub fn blob_id_of_stream(
    stream: &mut dyn std::io::Read,
    len: u64,
    path: &std::path::Path,
) -> Result<Vec<u8>, Error> {
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(&gix::objs::encode::loose_header(gix::objs::Kind::Blob, len));
    let mut chunk = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
        let n = match stream.read(&mut chunk[..want]) {
            Ok(0) => {
                return Err(Error::Source(format!(
                    "{}: changed while it was read",
                    path.display()
                )));
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        hasher.update(&chunk[..n]);
        left -= n as u64;
    }
    hasher
        .try_finalize()
        .map(|id| id.as_bytes().to_vec())
        .map_err(|e| Error::Git(e.to_string()))
}

/// Content held in memory, each piece at a path: a commit's staged files.
#[derive(Debug, Default)]
pub struct MemorySource {
    items: Vec<Item>,
    contents: std::sync::Arc<Vec<Vec<u8>>>,
}

impl MemorySource {
    /// One item per `(path, content)`, in the order given.
    pub fn new(files: Vec<(String, Vec<u8>)>) -> Self {
        let mut items = Vec::with_capacity(files.len());
        let mut contents = Vec::with_capacity(files.len());
        for (path, content) in files {
            items.push(Item {
                oid: None,
                size: content.len() as u64,
                places: vec![Place { path, commit: None }],
            });
            contents.push(content);
        }
        Self {
            items,
            contents: std::sync::Arc::new(contents),
        }
    }
}

/// Reads a [`MemorySource`]'s items (found by their path).
pub struct MemoryReader {
    paths: std::collections::HashMap<String, usize>,
    contents: std::sync::Arc<Vec<Vec<u8>>>,
}

impl MemoryReader {
    fn index(&self, item: &Item) -> Result<usize, Error> {
        item.places
            .first()
            .and_then(|place| self.paths.get(&place.path))
            .copied()
            .ok_or_else(|| Error::Source("an item of no memory source".into()))
    }
}

impl Reader for MemoryReader {
    fn read(&mut self, item: &Item, buf: &mut Vec<u8>) -> Result<(), Error> {
        buf.clear();
        buf.extend_from_slice(&self.contents[self.index(item)?]);
        Ok(())
    }

    /// Streams the content held, without a copy of it: a staged file can be large.
    fn open(&mut self, item: &Item) -> Result<Box<dyn std::io::Read>, Error> {
        Ok(Box::new(HeldContent {
            contents: self.contents.clone(),
            index: self.index(item)?,
            at: 0,
        }))
    }
}

/// One of a [`MemorySource`]'s contents, read from where `at` is.
struct HeldContent {
    contents: std::sync::Arc<Vec<Vec<u8>>>,
    index: usize,
    at: usize,
}

impl std::io::Read for HeldContent {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut rest = self.contents[self.index].get(self.at..).unwrap_or_default();
        let n = rest.read(out)?;
        self.at += n;
        Ok(n)
    }
}

impl Source for MemorySource {
    type Reader = MemoryReader;

    fn items(&self) -> &[Item] {
        &self.items
    }

    fn reader(&self) -> Result<MemoryReader, Error> {
        Ok(MemoryReader {
            paths: self
                .items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| item.first_path().map(|path| (path.to_owned(), i)))
                .collect(),
            contents: self.contents.clone(),
        })
    }
}

/// Content read once from a stream (standard input), at one path: scanned as it is read, one
/// window in memory at a time, however long it is; only content that fits a window is held
/// whole. The runner asks its size first ([`Reader::size`]): that reads up to a window ahead,
/// and what follows is streamed by [`Reader::open`].
pub struct StreamSource {
    items: Vec<Item>,
    shared: std::sync::Arc<std::sync::Mutex<StreamState>>,
}

/// A [`StreamSource`]'s stream, until its item is read, and its content when that was whole.
enum StreamState {
    Unread(Box<dyn std::io::Read + Send>),
    /// Read whole, within one window: kept for a blob id (a key store named on the command
    /// line is reported whole, by its id).
    Whole(std::sync::Arc<Vec<u8>>),
    /// Streamed through in windows: gone.
    Gone,
}

impl StreamSource {
    /// One item at `path`, its content read from `stream` when it is scanned.
    pub fn new(path: String, stream: Box<dyn std::io::Read + Send>) -> Self {
        Self {
            items: vec![Item {
                oid: None,
                size: 0,
                places: vec![Place { path, commit: None }],
            }],
            shared: std::sync::Arc::new(std::sync::Mutex::new(StreamState::Unread(stream))),
        }
    }
}

impl Source for StreamSource {
    type Reader = StreamReader;

    fn items(&self) -> &[Item] {
        &self.items
    }

    fn reader(&self) -> Result<StreamReader, Error> {
        Ok(StreamReader {
            shared: self.shared.clone(),
            ahead: None,
        })
    }
}

/// Reads a [`StreamSource`]'s one item: the first reader asked its size takes the stream.
pub struct StreamReader {
    shared: std::sync::Arc<std::sync::Mutex<StreamState>>,
    /// What [`Reader::size`] read of a stream longer than a window, and the rest of it.
    ahead: Option<(Vec<u8>, Box<dyn std::io::Read + Send>)>,
}

impl StreamReader {
    fn shared(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A stream asked for again after it was streamed through.
fn read_already(item: &Item) -> Error {
    Error::Source(format!(
        "standard input ({}) was read already",
        item.first_path().unwrap_or_default()
    ))
}

impl Reader for StreamReader {
    /// Takes the stream and reads `ahead` bytes and one more at most: a stream that ends before
    /// is held whole and its size is its length; a longer one says `ahead + 1` (more than a
    /// window: it is scanned in windows, however long it turns out).
    fn size(&mut self, item: &Item, ahead: u64) -> Result<u64, Error> {
        use std::io::Read as _;
        let path = item.first_path().unwrap_or_default();
        let mut shared = self.shared();
        let mut stream = match std::mem::replace(&mut *shared, StreamState::Gone) {
            StreamState::Unread(stream) => stream,
            StreamState::Whole(content) => {
                let size = content.len() as u64;
                *shared = StreamState::Whole(content);
                return Ok(size);
            }
            StreamState::Gone => return Err(read_already(item)),
        };
        let mut content = Vec::new();
        // A stream that cannot be read is an error of the scan, not a file left unscanned.
        stream
            .as_mut()
            .take(ahead.saturating_add(1))
            .read_to_end(&mut content)
            .map_err(|e| Error::Source(format!("standard input ({path}) cannot be read: {e}")))?;
        let size = content.len() as u64;
        if size <= ahead {
            *shared = StreamState::Whole(std::sync::Arc::new(content));
        } else {
            drop(shared);
            self.ahead = Some((content, stream));
        }
        Ok(size)
    }

    fn read(&mut self, item: &Item, buf: &mut Vec<u8>) -> Result<(), Error> {
        use std::io::Read as _;
        buf.clear();
        if let Some((content, mut rest)) = self.ahead.take() {
            *buf = content;
            return rest.read_to_end(buf).map(drop).map_err(|source| {
                buf.clear();
                Error::Unreadable {
                    path: item.first_path().unwrap_or_default().into(),
                    source,
                }
            });
        }
        match &*self.shared() {
            StreamState::Whole(content) => buf.extend_from_slice(content),
            _ => return Err(read_already(item)),
        }
        Ok(())
    }

    /// What was read ahead, then the rest of the stream as it comes.
    fn open(&mut self, item: &Item) -> Result<Box<dyn std::io::Read>, Error> {
        use std::io::Read as _;
        if let Some((content, rest)) = self.ahead.take() {
            return Ok(Box::new(std::io::Cursor::new(content).chain(rest)));
        }
        match &*self.shared() {
            StreamState::Whole(content) => Ok(Box::new(std::io::Cursor::new(content.to_vec()))),
            _ => Err(read_already(item)),
        }
    }

    /// The blob id of content held whole; a stream scanned in windows is not held, and has none.
    fn blob_id(&mut self, item: &Item) -> Result<(Vec<u8>, u64), Error> {
        match &*self.shared() {
            StreamState::Whole(content) => Ok((blob_id(content)?, content.len() as u64)),
            _ => Err(Error::Source(format!(
                "standard input ({}) longer than a window is not held, so it cannot be reported whole",
                item.first_path().unwrap_or_default()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_source_streams_each_content_whole() {
        let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let source = MemorySource::new(vec![
            ("a".into(), b"small".to_vec()),
            ("b".into(), big.clone()),
        ]);
        let mut reader = source.reader().unwrap();
        for (item, content) in source.items().iter().zip([b"small".to_vec(), big]) {
            let mut streamed = Vec::new();
            let mut stream = reader.open(item).unwrap();
            let mut chunk = [0u8; 4096];
            loop {
                let n = std::io::Read::read(&mut stream, &mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                streamed.extend_from_slice(&chunk[..n]);
            }
            assert_eq!(streamed, content);
            let mut whole = Vec::new();
            reader.read(item, &mut whole).unwrap();
            assert_eq!(whole, content);
        }
    }

    fn stream(content: &[u8]) -> StreamSource {
        StreamSource::new(
            "stdin".into(),
            Box::new(std::io::Cursor::new(content.to_vec())),
        )
    }

    #[test]
    fn a_stream_within_a_window_is_held_whole_and_has_a_blob_id() {
        let source = stream(b"A=1\nB=2\n");
        let item = &source.items()[0];
        let mut reader = source.reader().unwrap();
        assert_eq!(reader.size(item, 16).unwrap(), 8);
        let mut whole = Vec::new();
        reader.read(item, &mut whole).unwrap();
        assert_eq!(whole, b"A=1\nB=2\n");
        // Another worker's reader sees the same content (a key store is reported whole by it).
        let mut other = source.reader().unwrap();
        assert_eq!(other.size(item, 16).unwrap(), 8);
        assert_eq!(
            other.blob_id(item).unwrap(),
            (blob_id(b"A=1\nB=2\n").unwrap(), 8)
        );
    }

    #[test]
    fn a_stream_longer_than_a_window_is_streamed_once_and_not_held() {
        let content: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let source = stream(&content);
        let item = &source.items()[0];
        let mut reader = source.reader().unwrap();
        assert_eq!(
            reader.size(item, 1000).unwrap(),
            1001,
            "a window and a byte read"
        );
        let mut streamed = Vec::new();
        std::io::Read::read_to_end(&mut reader.open(item).unwrap(), &mut streamed).unwrap();
        assert_eq!(streamed, content);
        let mut again = source.reader().unwrap();
        let error = again.size(item, 1000).unwrap_err().to_string();
        assert!(error.contains("read already"), "{error}");
        assert!(again.blob_id(item).is_err());
        // A stream that fails as it is first read is an error, not content.
        struct Failing;
        impl std::io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("the pipe broke"))
            }
        }
        let failing = StreamSource::new("stdin".into(), Box::new(Failing));
        let error = failing
            .reader()
            .unwrap()
            .size(&failing.items()[0], 1000)
            .unwrap_err();
        assert!(
            matches!(error, Error::Source(ref why) if why.contains("the pipe broke")),
            "{error}"
        );
    }
}
