//! The schedule clock. Production uses the system clock; tests and demos may run it faster than
//! real time (`scheduler.clock_scale`), so minute ticks pass in seconds without any other code
//! knowing. Ingest (next run times, created_at) and the scheduler read the same clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scanstream_platform::config::SchedulerSettings;

/// Milliseconds since the Unix epoch on the schedule clock.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
    /// Real time until the schedule clock shows `at_ms` (zero if it already has).
    fn until(&self, at_ms: i64) -> Duration;
}

/// Real time in milliseconds since the Unix epoch.
pub(crate) fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Real time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        system_ms()
    }

    fn until(&self, at_ms: i64) -> Duration {
        Duration::from_millis(u64::try_from(at_ms - system_ms()).unwrap_or(0))
    }
}

/// `origin + (real − origin) × scale`: equal to real time at `origin`, `scale` times faster
/// after it. Processes configured with the same origin and scale agree on the time.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    pub origin_ms: i64,
    pub scale: f64,
}

impl ScaledClock {
    fn at(&self, real_ms: i64) -> i64 {
        let elapsed = (real_ms - self.origin_ms) as f64;
        self.origin_ms + (elapsed * self.scale) as i64
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> i64 {
        self.at(system_ms())
    }

    fn until(&self, at_ms: i64) -> Duration {
        let ahead = (at_ms - self.now_ms()).max(0) as f64 / self.scale;
        Duration::from_millis(ahead.ceil() as u64)
    }
}

/// The clock `settings` ask for.
pub fn from_settings(settings: &SchedulerSettings) -> Arc<dyn Clock> {
    if (settings.clock_scale - 1.0).abs() < f64::EPSILON {
        Arc::new(SystemClock)
    } else {
        Arc::new(ScaledClock {
            origin_ms: settings.clock_origin_ms,
            scale: settings.clock_scale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_clock_equals_real_time_at_its_origin_and_runs_faster_after() {
        let clock = ScaledClock {
            origin_ms: 1_000_000,
            scale: 60.0,
        };
        assert_eq!(clock.at(1_000_000), 1_000_000);
        assert_eq!(clock.at(1_001_000), 1_060_000);
        let now = clock.now_ms();
        let wait = clock.until(now + 60_000);
        assert!(wait <= Duration::from_millis(1_001), "{wait:?}");
        assert!(wait >= Duration::from_millis(950), "{wait:?}");
        assert_eq!(clock.until(now - 1), Duration::ZERO);
    }

    #[test]
    fn the_system_clock_waits_the_real_difference() {
        let clock = SystemClock;
        let wait = clock.until(clock.now_ms() + 2_000);
        assert!(wait <= Duration::from_secs(2) && wait >= Duration::from_millis(1_900));
    }
}
