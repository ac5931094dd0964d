//! Crash points for the fault tests: a process started with `SCANSTREAM_CRASH_AT=<point>` aborts
//! (like `kill -9`: nothing flushed, no clean-up) the first time it reaches that point, so a test
//! can stop a role at an exact step rather than by timing luck. Unset, a point costs one
//! comparison. Test-only: never set it in a deployment.

use std::sync::OnceLock;

/// The environment variable naming the point to crash at.
pub const CRASH_AT: &str = "SCANSTREAM_CRASH_AT";

/// Aborts the process if `name` is the point named by [`CRASH_AT`].
pub fn point(name: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    if AT.get_or_init(|| std::env::var(CRASH_AT).ok()).as_deref() == Some(name) {
        eprintln!("{CRASH_AT}={name}: crashing here on purpose");
        std::process::abort();
    }
}
