//! What the leader's passes show: the schedules read, when a pass was last written, and which
//! schedules could not be planned. Readiness, metrics and logs read it.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use crate::clock::system_ms;

/// What the leader's passes show, for readiness, metrics and logs.
#[derive(Debug, Default)]
pub(crate) struct PassHealth {
    /// Schedules read at the last pass.
    pub(crate) schedules: AtomicUsize,
    /// Real time (ms) of the last pass written, or of the term's start.
    pub(crate) last_pass_ms: AtomicI64,
    /// Schedules the last pass could not plan, and why; they do not fire, the others do.
    pub(crate) invalid: std::sync::Mutex<Vec<(String, String)>>,
}

impl PassHealth {
    pub(crate) fn passed(&self) {
        self.last_pass_ms.store(system_ms(), Ordering::Release);
    }

    /// Records the schedules a pass could not plan; logs only what changed.
    pub(crate) fn invalid(&self, now: &[(String, String)]) {
        let mut known = scanstream_platform::sync::lock(&self.invalid);
        if known.as_slice() == now {
            return;
        }
        for (name, error) in now {
            if !known.iter().any(|(n, e)| n == name && e == error) {
                tracing::error!(schedule = %name, %error, "schedule cannot be planned; it does not fire, the others do");
            }
        }
        for (name, _) in known.iter() {
            if !now.iter().any(|(n, _)| n == name) {
                tracing::info!(schedule = %name, "schedule can be planned again");
            }
        }
        *known = now.to_vec();
    }
}
