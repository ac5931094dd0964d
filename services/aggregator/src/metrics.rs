//! Every metric this crate records: its name (used by alerts and dashboards, so changed only
//! with them) and its HELP text, given to the recorder by [`describe`].

/// Time to load, fold and commit one batch of events.
pub const BATCH_DURATION: &str = "scanstream_aggregator_batch_duration_seconds";
/// Job states written to the changelog topic.
pub const CHANGELOG_RECORDS: &str = "scanstream_aggregator_changelog_records_total";
/// Time to commit one read-process-write transaction.
pub const COMMIT_DURATION: &str = "scanstream_aggregator_commit_duration_seconds";
/// Events already folded (same event id) and skipped.
pub const DUPLICATES_SKIPPED: &str = "scanstream_aggregator_duplicates_skipped_total";
/// Events folded into job state.
pub const EVENTS_FOLDED: &str = "scanstream_aggregator_events_folded_total";
/// Time the store took to restore from the changelog at start.
pub const RESTORE_DURATION: &str = "scanstream_aggregator_restore_duration_seconds";
/// Share of the changelog read while restoring (1 when restored).
pub const RESTORE_PROGRESS: &str = "scanstream_aggregator_restore_progress_ratio";
/// Changelog records read while restoring.
pub const RESTORE_RECORDS: &str = "scanstream_aggregator_restore_records";
/// Jobs in the local store.
pub const STORE_KEYS: &str = "scanstream_aggregator_store_keys";
/// Records on scans.events that could not be decoded and were skipped.
pub const UNDECODABLE: &str = "scanstream_aggregator_undecodable_total";
/// Processing sessions restarted from the committed offsets after a failure.
/// Sightings and triage decisions folded into the inventory.
pub const INVENTORY_INPUTS: &str = "scanstream_aggregator_inventory_inputs_total";
/// Triage decisions recorded through the API, by the status decided.
pub const TRIAGE_DECISIONS: &str = "scanstream_aggregator_triage_decisions_total";
/// Inventory items in the local store, by status.
pub const INVENTORY_ITEMS: &str = "scanstream_aggregator_inventory_items";
/// Dashboard logins, by outcome (`ok`, `refused`: unknown token, `expired`: a stale form).
pub const DASHBOARD_LOGINS: &str = "scanstream_dashboard_logins_total";
pub const RESTARTS: &str = "scanstream_aggregator_restarts_total";

/// Gives every metric above its HELP text (and unit); call once the recorder is installed.
pub fn describe() {
    metrics::describe_histogram!(
        BATCH_DURATION,
        metrics::Unit::Seconds,
        "Time to load, fold and commit one batch of events."
    );
    metrics::describe_counter!(
        DASHBOARD_LOGINS,
        "Dashboard logins by outcome: ok, refused (unknown or revoked token), expired (the form was stale or came from another site)."
    );
    metrics::describe_counter!(
        CHANGELOG_RECORDS,
        "Job states written to the changelog topic."
    );
    metrics::describe_histogram!(
        COMMIT_DURATION,
        metrics::Unit::Seconds,
        "Time to commit one read-process-write transaction."
    );
    metrics::describe_counter!(
        DUPLICATES_SKIPPED,
        "Events already folded (same event id) and skipped."
    );
    metrics::describe_counter!(EVENTS_FOLDED, "Events folded into job state.");
    metrics::describe_gauge!(
        RESTORE_DURATION,
        metrics::Unit::Seconds,
        "Time the store took to restore from the changelog at start."
    );
    metrics::describe_gauge!(
        RESTORE_PROGRESS,
        "Share of the changelog read while restoring (1 when restored)."
    );
    metrics::describe_gauge!(RESTORE_RECORDS, "Changelog records read while restoring.");
    metrics::describe_gauge!(STORE_KEYS, "Jobs in the local store.");
    metrics::describe_counter!(
        INVENTORY_INPUTS,
        "Sightings and triage decisions folded into the inventory."
    );
    metrics::describe_counter!(
        TRIAGE_DECISIONS,
        "Triage decisions recorded through the API, by the status decided (to)."
    );
    metrics::describe_gauge!(
        INVENTORY_ITEMS,
        "Inventory items in the local store, by status (open, resolved, ignored), counted from the in-memory index when /metrics is read."
    );
    metrics::describe_counter!(
        UNDECODABLE,
        "Records on scans.events that could not be decoded and were skipped."
    );
    metrics::describe_counter!(
        RESTARTS,
        "Processing sessions restarted from the committed offsets after a failure."
    );
    // Series alerts and dashboards rely on exist from the start, at zero.
    metrics::counter!(UNDECODABLE).increment(0);
    metrics::counter!(RESTARTS).increment(0);
    metrics::gauge!(RESTORE_PROGRESS).set(0.0);
}
