//! `GET /jobs/stats` in the job manager's format (seed 000), which its clients parse:
//!
//! - a normal job: `"<name>": {"failed", "jobtype": "normal", "succeeded", "uuid"}`;
//! - a schedule: `"<schedule>": [{"failed", "jobtype": "schedule", "name": "<schedule>-<minutes
//!   since epoch>", "succeeded", "uuid"}, …]`, runs in tick order.
//!
//! Keys are sorted and the body is indented with four spaces, as the job manager answered.
//! Job and schedule names share one namespace in this body.

use serde::Serialize;
use serde_json::{Map, Value, json};

use scanstream_contracts::state::JobState;

/// The stats body for every job.
pub fn job_stats<'a>(states: impl IntoIterator<Item = &'a JobState>) -> Value {
    let mut body = Map::new();
    let mut schedules: std::collections::BTreeMap<String, Vec<(i64, String, Value)>> =
        Default::default();
    for state in states {
        match &state.schedule {
            None => {
                body.insert(
                    state.job_name.clone(),
                    json!({
                        "failed": state.failed,
                        "jobtype": "normal",
                        "succeeded": state.succeeded,
                        "uuid": state.job_id.to_string(),
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
                    state.job_name.clone(),
                    json!({
                        "failed": state.failed,
                        "jobtype": "schedule",
                        "name": state.job_name,
                        "succeeded": state.succeeded,
                        "uuid": state.job_id.to_string(),
                    }),
                ));
            }
        }
    }
    for (schedule, mut runs) in schedules {
        runs.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        body.insert(
            schedule,
            Value::Array(runs.into_iter().map(|(_, _, v)| v).collect()),
        );
    }
    Value::Object(body)
}

/// Renders a body the way the job manager did: sorted keys, four-space indentation.
pub fn render(value: &Value) -> String {
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
    use scanstream_contracts::JobId;
    use scanstream_contracts::finding::SeverityCounts;
    use scanstream_contracts::state::JobStatus;

    use super::*;

    fn state(
        name: &str,
        uuid: &str,
        schedule: Option<&str>,
        failed: i64,
        succeeded: i64,
    ) -> JobState {
        JobState {
            job_id: JobId(uuid::Uuid::parse_str(uuid).unwrap_or_else(|e| panic!("{e}"))),
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
        assert_eq!(render(&job_stats(&states)), seed.trim_end());
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
        let body = job_stats(&states);
        assert_eq!(body["s"][0]["name"], "s-99");
        assert_eq!(body["s"][1]["name"], "s-100");
        assert_eq!(job_stats(&[]), json!({}));
    }
}
