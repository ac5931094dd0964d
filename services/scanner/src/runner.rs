//! Runs an engine over a source's items on every core: each item is read once (or answered from
//! the result cache), scanned, and its hits placed at every path it occupies.
//!
//! Items up to [`Limits::window_bytes`] are read whole. Larger ones, up to
//! [`Limits::max_blob_bytes`], are read and scanned in overlapping windows: one window in memory
//! at a time per worker (folder files stream from the disk; git blobs come whole from the object
//! database, see `git.rs`), each match reported by the one window that owns its start (see
//! [`Window`]). What is still not scanned (larger than the bound, or binary) is counted by reason
//! and listed with its paths in [`EngineRun`].
//!
//! An engine that fails on one item (a panic: a bug) fails that item alone: it is listed as not
//! scanned ([`SkipReason::Failed`]) and the worker goes on with fresh state (see [`isolated`]).

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use scanstream_contracts::event::EngineOutcome;
use scanstream_contracts::finding::Severity;

use crate::Error;
use crate::engine::{Engine, Hit, Window, WindowScan};
use crate::results::ResultCache;
use crate::source::{Item, Place, Reader, Source};

/// Counters a progress display reads while a scan runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
}

/// Default of [`Limits::max_blob_bytes`] (`scanner.max_blob_bytes`): 1 GiB.
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 1 << 30;
/// Default of [`Limits::window_bytes`] (`scanner.window_bytes`): 8 MiB.
pub const DEFAULT_WINDOW_BYTES: u64 = 8 << 20;
/// Default of [`Limits::overlap_bytes`]: 64 KiB.
pub const DEFAULT_OVERLAP_BYTES: u64 = 64 << 10;

/// At most this many paths of items not scanned are listed in an [`EngineRun`]; the rest are
/// counted in [`EngineRun::skipped_unlisted`].
pub const MAX_SKIPPED_LISTED: usize = 1000;

/// The smallest overlap used, whatever [`Limits::overlap_bytes`] says.
const MIN_OVERLAP: usize = 64;

/// Limits that keep one item from dominating a scan, and how large items are read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Larger items are not scanned: they are counted and listed as skipped
    /// ([`SkipReason::TooLarge`]).
    pub max_blob_bytes: u64,
    /// Larger items are read and scanned in windows of this many bytes; smaller ones whole.
    pub window_bytes: u64,
    /// Bytes consecutive windows share (at most half a window). A match of up to
    /// `overlap_bytes - overlap_bytes / 16` bytes is found whichever window boundary it
    /// straddles; the remaining sixteenth is context before a window's first owned byte (for
    /// `\b`, `^` and the line of an inline `scanstream:allow`).
    pub overlap_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
            window_bytes: DEFAULT_WINDOW_BYTES,
            overlap_bytes: DEFAULT_OVERLAP_BYTES,
        }
    }
}

/// Window sizes as used, in bytes: `window >= 2 * overlap`, `0 < context < overlap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    window: usize,
    overlap: usize,
    context: usize,
}

impl Limits {
    fn geometry(&self) -> Geometry {
        let window = usize::try_from(self.window_bytes)
            .unwrap_or(usize::MAX)
            .max(2 * MIN_OVERLAP);
        let overlap = usize::try_from(self.overlap_bytes)
            .unwrap_or(usize::MAX)
            .clamp(MIN_OVERLAP, window / 2);
        Geometry {
            window,
            overlap,
            context: (overlap / 16).max(1),
        }
    }
}

/// A hit placed at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub hit: Hit,
    pub place: Place,
    /// How many versions (blobs) of the file carried this secret: above 1 in history scans,
    /// where one finding stands for every version, at the commit that introduced it.
    pub versions: u32,
}

/// A secret found at one place, over every engine of a scan: the first engine's finding (in
/// the order the engines ran), every engine that found the same secret there, and the most
/// urgent severity any of them gave. One per finding written to `scans.findings`, and per
/// finding `scanstream scan` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged<'a> {
    pub found: &'a Found,
    /// The engines that found it, the first one's first.
    pub engines: Vec<&'a str>,
    pub severity: Severity,
}

/// The findings of `runs` merged across engines: another engine's finding of the same secret
/// (its `secret_id`) at the same path, line and commit (its own, else `commit`, the scan's)
/// joins the first one's. Findings of one engine are never merged with each other. In run
/// order.
pub fn merge<'a>(runs: &'a [EngineRun], commit: Option<&str>) -> Vec<Merged<'a>> {
    let mut merged: Vec<Merged<'a>> = Vec::new();
    let mut placed: std::collections::HashMap<(&str, u32, Option<&str>, &str), usize> =
        std::collections::HashMap::new();
    for run in runs {
        for found in &run.found {
            let key = (
                found.place.path.as_str(),
                found.hit.line,
                found.place.commit.as_deref().or(commit),
                found.hit.secret_id.as_str(),
            );
            if !found.hit.secret_id.is_empty()
                && let Some(&at) = placed.get(&key)
                && !merged[at].engines.contains(&run.engine.as_str())
            {
                let first = &mut merged[at];
                first.engines.push(&run.engine);
                // The most urgent judgement stands (Severity orders most urgent first).
                first.severity = first.severity.min(found.hit.severity);
                continue;
            }
            placed.entry(key).or_insert(merged.len());
            merged.push(Merged {
                found,
                engines: vec![&run.engine],
                severity: found.hit.severity,
            });
        }
    }
    merged
}

/// Why an item was not scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// Larger than [`Limits::max_blob_bytes`].
    TooLarge,
    /// Binary: a NUL byte in its first 8000 bytes (as git decides).
    Binary,
    /// A file of a folder that could not be opened or read: gone since the folder was listed,
    /// no permission, or a path that names that are not UTF-8 read as alike
    /// (`InvalidFilename`).
    Unreadable(std::io::ErrorKind),
    /// The engine failed on it (it panicked: a bug, logged with the path and where in the code).
    Failed,
}

impl SkipReason {
    /// A stable label for reports (`too_large`, `binary`, `unreadable`, `failed`).
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::TooLarge => "too_large",
            SkipReason::Binary => "binary",
            SkipReason::Unreadable(_) => "unreadable",
            SkipReason::Failed => "failed",
        }
    }
}

/// A path whose content was not scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub place: Place,
    /// The content's size in bytes.
    pub size: u64,
    pub reason: SkipReason,
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
    /// Items not read because every path they are at is allowlisted for the engine (lock
    /// files, `node_modules/`, binary file types): deliberate, not reported as skipped.
    pub allowlisted: u64,
    /// Items not scanned because they are larger than [`Limits::max_blob_bytes`].
    pub skipped_large: u64,
    /// Items not scanned because they are binary.
    pub skipped_binary: u64,
    /// Files of a folder not scanned because they could not be read.
    pub skipped_unreadable: u64,
    /// Items not scanned because the engine failed on them ([`SkipReason::Failed`]).
    pub skipped_failed: u64,
    /// The paths of the items not scanned, sorted by path; at most [`MAX_SKIPPED_LISTED`]. An
    /// item at several paths is listed at each; paths whose files are reported whole (key
    /// stores) are not listed, nor counted when that is every path of the item.
    pub skipped: Vec<Skipped>,
    /// Paths of items not scanned beyond the [`MAX_SKIPPED_LISTED`] listed.
    pub skipped_unlisted: u64,
    /// The size bound the run used ([`Limits::max_blob_bytes`]), for reports.
    pub max_blob_bytes: u64,
    pub duration_ms: u64,
    /// Sorted by path, line and rule.
    pub found: Vec<Found>,
    /// The engine's version ([`Engine::version`], a command engine's version command).
    pub version: Option<String>,
    /// Whether the engine gave a result; only command engines fail alone.
    pub outcome: EngineOutcome,
    /// Why it gave none; never engine output.
    pub error: Option<String>,
    /// A command engine's results were taken from the result cache (all of them: a command
    /// engine's results are cached per tree).
    pub from_cache: bool,
    /// Time writing the worktree a command engine read (shared by the scan's command engines;
    /// 0 when none was written).
    pub worktree_ms: u64,
}

impl EngineRun {
    /// Items not scanned, whatever the reason.
    pub fn not_scanned(&self) -> u64 {
        self.skipped_large + self.skipped_binary + self.skipped_unreadable + self.skipped_failed
    }
}

/// Blob ids of items that have none (files of a folder), computed from their content.
struct WholeFiles<R> {
    reader: Option<R>,
}

impl<R: Reader> WholeFiles<R> {
    fn blob_id<S: Source<Reader = R>>(
        &mut self,
        source: &S,
        item: &Item,
    ) -> Result<(Vec<u8>, u64), Error> {
        // Asked here too: an item with an id needs no reader made.
        if let Some(listed) = item.listed_blob_id() {
            return Ok(listed);
        }
        let reader = match &mut self.reader {
            Some(reader) => reader,
            None => self.reader.insert(source.reader()?),
        };
        reader.blob_id(item)
    }
}

/// Bytes looked at for a NUL to call content binary, as git does.
const BINARY_PROBE: usize = 8000;

/// What the result cache holds for a binary blob: one hit no engine reports (an empty rule id),
/// so a rescan answered from the cache still reports the blob as not scanned.
const BINARY_RECORD: &str = "binary";

fn binary_record() -> Hit {
    Hit {
        rule: String::new(),
        severity: Severity::Info,
        line: 0,
        fingerprint: BINARY_RECORD.to_owned(),
        secret_id: String::new(),
        preview: String::new(),
        shadowed_by: Vec::new(),
    }
}

fn is_binary_record(hits: &[Hit]) -> bool {
    matches!(hits, [hit] if hit.rule.is_empty() && hit.fingerprint == BINARY_RECORD)
}

fn is_binary(content: &[u8]) -> bool {
    memchr::memchr(0, &content[..content.len().min(BINARY_PROBE)]).is_some()
}

enum Outcome {
    Scanned(u64, Vec<Hit>),
    Cached(u64, Vec<Hit>),
    /// Every path of the item is allowlisted for the engine.
    Allowlisted,
    /// Not scanned, and the item's size in bytes.
    Skipped(SkipReason, u64),
}

/// An item's outcome, and which of its places the engine reports whole (by index). There is one
/// per item of a scan (hundreds of thousands in a history), so it is kept small: the rare error
/// boxed, the places (usually none) a boxed slice.
type ItemOutcome = (Result<Outcome, Box<Error>>, Box<[usize]>);
// 120 bytes before the error was boxed.
const _: () = assert!(std::mem::size_of::<ItemOutcome>() <= 56);

thread_local! {
    /// Set while this thread scans an item inside [`isolated`].
    static ISOLATED: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic inside [`isolated`] on this thread was raised (`file:line:column`).
    static PANICKED_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once per process, a panic hook that keeps a panic inside [`isolated`] out of
/// standard error: its message may quote the content being scanned (a string slice's panic
/// shows the string), so only where it was raised is kept, for the log line [`isolated`]
/// writes. Any other panic goes to the hook that was there before.
fn quiet_isolated_panics() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if ISOLATED.with(Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                PANICKED_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `scan`, one item's scan, so that a panic in it fails that item alone: the panic is
/// caught, and its location (never its message) comes back as the error.
fn isolated<T>(scan: impl FnOnce() -> T) -> Result<T, String> {
    quiet_isolated_panics();
    let was = ISOLATED.with(|i| i.replace(true));
    let result = catch_unwind(AssertUnwindSafe(scan));
    ISOLATED.with(|i| i.set(was));
    result.map_err(|_| {
        PANICKED_AT
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "an unknown place".to_owned())
    })
}

/// Reads from `stream` until `buf` holds `len` bytes or the stream ends.
fn fill(stream: &mut dyn Read, buf: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    let mut filled = buf.len();
    buf.resize(len.max(filled), 0);
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(filled);
                return Err(e);
            }
        }
    }
    buf.truncate(filled);
    Ok(())
}

/// Scans an item larger than one window, window after window, holding one window of it.
///
/// Window `k` starts at `k * stride` (`stride = window - overlap`) and holds `window` bytes
/// (the last one fewer). It owns the matches starting in `k * stride + context ..
/// (k + 1) * stride + context` (the first from 0, the last to the end): those ranges tile the
/// item, so each match has one owner, and a match owned by window `k` that is at most
/// `overlap - context` long ends before `k * stride + window`, inside the window.
///
/// Returns the bytes read and whether the item is binary (seen in the first window, before any
/// is scanned). The hits stay in `scan`: the caller finishes it, however this ended.
fn scan_windows(
    scan: &mut dyn WindowScan,
    stream: &mut dyn Read,
    geometry: Geometry,
    path: &str,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<(u64, bool), Error> {
    // A stream that fails partway (a file turned into a folder, a disk error) leaves the item
    // unread: its windows so far are dropped and it is listed as not scanned.
    let io = |source: std::io::Error| Error::Unreadable {
        path: PathBuf::from(path),
        source,
    };
    let stride = geometry.window - geometry.overlap;
    let context = geometry.context as u64;
    let mut buf: Vec<u8> = Vec::with_capacity(geometry.window);
    let (mut offset, mut line, mut read) = (0u64, 1u64, 0u64);
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let before = buf.len();
        fill(stream, &mut buf, geometry.window).map_err(io)?;
        let fresh = (buf.len() - before) as u64;
        read += fresh;
        progress.bytes.fetch_add(fresh, Ordering::Relaxed);
        if offset == 0 && is_binary(&buf) {
            return Ok((read, true));
        }
        let last = buf.len() < geometry.window;
        let window = Window {
            offset,
            line,
            owned_start: if offset == 0 { 0 } else { offset + context },
            owned_end: if last {
                u64::MAX
            } else {
                offset + stride as u64 + context
            },
            last,
        };
        scan.window(&buf, &window);
        if last {
            break;
        }
        line += memchr::memchr_iter(b'\n', &buf[..stride]).count() as u64;
        offset += stride as u64;
        buf.drain(..stride);
    }
    Ok((read, false))
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
    let geometry = limits.geometry();
    let scan_item = |reader: &mut Result<S::Reader, Error>,
                     buf: &mut Vec<u8>,
                     scan: &mut dyn WindowScan,
                     item: &Item|
     -> Result<Outcome, Error> {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        if !item.places.iter().any(|p| engine.wants_path(&p.path)) {
            return Ok(Outcome::Allowlisted);
        }
        if let (Some(cache), Some(oid)) = (cache, &item.oid)
            && let Some(hits) = cache.get(oid)
        {
            if is_binary_record(&hits) {
                return Ok(Outcome::Skipped(SkipReason::Binary, item.size));
            }
            progress.files.fetch_add(1, Ordering::Relaxed);
            return Ok(Outcome::Cached(item.size, hits));
        }
        let reader = reader.as_mut().map_err(|e| Error::Source(e.to_string()))?;
        // A file that cannot be read is listed as not scanned; the others are scanned.
        let unreadable = |error: Error, size: u64| match error {
            Error::Unreadable { path, source } => {
                tracing::warn!(path = %path.display(), error = %source, "file not scanned: it could not be read");
                Ok(Outcome::Skipped(
                    SkipReason::Unreadable(source.kind()),
                    size,
                ))
            }
            other => Err(other),
        };
        // A folder's file says its size when opened; what is read for it then is not read again.
        let size = match reader.size(item, geometry.window as u64) {
            Ok(size) => size,
            Err(error) => return unreadable(error, item.size),
        };
        if size > limits.max_blob_bytes {
            return Ok(Outcome::Skipped(SkipReason::TooLarge, size));
        }
        progress.files.fetch_add(1, Ordering::Relaxed);
        let (size, hits) = if size <= geometry.window as u64 {
            if let Err(error) = reader.read(item, buf) {
                return unreadable(error, size);
            }
            let size = buf.len() as u64;
            progress.bytes.fetch_add(size, Ordering::Relaxed);
            let hits = if is_binary(buf) {
                None
            } else {
                scan.window(buf, &Window::whole());
                Some(scan.finish())
            };
            (size, hits)
        } else {
            let path = item.first_path().unwrap_or("");
            let mut stream = match reader.open(item) {
                Ok(stream) => stream,
                Err(error) => return unreadable(error, size),
            };
            let windowed = scan_windows(scan, stream.as_mut(), geometry, path, progress, cancel);
            // Finished however the windows ended, so the scan starts the next item afresh.
            let hits = scan.finish();
            let (read, binary) = match windowed {
                Err(error @ Error::Unreadable { .. }) => return unreadable(error, size),
                windowed => windowed?,
            };
            (if binary { size } else { read }, (!binary).then_some(hits))
        };
        if let (Some(cache), Some(oid)) = (cache, &item.oid) {
            match &hits {
                Some(hits) => cache.record(oid, hits),
                None => cache.record(oid, &[binary_record()]),
            }
        }
        Ok(match hits {
            Some(hits) => Outcome::Scanned(size, hits),
            None => Outcome::Skipped(SkipReason::Binary, size),
        })
    };
    let outcomes: Vec<ItemOutcome> = source
        .items()
        .par_iter()
        .map_init(
            || (source.reader(), Vec::new(), engine.windows()),
            |(reader, buf, scan), item| {
                let outcome = isolated(|| scan_item(reader, buf, scan.as_mut(), item))
                    .unwrap_or_else(|at| {
                        tracing::error!(
                            engine = engine.id(),
                            path = item.first_path().unwrap_or(""),
                            panicked_at = %at,
                            "the engine failed on this file (a bug): it is listed as not scanned, and the others are scanned"
                        );
                        // Whatever the failed scan left half done is not used again.
                        *scan = engine.windows();
                        *reader = source.reader();
                        buf.clear();
                        Ok(Outcome::Skipped(SkipReason::Failed, item.size))
                    });
                // A file that could not be read is not reported whole either (its blob id
                // is its content's): it is listed as not scanned.
                let whole = if matches!(outcome, Ok(Outcome::Skipped(SkipReason::Unreadable(_), _)))
                {
                    Box::default()
                } else {
                    item.places
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| engine.reports_file(&p.path))
                        .map(|(index, _)| index)
                        .collect()
                };
                (outcome.map_err(Box::new), whole)
            },
        )
        .collect();
    let mut run = EngineRun {
        engine: engine.id().to_owned(),
        version: engine.version(),
        max_blob_bytes: limits.max_blob_bytes,
        ..EngineRun::default()
    };
    // Files reported whole (key stores) are rare: their ids are read here, one by one.
    let mut whole_files = WholeFiles { reader: None };
    for (item, (_, whole)) in source.items().iter().zip(&outcomes) {
        for place in whole.iter().map(|&index| &item.places[index]) {
            let (id, size) = whole_files.blob_id(source, item)?;
            for hit in engine.file_hits(&place.path, &id, size) {
                run.found.push(Found {
                    hit,
                    place: place.clone(),
                    versions: 1,
                });
            }
        }
    }
    let mut skipped = Vec::new();
    for (item, (outcome, whole)) in source.items().iter().zip(outcomes) {
        let hits = match outcome.map_err(|error| *error)? {
            Outcome::Allowlisted => {
                run.allowlisted += 1;
                continue;
            }
            Outcome::Skipped(reason, size) => {
                // Paths whose file is reported whole were handled; allowlisted ones do not count.
                let places: Vec<&Place> = item
                    .places
                    .iter()
                    .enumerate()
                    .filter(|(index, p)| !whole.contains(index) && engine.wants_path(&p.path))
                    .map(|(_, place)| place)
                    .collect();
                if places.is_empty() {
                    continue;
                }
                match reason {
                    SkipReason::TooLarge => run.skipped_large += 1,
                    SkipReason::Binary => run.skipped_binary += 1,
                    SkipReason::Unreadable(_) => run.skipped_unreadable += 1,
                    SkipReason::Failed => run.skipped_failed += 1,
                }
                skipped.extend(places.into_iter().map(|place| Skipped {
                    place: place.clone(),
                    size,
                    reason,
                }));
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
                        versions: 1,
                    });
                }
            }
        }
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }
    skipped.sort_by(|a, b| (&a.place.path, &a.place.commit).cmp(&(&b.place.path, &b.place.commit)));
    if skipped.len() > MAX_SKIPPED_LISTED {
        run.skipped_unlisted = (skipped.len() - MAX_SKIPPED_LISTED) as u64;
        skipped.truncate(MAX_SKIPPED_LISTED);
    }
    run.skipped = skipped;
    run.found.sort_by(|a, b| {
        (&a.place.path, a.hit.line, &a.hit.rule).cmp(&(&b.place.path, b.hit.line, &b.hit.rule))
    });
    run.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_isolated_panic_comes_back_as_where_it_was_raised_never_its_message() {
        assert_eq!(isolated(|| 7), Ok(7));
        let line = line!() + 1;
        let failed = isolated(|| -> u8 { panic!("quoting the content: hunter2") });
        let at = failed.unwrap_err();
        assert!(at.starts_with(&format!("{}:{line}:", file!())), "{at}");
        assert!(!at.contains("hunter2"), "{at}");
        // Outside an isolated scan, panics reach the hook that was there before (the test
        // harness's), and this thread is no longer marked.
        assert!(!ISOLATED.with(Cell::get));
        assert_eq!(isolated(|| "again"), Ok("again"));
    }
}
