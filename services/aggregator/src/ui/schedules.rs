//! Schedules (their next runs, suspend/resume, create) and the form that submits a scan. The
//! forms are sent by the page's script to ingest's API (`POST /jobs`, `POST /jobs/schedule`,
//! `PATCH /jobs/schedule/{name}`), so what they accept and refuse is exactly what the API does.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use maud::{Markup, html};
use scanstream_contracts::command::ScanMode;
use scanstream_contracts::schedule::Schedule;
use scanstream_scheduler::{Timetable, minute_of};

use super::page::{self, empty_row, time};
use super::session::Viewer;
use crate::api::AppState;

/// Next runs listed per schedule.
const NEXT_RUNS: usize = 3;
/// Longest a page waits to read the schedules topic to its end (read-your-writes after a form).
const SYNC_TIMEOUT: Duration = Duration::from_secs(3);

fn mode(m: ScanMode) -> &'static str {
    match m {
        ScanMode::Tree => "tree",
        ScanMode::History => "history",
        ScanMode::Incremental => "incremental",
    }
}

pub async fn list(state: web::Data<AppState>, viewer: Viewer) -> HttpResponse {
    if let Err(e) = state.schedules.sync(SYNC_TIMEOUT).await {
        tracing::warn!(error = %e, "the schedules page shows what was read so far");
    }
    let schedules: Vec<Schedule> = state.schedules.read(|t| t.values().cloned().collect());
    let now = scanstream_platform::now_ms();
    let body = html! {
        div.scroll {
            table {
                thead { tr {
                    th scope="col" { "Schedule" } th scope="col" { "Cron (UTC)" } th scope="col" { "Repository" } th scope="col" { "Mode" }
                    th scope="col" { "State" } th scope="col" { "Next runs" } @if viewer.can_write { th scope="col" { span.visually-hidden { "Actions" } } }
                } }
                tbody {
                    @if schedules.is_empty() { (empty_row(7, "No schedules yet.")) }
                    @for s in &schedules { (row(&viewer, s, now)) }
                }
            }
        }
        @if viewer.can_write { (create_form()) }
    };
    page::page(&viewer, "Schedules", "/ui/schedules", body)
}

fn row(viewer: &Viewer, s: &Schedule, now: i64) -> Markup {
    let next: Vec<i64> = match Timetable::parse(&s.cron) {
        Ok(t) if !s.suspend => t.upcoming(minute_of(now), NEXT_RUNS),
        _ => Vec::new(),
    };
    html! {
        tr data-schedule=(s.name) {
            th scope="row" { a href={"/ui/jobs?q=" (page::encode(&s.name, false))} { (s.name) } }
            td { code { (s.cron) } }
            td.repo { (s.repo_url) }
            td { (mode(s.mode)) }
            td { @if s.suspend { (page::badge("suspended")) } @else { (page::badge("active")) } }
            td {
                @if next.is_empty() { "—" }
                ul.plain { @for minute in &next { li { (time(minute * 60_000)) } } }
            }
            @if viewer.can_write {
                td {
                    form data-api={"/jobs/schedule/" (s.name)} data-method="PATCH" data-next="reload" {
                        input type="hidden" name="suspend" data-type="bool" value=(if s.suspend { "false" } else { "true" });
                        button type="submit" aria-label={(if s.suspend { "Resume " } else { "Suspend " }) (s.name)} { @if s.suspend { "Resume" } @else { "Suspend" } }
                        p.error role="alert" hidden {}
                    }
                }
            }
        }
    }
}

/// The scan mode field of both forms.
fn mode_select(id: &str) -> Markup {
    html! {
        label for=(id) { "Mode" }
        select id=(id) name="mode" {
            option value="tree" { "tree (the files of the ref)" }
            option value="history" { "history (every commit)" }
            option value="incremental" { "incremental (new commits)" }
        }
    }
}

fn create_form() -> Markup {
    html! {
        section.card {
            h2 { "New schedule" }
            form.stack data-api="/jobs/schedule" data-method="POST" data-next="reload" {
                label for="schedule-name" { "Name" }
                input #schedule-name name="name" required pattern="[a-z0-9]([-a-z0-9]*[a-z0-9])?" maxlength="52" placeholder="nightly-payments";
                label for="schedule-cron" { "Cron (five fields, UTC)" }
                input #schedule-cron name="schedule" required value="0 3 * * *";
                label for="schedule-repo" { "Repository URL" }
                input #schedule-repo name="repo" type="text" placeholder="https://git.example.com/team/repo.git";
                (mode_select("schedule-mode"))
                p.error role="alert" hidden {}
                button type="submit" { "Create schedule" }
            }
        }
    }
}

pub async fn submit_form(viewer: Viewer) -> HttpResponse {
    if !viewer.can_write {
        return page::refusal(
            actix_web::http::StatusCode::FORBIDDEN,
            &viewer,
            "Submit a scan",
            "/ui/submit",
            "This token may not submit scans (it lacks the scans:write scope).",
        );
    }
    let body = html! {
        form.card.stack data-api="/jobs" data-method="POST" data-next="job" {
            label for="job-name" { "Job name" }
            input #job-name name="name" required pattern="[a-z0-9]([-a-z0-9]*[a-z0-9])?" maxlength="63" placeholder="payments-audit";
            p.hint { "Lower-case letters, digits and dashes. Submitting a name again queues another run of that job." }
            label for="job-repo" { "Repository URL" }
            input #job-repo name="repo" type="text" placeholder="https://git.example.com/team/repo.git";
            p.hint { "Empty: the deployment's repository template for this name, if it has one." }
            label for="job-ref" { "Ref (optional)" }
            input #job-ref name="ref" type="text" placeholder="main";
            (mode_select("job-mode"))
            p.error role="alert" hidden {}
            button type="submit" { "Submit scan" }
        }
    };
    page::page(&viewer, "Submit a scan", "/ui/submit", body)
}
