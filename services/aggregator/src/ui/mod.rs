//! The dashboard: server-rendered pages under `/ui/`, served with the aggregator's reads.
//!
//! Pages are rendered from the in-memory [`crate::index::Index`] and the store (maud templates,
//! compiled into the binary with their stylesheet and script). What a page changes goes to the
//! public API, not to a second path: the page's script sends the form as JSON to `POST /jobs`,
//! `/jobs/schedule` (ingest) or `PATCH /findings/{id}` with the session cookie and the session's
//! CSRF value in `X-CSRF-Token`, so validation, idempotency and problem answers are the API's.
//!
//! # Layout
//! - [`session`]: login, logout, and who is looking ([`Viewer`]).
//! - [`page`]: the page shell and small shared pieces.
//! - [`overview`] with [`chart`]: counts and SVG charts from the index.
//! - [`jobs`]: the live job list and a job's page.
//! - [`findings`]: the inventory, an item's page with its triage dialog, repositories.
//! - [`schedules`]: schedules with their next runs, suspend/resume and create; the submit form.

mod chart;
mod findings;
mod jobs;
pub mod overview;
mod page;
mod schedules;
mod session;

use actix_web::http::header;
use actix_web::{HttpResponse, web};

pub use session::Viewer;

/// The dashboard's routes, as (method, path).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/ui"),
    ("get", "/ui/"),
    ("get", "/ui/login"),
    ("post", "/ui/login"),
    ("post", "/ui/logout"),
    ("get", "/ui/jobs"),
    ("get", "/ui/jobs/{uuid}"),
    ("get", "/ui/findings"),
    ("get", "/ui/findings/{id}"),
    ("get", "/ui/repos"),
    ("get", "/ui/schedules"),
    ("get", "/ui/submit"),
    ("get", "/ui/assets/{file}"),
];

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui", web::get().to(|| async { page::see_other("/ui/") }))
        .route("/ui/", web::get().to(overview::show))
        .route("/ui/login", web::get().to(session::login_form))
        .route("/ui/login", web::post().to(session::login))
        .route("/ui/logout", web::post().to(session::logout))
        .route("/ui/jobs", web::get().to(jobs::list))
        .route("/ui/jobs/{uuid}", web::get().to(jobs::show))
        .route("/ui/findings", web::get().to(findings::list))
        .route("/ui/findings/{id}", web::get().to(findings::show))
        .route("/ui/repos", web::get().to(findings::repos))
        .route("/ui/schedules", web::get().to(schedules::list))
        .route("/ui/submit", web::get().to(schedules::submit_form))
        .route("/ui/assets/{file}", web::get().to(asset));
}

async fn asset(file: web::Path<String>) -> HttpResponse {
    let (body, kind) = match file.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return HttpResponse::NotFound().finish(),
    };
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(body)
}
