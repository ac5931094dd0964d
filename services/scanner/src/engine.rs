//! What every scan engine is to the rest of the scanner.
//!
//! An engine looks at one blob's content at a time and reports path-independent [`Hit`]s, so
//! the result of `scan` depends only on the content and on [`Engine::cache_key`]: that is what
//! lets the result cache key results by blob id and share them between scanners. Path-dependent
//! decisions (allowlisted paths) happen afterwards in [`Engine::accepts`].

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
    pub preview: String,
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
}
