//! What every scan engine is to the rest of the scanner.
//!
//! An engine looks at one blob's content at a time and reports path-independent [`Hit`]s, so
//! the result of `scan` depends only on the content and on [`Engine::cache_key`]: that is what
//! lets the result cache key results by blob id and share them between scanners. Path-dependent
//! decisions (allowlisted paths) happen afterwards in [`Engine::accepts`].
//!
//! Blobs larger than the runner's window are never held whole (folder files are streamed from
//! the disk): the runner hands them to [`Engine::windows`] one [`Window`] after another, windows
//! overlapping, and every window says which match starts it owns, so a secret is reported by
//! exactly one window whatever boundary it straddles.

use scanstream_contracts::finding::Severity;

/// One thing an engine found in a blob. It never holds the secret: only a keyed fingerprint and
/// a redacted preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub rule: String,
    pub severity: Severity,
    /// 1-based line of the start of the secret.
    pub line: u32,
    /// Keyed hash of the rule and the secret: equal secrets have equal fingerprints, and the
    /// fingerprint does not reveal the secret.
    pub fingerprint: String,
    /// Keyed hash of the secret alone (no rule): equal wherever the same secret is found, by
    /// any rule of any engine, so findings of several engines merge. Stays in the scanner.
    pub secret_id: String,
    pub preview: String,
    /// Rules that only apply at some paths and whose overlapping match wins over this one where
    /// they apply: at such a path this hit stands back; at any other it stands.
    pub shadowed_by: Vec<String>,
}

/// Where one window of a blob lies in the blob, for a scan read in windows.
///
/// Consecutive windows overlap. A window owns the matches that *start* in
/// `owned_start..owned_end` (absolute offsets); it reports those only, and leaves matches that
/// start later to the next window, which holds them whole as long as they are no longer than
/// the overlap minus the context before `owned_start`. The owned ranges of a blob's windows
/// tile it, so every match has exactly one owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Offset in the blob of the window's first byte.
    pub offset: u64,
    /// 1-based line of the window's first byte.
    pub line: u64,
    /// First offset whose matches this window owns; the bytes before it (from `offset`) are
    /// context only (look-around assertions, the start of a line).
    pub owned_start: u64,
    /// Matches that start here or later belong to the next window (`u64::MAX` for the last).
    pub owned_end: u64,
    /// No window follows: the window ends where the blob ends.
    pub last: bool,
}

impl Window {
    /// A whole blob as one window.
    pub fn whole() -> Self {
        Self {
            offset: 0,
            line: 1,
            owned_start: 0,
            owned_end: u64::MAX,
            last: true,
        }
    }
}

/// Blobs scanned one after another, each window by window (see [`Engine::windows`]).
pub trait WindowScan {
    /// Scans the current blob's next window; `content` is the blob's bytes from
    /// `window.offset`. Windows come in order, each overlapping the one before.
    fn window(&mut self, content: &[u8], window: &Window);

    /// The hits of the current blob, each reported once, as [`Engine::scan`] would have
    /// reported them for the whole content. The next window starts the next blob.
    fn finish(&mut self) -> Vec<Hit>;
}

/// A rule an engine can report, for reports that describe their rules (SARIF).
#[derive(Debug, Clone)]
pub struct RuleInfo {
    pub id: String,
    pub description: String,
    pub severity: Severity,
}

pub trait Engine: Send + Sync {
    /// The id requests name (`secrets`).
    fn id(&self) -> &str;

    /// Identifies everything besides the content that decides what `scan` returns (rules, keys,
    /// matching version). Cached results under another key never apply.
    fn cache_key(&self) -> &str;

    /// Scans one blob's content.
    fn scan(&self, content: &[u8]) -> Vec<Hit>;

    /// A scan of blobs one after another, each whole (one window) or read in windows when too
    /// large to hold whole. A thread keeps one for every blob it scans: it holds the per-rule
    /// state and scratch that a scan of each blob would otherwise allocate again.
    fn windows(&self) -> Box<dyn WindowScan + '_>;

    /// Whether `hit` stands for a blob found at `path`.
    fn accepts(&self, hit: &Hit, path: &str) -> bool;

    /// Whether anything in a blob at `path` could stand; lets the runner skip reading it.
    fn wants_path(&self, path: &str) -> bool;

    /// Whether a file at `path` is reported whole, whatever its content (key stores); the
    /// runner then asks [`Engine::file_hits`] with the file's blob id.
    fn reports_file(&self, path: &str) -> bool;

    /// The hits of a file at `path` reported whole; `blob_id` identifies its content (its git
    /// blob id), so the fingerprint is the same wherever the file is found.
    fn file_hits(&self, path: &str, blob_id: &[u8], size: u64) -> Vec<Hit>;

    /// Every rule the engine may report.
    fn rules(&self) -> Vec<RuleInfo>;

    /// The engine's version for reports (`EngineCompleted.version`).
    fn version(&self) -> Option<String> {
        None
    }
}
