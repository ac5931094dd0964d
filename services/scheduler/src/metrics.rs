//! Every metric this crate records: its name (used by alerts and dashboards, so changed only
//! with them) and its HELP text, given to the recorder by [`describe`].

/// Time between a tick's instant and its run being submitted.
pub const FIRE_DELAY: &str = "scanstream_scheduler_fire_delay_seconds";
/// 1 while this instance leads the schedulers.
pub const LEADER: &str = "scanstream_scheduler_leader";
/// Schedules the leader read at its last pass.
pub const SCHEDULES: &str = "scanstream_scheduler_schedules";
/// Schedules the leader's last pass could not plan (they do not fire; the others do).
pub const INVALID_SCHEDULES: &str = "scanstream_scheduler_invalid_schedules";
/// Terms this instance started as leader.
pub const TERMS: &str = "scanstream_scheduler_terms_total";
/// Schedule ticks handled, by outcome (fired, skipped, missed, suspended).
pub const TICKS: &str = "scanstream_scheduler_ticks_total";

/// Gives every metric above its HELP text (and unit); call once the recorder is installed.
pub fn describe() {
    metrics::describe_gauge!(
        INVALID_SCHEDULES,
        "Schedules the leader's last pass could not plan (they do not fire; the others do)."
    );
    metrics::describe_histogram!(
        FIRE_DELAY,
        metrics::Unit::Seconds,
        "Time between a tick's instant and its run being submitted."
    );
    metrics::describe_gauge!(LEADER, "1 while this instance leads the schedulers.");
    metrics::describe_gauge!(SCHEDULES, "Schedules the leader read at its last pass.");
    metrics::describe_counter!(TERMS, "Terms this instance started as leader.");
    metrics::describe_counter!(
        TICKS,
        "Schedule ticks handled, by outcome (fired, skipped, missed, suspended)."
    );
}
