//! What the notifier records.

/// Notifications by destination and outcome (`delivered`, `dead_lettered`).
pub const NOTIFICATIONS: &str = "scanstream_notifier_notifications_total";
/// Failed tries that were retried, by destination.
pub const RETRIES: &str = "scanstream_notifier_retries_total";
/// Inventory records read, by what they called for (`notify`, `none`).
pub const RECORDS: &str = "scanstream_notifier_records_total";
/// Records that could not be decoded (skipped, committed).
pub const UNDECODABLE: &str = "scanstream_notifier_undecodable_total";
/// Restarts of the consumer loop after a failure.
pub const RESTARTS: &str = "scanstream_notifier_restarts_total";

pub fn describe() {
    metrics::describe_counter!(
        NOTIFICATIONS,
        "Notifications by destination and outcome (delivered, dead_lettered)."
    );
    metrics::describe_counter!(RETRIES, "Failed tries that were retried, by destination.");
    metrics::describe_counter!(
        RECORDS,
        "Inventory records read, by what they called for (notify, none)."
    );
    metrics::describe_counter!(
        UNDECODABLE,
        "Inventory records that could not be decoded (skipped)."
    );
    metrics::describe_counter!(RESTARTS, "Restarts of the consumer loop after a failure.");
}
