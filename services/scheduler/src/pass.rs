//! One pass of the leader over every schedule at one instant: which runs to fire (and which
//! active runs `Replace` cancels), and each schedule's new [`ScheduleTicks`] record. A pure
//! function of the schedules, the tick records, the active runs and the clock reading, so the
//! whole CronJob behaviour is tested with any time a test likes.
//!
//! Over 600 lines with its tests, which are most of it: the CronJob cases read best beside the
//! function they pin down.

use std::collections::{BTreeMap, HashMap};

use scanstream_contracts::JobId;
use scanstream_contracts::schedule::{Schedule, ScheduleTicks};
use scanstream_contracts::state::{JobState, JobStatus};

use crate::plan::{Action, ActiveRun, decide, due, tick_of};
use crate::timetable::{Timetable, minute_of};

/// A run to submit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fire {
    pub schedule: Schedule,
    pub tick: i64,
    pub job: JobId,
    /// Active runs to cancel first (`Replace`).
    pub cancel: Vec<JobId>,
}

/// How many ticks ended which way in a pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub fired: u64,
    pub skipped: u64,
    pub missed: u64,
    pub suspended: u64,
}

/// What one pass decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pass {
    pub fires: Vec<Fire>,
    /// New tick records, written with the fires in one transaction.
    pub ticks: Vec<ScheduleTicks>,
    /// Schedules whose tick record is deleted (the schedule was deleted).
    pub removed: Vec<String>,
    /// Schedules that could not be planned, and why: an expression that does not parse (never
    /// written by ingest), or a fault while planning. They do not fire; the others do.
    pub invalid: Vec<(String, String)>,
    pub outcomes: Outcomes,
    /// When the next tick of any schedule falls due (schedule clock, milliseconds).
    pub next_ms: Option<i64>,
}

/// The scheduled runs that have not finished, as `scans.job-state` shows them.
#[derive(Debug, Clone, Default)]
pub struct ActiveRuns {
    active: HashMap<String, BTreeMap<i64, JobId>>,
    jobs: HashMap<JobId, (String, i64)>,
    /// The latest tick of each schedule the changelog has shown, in any status.
    latest_seen: HashMap<String, i64>,
}

impl ActiveRuns {
    /// Folds one changelog record (key: job id; `None`: the job was purged).
    pub fn apply(&mut self, key: &str, state: Option<JobState>) {
        let Ok(job) = uuid::Uuid::parse_str(key).map(JobId) else {
            return;
        };
        if let Some((schedule, tick)) = self.jobs.remove(&job)
            && let Some(ticks) = self.active.get_mut(&schedule)
        {
            ticks.remove(&tick);
            if ticks.is_empty() {
                self.active.remove(&schedule);
            }
        }
        let Some(state) = state else { return };
        let Some(schedule) = state.schedule else {
            return;
        };
        let Some(tick) = tick_of(&schedule, &state.job_name) else {
            return;
        };
        let seen = self.latest_seen.entry(schedule.clone()).or_insert(tick);
        *seen = (*seen).max(tick);
        if matches!(state.status, JobStatus::Queued | JobStatus::Running) {
            self.active
                .entry(schedule.clone())
                .or_default()
                .insert(tick, job);
            self.jobs.insert(job, (schedule, tick));
        }
    }

    /// The active runs of `schedule`. The run fired last counts as active until the changelog
    /// shows it: the aggregator may not have folded its submission yet.
    pub fn of(&self, schedule: &str, ticks: Option<&ScheduleTicks>) -> Vec<ActiveRun> {
        let mut runs: Vec<ActiveRun> = self
            .active
            .get(schedule)
            .map(|t| {
                t.iter()
                    .map(|(tick, job)| ActiveRun {
                        job: *job,
                        tick: *tick,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(t) = ticks
            && let (Some(last), Some(job)) = (t.last_fired, t.last_fired_job)
            && self
                .latest_seen
                .get(schedule)
                .is_none_or(|seen| *seen < last)
            && !runs.iter().any(|r| r.job == job)
        {
            runs.push(ActiveRun { job, tick: last });
        }
        runs
    }
}

/// Settings a pass needs.
#[derive(Debug, Clone)]
pub struct PassConfig {
    /// Window for schedules without `starting_deadline_seconds`.
    pub starting_deadline_seconds: i64,
    /// The leader's instance name, recorded in tick records.
    pub leader: String,
}

/// The tick record of a schedule never handled before: every tick after its creation is due.
fn fresh(schedule: &Schedule) -> ScheduleTicks {
    ScheduleTicks {
        schedule: schedule.name.clone(),
        schedule_created_at: schedule.created_at,
        handled_through: minute_of(schedule.created_at),
        last_fired: None,
        last_fired_job: None,
        fired_total: 0,
        skipped_total: 0,
        missed_total: 0,
        last_missed: None,
        suspended_total: 0,
        leader: None,
        updated_at: schedule.created_at,
    }
}

/// Plans the pass at `now_ms`. Each schedule is planned on its own: one that cannot be planned
/// (an expression that does not parse, or a fault while planning it) is listed in
/// [`Pass::invalid`] and the others fire as usual.
pub fn plan(
    now_ms: i64,
    schedules: &BTreeMap<String, Schedule>,
    records: &BTreeMap<String, ScheduleTicks>,
    active: &ActiveRuns,
    config: &PassConfig,
) -> Pass {
    let mut pass = Pass::default();
    for (name, schedule) in schedules {
        let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            plan_one(now_ms, schedule, records.get(name), active, config)
        }));
        match planned {
            Ok(Ok(one)) => one.into(&mut pass),
            Ok(Err(problem)) => pass.invalid.push((name.clone(), problem)),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                pass.invalid
                    .push((name.clone(), format!("planning it failed: {what}")));
            }
        }
    }
    pass.removed = records
        .keys()
        .filter(|name| !schedules.contains_key(*name))
        .cloned()
        .collect();
    pass
}

/// What one schedule adds to a pass.
#[derive(Debug, Default)]
struct One {
    fires: Vec<Fire>,
    record: Option<ScheduleTicks>,
    outcomes: Outcomes,
    next_ms: Option<i64>,
}

impl One {
    fn into(self, pass: &mut Pass) {
        pass.fires.extend(self.fires);
        pass.ticks.extend(self.record);
        pass.outcomes.fired += self.outcomes.fired;
        pass.outcomes.skipped += self.outcomes.skipped;
        pass.outcomes.missed += self.outcomes.missed;
        pass.outcomes.suspended += self.outcomes.suspended;
        if let Some(at) = self.next_ms {
            pass.next_ms = Some(pass.next_ms.map_or(at, |n: i64| n.min(at)));
        }
    }
}

/// One schedule's part of the pass, given its tick record (if any).
fn plan_one(
    now_ms: i64,
    schedule: &Schedule,
    record: Option<&ScheduleTicks>,
    active: &ActiveRuns,
    config: &PassConfig,
) -> Result<One, String> {
    let name = &schedule.name;
    let timetable = Timetable::parse(&schedule.cron).map_err(|e| e.to_string())?;
    let mut one = One::default();
    // A record of an earlier schedule of the same name does not count.
    let known = record.filter(|r| r.schedule_created_at == schedule.created_at);
    let mut record = known.cloned().unwrap_or_else(|| fresh(schedule));
    let deadline = schedule
        .starting_deadline_seconds
        .unwrap_or(config.starting_deadline_seconds);
    let due = due(
        &timetable,
        record.handled_through,
        now_ms,
        deadline,
        schedule.suspend,
    );
    if let Some(next) = due.next {
        one.next_ms = Some(next.saturating_mul(60_000));
    }
    if known.is_some() && due.handled_through == record.handled_through {
        return Ok(one);
    }
    for tick in &due.fire {
        let runs = active.of(name, Some(&record));
        let job = JobId::for_schedule_tick(name, *tick);
        let cancel = match decide(schedule.concurrency_policy, &runs) {
            Action::Fire => Vec::new(),
            Action::ReplaceThenFire { cancel } => cancel,
            Action::Skip { .. } => {
                record.skipped_total += 1;
                one.outcomes.skipped += 1;
                continue;
            }
        };
        one.fires.push(Fire {
            schedule: schedule.clone(),
            tick: *tick,
            job,
            cancel,
        });
        record.last_fired = Some(*tick);
        record.last_fired_job = Some(job);
        record.fired_total += 1;
        one.outcomes.fired += 1;
    }
    let missed = i64::try_from(due.missed_count).unwrap_or(i64::MAX);
    let suspended = i64::try_from(due.suspended).unwrap_or(i64::MAX);
    record.missed_total = record.missed_total.saturating_add(missed);
    record.last_missed = due.last_missed.or(record.last_missed);
    record.suspended_total = record.suspended_total.saturating_add(suspended);
    one.outcomes.missed += due.missed_count;
    one.outcomes.suspended += due.suspended;
    record.handled_through = due.handled_through;
    record.updated_at = now_ms;
    record.leader = Some(config.leader.clone());
    one.record = Some(record);
    Ok(one)
}

#[cfg(test)]
mod tests {
    use scanstream_contracts::command::ScanMode;
    use scanstream_contracts::finding::SeverityCounts;
    use scanstream_contracts::schedule::ConcurrencyPolicy;

    use super::*;

    /// 2026-11-21T00:00:00Z in minutes since the epoch.
    const T0: i64 = 1_795_219_200 / 60;

    fn ms(minute: i64, seconds: i64) -> i64 {
        minute * 60_000 + seconds * 1000
    }

    fn schedule(name: &str, cron: &str, policy: ConcurrencyPolicy) -> Schedule {
        Schedule {
            name: name.into(),
            cron: cron.into(),
            time_zone: None,
            repo_url: "https://git.example.com/a.git".into(),
            git_ref: None,
            engines: vec!["secrets".into()],
            mode: ScanMode::Tree,
            concurrency_policy: policy,
            suspend: false,
            successful_jobs_history_limit: 3,
            failed_jobs_history_limit: 1,
            starting_deadline_seconds: None,
            created_at: ms(T0, 30),
            updated_at: ms(T0, 30),
        }
    }

    fn config() -> PassConfig {
        PassConfig {
            starting_deadline_seconds: 300,
            leader: "s-0".into(),
        }
    }

    #[test]
    fn one_bad_schedule_never_stops_the_others() {
        let mut huge = schedule("huge", "*/1 * * * *", ConcurrencyPolicy::Allow);
        huge.starting_deadline_seconds = Some(i64::MAX);
        let mut broken = schedule("broken", "*/1 * * * *", ConcurrencyPolicy::Allow);
        broken.cron = "not a cron".into();
        let fine = schedule("fine", "*/1 * * * *", ConcurrencyPolicy::Allow);
        let schedules = table(&[huge, broken, fine]);
        let pass = plan(
            ms(T0 + 3, 0),
            &schedules,
            &BTreeMap::new(),
            &ActiveRuns::default(),
            &config(),
        );
        let fired: Vec<(&str, i64)> = pass
            .fires
            .iter()
            .map(|f| (f.schedule.name.as_str(), f.tick))
            .collect();
        // The huge deadline is a window that never closes, not an overflow.
        assert_eq!(
            fired,
            [
                ("fine", T0 + 1),
                ("fine", T0 + 2),
                ("fine", T0 + 3),
                ("huge", T0 + 1),
                ("huge", T0 + 2),
                ("huge", T0 + 3),
            ]
        );
        assert_eq!(pass.invalid.len(), 1);
        assert_eq!(pass.invalid[0].0, "broken");
        assert_eq!(pass.ticks.len(), 2);
    }

    fn table(schedules: &[Schedule]) -> BTreeMap<String, Schedule> {
        schedules
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect()
    }

    /// Runs passes at each of `times`, carrying tick records like the leader does.
    fn run(
        times: &[i64],
        schedules: &BTreeMap<String, Schedule>,
        active: &ActiveRuns,
        records: &mut BTreeMap<String, ScheduleTicks>,
    ) -> Vec<Pass> {
        times
            .iter()
            .map(|now| {
                let pass = plan(*now, schedules, records, active, &config());
                for r in &pass.ticks {
                    records.insert(r.schedule.clone(), r.clone());
                }
                for name in &pass.removed {
                    records.remove(name);
                }
                pass
            })
            .collect()
    }

    fn fired(passes: &[Pass]) -> Vec<i64> {
        passes
            .iter()
            .flat_map(|p| p.fires.iter().map(|f| f.tick))
            .collect()
    }

    fn job_state(schedule: &str, tick: i64, status: JobStatus) -> (String, JobState) {
        let job = JobId::for_schedule_tick(schedule, tick);
        (
            job.key(),
            JobState {
                job_id: job,
                job_name: format!("{schedule}-{tick}"),
                schedule: Some(schedule.into()),
                repo_url: String::new(),
                status,
                succeeded: 0,
                failed: 0,
                runs: Vec::new(),
                findings: SeverityCounts::default(),
                last_error: None,
                events_folded: 1,
                updated_at: 0,
            },
        )
    }

    #[test]
    fn every_tick_after_creation_fires_once_however_often_the_leader_looks() {
        let schedules = table(&[schedule("a", "*/1 * * * *", ConcurrencyPolicy::Allow)]);
        let mut records = BTreeMap::new();
        let times: Vec<i64> = (0..40).map(|i| ms(T0, 40) + i * 15_000).collect();
        let passes = run(&times, &schedules, &ActiveRuns::default(), &mut records);
        assert_eq!(fired(&passes), (T0 + 1..=T0 + 10).collect::<Vec<_>>());
        let record = &records["a"];
        assert_eq!(record.fired_total, 10);
        assert_eq!(record.handled_through, T0 + 10);
        assert_eq!(
            record.last_fired_job,
            Some(JobId::for_schedule_tick("a", T0 + 10))
        );
    }

    #[test]
    fn a_leader_that_takes_over_fires_the_recent_ticks_and_records_the_old_as_missed() {
        let schedules = table(&[schedule("a", "*/1 * * * *", ConcurrencyPolicy::Allow)]);
        let mut records = BTreeMap::new();
        run(
            &[ms(T0 + 1, 1)],
            &schedules,
            &ActiveRuns::default(),
            &mut records,
        );
        // No leader for 20 minutes; the deadline is 5 minutes.
        let passes = run(
            &[ms(T0 + 21, 10)],
            &schedules,
            &ActiveRuns::default(),
            &mut records,
        );
        assert_eq!(fired(&passes), (T0 + 17..=T0 + 21).collect::<Vec<_>>());
        let record = &records["a"];
        assert_eq!(record.missed_total, 15);
        assert_eq!(record.last_missed, Some(T0 + 16));
        assert_eq!(passes[0].outcomes.missed, 15);
    }

    #[test]
    fn a_schedule_deadline_overrides_the_default() {
        let mut s = schedule("a", "*/1 * * * *", ConcurrencyPolicy::Allow);
        s.starting_deadline_seconds = Some(3600);
        let schedules = table(&[s]);
        let mut records = BTreeMap::new();
        let passes = run(
            &[ms(T0 + 21, 10)],
            &schedules,
            &ActiveRuns::default(),
            &mut records,
        );
        assert_eq!(fired(&passes).len(), 21);
    }

    #[test]
    fn forbid_skips_while_a_run_is_active_and_fires_once_it_is_done() {
        let schedules = table(&[schedule("f", "*/1 * * * *", ConcurrencyPolicy::Forbid)]);
        let mut records = BTreeMap::new();
        let mut active = ActiveRuns::default();
        let passes = run(&[ms(T0 + 1, 0)], &schedules, &active, &mut records);
        assert_eq!(fired(&passes), vec![T0 + 1]);
        // Not yet in the changelog: still counts as active.
        let passes = run(&[ms(T0 + 2, 0)], &schedules, &active, &mut records);
        assert!(fired(&passes).is_empty());
        assert_eq!(passes[0].outcomes.skipped, 1);
        let (key, state) = job_state("f", T0 + 1, JobStatus::Running);
        active.apply(&key, Some(state));
        assert!(fired(&run(&[ms(T0 + 3, 0)], &schedules, &active, &mut records)).is_empty());
        let (key, state) = job_state("f", T0 + 1, JobStatus::Succeeded);
        active.apply(&key, Some(state));
        let passes = run(&[ms(T0 + 4, 0)], &schedules, &active, &mut records);
        assert_eq!(fired(&passes), vec![T0 + 4]);
        assert_eq!(records["f"].skipped_total, 2);
    }

    #[test]
    fn forbid_fires_only_the_first_of_several_overdue_ticks() {
        let schedules = table(&[schedule("f", "*/1 * * * *", ConcurrencyPolicy::Forbid)]);
        let mut records = BTreeMap::new();
        let passes = run(
            &[ms(T0 + 3, 0)],
            &schedules,
            &ActiveRuns::default(),
            &mut records,
        );
        assert_eq!(fired(&passes), vec![T0 + 1]);
        assert_eq!(passes[0].outcomes.skipped, 2);
    }

    #[test]
    fn replace_cancels_the_active_runs_and_fires() {
        let schedules = table(&[schedule("r", "*/1 * * * *", ConcurrencyPolicy::Replace)]);
        let mut records = BTreeMap::new();
        let mut active = ActiveRuns::default();
        run(&[ms(T0 + 1, 0)], &schedules, &active, &mut records);
        let (key, state) = job_state("r", T0 + 1, JobStatus::Running);
        active.apply(&key, Some(state));
        let passes = run(&[ms(T0 + 2, 0)], &schedules, &active, &mut records);
        assert_eq!(passes[0].fires.len(), 1);
        assert_eq!(passes[0].fires[0].tick, T0 + 2);
        assert_eq!(
            passes[0].fires[0].cancel,
            vec![JobId::for_schedule_tick("r", T0 + 1)]
        );
    }

    #[test]
    fn allow_fires_beside_active_runs() {
        let schedules = table(&[schedule("a", "*/1 * * * *", ConcurrencyPolicy::Allow)]);
        let mut records = BTreeMap::new();
        let mut active = ActiveRuns::default();
        let (key, state) = job_state("a", T0 - 5, JobStatus::Running);
        active.apply(&key, Some(state));
        let passes = run(&[ms(T0 + 2, 0)], &schedules, &active, &mut records);
        assert_eq!(fired(&passes), vec![T0 + 1, T0 + 2]);
        assert!(passes[0].fires.iter().all(|f| f.cancel.is_empty()));
    }

    #[test]
    fn a_suspended_schedule_fires_nothing_and_resumes_at_the_next_tick() {
        let mut s = schedule("s", "*/1 * * * *", ConcurrencyPolicy::Allow);
        let mut records = BTreeMap::new();
        let active = ActiveRuns::default();
        run(
            &[ms(T0 + 1, 0)],
            &table(&[s.clone()]),
            &active,
            &mut records,
        );
        s.suspend = true;
        let passes = run(
            &[ms(T0 + 2, 0), ms(T0 + 4, 30)],
            &table(&[s.clone()]),
            &active,
            &mut records,
        );
        assert!(fired(&passes).is_empty());
        assert_eq!(records["s"].suspended_total, 3);
        s.suspend = false;
        let passes = run(
            &[ms(T0 + 4, 50), ms(T0 + 5, 0)],
            &table(&[s]),
            &active,
            &mut records,
        );
        assert_eq!(fired(&passes), vec![T0 + 5]);
    }

    #[test]
    fn a_deleted_schedule_loses_its_record_and_a_new_one_of_the_same_name_starts_afresh() {
        let s = schedule("d", "*/1 * * * *", ConcurrencyPolicy::Allow);
        let mut records = BTreeMap::new();
        let active = ActiveRuns::default();
        run(
            &[ms(T0 + 3, 0)],
            &table(std::slice::from_ref(&s)),
            &active,
            &mut records,
        );
        let passes = run(&[ms(T0 + 4, 0)], &BTreeMap::new(), &active, &mut records);
        assert_eq!(passes[0].removed, vec!["d".to_owned()]);
        assert!(passes[0].fires.is_empty());
        let mut again = s;
        again.created_at = ms(T0 + 10, 5);
        let mut stale = records.clone();
        stale.insert(
            "d".into(),
            ScheduleTicks {
                handled_through: T0 + 3,
                ..fresh(&schedule("d", "*/1 * * * *", ConcurrencyPolicy::Allow))
            },
        );
        let passes = run(&[ms(T0 + 12, 0)], &table(&[again]), &active, &mut stale);
        assert_eq!(fired(&passes), vec![T0 + 11, T0 + 12]);
    }

    #[test]
    fn the_next_wake_up_is_the_earliest_next_tick() {
        let schedules = table(&[
            schedule("hourly", "@hourly", ConcurrencyPolicy::Allow),
            schedule("five", "*/5 * * * *", ConcurrencyPolicy::Allow),
        ]);
        let pass = plan(
            ms(T0, 40),
            &schedules,
            &BTreeMap::new(),
            &ActiveRuns::default(),
            &config(),
        );
        assert_eq!(pass.next_ms, Some((T0 + 5) * 60_000));
    }

    #[test]
    fn an_unparsable_stored_expression_is_reported_not_fired() {
        let schedules = table(&[schedule("bad", "61 * * * *", ConcurrencyPolicy::Allow)]);
        let pass = plan(
            ms(T0 + 5, 0),
            &schedules,
            &BTreeMap::new(),
            &ActiveRuns::default(),
            &config(),
        );
        assert!(pass.fires.is_empty() && pass.ticks.is_empty());
        assert_eq!(pass.invalid.len(), 1);
    }
}
