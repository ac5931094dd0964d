//! Cron timetables: standard 5-field expressions (minute hour day-of-month month day-of-week,
//! with names, ranges, steps and lists) and the `@hourly`-style macros, evaluated in UTC, at
//! minute resolution. Parsing and matching are the `croner` crate's.

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// The schedule of `POST /jobs/schedule` when none is given: every minute, as the job manager's
/// default.
pub const DEFAULT_CRON: &str = "*/1 * * * *";

const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimetableError {
    #[error(
        "{0:?} is not a 5-field cron expression (minute hour day-of-month month day-of-week) or one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"
    )]
    Fields(String),
    #[error("{expression:?} is not a valid cron expression: {reason}")]
    Invalid { expression: String, reason: String },
    #[error("{0:?} never fires")]
    Never(String),
}

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct Timetable {
    expression: String,
    cron: Cron,
}

/// Minutes since the Unix epoch of `ms` (milliseconds since the epoch), rounded down.
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS)
}

fn at_minute(minute: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(minute.checked_mul(MINUTE_MS)?)
        .single()
}

impl Timetable {
    /// Parses `expression`; an empty one is [`DEFAULT_CRON`].
    pub fn parse(expression: &str) -> Result<Timetable, TimetableError> {
        let expression = match expression.trim() {
            "" => DEFAULT_CRON,
            e => e,
        };
        // Kubernetes also knows @midnight, which croner does not.
        let pattern = if expression.eq_ignore_ascii_case("@midnight") {
            "@daily"
        } else {
            expression
        };
        if !expression.starts_with('@') && expression.split_whitespace().count() != 5 {
            return Err(TimetableError::Fields(expression.to_owned()));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|e| {
                if expression.starts_with('@') {
                    TimetableError::Fields(expression.to_owned())
                } else {
                    TimetableError::Invalid {
                        expression: expression.to_owned(),
                        reason: e.to_string(),
                    }
                }
            })?;
        let timetable = Timetable {
            expression: expression.to_owned(),
            cron,
        };
        // `0 0 30 2 *` parses but never fires: refuse it rather than store a dead schedule.
        if timetable.next_after(0).is_none() {
            return Err(TimetableError::Never(expression.to_owned()));
        }
        Ok(timetable)
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first tick strictly after `minute` (both minutes since the epoch).
    pub fn next_after(&self, minute: i64) -> Option<i64> {
        let start = at_minute(minute)?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|t| minute_of(t.timestamp_millis()))
    }

    /// The next `count` ticks strictly after `minute`.
    pub fn upcoming(&self, minute: i64, count: usize) -> Vec<i64> {
        let mut ticks = Vec::with_capacity(count);
        let mut after = minute;
        while ticks.len() < count {
            match self.next_after(after) {
                Some(tick) => {
                    ticks.push(tick);
                    after = tick;
                }
                None => break,
            }
        }
        ticks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-21T00:00:00Z, a Saturday, in minutes since the epoch.
    const SATURDAY: i64 = 1_795_219_200 / 60;

    fn ticks(expression: &str, count: usize) -> Vec<i64> {
        Timetable::parse(expression)
            .unwrap()
            .upcoming(SATURDAY, count)
            .into_iter()
            .map(|t| t - SATURDAY)
            .collect()
    }

    #[test]
    fn the_default_fires_every_minute() {
        assert_eq!(ticks("", 3), vec![1, 2, 3]);
        assert_eq!(ticks("*/1 * * * *", 3), vec![1, 2, 3]);
        assert_eq!(
            Timetable::parse("").map(|t| t.expression().to_owned()),
            Ok(DEFAULT_CRON.to_owned())
        );
    }

    #[test]
    fn fields_ranges_steps_lists_and_names() {
        assert_eq!(ticks("*/15 * * * *", 4), vec![15, 30, 45, 60]);
        assert_eq!(ticks("5 0-2 * * *", 3), vec![5, 65, 125]);
        assert_eq!(ticks("0,30 1 * * *", 2), vec![60, 90]);
        // Saturday 00:00 itself is not "after"; the next Saturday midnight is a week on.
        assert_eq!(ticks("0 0 * * SAT", 1), vec![7 * 24 * 60]);
        assert_eq!(ticks("0 0 * * 0", 1), vec![24 * 60]);
        assert_eq!(ticks("0 0 1 DEC *", 1), vec![10 * 24 * 60]);
        // Day of month and day of week both restricted: either matches (POSIX cron).
        assert_eq!(ticks("0 0 22 * 1", 2), vec![24 * 60, 2 * 24 * 60]);
    }

    #[test]
    fn macros() {
        assert_eq!(ticks("@hourly", 2), vec![60, 120]);
        assert_eq!(ticks("@daily", 1), vec![24 * 60]);
        assert_eq!(ticks("@midnight", 1), vec![24 * 60]);
        assert_eq!(ticks("@weekly", 1), vec![24 * 60]);
        assert_eq!(ticks("@monthly", 1), vec![10 * 24 * 60]);
    }

    #[test]
    fn bad_expressions_are_refused_with_the_reason() {
        for bad in [
            "* * * *",
            "* * * * * *",
            "0 0 * * * 2030",
            "@every_minute",
            "hello",
        ] {
            assert!(
                matches!(Timetable::parse(bad), Err(TimetableError::Fields(_))),
                "{bad}"
            );
        }
        for bad in [
            "61 * * * *",
            "* 24 * * *",
            "* * 32 * *",
            "* * * 13 *",
            "*/0 * * * *",
            "a b c d e",
        ] {
            assert!(
                matches!(Timetable::parse(bad), Err(TimetableError::Invalid { .. })),
                "{bad}: {:?}",
                Timetable::parse(bad).map(|t| t.expression().to_owned())
            );
        }
        assert!(matches!(
            Timetable::parse("0 0 30 2 *"),
            Err(TimetableError::Never(_))
        ));
    }

    #[test]
    fn minutes_round_down() {
        assert_eq!(minute_of(0), 0);
        assert_eq!(minute_of(59_999), 0);
        assert_eq!(minute_of(60_000), 1);
        assert_eq!(minute_of(-1), -1);
    }
}
