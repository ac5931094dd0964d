//! What a schedule should do at a given time: the Kubernetes CronJob rules as pure functions of
//! the clock, so they are tested with any time the test likes.
//!
//! A tick is a minute since the Unix epoch. A schedule remembers the last tick it handled (fired,
//! skipped or missed); at time `now` every later tick up to `now` is due:
//! - within `starting_deadline_seconds` of its time it fires, once (a leader that took over
//!   fires the ticks that fell due while no leader existed);
//! - older ones are recorded as missed and never fire;
//! - while suspended nothing fires: ticks are recorded as skipped, and firing resumes at the
//!   first tick after the schedule is resumed.
//!
//! Before firing, the concurrency policy looks at the schedule's active runs: `Allow` fires
//! anyway, `Forbid` skips the tick, `Replace` cancels them and fires.

use scanstream_contracts::JobId;
use scanstream_contracts::schedule::ConcurrencyPolicy;

use crate::timetable::{Timetable, minute_of};

/// At most this many missed ticks are listed one by one; the rest are only counted.
const MISSED_LISTED: usize = 100;

/// The ticks due at some time, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Due {
    /// Ticks to fire, each exactly once.
    pub fire: Vec<i64>,
    /// Ticks too old to fire (past the starting deadline), the oldest [`MISSED_LISTED`] of them.
    pub missed: Vec<i64>,
    /// How many ticks were missed in all.
    pub missed_count: u64,
    /// The latest missed tick.
    pub last_missed: Option<i64>,
    /// Ticks not fired because the schedule is suspended.
    pub suspended: u64,
    /// The last tick handled now: the schedule's new mark (`after` when nothing was due).
    pub handled_through: i64,
    /// The first tick after `handled_through`.
    pub next: Option<i64>,
}

/// The ticks of `timetable` due at `now_ms` when every tick up to `after` (a minute) has been
/// handled. `starting_deadline_seconds` is how late a tick may still fire.
pub fn due(
    timetable: &Timetable,
    after: i64,
    now_ms: i64,
    starting_deadline_seconds: i64,
    suspended: bool,
) -> Due {
    let now_minute = minute_of(now_ms);
    // Saturating: any deadline a stored schedule holds is a window, never an overflow.
    let oldest_firing_ms =
        now_ms.saturating_sub(starting_deadline_seconds.max(0).saturating_mul(1000));
    let mut result = Due {
        handled_through: after,
        ..Due::default()
    };
    let mut tick = after;
    while let Some(next) = timetable.next_after(tick) {
        if next > now_minute {
            break;
        }
        tick = next;
        if suspended {
            result.suspended += 1;
        } else if next.saturating_mul(60_000) >= oldest_firing_ms {
            result.fire.push(next);
        } else {
            result.missed_count += 1;
            result.last_missed = Some(next);
            if result.missed.len() < MISSED_LISTED {
                result.missed.push(next);
            }
        }
        result.handled_through = next;
    }
    result.next = timetable.next_after(result.handled_through);
    result
}

/// A run of a schedule that has not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRun {
    pub job: JobId,
    pub tick: i64,
}

/// What to do with a tick that is due, given the schedule's active runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Fire,
    /// `Forbid` with a run still active: the tick is skipped.
    Skip {
        active: Vec<JobId>,
    },
    /// `Replace`: cancel these runs, then fire.
    ReplaceThenFire {
        cancel: Vec<JobId>,
    },
}

pub fn decide(policy: ConcurrencyPolicy, active: &[ActiveRun]) -> Action {
    let jobs = || active.iter().map(|r| r.job).collect::<Vec<_>>();
    match policy {
        _ if active.is_empty() => Action::Fire,
        ConcurrencyPolicy::Allow => Action::Fire,
        ConcurrencyPolicy::Forbid => Action::Skip { active: jobs() },
        ConcurrencyPolicy::Replace => Action::ReplaceThenFire { cancel: jobs() },
    }
}

/// The name of the run of `schedule` at `tick`: `<schedule>-<minutes since the Unix epoch>`, as
/// the job manager named its CronJobs' Jobs. Its job id, derived from the name, is therefore
/// derived from (schedule, tick): firing a tick twice would name the same job.
pub fn run_name(schedule: &str, tick: i64) -> String {
    format!("{schedule}-{tick}")
}

/// The schedule and tick of a run name made by [`run_name`], if it is one of `schedule`'s.
pub fn tick_of(schedule: &str, run: &str) -> Option<i64> {
    run.strip_prefix(schedule)?
        .strip_prefix('-')?
        .parse()
        .ok()
        .filter(|tick: &i64| *tick >= 0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// 2026-11-21T00:00:00Z in minutes since the epoch.
    const T0: i64 = 1_795_219_200 / 60;

    fn every_minute() -> Timetable {
        Timetable::parse("*/1 * * * *").unwrap()
    }

    fn ms(minute: i64, seconds: i64) -> i64 {
        minute * 60_000 + seconds * 1000
    }

    #[test]
    fn nothing_is_due_before_the_next_tick() {
        let d = due(&every_minute(), T0, ms(T0, 59), 60, false);
        assert!(d.fire.is_empty() && d.missed.is_empty());
        assert_eq!(d.handled_through, T0);
        assert_eq!(d.next, Some(T0 + 1));
    }

    #[test]
    fn a_tick_fires_once_at_its_minute() {
        let t = every_minute();
        let d = due(&t, T0, ms(T0 + 1, 0), 60, false);
        assert_eq!(d.fire, vec![T0 + 1]);
        assert_eq!(d.handled_through, T0 + 1);
        // Asked again within the same minute, with the mark moved: nothing more.
        let again = due(&t, d.handled_through, ms(T0 + 1, 30), 60, false);
        assert!(again.fire.is_empty());
    }

    #[test]
    fn ticks_due_while_no_leader_existed_fire_once_each_within_the_deadline() {
        // The leader handled T0, died, and a new one takes over at T0+5:20 with a 3-minute
        // deadline: T0+3, +4 and +5 fire (T0+2:20 is the oldest allowed), +1 and +2 are missed.
        let d = due(&every_minute(), T0, ms(T0 + 5, 20), 180, false);
        assert_eq!(d.fire, vec![T0 + 3, T0 + 4, T0 + 5]);
        assert_eq!(d.missed, vec![T0 + 1, T0 + 2]);
        assert_eq!(d.missed_count, 2);
        assert_eq!(d.handled_through, T0 + 5);
        assert_eq!(d.next, Some(T0 + 6));
    }

    #[test]
    fn a_long_outage_lists_a_bounded_number_of_missed_ticks() {
        let d = due(&every_minute(), T0, ms(T0 + 1000, 0), 60, false);
        assert_eq!(d.fire, vec![T0 + 999, T0 + 1000]);
        assert_eq!(d.missed_count, 998);
        assert_eq!(d.missed.len(), MISSED_LISTED);
        assert_eq!(d.missed.first(), Some(&(T0 + 1)));
    }

    #[test]
    fn a_suspended_schedule_fires_nothing_and_resumes_at_the_next_tick() {
        let t = every_minute();
        let suspended = due(&t, T0, ms(T0 + 3, 10), 600, true);
        assert!(suspended.fire.is_empty());
        assert_eq!(suspended.suspended, 3);
        assert_eq!(suspended.handled_through, T0 + 3);
        // Resumed at T0+3:30: the ticks that passed while suspended do not fire later...
        let resumed = due(&t, suspended.handled_through, ms(T0 + 3, 30), 600, false);
        assert!(resumed.fire.is_empty());
        // ...the next one does.
        let next = due(&t, resumed.handled_through, ms(T0 + 4, 1), 600, false);
        assert_eq!(next.fire, vec![T0 + 4]);
    }

    #[test]
    fn sparse_timetables_skip_the_minutes_between_ticks() {
        let hourly = Timetable::parse("@hourly").unwrap();
        let d = due(&hourly, T0, ms(T0 + 150, 0), 3600, false);
        assert_eq!(d.fire, vec![T0 + 120]);
        assert_eq!(d.missed, vec![T0 + 60]);
        assert_eq!(d.next, Some(T0 + 180));
    }

    #[test]
    fn concurrency_policies() {
        let a = JobId::from_name("nightly-1");
        let active = [ActiveRun { job: a, tick: 1 }];
        for policy in [
            ConcurrencyPolicy::Allow,
            ConcurrencyPolicy::Forbid,
            ConcurrencyPolicy::Replace,
        ] {
            assert_eq!(decide(policy, &[]), Action::Fire, "{policy:?}");
        }
        assert_eq!(decide(ConcurrencyPolicy::Allow, &active), Action::Fire);
        assert_eq!(
            decide(ConcurrencyPolicy::Forbid, &active),
            Action::Skip { active: vec![a] }
        );
        assert_eq!(
            decide(ConcurrencyPolicy::Replace, &active),
            Action::ReplaceThenFire { cancel: vec![a] }
        );
    }

    #[test]
    fn run_names_carry_the_tick() {
        assert_eq!(run_name("nightly", T0), format!("nightly-{T0}"));
        assert_eq!(tick_of("nightly", &run_name("nightly", T0)), Some(T0));
        assert_eq!(tick_of("nightly", "nightly-x"), None);
        assert_eq!(tick_of("night", "nightly-5"), None);
        assert_eq!(tick_of("nightly", "nightly--5"), None);
        assert_ne!(
            JobId::from_name(&run_name("nightly", T0)),
            JobId::from_name(&run_name("nightly", T0 + 1))
        );
    }

    proptest! {
        /// However the clock advances (a leader asking at arbitrary times, resuming from the
        /// mark it handled), every tick is handled exactly once: fired or missed, never both,
        /// never twice, none skipped.
        #[test]
        fn every_tick_is_handled_exactly_once(
            steps in proptest::collection::vec(0i64..400_000, 1..40),
            deadline in 0i64..900,
        ) {
            let t = every_minute();
            let mut mark = T0;
            let mut now = ms(T0, 0);
            let mut handled = Vec::new();
            for step in steps {
                now += step;
                let d = due(&t, mark, now, deadline, false);
                prop_assert!(d.missed_count as usize == d.missed.len());
                for tick in d.fire.iter().chain(&d.missed) {
                    prop_assert!(*tick <= minute_of(now));
                    handled.push(*tick);
                }
                for tick in &d.fire {
                    prop_assert!(tick * 60_000 >= now - deadline * 1000);
                }
                mark = d.handled_through;
            }
            handled.sort_unstable();
            let expected: Vec<i64> = (T0 + 1..=minute_of(now)).collect();
            prop_assert_eq!(handled, expected);
        }
    }
}
