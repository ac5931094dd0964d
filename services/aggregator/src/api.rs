//! The read API. Every instance answers for every job: its store follows the whole changelog.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use scanstream_contracts::Codec;
use scanstream_contracts::finding::SeverityCounts;
use scanstream_contracts::state::{JobState, JobStatus};
use scanstream_platform::auth::{Authenticator, Scope};
use scanstream_platform::http::Problem;
use serde::Deserialize;
use serde_json::json;

use crate::stats::{HistoryLimits, job_stats, render};
use crate::store::Store;
use scanstream_contracts::schedule::Schedule;
use scanstream_platform::tail::Table;

/// The aggregator's own routes, as (method, path); the OpenAPI document is checked against them
/// (the server adds the shared probes, `/metrics` and `/openapi.json`).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/jobs/stats"),
    ("get", "/jobs/{uuid}"),
    ("get", "/jobs"),
    ("get", "/stats/summary"),
];

pub struct AppState {
    pub store: Arc<Store>,
    pub codec: Arc<Codec>,
    pub auth: Authenticator,
    /// The schedules, for their history limits in `/jobs/stats`.
    pub schedules: Table<Schedule>,
}

/// Registers the aggregator's own routes; the shared server adds the probes, `/metrics` and
/// `/openapi.json` (see `scanstream_platform::server`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/jobs/stats", web::get().to(stats))
        .route("/jobs/{uuid}", web::get().to(job))
        .route("/jobs", web::get().to(list))
        .route("/stats/summary", web::get().to(summary));
}

fn authorize(state: &AppState, req: &HttpRequest) -> Result<(), Problem> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state.auth.authenticate(header)?.require(Scope::ScansRead)?;
    Ok(())
}

fn internal(e: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "read failed");
    Problem::new(
        500,
        "internal",
        "Internal error",
        "the job store could not be read",
    )
}

/// Every job, decoded, in id order (for the stats bodies).
async fn all_jobs(state: &AppState) -> Result<Vec<JobState>, Problem> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = state
            .store
            .blocking(move |s| s.page(after, 10_000))
            .await
            .map_err(internal)?;
        let Some(last) = page.last() else { break };
        after = Some(last.0);
        for (_, stored) in page {
            out.push(
                state
                    .codec
                    .decode::<JobState>(&stored.value)
                    .await
                    .map_err(internal)?,
            );
        }
    }
    Ok(out)
}

/// `GET /jobs/stats`: the job manager's body.
async fn stats(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, Problem> {
    authorize(&state, &req)?;
    let jobs = all_jobs(&state).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(render(&job_stats(&jobs, |name| {
            state.schedules.read(|table| {
                table
                    .get(name)
                    .map_or_else(HistoryLimits::default, |s| HistoryLimits {
                        succeeded: usize::try_from(s.successful_jobs_history_limit).unwrap_or(0),
                        failed: usize::try_from(s.failed_jobs_history_limit).unwrap_or(0),
                    })
            })
        }))))
}

async fn job(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    authorize(&state, &req)?;
    let id = uuid::Uuid::parse_str(&path)
        .map_err(|_| Problem::invalid("uuid", "uuid", "the job id must be a uuid"))?;
    let stored = state
        .store
        .blocking(move |s| s.get(id.as_u128()))
        .await
        .map_err(internal)?;
    match stored {
        Some(stored) => {
            let job: JobState = state.codec.decode(&stored.value).await.map_err(internal)?;
            Ok(HttpResponse::Ok().json(job))
        }
        None => Err(Problem::new(
            404,
            "not-found",
            "Not found",
            format!("no job {id}"),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    repo: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

const MAX_LIMIT: usize = 1000;

fn parse_status(text: &str) -> Option<JobStatus> {
    match text.to_ascii_lowercase().as_str() {
        "queued" => Some(JobStatus::Queued),
        "running" => Some(JobStatus::Running),
        "succeeded" => Some(JobStatus::Succeeded),
        "failed" => Some(JobStatus::Failed),
        "cancelled" => Some(JobStatus::Cancelled),
        _ => None,
    }
}

/// `GET /jobs?status=&repo=&limit=&cursor=`: jobs in id order; `next_cursor` continues the walk.
async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, Problem> {
    authorize(&state, &req)?;
    let query = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|e| Problem::invalid("query", "query", e.to_string()))?
        .into_inner();
    let status = match &query.status {
        Some(s) => Some(parse_status(s).ok_or_else(|| {
            Problem::invalid(
                "status",
                "enum",
                "status must be queued, running, succeeded, failed or cancelled",
            )
        })?),
        None => None,
    };
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Problem::invalid(
            "limit",
            "range",
            format!("limit must be 1 to {MAX_LIMIT}"),
        ));
    }
    let mut after = match &query.cursor {
        Some(c) => Some(
            uuid::Uuid::parse_str(c)
                .map_err(|_| {
                    Problem::invalid(
                        "cursor",
                        "cursor",
                        "cursor must be a next_cursor from an earlier page",
                    )
                })?
                .as_u128(),
        ),
        None => None,
    };
    let mut jobs = Vec::new();
    let mut exhausted = false;
    while jobs.len() < limit {
        let page = state
            .store
            .blocking(move |s| s.page(after, 1000))
            .await
            .map_err(internal)?;
        if page.is_empty() {
            exhausted = true;
            break;
        }
        for (id, stored) in page {
            after = Some(id);
            let job: JobState = state.codec.decode(&stored.value).await.map_err(internal)?;
            let matches = status.is_none_or(|s| job.status == s)
                && query.repo.as_ref().is_none_or(|r| &job.repo_url == r);
            if matches {
                jobs.push(job);
                if jobs.len() == limit {
                    break;
                }
            }
        }
    }
    let next = if exhausted {
        None
    } else {
        after.map(|a| uuid::Uuid::from_u128(a).to_string())
    };
    Ok(HttpResponse::Ok().json(json!({"jobs": jobs, "next_cursor": next})))
}

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted.get(rank).copied()
}

/// `GET /stats/summary`: counts by status, run durations, findings by severity.
async fn summary(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, Problem> {
    authorize(&state, &req)?;
    let jobs = all_jobs(&state).await?;
    let mut by_status = std::collections::BTreeMap::<&str, u64>::new();
    let mut findings = SeverityCounts::default();
    let mut durations = Vec::new();
    for job in &jobs {
        let name = match job.status {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        };
        *by_status.entry(name).or_default() += 1;
        findings.critical += job.findings.critical;
        findings.high += job.findings.high;
        findings.medium += job.findings.medium;
        findings.low += job.findings.low;
        findings.info += job.findings.info;
        for run in &job.runs {
            if let (Some(start), Some(end)) = (run.started_at, run.finished_at) {
                durations.push(end - start);
            }
        }
    }
    durations.sort_unstable();
    Ok(HttpResponse::Ok().json(json!({
        "jobs": jobs.len(),
        "by_status": by_status,
        "run_duration_ms": {"count": durations.len(), "p50": percentile(&durations, 50.0), "p95": percentile(&durations, 95.0)},
        "findings": findings,
    })))
}
