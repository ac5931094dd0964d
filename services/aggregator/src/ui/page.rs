//! The page shell (head, navigation, main) and the small pieces every page uses.

use actix_web::HttpResponse;
use actix_web::http::header;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use scanstream_contracts::inventory::ItemStatus;
use scanstream_contracts::state::JobStatus;

use super::Viewer;

/// The navigation's pages: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/ui/", "Overview"),
    ("/ui/jobs", "Jobs"),
    ("/ui/findings", "Findings"),
    ("/ui/repos", "Repositories"),
    ("/ui/schedules", "Schedules"),
    ("/ui/submit", "Submit a scan"),
];

/// A whole page: `active` is the navigation entry it belongs to.
pub fn page(viewer: &Viewer, title: &str, active: &str, body: Markup) -> HttpResponse {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(viewer.csrf);
                title { (title) " · scanstream" }
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "scanstream" }
                    nav aria-label="Main" {
                        ul {
                            @for (path, label) in NAV {
                                @if *path != "/ui/submit" || viewer.can_write {
                                    li {
                                        a href=(path) aria-current=[(*path == active).then_some("page")] { (label) }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(name) = &viewer.name {
                        form.logout method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            span.who { "Signed in as " strong { (name) } }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    html_response(markup)
}

/// An HTML answer that no cache keeps and no frame shows.
pub fn html_response(markup: Markup) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-frame-options", "DENY"))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ))
        .body(markup.into_string())
}

/// A part of a page, for the live updates of app.js.
pub fn fragment(markup: Markup) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(markup.into_string())
}

/// A redirect after a form or to the login page.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location.to_owned()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// Percent-encodes a query value (`+` for a space); `/` is kept when `path` (a path in a
/// `next=` value).
pub fn encode(text: &str, path: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if path => out.push('/'),
            b' ' if !path => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A time as `2026-11-28 09:10 UTC`, with the exact instant as its machine-readable value.
pub fn time(ms: i64) -> Markup {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => html! {
            time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S UTC")) }
        },
        None => html! { "—" },
    }
}

/// How long ago `ms` was, in the largest whole unit.
pub fn ago(ms: i64, now: i64) -> String {
    let seconds = (now - ms).max(0) / 1000;
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

pub fn job_status(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Queued => "queued",
        JobStatus::Running => "running",
        JobStatus::Succeeded => "succeeded",
        JobStatus::Failed => "failed",
        JobStatus::Cancelled => "cancelled",
    }
}

pub fn item_status(status: ItemStatus) -> &'static str {
    match status {
        ItemStatus::Open => "open",
        ItemStatus::Resolved => "resolved",
        ItemStatus::Ignored => "ignored",
    }
}

/// A status word as a badge (colour from its class, the word itself for everyone).
pub fn badge(word: &str) -> Markup {
    html! { span class={"badge " (word)} { (word) } }
}

/// A page that says why it shows nothing else, with its status (`404`, `403`, `500`).
pub fn refusal(
    status: actix_web::http::StatusCode,
    viewer: &Viewer,
    title: &str,
    active: &str,
    text: &str,
) -> HttpResponse {
    let mut response = page(viewer, title, active, notice(text));
    *response.status_mut() = status;
    response
}

/// A page's problem, shown in place of its content.
pub fn notice(text: &str) -> Markup {
    html! { p.notice role="status" { (text) } }
}

/// An empty-state line inside a table.
pub fn empty_row(columns: usize, text: &str) -> Markup {
    html! { tr { td.empty colspan=(columns) { (text) } } }
}
