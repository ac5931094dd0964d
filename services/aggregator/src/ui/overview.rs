//! The overview: jobs by state now, runs and new findings over time, open items by severity,
//! the repositories with most open items, and how long scans wait for a scanner.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use maud::{Markup, html};
use scanstream_contracts::finding::Severity;
use scanstream_contracts::inventory::ItemStatus;
use scanstream_contracts::state::JobStatus;

use super::chart::{self, Bar};
use super::page::{self, ago, job_status};
use super::session::Viewer;
use crate::api::AppState;
use crate::index::{Index, ItemSummary, JobSummary};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const STATUSES: [JobStatus; 5] = [
    JobStatus::Queued,
    JobStatus::Running,
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::Cancelled,
];

/// What the overview shows, added up from the index.
#[derive(Debug, Default, PartialEq)]
pub struct Overview {
    pub jobs: usize,
    /// Jobs by the status of their latest run, in [`STATUSES`] order.
    pub by_status: [u64; 5],
    /// Runs queued in each of the last 24 hours, oldest first.
    pub runs_per_hour: [u64; 24],
    /// Items first seen on each of the last 14 days, oldest first.
    pub new_per_day: [u64; 14],
    /// Open items by severity, in [`Severity::ALL`] order.
    pub open_by_severity: [u64; 5],
    pub items: usize,
    /// (repository key, open items), most first, at most five.
    pub top_repos: Vec<(u64, u64)>,
    /// Jobs whose latest run waits for a scanner, and since when the oldest waits.
    pub waiting: u64,
    pub oldest_waiting: Option<i64>,
}

/// Adds up the overview at `now` (milliseconds since the epoch).
pub fn summarize(
    jobs: &HashMap<u128, JobSummary>,
    items: &HashMap<u128, ItemSummary>,
    now: i64,
) -> Overview {
    let mut o = Overview {
        jobs: jobs.len(),
        items: items.len(),
        ..Overview::default()
    };
    let hour_start = now - now.rem_euclid(HOUR);
    let day_start = now - now.rem_euclid(DAY);
    for job in jobs.values() {
        if let Some(n) = STATUSES.iter().position(|s| *s == job.status) {
            o.by_status[n] += 1;
        }
        if job.status == JobStatus::Queued {
            o.waiting += 1;
            o.oldest_waiting = Some(
                o.oldest_waiting
                    .map_or(job.queued_at, |t| t.min(job.queued_at)),
            );
        }
        for (queued, _) in &job.runs {
            let back = (hour_start + HOUR - 1 - queued).div_euclid(HOUR);
            if (0..24).contains(&back) {
                o.runs_per_hour[23 - back as usize] += 1;
            }
        }
    }
    let mut open_by_repo: HashMap<u64, u64> = HashMap::new();
    for item in items.values() {
        let back = (day_start + DAY - 1 - item.first_seen).div_euclid(DAY);
        if (0..14).contains(&back) {
            o.new_per_day[13 - back as usize] += 1;
        }
        if item.status == ItemStatus::Open {
            o.open_by_severity[item.severity.rank()] += 1;
            *open_by_repo.entry(item.repo).or_default() += 1;
        }
    }
    let mut top: Vec<(u64, u64)> = open_by_repo.into_iter().collect();
    top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(5);
    o.top_repos = top;
    o
}

pub async fn show(state: web::Data<AppState>, viewer: Viewer) -> HttpResponse {
    let now = scanstream_platform::now_ms();
    let overview = state.index.with(|jobs, items| summarize(jobs, items, now));
    page::page(
        &viewer,
        "Overview",
        "/ui/",
        render(&overview, &state.index, now),
    )
}

/// The overview's content.
pub fn render(o: &Overview, index: &Index, now: i64) -> Markup {
    let hour_start = now - now.rem_euclid(HOUR);
    let day_start = now - now.rem_euclid(DAY);
    let runs: Vec<Bar> = (0..24)
        .map(|n| Bar {
            label: hour_label(hour_start - (23 - n) * HOUR),
            value: o.runs_per_hour[n as usize],
        })
        .collect();
    let found: Vec<Bar> = (0..14)
        .map(|n| Bar {
            label: day_label(day_start - (13 - n) * DAY),
            value: o.new_per_day[n as usize],
        })
        .collect();
    let severities: Vec<(String, u64, &str)> = Severity::ALL
        .iter()
        .zip(o.open_by_severity)
        .map(|(s, n)| (s.name().to_owned(), n, s.name()))
        .collect();
    let repos: Vec<(String, u64, &str)> = o
        .top_repos
        .iter()
        .map(|(repo, n)| {
            let name = index
                .repo_name(*repo)
                .map_or_else(|| "?".to_owned(), |r| r.to_string());
            (name, *n, "repo")
        })
        .collect();
    html! {
        @if !index.built() {
            (page::notice("Still reading the store: counts are partial for a moment."))
        }
        section.tiles aria-label="Jobs by state" {
            @for (status, count) in STATUSES.iter().zip(o.by_status) {
                a.tile href={"/ui/jobs?status=" (job_status(*status))} {
                    span.count { (count) }
                    span { (job_status(*status)) }
                }
            }
            div.tile.lag {
                span.count { (o.waiting) }
                span {
                    "waiting for a scanner"
                    @if let Some(t) = o.oldest_waiting { br; "oldest " (ago(t, now)) }
                }
            }
        }
        div.grid {
            section.card { h2 { "Runs per hour" } (chart::columns("Runs queued in the last 24 hours", "runs", &runs, 6)) }
            section.card { h2 { "New findings per day" } (chart::columns("Items first seen in the last 14 days", "items", &found, 3)) }
            section.card { h2 { "Open items by severity" } (chart::rows("Open items by severity", &severities)) }
            section.card {
                h2 { "Most open items" }
                @if repos.is_empty() { p.empty { "No open items." } }
                @else { (chart::rows("Repositories with most open items", &repos)) }
            }
        }
        p.meta { (o.jobs) " jobs and " (o.items) " inventory items in the store." }
    }
}

fn hour_label(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(String::new, |t| t.format("%H:00").to_string())
}

fn day_label(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(String::new, |t| t.format("%m-%d").to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn job(status: JobStatus, queued_at: i64) -> JobSummary {
        JobSummary {
            id: 0,
            name: "j".into(),
            repo: Arc::from("r"),
            schedule: None,
            status,
            succeeded: 0,
            failed: 0,
            findings: 0,
            updated_at: queued_at,
            runs: vec![(queued_at, None)],
            started_at: None,
            queued_at,
        }
    }

    fn item(repo: u64, status: ItemStatus, severity: Severity, first_seen: i64) -> ItemSummary {
        ItemSummary {
            repo,
            status,
            severity,
            in_tip: true,
            first_seen,
        }
    }

    #[test]
    fn the_overview_adds_up_states_times_and_open_items() {
        let now = 100 * DAY + 30 * 60_000;
        let jobs = HashMap::from([
            (1, job(JobStatus::Queued, now - 10 * 60_000)),
            (2, job(JobStatus::Succeeded, now - 2 * HOUR)),
            (3, job(JobStatus::Succeeded, now - 30 * HOUR)),
        ]);
        let items = HashMap::from([
            (1, item(7, ItemStatus::Open, Severity::High, now - DAY)),
            (2, item(7, ItemStatus::Open, Severity::Critical, now)),
            (
                3,
                item(8, ItemStatus::Resolved, Severity::High, now - 20 * DAY),
            ),
            (4, item(8, ItemStatus::Open, Severity::Low, now)),
        ]);
        let o = summarize(&jobs, &items, now);
        assert_eq!(o.by_status, [1, 0, 2, 0, 0]);
        assert_eq!(o.waiting, 1);
        assert_eq!(o.oldest_waiting, Some(now - 10 * 60_000));
        assert_eq!(o.runs_per_hour[23], 1, "this hour");
        assert_eq!(o.runs_per_hour[21], 1, "two hours ago");
        assert_eq!(
            o.runs_per_hour.iter().sum::<u64>(),
            2,
            "30 hours ago is out of the chart"
        );
        assert_eq!(o.new_per_day[13], 2);
        assert_eq!(o.new_per_day[12], 1);
        assert_eq!(o.new_per_day.iter().sum::<u64>(), 3);
        assert_eq!(o.open_by_severity, [1, 1, 0, 1, 0]);
        assert_eq!(o.top_repos, vec![(7, 2), (8, 1)]);
    }
}
