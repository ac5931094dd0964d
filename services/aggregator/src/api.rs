//! The read API. Every instance answers for every job: its store follows the whole changelog.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use scanstream_contracts::Codec;
use scanstream_contracts::finding::SeverityCounts;
use scanstream_contracts::state::{JobState, JobStatus};
use scanstream_platform::auth::{Authenticator, Scope};
use scanstream_platform::http::responses::{ForbiddenRead, InvalidJobId, Unauthorized};
use scanstream_platform::http::{JobPath, Problem, ProblemBody, job_id};
use serde::{Deserialize, Serialize};

use crate::freshness::Freshness;
use crate::stats::{HistoryLimits, JobStats, job_stats, render};
use crate::store::{self, Store};
use scanstream_contracts::schedule::Schedule;
use scanstream_platform::tail::Table;

/// The aggregator's own routes, as (method, path); the OpenAPI document is checked against them
/// (the server adds the shared probes, `/metrics` and `/openapi.json`).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/jobs/stats"),
    ("get", "/jobs/{uuid}"),
    ("get", "/jobs"),
    ("get", "/stats/summary"),
    ("get", "/findings"),
    ("get", "/findings/{id}"),
    ("patch", "/findings/{id}"),
    ("get", "/repos"),
];

pub struct AppState {
    pub store: Arc<Store>,
    pub codec: Arc<Codec>,
    pub auth: Authenticator,
    /// The schedules, for their history limits in `/jobs/stats`.
    pub schedules: Table<Schedule>,
    /// Read-your-writes for `GET /jobs/{uuid}`: waits for the fold before answering `404`.
    pub freshness: Arc<Freshness>,
    /// Writes the triage decisions of `PATCH /findings/{id}`.
    pub triage: crate::inventory::api::TriageWriter,
    /// Summaries of every job and item, for the dashboard.
    pub index: Arc<crate::index::Index>,
}

/// Registers the aggregator's own routes; the shared server adds the probes, `/metrics` and
/// `/openapi.json` (see `scanstream_platform::server`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/jobs/stats", web::get().to(stats))
        .route("/jobs/{uuid}", web::get().to(job))
        .route("/jobs", web::get().to(list))
        .route("/stats/summary", web::get().to(summary));
    crate::inventory::api::configure(cfg);
}

fn authorize(state: &AppState, req: &HttpRequest) -> Result<(), Problem> {
    authorize_scope(state, req, Scope::ScansRead).map(|_| ())
}

/// The request's principal, if its token has `scope`.
pub(crate) fn authorize_scope(
    state: &AppState,
    req: &HttpRequest,
    scope: Scope,
) -> Result<scanstream_platform::auth::Principal, Problem> {
    let principal = state.auth.from_request(req)?;
    principal.require(scope)?;
    Ok(principal)
}

pub(crate) fn internal(e: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "read failed");
    Problem::new(
        500,
        "internal",
        "Internal error",
        "the local store could not be read",
    )
}

/// Every job, decoded, in id order (for the stats bodies).
pub(crate) async fn all_jobs(state: &AppState) -> Result<Vec<JobState>, Problem> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = state
            .store
            .blocking(move |s| s.page(store::Table::Jobs, after, 10_000))
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

/// Every job in the job manager's format.
///
/// Normal jobs as `"name": {failed, jobtype: normal, succeeded, uuid}`; each schedule as
/// `"schedule": [{failed, jobtype: schedule, name: <schedule>-<minutes since epoch>, succeeded,
/// uuid}, …]`. succeeded/failed count attempts over all runs; a schedule lists its active runs and
/// its newest finished ones within its history limits. Keys sorted, four-space indentation.
#[utoipa::path(get, path = "/jobs/stats", tag = "job state", responses(
    (status = 200, description = "The stats body.", body = JobStats),
    (status = 401, response = Unauthorized),
    (status = 403, response = ForbiddenRead),
))]
pub(crate) async fn stats(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
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

/// One job's full state: the folded JobState (schemas/JobState.avsc) as JSON.
///
/// A job submitted a moment ago is found: while the fold is behind the end of scans.events, the
/// read waits for it (up to 2 s) before answering `404`.
#[utoipa::path(get, path = "/jobs/{uuid}", tag = "job state",
    params(JobPath),
    responses(
        (status = 200, description = "The job.", body = JobState),
        (status = 400, response = InvalidJobId),
        (status = 401, response = Unauthorized),
        (status = 403, response = ForbiddenRead),
        (status = 404, description = "No such job.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn job(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    authorize(&state, &req)?;
    let id = job_id(&path)?;
    let stored = state.freshness.read(id).await.map_err(internal)?;
    match stored {
        Some(value) => {
            let job: JobState = state.codec.decode(&value).await.map_err(internal)?;
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

/// The filters and page of `GET /jobs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only jobs whose latest run has this status.
    #[param(value_type = Option<StatusFilter>, inline)]
    status: Option<String>,
    /// Only jobs of this normalized repository URL.
    repo: Option<String>,
    /// Jobs per page.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<uuid::Uuid>)]
    cursor: Option<String>,
}

/// A job status, as a `GET /jobs` filter.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // Documents the accepted values; parse_status reads them.
pub(crate) enum StatusFilter {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// A page of `GET /jobs`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobsPage {
    pub jobs: Vec<JobState>,
    /// Pass as `cursor` for the next page; `null` after the last page.
    pub next_cursor: Option<uuid::Uuid>,
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

/// Jobs, filtered and paginated, in stable (job id) order.
#[utoipa::path(get, path = "/jobs", tag = "job state", params(ListQuery), responses(
    (status = 200, description = "A page; pass next_cursor as cursor for the next one.", body = JobsPage),
    (status = 400, description = "A bad filter, limit or cursor.", body = ProblemBody, content_type = "application/problem+json"),
    (status = 401, response = Unauthorized),
    (status = 403, response = ForbiddenRead),
))]
pub(crate) async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
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
    let (limit, after) = page_params(query.limit, query.cursor.as_deref())?;
    let (jobs, next_cursor) = filtered_page(
        &state,
        store::Table::Jobs,
        after,
        None,
        limit,
        |job: JobState| {
            let matches = status.is_none_or(|s| job.status == s)
                && query.repo.as_ref().is_none_or(|r| &job.repo_url == r);
            matches.then_some(job)
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(JobsPage { jobs, next_cursor }))
}

/// A listing's `limit` (1 to [`MAX_LIMIT`], default 100) and the key after which it starts
/// (its `cursor`, a `next_cursor` of an earlier page).
pub(crate) fn page_params(
    limit: Option<usize>,
    cursor: Option<&str>,
) -> Result<(usize, Option<u128>), Problem> {
    let limit = limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Problem::invalid(
            "limit",
            "range",
            format!("limit must be 1 to {MAX_LIMIT}"),
        ));
    }
    let after = cursor
        .map(|c| {
            uuid::Uuid::parse_str(c).map(|u| u.as_u128()).map_err(|_| {
                Problem::invalid(
                    "cursor",
                    "cursor",
                    "cursor must be a next_cursor from an earlier page",
                )
            })
        })
        .transpose()?;
    Ok((limit, after))
}

/// Up to `limit` values of `table` in key order after `after` (and up to `until`, inclusive)
/// that `keep` keeps, and the `next_cursor` (`None` after the last page).
pub(crate) async fn filtered_page<T: scanstream_contracts::AvroRecord, R>(
    state: &AppState,
    table: store::Table,
    mut after: Option<u128>,
    until: Option<u128>,
    limit: usize,
    keep: impl Fn(T) -> Option<R>,
) -> Result<(Vec<R>, Option<uuid::Uuid>), Problem> {
    let mut out = Vec::new();
    let mut exhausted = false;
    'pages: while out.len() < limit {
        let page = state
            .store
            .blocking(move |s| s.page(table, after, 1000))
            .await
            .map_err(internal)?;
        if page.is_empty() {
            exhausted = true;
            break;
        }
        for (id, stored) in page {
            if until.is_some_and(|u| id > u) {
                exhausted = true;
                break 'pages;
            }
            after = Some(id);
            let value: T = state.codec.decode(&stored.value).await.map_err(internal)?;
            if let Some(kept) = keep(value) {
                out.push(kept);
                if out.len() == limit {
                    break;
                }
            }
        }
    }
    let next_cursor = if exhausted {
        None
    } else {
        after.map(uuid::Uuid::from_u128)
    };
    Ok((out, next_cursor))
}

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted.get(rank).copied()
}

/// The `GET /stats/summary` body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// Jobs in the store.
    pub jobs: usize,
    /// Jobs by the status of their latest run.
    pub by_status: StatusCounts,
    pub run_duration_ms: RunDurations,
    /// Findings of every job's latest run, by severity.
    pub findings: SeverityCounts,
}

/// Jobs by status.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct StatusCounts {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
}

/// Durations (finished_at - started_at, milliseconds) of the finished runs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunDurations {
    pub count: usize,
    /// `null` without finished runs.
    pub p50: Option<i64>,
    pub p95: Option<i64>,
}

/// Counts by status, run durations, findings by severity.
#[utoipa::path(get, path = "/stats/summary", tag = "job state", responses(
    (status = 200, description = "The summary.", body = Summary),
    (status = 401, response = Unauthorized),
    (status = 403, response = ForbiddenRead),
))]
pub(crate) async fn summary(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorize(&state, &req)?;
    let jobs = all_jobs(&state).await?;
    let mut by_status = StatusCounts::default();
    let mut findings = SeverityCounts::default();
    let mut durations = Vec::new();
    for job in &jobs {
        *match job.status {
            JobStatus::Queued => &mut by_status.queued,
            JobStatus::Running => &mut by_status.running,
            JobStatus::Succeeded => &mut by_status.succeeded,
            JobStatus::Failed => &mut by_status.failed,
            JobStatus::Cancelled => &mut by_status.cancelled,
        } += 1;
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
    Ok(HttpResponse::Ok().json(Summary {
        jobs: jobs.len(),
        by_status,
        run_duration_ms: RunDurations {
            count: durations.len(),
            p50: percentile(&durations, 50.0),
            p95: percentile(&durations, 95.0),
        },
        findings,
    }))
}
