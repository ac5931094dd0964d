//! Runs an engine over a source's items on every core: each item is read once (or answered from
//! the result cache), scanned, and its hits placed at every path it occupies.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::Error;
use crate::engine::{Engine, Hit};
use crate::results::ResultCache;
use crate::source::{Item, Place, Reader, Source, blob_id};

/// Counters a progress display reads while a scan runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
}

/// Limits that keep one item from dominating a scan.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Larger items are skipped (counted in `skipped`).
    pub max_blob_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_blob_bytes: 10 << 20,
        }
    }
}

/// A hit placed at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub hit: Hit,
    pub place: Place,
}

/// One engine's results over a source.
#[derive(Debug, Clone, Default)]
pub struct EngineRun {
    pub engine: String,
    /// Items whose results the scan used, read now or taken from the result cache.
    pub files: u64,
    pub bytes: u64,
    /// Items answered from the result cache.
    pub cached: u64,
    /// Items not scanned: too large or binary.
    pub skipped: u64,
    pub duration_ms: u64,
    /// Sorted by path, line and rule.
    pub found: Vec<Found>,
}

/// Blob ids of items that have none (files of a folder), computed from their content.
struct WholeFiles<R> {
    reader: Option<R>,
    buf: Vec<u8>,
}

impl<R: Reader> WholeFiles<R> {
    fn blob_id<S: Source<Reader = R>>(
        &mut self,
        source: &S,
        item: &Item,
    ) -> Result<Vec<u8>, Error> {
        if let Some(oid) = &item.oid {
            return Ok(oid.to_vec());
        }
        let reader = match &mut self.reader {
            Some(reader) => reader,
            None => self.reader.insert(source.reader()?),
        };
        reader.read(item, &mut self.buf)?;
        blob_id(&self.buf)
    }
}

/// Bytes looked at for a NUL to call content binary, as git does.
const BINARY_PROBE: usize = 8000;

enum Outcome {
    Scanned(u64, Vec<Hit>),
    Cached(u64, Vec<Hit>),
    Skipped,
}

/// Runs `engine` over every item of `source`. Stops early with [`Error::Cancelled`] once
/// `cancel` is set.
pub fn run<S: Source>(
    engine: &dyn Engine,
    source: &S,
    cache: Option<&ResultCache>,
    limits: Limits,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<EngineRun, Error> {
    let started = Instant::now();
    let outcomes: Vec<Result<Outcome, Error>> = source
        .items()
        .par_iter()
        .map_init(
            || (source.reader(), Vec::new()),
            |(reader, buf), item| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Cancelled);
                }
                if !item.places.iter().any(|p| engine.wants_path(&p.path)) {
                    return Ok(Outcome::Skipped);
                }
                if let (Some(cache), Some(oid)) = (cache, &item.oid)
                    && let Some(hits) = cache.get(oid)
                {
                    progress.files.fetch_add(1, Ordering::Relaxed);
                    return Ok(Outcome::Cached(item.size, hits));
                }
                if item.size > limits.max_blob_bytes {
                    return Ok(Outcome::Skipped);
                }
                let reader = reader.as_mut().map_err(|e| Error::Source(e.to_string()))?;
                reader.read(item, buf)?;
                let size = buf.len() as u64;
                progress.files.fetch_add(1, Ordering::Relaxed);
                progress.bytes.fetch_add(size, Ordering::Relaxed);
                let binary = memchr::memchr(0, &buf[..buf.len().min(BINARY_PROBE)]).is_some();
                let hits = if binary { Vec::new() } else { engine.scan(buf) };
                if let (Some(cache), Some(oid)) = (cache, &item.oid) {
                    cache.record(oid, &hits);
                }
                if binary {
                    return Ok(Outcome::Skipped);
                }
                Ok(Outcome::Scanned(size, hits))
            },
        )
        .collect();
    let mut run = EngineRun {
        engine: engine.id().to_owned(),
        ..EngineRun::default()
    };
    // Files reported whole (key stores) are rare: identified here, one by one.
    let mut whole_files = WholeFiles {
        reader: None,
        buf: Vec::new(),
    };
    for item in source.items() {
        for place in item.places.iter().filter(|p| engine.reports_file(&p.path)) {
            let id = whole_files.blob_id(source, item)?;
            for hit in engine.file_hits(&place.path, &id, item.size) {
                run.found.push(Found {
                    hit,
                    place: place.clone(),
                });
            }
        }
    }
    for (item, outcome) in source.items().iter().zip(outcomes) {
        let hits = match outcome? {
            Outcome::Skipped => {
                run.skipped += 1;
                continue;
            }
            Outcome::Cached(size, hits) => {
                run.cached += 1;
                run.bytes += size;
                hits
            }
            Outcome::Scanned(size, hits) => {
                run.bytes += size;
                hits
            }
        };
        run.files += 1;
        for hit in hits {
            for place in &item.places {
                if engine.accepts(&hit, &place.path) {
                    run.found.push(Found {
                        hit: hit.clone(),
                        place: place.clone(),
                    });
                }
            }
        }
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }
    run.found.sort_by(|a, b| {
        (&a.place.path, a.hit.line, &a.hit.rule).cmp(&(&b.place.path, b.hit.line, &b.hit.rule))
    });
    run.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(run)
}
