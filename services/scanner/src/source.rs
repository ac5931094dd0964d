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
    pub size: u64,
    pub places: Vec<Place>,
}

/// What a scan reads content from.
pub trait Source: Sync {
    type Reader: Reader;
    fn items(&self) -> &[Item];
    /// A reader for one worker thread.
    fn reader(&self) -> Result<Self::Reader, Error>;
}

pub trait Reader {
    /// Replaces `buf`'s contents with the item's content.
    fn read(&mut self, item: &Item, buf: &mut Vec<u8>) -> Result<(), Error>;
}

/// The git blob id of `data` (what `git hash-object` prints), as bytes.
pub fn blob_id(data: &[u8]) -> Result<Vec<u8>, Error> {
    gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, data)
        .map(|id| id.as_bytes().to_vec())
        .map_err(|e| Error::Git(e.to_string()))
}
