//! `GET /jobs/stats` in the job manager's format (seed 000), which its clients parse:
//!
//! - a normal job: `"<name>": {"failed", "jobtype": "normal", "succeeded", "uuid"}`;
//! - a schedule: `"<schedule>": [{"failed", "jobtype": "schedule", "name": "<schedule>-<minutes
//!   since epoch>", "succeeded", "uuid"}, …]`, runs in tick order.
//!
//! Keys are sorted and the body is indented with four spaces, as the job manager answered.
//! Job and schedule names share one namespace in this body.
//!
//! Like a CronJob's history, a schedule lists its runs still queued or running, its last
//! `successfulJobsHistoryLimit` succeeded runs and its last `failedJobsHistoryLimit` failed
//! (or cancelled) runs; older finished runs stay in the store and in `GET /jobs`.

use std::collections::BTreeMap;

use serde::Serialize;

use scanstream_contracts::JobId;
use scanstream_contracts::state::{JobState, JobStatus};

/// A schedule's history limits (succeeded, failed); CronJob's defaults are 3 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    pub succeeded: usize,
    pub failed: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            succeeded: 3,
            failed: 1,
        }
    }
}

/// Keeps the active runs and the newest `limits` finished ones of one schedule's runs, given in
/// tick order.
fn keep_history<T>(runs: Vec<(i64, JobStatus, T)>, limits: HistoryLimits) -> Vec<T> {
    let (mut succeeded, mut failed) = (0, 0);
    let mut kept: Vec<T> = Vec::new();
    for (_, status, run) in runs.into_iter().rev() {
        let keep = match status {
            JobStatus::Queued | JobStatus::Running => true,
            JobStatus::Succeeded => {
                succeeded += 1;
                succeeded <= limits.succeeded
            }
            JobStatus::Failed | JobStatus::Cancelled => {
                failed += 1;
                failed <= limits.failed
            }
        };
        if keep {
            kept.push(run);
        }
    }
    kept.reverse();
    kept
}

/// The `GET /jobs/stats` body: every job and schedule under its name, keys sorted.
#[derive(Debug, Clone, PartialEq, Default, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct JobStats(pub BTreeMap<String, JobStatsEntry>);

/// A normal job's counts, or a schedule's runs.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum JobStatsEntry {
    Normal(NormalJobStats),
    Schedule(Vec<ScheduledRunStats>),
}

/// `jobtype` of a job submitted by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NormalJobType {
    Normal,
}

/// `jobtype` of a schedule's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleJobType {
    Schedule,
}

/// A job submitted by name (fields in the job manager's sorted order).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NormalJobStats {
    /// Failed attempts over all runs.
    pub failed: i64,
    pub jobtype: NormalJobType,
    /// Succeeded attempts over all runs.
    pub succeeded: i64,
    pub uuid: JobId,
}

/// One run of a schedule, named `<schedule>-<minutes since the Unix epoch>`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ScheduledRunStats {
    pub failed: i64,
    pub jobtype: ScheduleJobType,
    pub name: String,
    pub succeeded: i64,
    pub uuid: JobId,
}

/// The stats body for every job, each schedule's runs cut to its history limits.
pub fn job_stats<'a>(
    states: impl IntoIterator<Item = &'a JobState>,
    limits: impl Fn(&str) -> HistoryLimits,
) -> JobStats {
    let mut body = BTreeMap::new();
    let mut schedules: BTreeMap<String, Vec<(i64, JobStatus, ScheduledRunStats)>> = BTreeMap::new();
    for state in states {
        match &state.schedule {
            None => {
                body.insert(
                    state.job_name.clone(),
                    JobStatsEntry::Normal(NormalJobStats {
                        failed: state.failed,
                        jobtype: NormalJobType::Normal,
                        succeeded: state.succeeded,
                        uuid: state.job_id,
                    }),
                );
            }
            Some(schedule) => {
                let tick = state
                    .job_name
                    .rsplit('-')
                    .next()
                    .and_then(|t| t.parse::<i64>().ok())
                    .unwrap_or(i64::MAX);
                schedules.entry(schedule.clone()).or_default().push((
                    tick,
                    state.status,
                    ScheduledRunStats {
                        failed: state.failed,
                        jobtype: ScheduleJobType::Schedule,
                        name: state.job_name.clone(),
                        succeeded: state.succeeded,
                        uuid: state.job_id,
                    },
                ));
            }
        }
    }
    for (schedule, mut runs) in schedules {
        runs.sort_by(|a, b| (a.0, &a.2.name).cmp(&(b.0, &b.2.name)));
        let kept = keep_history(runs, limits(&schedule));
        body.insert(schedule, JobStatsEntry::Schedule(kept));
    }
    JobStats(body)
}

/// Renders a body the way the job manager did: sorted keys, four-space indentation.
pub fn render(value: &impl Serialize) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    match value.serialize(&mut serializer) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => String::from("{}"),
    }
}

#[cfg(test)]
mod tests {
    use scanstream_contracts::finding::SeverityCounts;
    use serde_json::{Value, json};

    use super::*;

    fn value(stats: JobStats) -> Value {
        serde_json::to_value(stats).unwrap_or_default()
    }

    fn state(
        name: &str,
        uuid: &str,
        schedule: Option<&str>,
        failed: i64,
        succeeded: i64,
    ) -> JobState {
        JobState {
            job_id: JobId(uuid::Uuid::parse_str(uuid).unwrap()),
            job_name: name.into(),
            schedule: schedule.map(str::to_owned),
            repo_url: String::new(),
            status: JobStatus::Succeeded,
            succeeded,
            failed,
            runs: Vec::new(),
            findings: SeverityCounts::default(),
            last_error: None,
            events_folded: 0,
            updated_at: 0,
        }
    }

    /// The example body of the job manager's documentation, byte for byte.
    #[test]
    fn renders_the_seed_example_exactly() {
        let seed = include_str!("../tests/fixtures/seed_jobs_stats.json");
        // Fed in an order unlike the output's, to show the sorting.
        let states = [
            state(
                "test6-27768144",
                "01042270-ee43-4143-9e67-6e4d64fc454c",
                Some("test6"),
                2,
                1,
            ),
            state("test12", "582c5553-09d5-40a3-81fe-5747c9eb5627", None, 2, 1),
            state(
                "test6-27768142",
                "91e63c33-6069-46ee-9841-3a6a4bf98a47",
                Some("test6"),
                3,
                0,
            ),
            state("test10", "bdabbf8e-3256-49f9-a8a6-6ee0b6a6df59", None, 1, 1),
        ];
        assert_eq!(
            render(&job_stats(&states, |_| HistoryLimits::default())),
            seed.trim_end()
        );
    }

    #[test]
    fn schedule_runs_are_in_tick_order_even_across_digit_counts() {
        let states = [
            state(
                "s-100",
                "01042270-ee43-4143-9e67-6e4d64fc454c",
                Some("s"),
                0,
                1,
            ),
            state(
                "s-99",
                "91e63c33-6069-46ee-9841-3a6a4bf98a47",
                Some("s"),
                0,
                1,
            ),
        ];
        let body = value(job_stats(&states, |_| HistoryLimits::default()));
        assert_eq!(body["s"][0]["name"], "s-99");
        assert_eq!(body["s"][1]["name"], "s-100");
        assert_eq!(
            value(job_stats(&[], |_| HistoryLimits::default())),
            json!({})
        );
    }

    #[test]
    fn a_schedule_keeps_its_active_runs_and_the_newest_finished_within_its_limits() {
        let mut states = Vec::new();
        let statuses = [
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Succeeded,
            JobStatus::Cancelled,
            JobStatus::Succeeded,
            JobStatus::Succeeded,
            JobStatus::Running,
            JobStatus::Failed,
            JobStatus::Queued,
        ];
        for (i, status) in statuses.iter().enumerate() {
            let name = format!("s-{}", 100 + i);
            let mut st = state(&name, &JobId::from_name(&name).to_string(), Some("s"), 0, 1);
            st.status = *status;
            states.push(st);
        }
        let names = |body: &Value| -> Vec<String> {
            body["s"]
                .as_array()
                .map(|runs| {
                    runs.iter()
                        .filter_map(|r| r["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let body = value(job_stats(&states, |_| HistoryLimits::default()));
        // Succeeded: the last three (102, 104, 105); failed: the last one (107); active: 106, 108.
        assert_eq!(
            names(&body),
            ["s-102", "s-104", "s-105", "s-106", "s-107", "s-108"]
        );
        let body = value(job_stats(&states, |_| HistoryLimits {
            succeeded: 0,
            failed: 2,
        }));
        assert_eq!(names(&body), ["s-103", "s-106", "s-107", "s-108"]);
    }
}
