//! The job list (filtered, live) and a job's page: its runs and attempts, the timeline of its
//! runs, and the inventory items it saw.

use actix_web::{HttpResponse, web};
use maud::{Markup, html};
use scanstream_contracts::JobId;
use scanstream_contracts::event::EngineOutcome;
use scanstream_contracts::inventory::{InventoryItem, ItemId};
use scanstream_contracts::state::{EngineSummary, JobState, JobStatus};
use serde::Deserialize;

use super::page::{self, ago, badge, empty_row, job_status, time};
use super::session::Viewer;
use crate::api::AppState;
use crate::index::JobSummary;
use crate::store::Table;

/// Rows a list page shows.
const PAGE: usize = 100;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    q: Option<String>,
    fragment: Option<String>,
}

/// Jobs matching the filters, most recently changed first.
fn matching(state: &AppState, query: &ListQuery) -> (Vec<JobSummary>, usize) {
    let status = query.status.as_deref().filter(|s| !s.is_empty());
    let needle = query
        .q
        .as_deref()
        .map(|q| q.trim().to_lowercase())
        .filter(|q| !q.is_empty());
    state.index.with(|jobs, _| {
        let mut hits: Vec<&JobSummary> = jobs
            .values()
            .filter(|j| status.is_none_or(|s| job_status(j.status) == s))
            .filter(|j| {
                needle.as_deref().is_none_or(|n| {
                    j.name.to_lowercase().contains(n) || j.repo.to_lowercase().contains(n)
                })
            })
            .collect();
        let total = hits.len();
        hits.sort_unstable_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
        (hits.into_iter().take(PAGE).cloned().collect(), total)
    })
}

fn rows(jobs: &[JobSummary], now: i64) -> Markup {
    html! {
        @if jobs.is_empty() { (empty_row(6, "No jobs match.")) }
        @for job in jobs {
            tr {
                th scope="row" { a href={"/ui/jobs/" (uuid::Uuid::from_u128(job.id))} { (job.name) } }
                td { (badge(job_status(job.status))) }
                td.repo { (job.repo) }
                td.num { (job.runs.len()) }
                td.num { (job.findings) }
                td { span title=(chrono_text(job.updated_at)) { (ago(job.updated_at, now)) " ago" } }
            }
        }
    }
}

fn chrono_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(String::new, |t| t.to_rfc3339())
}

pub async fn list(
    state: web::Data<AppState>,
    viewer: Viewer,
    query: web::Query<ListQuery>,
) -> HttpResponse {
    let now = scanstream_platform::now_ms();
    let (jobs, total) = matching(&state, &query);
    if query.fragment.is_some() {
        return page::fragment(rows(&jobs, now));
    }
    let status = query.status.clone().unwrap_or_default();
    let q = query.q.clone().unwrap_or_default();
    let live = format!(
        "/ui/jobs?status={}&q={}&fragment=rows",
        page::encode(&status, false),
        page::encode(&q, false)
    );
    let body = html! {
        form.filters method="get" action="/ui/jobs" role="search" {
            label { "Status "
                select name="status" {
                    option value="" selected[status.is_empty()] { "any" }
                    @for s in ["queued", "running", "succeeded", "failed", "cancelled"] {
                        option value=(s) selected[status == s] { (s) }
                    }
                }
            }
            label { "Name or repository " input type="search" name="q" value=(q); }
            button type="submit" { "Filter" }
        }
        p.meta aria-live="polite" { (total) " jobs" @if total > PAGE { ", the " (PAGE) " most recent shown" } ". The list updates by itself." }
        div.scroll {
            table {
                thead { tr { th scope="col" { "Job" } th scope="col" { "Status" } th scope="col" { "Repository" } th scope="col" { "Runs" } th scope="col" { "Findings" } th scope="col" { "Changed" } } }
                tbody data-live=(live) { (rows(&jobs, now)) }
            }
        }
    };
    page::page(&viewer, "Jobs", "/ui/jobs", body)
}

#[derive(Debug, Default, Deserialize)]
pub struct ShowQuery {
    fragment: Option<String>,
}

pub async fn show(
    state: web::Data<AppState>,
    viewer: Viewer,
    path: web::Path<String>,
    query: web::Query<ShowQuery>,
) -> HttpResponse {
    let Ok(id) = uuid::Uuid::parse_str(&path).map(JobId) else {
        return page::refusal(
            actix_web::http::StatusCode::NOT_FOUND,
            &viewer,
            "No such job",
            "/ui/jobs",
            "A job id is a uuid.",
        );
    };
    // The first view waits for the fold (read-your-writes after a submit); live updates do not.
    let stored = if query.fragment.is_some() {
        state
            .store
            .blocking(move |s| s.get(Table::Jobs, id.0.as_u128()))
            .await
            .map(|s| s.map(|s| s.value))
            .map_err(|e| e.to_string())
    } else {
        state.freshness.read(id).await.map_err(|e| e.to_string())
    };
    let job = match stored {
        Ok(Some(bytes)) => match state.codec.decode::<JobState>(&bytes).await {
            Ok(job) => Some(job),
            Err(e) => return failure(&viewer, &e.to_string()),
        },
        Ok(None) => None,
        Err(e) => return failure(&viewer, &e),
    };
    let live = format!("/ui/jobs/{}?fragment=1", id.0);
    let now = scanstream_platform::now_ms();
    let Some(job) = job else {
        let body = html! {
            div data-live=(live) { (page::notice("This job is not known yet: it appears here once the aggregator has folded its submission.")) }
        };
        if query.fragment.is_some() {
            return page::fragment(
                html! { (page::notice("This job is not known yet: it appears here once the aggregator has folded its submission.")) },
            );
        }
        return page::page(&viewer, "Job", "/ui/jobs", body);
    };
    let findings = job_items(&state, &job).await;
    let content = detail(&job, &findings, now);
    if query.fragment.is_some() {
        return page::fragment(content);
    }
    let body = html! { div data-live=(live) { (content) } };
    page::page(&viewer, &job.job_name, "/ui/jobs", body)
}

fn failure(viewer: &super::Viewer, error: &str) -> HttpResponse {
    tracing::error!(error, "dashboard read failed");
    page::refusal(
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
        viewer,
        "Error",
        "/ui/jobs",
        "The local store could not be read; see the aggregator's log.",
    )
}

/// The items of the job's repository that this job saw (first or last, anywhere).
async fn job_items(state: &AppState, job: &JobState) -> Vec<InventoryItem> {
    let (low, high) = ItemId::range_of(&job.repo_url);
    let Ok(stored) = state
        .store
        .blocking(move |s| s.range(Table::Items, low, high))
        .await
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (_, value) in stored {
        if let Ok(item) = state.codec.decode::<InventoryItem>(&value.value).await {
            let saw = item.first_job == job.job_id
                || item.last_job == job.job_id
                || item
                    .locations
                    .iter()
                    .any(|l| l.first_job == job.job_id || l.last_job == job.job_id);
            if saw {
                out.push(item);
            }
        }
    }
    out.sort_by(|a, b| {
        a.severity
            .rank()
            .cmp(&b.severity.rank())
            .then(a.rule_id.cmp(&b.rule_id))
    });
    out
}

fn terminal(status: JobStatus) -> bool {
    matches!(
        status,
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
    )
}

/// One engine of a run: its id and version, its findings, and how it ended unless it completed
/// (the reason on hover, and after the badge for keyboard and screen-reader users).
fn engine(e: &EngineSummary) -> Markup {
    html! {
        span.engine data-engine=(e.engine) data-outcome=(e.outcome.name()) title=[e.error.as_deref()] {
            (e.engine)
            @if let Some(v) = &e.version { " " small { (v) } }
            @if e.outcome == EngineOutcome::Completed {
                " (" (e.findings) @if e.cached { ", cached" } ")"
            } @else {
                " " span class={"badge " (e.outcome.name())} { (e.outcome.name().replace('_', " ")) }
                @if let Some(reason) = &e.error { " " small.error { (reason) } }
            }
        }
    }
}

/// The status, runs, timeline and findings of a job.
fn detail(job: &JobState, items: &[InventoryItem], now: i64) -> Markup {
    let mut timeline: Vec<(i64, String)> = Vec::new();
    for (n, run) in job.runs.iter().enumerate() {
        timeline.push((run.queued_at, format!("Run {} queued", n + 1)));
        if let Some(t) = run.started_at {
            timeline.push((
                t,
                format!("Run {} started (attempt {})", n + 1, run.attempt),
            ));
        }
        if let Some(t) = run.finished_at {
            let mut text = format!(
                "Run {} {} after attempt {}",
                n + 1,
                job_status(run.status),
                run.attempt
            );
            if let Some(e) = &run.last_error {
                text.push_str(": ");
                text.push_str(e);
            }
            timeline.push((t, text));
        }
    }
    timeline.sort_by_key(|(t, _)| *t);
    html! {
        dl.facts {
            dt { "Status" } dd #job-status data-status=(job_status(job.status)) { (badge(job_status(job.status))) @if !terminal(job.status) { " (updates by itself)" } }
            dt { "Repository" } dd { (job.repo_url) }
            @if let Some(s) = &job.schedule { dt { "Schedule" } dd { a href="/ui/schedules" { (s) } } }
            dt { "Attempts" } dd { (job.succeeded) " succeeded, " (job.failed) " failed" }
            dt { "Findings (latest run)" } dd { (job.findings.total()) }
            dt { "Job id" } dd { code { (job.job_id.0) } }
            dt { "Changed" } dd { (time(job.updated_at)) " (" (ago(job.updated_at, now)) " ago)" }
            @if let Some(e) = &job.last_error { dt { "Last error" } dd.error { (e) } }
        }
        h2 { "Runs" }
        div.scroll {
            table {
                thead { tr { th scope="col" { "Run" } th scope="col" { "Status" } th scope="col" { "Attempt" } th scope="col" { "Engines" } th scope="col" { "Queued" } th scope="col" { "Started" } th scope="col" { "Finished" } } }
                tbody {
                    @for (n, run) in job.runs.iter().enumerate().rev() {
                        tr {
                            th scope="row" { (n + 1) }
                            td { (badge(job_status(run.status))) }
                            td.num { (run.attempt) }
                            td.engines { @for e in &run.engines { (engine(e)) " " } }
                            td { (time(run.queued_at)) }
                            td { @if let Some(t) = run.started_at { (time(t)) } @else { "—" } }
                            td { @if let Some(t) = run.finished_at { (time(t)) } @else { "—" } }
                        }
                    }
                }
            }
        }
        h2 { "Timeline" }
        ol.timeline {
            @for (t, text) in &timeline { li { (time(*t)) " " (text) } }
        }
        h2 { "Findings" }
        div.scroll {
            table {
                thead { tr { th scope="col" { "Rule" } th scope="col" { "Severity" } th scope="col" { "Preview" } th scope="col" { "Location" } th scope="col" { "Status" } } }
                tbody {
                    @if items.is_empty() { (empty_row(5, "This job found nothing.")) }
                    @for item in items {
                        @let place = item.locations.iter().find(|l| l.last_job == job.job_id || l.first_job == job.job_id).or(item.locations.first());
                        tr {
                            th scope="row" { a href={"/ui/findings/" (item.item_id.0)} { (item.rule_id) } }
                            td { (badge(item.severity.name())) }
                            td { code { (item.redacted_preview) } }
                            td { @if let Some(p) = place { code { (p.path) ":" (p.line) } } }
                            td { (badge(page::item_status(item.status))) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use scanstream_contracts::finding::SeverityCounts;
    use scanstream_contracts::state::RunState;
    use scanstream_contracts::{JobId, RunId};

    use super::*;

    #[test]
    fn a_run_shows_each_engine_and_why_one_failed() {
        let job_id = JobId::from_name("engines");
        let summary = |engine: &str, outcome, error: Option<&str>| EngineSummary {
            engine: engine.into(),
            outcome,
            version: Some("8.30.1".into()),
            findings: 3,
            error: error.map(str::to_owned),
            cached: false,
        };
        let job = JobState {
            job_id,
            job_name: "engines".into(),
            schedule: None,
            repo_url: "https://git.example.com/a.git".into(),
            status: JobStatus::Succeeded,
            succeeded: 1,
            failed: 0,
            runs: vec![RunState {
                run_id: RunId::derived(job_id, "1"),
                status: JobStatus::Succeeded,
                attempt: 1,
                last_sequence: 5,
                queued_at: 1,
                started_at: Some(2),
                finished_at: Some(3),
                last_error: None,
                engines: vec![
                    summary("secrets", EngineOutcome::Completed, None),
                    summary(
                        "gitleaks",
                        EngineOutcome::Failed,
                        Some("exited with <status> 3"),
                    ),
                    summary(
                        "slow",
                        EngineOutcome::TimedOut,
                        Some("ran past its timeout"),
                    ),
                ],
            }],
            findings: SeverityCounts::default(),
            last_error: None,
            events_folded: 5,
            updated_at: 3,
        };
        let html = detail(&job, &[], 4).into_string();
        assert!(
            html.contains(r#"data-engine="secrets" data-outcome="completed""#),
            "{html}"
        );
        assert!(html.contains("secrets <small>8.30.1</small> (3)"), "{html}");
        assert!(
            html.contains(r#"<span class="badge failed">failed</span>"#),
            "{html}"
        );
        assert!(html.contains("exited with &lt;status&gt; 3"), "{html}");
        assert!(
            html.contains(r#"<span class="badge timed_out">timed out</span>"#),
            "{html}"
        );
    }
}
