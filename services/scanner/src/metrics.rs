//! Every metric this crate records: its name (used by alerts and dashboards, so changed only
//! with them) and its HELP text, given to the recorder by [`describe`].

/// Scan attempts ended, by outcome.
pub const ATTEMPTS: &str = "scanstream_scanner_attempts_total";
/// Bytes of content scanned by the engines.
pub const BYTES_SCANNED: &str = "scanstream_scanner_scanned_bytes_total";
/// Commands sent to the dead-letter topic, by kind.
pub const DEAD_LETTERS: &str = "scanstream_scanner_dead_letters_total";
/// The `kind` label values of [`DEAD_LETTERS`].
pub const DEAD_LETTER_KINDS: [&str; 3] = ["empty", "undecodable", "invalid_command"];
/// Files (blobs) scanned by the engines.
pub const FILES_SCANNED: &str = "scanstream_scanner_files_scanned_total";
/// Findings written to scans.findings.
pub const FINDINGS: &str = "scanstream_scanner_findings_total";
/// Files (blobs) an engine failed on (an internal error) and did not scan, by engine.
pub const FILES_FAILED: &str = "scanstream_scanner_files_failed_total";
/// Bytes of repository mirrors kept in the shared cache.
pub const MIRROR_CACHE_BYTES: &str = "scanstream_scanner_mirror_cache_bytes";
/// Mirrors removed from the shared cache (idle or over budget).
pub const MIRRORS_EVICTED: &str = "scanstream_scanner_mirrors_evicted_total";
/// Scan commands received and waiting for a free slot.
pub const QUEUED_COMMANDS: &str = "scanstream_scanner_queued_commands";
/// Scans running now.
pub const RUNNING_SCANS: &str = "scanstream_scanner_running_scans";
/// Time of a successful scan, from start to terminal event.
pub const SCAN_DURATION: &str = "scanstream_scanner_scan_duration_seconds";
/// Command engine runs, by engine and outcome (completed, failed, timed_out, cached).
pub const ENGINE_RUNS: &str = "scanstream_scanner_engine_runs_total";
/// Time of one command engine run (process or Job), by engine.
pub const ENGINE_DURATION: &str = "scanstream_scanner_engine_duration_seconds";
/// Time writing one worktree for command engines.
pub const WORKTREE_DURATION: &str = "scanstream_scanner_worktree_duration_seconds";
/// Consumer sessions restarted from the committed offsets after a failure.
pub const RESTARTS: &str = "scanstream_scanner_restarts_total";

/// Gives every metric above its HELP text (and unit); call once the recorder is installed.
pub fn describe() {
    metrics::describe_counter!(ATTEMPTS, "Scan attempts ended, by outcome.");
    metrics::describe_counter!(
        BYTES_SCANNED,
        metrics::Unit::Bytes,
        "Bytes of content scanned by the engines."
    );
    metrics::describe_counter!(
        DEAD_LETTERS,
        "Commands sent to the dead-letter topic, by kind."
    );
    metrics::describe_counter!(FILES_SCANNED, "Files (blobs) scanned by the engines.");
    metrics::describe_counter!(FINDINGS, "Findings written to scans.findings.");
    metrics::describe_counter!(
        FILES_FAILED,
        "Files (blobs) an engine failed on (an internal error) and did not scan, by engine."
    );
    metrics::describe_gauge!(
        MIRROR_CACHE_BYTES,
        metrics::Unit::Bytes,
        "Bytes of repository mirrors kept in the shared cache."
    );
    metrics::describe_counter!(
        MIRRORS_EVICTED,
        "Mirrors removed from the shared cache (idle or over budget)."
    );
    metrics::describe_gauge!(
        QUEUED_COMMANDS,
        "Scan commands received and waiting for a free slot."
    );
    metrics::describe_gauge!(RUNNING_SCANS, "Scans running now.");
    metrics::describe_histogram!(
        SCAN_DURATION,
        metrics::Unit::Seconds,
        "Time of a successful scan, from start to terminal event."
    );
    metrics::describe_counter!(
        ENGINE_RUNS,
        "Command engine runs, by engine and outcome (completed, failed, timed_out, cached)."
    );
    metrics::describe_histogram!(
        ENGINE_DURATION,
        metrics::Unit::Seconds,
        "Time of one command engine run (process or Job), by engine."
    );
    metrics::describe_histogram!(
        WORKTREE_DURATION,
        metrics::Unit::Seconds,
        "Time writing one worktree for command engines."
    );
    metrics::describe_counter!(
        RESTARTS,
        "Consumer sessions restarted from the committed offsets after a failure."
    );
    // Series alerts and dashboards rely on exist from the start, at zero: an `increase()` over
    // a series that appears with its first event would miss that event.
    for kind in DEAD_LETTER_KINDS {
        metrics::counter!(DEAD_LETTERS, "kind" => kind).increment(0);
    }
    metrics::counter!(RESTARTS).increment(0);
}
