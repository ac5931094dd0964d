//! The content-addressed result cache: what an engine found in a blob, keyed by (blob id, engine
//! cache key), so rescans and history scans only read blobs no scanner has scanned with the same
//! rules before.
//!
//! Layout under `<cache-dir>/results/<engine cache key>/`: immutable segment files, each written
//! whole to a temporary name and renamed into place, so any number of scanners in any number of
//! processes (on a shared NFS/EFS volume) can add segments while others read them; a reader that
//! meets a half-deleted or unreadable segment only loses cache hits, never correctness. A process
//! loads each segment once and then only the segments added since. When segments pile up, one
//! scanner merges them under an exclusive lock.
//!
//! A segment holds records `(blob id, hits)`; hits hold fingerprints and redacted previews only,
//! never a secret.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use scanstream_contracts::finding::Severity;

use crate::Error;
use crate::engine::Hit;
use scanstream_platform::sync::{read, write};

/// Version 3: each hit also holds its [`Hit::secret_id`] (version 2 added
/// [`Hit::shadowed_by`]).
const MAGIC: &[u8] = b"SSRC\x03";
const SEGMENT_SUFFIX: &str = ".seg";
/// More segments than this are merged into one.
const MERGE_ABOVE: usize = 64;

/// Results of one engine cache key, loaded from and added to one directory.
#[derive(Debug)]
pub struct ResultCache {
    dir: PathBuf,
    /// Read-locked by every lookup (all cores at once), write-locked to add results.
    state: RwLock<Loaded>,
}

/// A blob id and what an engine found in it.
type Record = (Box<[u8]>, Box<[Hit]>);

#[derive(Debug, Default)]
struct Loaded {
    known: HashMap<Box<[u8]>, Box<[Hit]>>,
    segments: HashSet<String>,
    fresh: Vec<Record>,
}

impl ResultCache {
    /// The cache of `engine_key` under `root` (`<cache-dir>/results`).
    pub fn new(root: &Path, engine_key: &str) -> Self {
        Self {
            dir: root.join(engine_key),
            state: RwLock::new(Loaded::default()),
        }
    }

    /// Loads the segments other scanners added since the last call.
    pub fn refresh(&self) -> Result<(), Error> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let names = segment_names(&self.dir)?;
        let mut state = write(&self.state);
        for name in names {
            if state.segments.contains(&name) {
                continue;
            }
            match read_segment(&self.dir.join(&name)) {
                Ok(records) => {
                    state.known.reserve(records.len());
                    state.known.extend(records);
                }
                // Merged away meanwhile, or damaged: only cache hits are lost.
                Err(e) => tracing::debug!(segment = %name, error = %e, "result segment skipped"),
            }
            state.segments.insert(name);
        }
        Ok(())
    }

    /// The cached hits of blob `oid`, when any scanner scanned it with the same engine key.
    pub fn get(&self, oid: &[u8]) -> Option<Vec<Hit>> {
        let state = read(&self.state);
        state.known.get(oid).map(|hits| hits.to_vec())
    }

    /// Remembers a new result; [`Self::persist`] writes it for everyone.
    pub fn record(&self, oid: &[u8], hits: &[Hit]) {
        {
            let mut state = write(&self.state);
            let oid: Box<[u8]> = oid.into();
            let hits: Box<[Hit]> = hits.into();
            state.known.insert(oid.clone(), hits.clone());
            state.fresh.push((oid, hits));
        }
    }

    /// Writes the results recorded since the last call as a new segment; returns how many.
    pub fn persist(&self) -> Result<usize, Error> {
        let fresh = std::mem::take(&mut write(&self.state).fresh);
        if fresh.is_empty() {
            return Ok(0);
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let name = format!("{}{SEGMENT_SUFFIX}", uuid::Uuid::new_v4().simple());
        write_segment(&self.dir, &name, fresh.iter().map(|(o, h)| (&**o, &**h)))?;
        {
            let mut state = write(&self.state);
            state.segments.insert(name);
        }
        if segment_names(&self.dir)?.len() > MERGE_ABOVE {
            self.merge()?;
        }
        Ok(fresh.len())
    }

    /// Merges every segment into one, under an exclusive lock; skipped when another scanner is
    /// merging already.
    fn merge(&self) -> Result<(), Error> {
        let lock_path = self.dir.join(".merge.lock");
        let merging = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        if merging.try_lock().is_err() {
            return Ok(());
        }
        let names = segment_names(&self.dir)?;
        let mut merged: HashMap<Box<[u8]>, Box<[Hit]>> = HashMap::new();
        for name in &names {
            if let Ok(records) = read_segment(&self.dir.join(name)) {
                merged.extend(records);
            }
        }
        let name = format!("{}{SEGMENT_SUFFIX}", uuid::Uuid::new_v4().simple());
        write_segment(&self.dir, &name, merged.iter().map(|(o, h)| (&**o, &**h)))?;
        for old in &names {
            let _ = std::fs::remove_file(self.dir.join(old));
        }
        {
            let mut state = write(&self.state);
            state.segments.insert(name);
        }
        tracing::info!(
            segments = names.len(),
            records = merged.len(),
            "result cache merged"
        );
        Ok(())
    }
}

fn segment_names(dir: &Path) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(name) = entry.file_name().to_str()
            && name.ends_with(SEGMENT_SUFFIX)
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn severity_code(severity: Severity) -> u8 {
    match severity {
        Severity::Critical => 0,
        Severity::High => 1,
        Severity::Medium => 2,
        Severity::Low => 3,
        Severity::Info => 4,
    }
}

fn severity_of(code: u8) -> Option<Severity> {
    Some(match code {
        0 => Severity::Critical,
        1 => Severity::High,
        2 => Severity::Medium,
        3 => Severity::Low,
        4 => Severity::Info,
        _ => return None,
    })
}

fn write_segment<'a>(
    dir: &Path,
    name: &str,
    records: impl Iterator<Item = (&'a [u8], &'a [Hit])>,
) -> Result<(), Error> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut out = BufWriter::new(file);
    let mut write = |bytes: &[u8]| out.write_all(bytes);
    let result = (|| -> std::io::Result<()> {
        write(MAGIC)?;
        for (oid, hits) in records {
            write(&[u8::try_from(oid.len()).unwrap_or(u8::MAX)])?;
            write(&oid[..oid.len().min(255)])?;
            write(&u16::try_from(hits.len()).unwrap_or(u16::MAX).to_le_bytes())?;
            for hit in hits.iter().take(usize::from(u16::MAX)) {
                for text in [&hit.rule, &hit.fingerprint, &hit.secret_id, &hit.preview] {
                    let bytes = &text.as_bytes()[..text.len().min(usize::from(u16::MAX))];
                    write(&u16::try_from(bytes.len()).unwrap_or(0).to_le_bytes())?;
                    write(bytes)?;
                }
                write(&[severity_code(hit.severity)])?;
                write(&hit.line.to_le_bytes())?;
                let shadows = &hit.shadowed_by[..hit.shadowed_by.len().min(usize::from(u16::MAX))];
                write(&u16::try_from(shadows.len()).unwrap_or(0).to_le_bytes())?;
                for id in shadows {
                    let bytes = &id.as_bytes()[..id.len().min(usize::from(u16::MAX))];
                    write(&u16::try_from(bytes.len()).unwrap_or(0).to_le_bytes())?;
                    write(bytes)?;
                }
            }
        }
        Ok(())
    })();
    let result = result.and_then(|()| {
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    let target = dir.join(name);
    std::fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))
}

type Records = Vec<Record>;

fn read_segment(path: &Path) -> std::io::Result<Records> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    parse_segment(&bytes).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "damaged result segment")
    })
}

fn parse_segment(bytes: &[u8]) -> Option<Records> {
    let mut input = bytes.strip_prefix(MAGIC)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = input.split_at_checked(n)?;
        input = tail;
        Some(head)
    };
    let mut records = Vec::new();
    while let Some(len) = take(1) {
        let oid: Box<[u8]> = take(usize::from(len[0]))?.into();
        let count = u16::from_le_bytes(take(2)?.try_into().ok()?);
        let mut hits = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let mut texts = Vec::with_capacity(4);
            for _ in 0..4 {
                let len = u16::from_le_bytes(take(2)?.try_into().ok()?);
                texts.push(String::from_utf8(take(usize::from(len))?.to_vec()).ok()?);
            }
            let severity = severity_of(take(1)?[0])?;
            let line = u32::from_le_bytes(take(4)?.try_into().ok()?);
            let shadows = u16::from_le_bytes(take(2)?.try_into().ok()?);
            let mut shadowed_by = Vec::with_capacity(usize::from(shadows));
            for _ in 0..shadows {
                let len = u16::from_le_bytes(take(2)?.try_into().ok()?);
                shadowed_by.push(String::from_utf8(take(usize::from(len))?.to_vec()).ok()?);
            }
            let preview = texts.pop()?;
            let secret_id = texts.pop()?;
            let fingerprint = texts.pop()?;
            let rule = texts.pop()?;
            hits.push(Hit {
                rule,
                severity,
                line,
                fingerprint,
                secret_id,
                preview,
                shadowed_by,
            });
        }
        records.push((oid, hits.into_boxed_slice()));
    }
    Some(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(line: u32) -> Hit {
        Hit {
            rule: "github-pat".into(),
            severity: Severity::High,
            line,
            fingerprint: "00ff".into(),
            secret_id: "11ee".into(),
            preview: "ghp_****** (40 chars)".into(),
            shadowed_by: Vec::new(),
        }
    }

    #[test]
    fn results_persist_and_reach_other_processes() {
        let dir = tempfile::tempdir().unwrap();
        let writer = ResultCache::new(dir.path(), "k1");
        writer.refresh().unwrap();
        writer.record(b"blob-a", &[hit(3), hit(9)]);
        writer.record(b"blob-b", &[]);
        assert_eq!(writer.persist().unwrap(), 2);
        let reader = ResultCache::new(dir.path(), "k1");
        reader.refresh().unwrap();
        assert_eq!(reader.get(b"blob-a"), Some(vec![hit(3), hit(9)]));
        assert_eq!(reader.get(b"blob-b"), Some(vec![]));
        assert_eq!(reader.get(b"blob-c"), None);
        let other_rules = ResultCache::new(dir.path(), "k2");
        other_rules.refresh().unwrap();
        assert_eq!(other_rules.get(b"blob-a"), None);
    }

    #[test]
    fn many_segments_merge_and_damaged_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path(), "k");
        for i in 0..(MERGE_ABOVE as u32 + 2) {
            cache.record(format!("blob-{i}").as_bytes(), &[hit(i)]);
            cache.persist().unwrap();
        }
        let segments = segment_names(&dir.path().join("k")).unwrap();
        assert!(segments.len() < MERGE_ABOVE, "{} segments", segments.len());
        std::fs::write(
            dir.path().join("k").join("zz-damaged.seg"),
            b"SSRC\x01\x05ab",
        )
        .unwrap();
        let fresh = ResultCache::new(dir.path(), "k");
        fresh.refresh().unwrap();
        for i in 0..(MERGE_ABOVE as u32 + 2) {
            assert_eq!(
                fresh.get(format!("blob-{i}").as_bytes()),
                Some(vec![hit(i)])
            );
        }
    }
}
