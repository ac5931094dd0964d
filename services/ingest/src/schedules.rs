//! `/jobs/schedule`: schedules with Kubernetes CronJob semantics, stored only as records of the
//! compacted `scans.schedules` (a tombstone deletes one). Writes go through the same
//! transactional writer as `POST /jobs`; reads come from a follower of the topic that is synced
//! before each answer, so a client reads its own writes. Rejections write nothing.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use scanstream_contracts::Topic;
use scanstream_contracts::command::ScanMode;
use scanstream_contracts::schedule::{ConcurrencyPolicy, Schedule};
use scanstream_platform::auth::Scope;
use scanstream_platform::http::{Problem, RequestContext, json_body};
use scanstream_platform::tail::Table;
use scanstream_platform::writer::{Record, Target};
use scanstream_scheduler::{Clock, DEFAULT_CRON, Timetable, minute_of};
use serde::{Deserialize, Serialize};

use crate::api::{
    AppState, authorize, encode, field, now_millis, parse_mode, resolve_repo, unavailable,
};
use crate::domain::{GitRef, JobName};

/// The longest `startingDeadlineSeconds` accepted: a year. Later ticks than that are history,
/// not something to fire.
pub const MAX_STARTING_DEADLINE_SECONDS: i64 = 365 * 24 * 3600;
/// Schedule names leave room for `-<minutes since the epoch>` in a 63-character run name, as
/// Kubernetes limits CronJob names to 52.
pub const NAME_MAX_LEN: usize = 52;
/// How many next run times an answer lists.
const NEXT_RUNS: usize = 5;
/// Upper bound of the history limits (Kubernetes has none; this keeps stats bodies bounded).
const HISTORY_LIMIT_MAX: i32 = 100;
/// Longest a read waits for the schedules topic to be read to its end.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// What the schedule routes share besides [`AppState`].
pub struct Schedules {
    pub table: Table<Schedule>,
    pub clock: Arc<dyn Clock>,
    pub creator: crate::creates::Creator,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/jobs/schedule", web::post().to(create))
        .route("/jobs/schedule", web::get().to(list))
        .route("/jobs/schedule/{name}", web::get().to(show))
        .route("/jobs/schedule/{name}", web::put().to(replace))
        .route("/jobs/schedule/{name}", web::patch().to(update))
        .route("/jobs/schedule/{name}", web::delete().to(remove));
}

/// The body of `POST /jobs/schedule` and `PUT /jobs/schedule/{name}`; every field but `name`
/// optional, with the CronJob defaults. `PATCH` takes any subset.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduleRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub engines: Option<Vec<String>>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub concurrency_policy: Option<String>,
    #[serde(default)]
    pub suspend: Option<bool>,
    #[serde(default, deserialize_with = "whole_number")]
    pub successful_jobs_history_limit: Option<i32>,
    #[serde(default, deserialize_with = "whole_number")]
    pub failed_jobs_history_limit: Option<i32>,
    #[serde(default, deserialize_with = "whole_number")]
    pub starting_deadline_seconds: Option<i64>,
}

/// An optional whole number, also written as a float with no fraction (`3.0`): JSON has one
/// number type, and `3.0` is the integer 3 to JSON Schema and to many clients' encoders.
fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = match (number.as_i64(), number.as_f64()) {
        (Some(n), _) => n,
        (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
        _ => {
            return Err(D::Error::custom(format!(
                "expected a whole number, got {number}"
            )));
        }
    };
    T::try_from(whole)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{whole} is out of range")))
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    pub name: String,
    pub schedule: String,
    pub time_zone: String,
    pub repo: String,
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    pub engines: Vec<String>,
    pub mode: String,
    pub concurrency_policy: String,
    pub suspend: bool,
    pub successful_jobs_history_limit: i32,
    pub failed_jobs_history_limit: i32,
    pub starting_deadline_seconds: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    /// The next run times (RFC 3339, UTC); empty while suspended.
    pub next_runs: Vec<String>,
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn policy_name(policy: ConcurrencyPolicy) -> &'static str {
    match policy {
        ConcurrencyPolicy::Allow => "Allow",
        ConcurrencyPolicy::Forbid => "Forbid",
        ConcurrencyPolicy::Replace => "Replace",
    }
}

fn mode_name(mode: ScanMode) -> &'static str {
    match mode {
        ScanMode::Tree => "tree",
        ScanMode::History => "history",
        ScanMode::Incremental => "incremental",
    }
}

fn view(schedule: &Schedule, now_ms: i64) -> ScheduleView {
    let next_runs = match Timetable::parse(&schedule.cron) {
        Ok(t) if !schedule.suspend => t
            .upcoming(minute_of(now_ms), NEXT_RUNS)
            .into_iter()
            .map(|minute| rfc3339(minute * 60_000))
            .collect(),
        _ => Vec::new(),
    };
    ScheduleView {
        name: schedule.name.clone(),
        schedule: schedule.cron.clone(),
        time_zone: "UTC".to_owned(),
        repo: schedule.repo_url.clone(),
        git_ref: schedule.git_ref.clone(),
        engines: schedule.engines.clone(),
        mode: mode_name(schedule.mode).to_owned(),
        concurrency_policy: policy_name(schedule.concurrency_policy).to_owned(),
        suspend: schedule.suspend,
        successful_jobs_history_limit: schedule.successful_jobs_history_limit,
        failed_jobs_history_limit: schedule.failed_jobs_history_limit,
        starting_deadline_seconds: schedule.starting_deadline_seconds,
        created_at: rfc3339(schedule.created_at),
        updated_at: rfc3339(schedule.updated_at),
        next_runs,
    }
}

fn parse_name(text: &str) -> Result<JobName, Problem> {
    let name = JobName::parse(text).map_err(field("name"))?;
    if name.as_str().len() > NAME_MAX_LEN {
        return Err(Problem::invalid(
            "name",
            "kubernetes-name",
            format!(
                "a schedule name is at most {NAME_MAX_LEN} characters, so that its run names (<name>-<minute>) fit 63"
            ),
        ));
    }
    Ok(name)
}

fn parse_policy(text: &str) -> Result<ConcurrencyPolicy, Problem> {
    match text {
        "Allow" => Ok(ConcurrencyPolicy::Allow),
        "Forbid" => Ok(ConcurrencyPolicy::Forbid),
        "Replace" => Ok(ConcurrencyPolicy::Replace),
        _ => Err(Problem::invalid(
            "concurrencyPolicy",
            "enum",
            "concurrencyPolicy must be Allow, Forbid or Replace",
        )),
    }
}

fn check_limit(field: &str, value: i32) -> Result<i32, Problem> {
    if (0..=HISTORY_LIMIT_MAX).contains(&value) {
        Ok(value)
    } else {
        Err(Problem::invalid(
            field,
            "range",
            format!("{field} must be between 0 and {HISTORY_LIMIT_MAX}"),
        ))
    }
}

/// Applies `request` onto `base` (a new schedule's defaults, or the stored schedule for PATCH),
/// validating every field it sets.
async fn merge(
    state: &AppState,
    name: &JobName,
    base: Schedule,
    request: &ScheduleRequest,
    repo_required: bool,
) -> Result<Schedule, Problem> {
    let mut s = base;
    if let Some(cron) = &request.schedule {
        Timetable::parse(cron).map_err(|e| Problem::invalid("schedule", "cron", e.to_string()))?;
        s.cron = cron.trim().to_owned();
    }
    if let Some(zone) = &request.time_zone
        && !matches!(zone.as_str(), "UTC" | "Etc/UTC")
    {
        return Err(Problem::invalid(
            "timeZone",
            "enum",
            "only UTC schedules are supported: timeZone must be UTC",
        ));
    }
    if request.repo.is_some() || repo_required {
        let repo = resolve_repo(state, name, request.repo.as_deref()).await?;
        s.repo_url = repo.as_str().to_owned();
    }
    if let Some(r) = &request.git_ref {
        s.git_ref = Some(GitRef::parse(r).map_err(field("ref"))?.as_str().to_owned());
    }
    if request.engines.is_some() || s.engines.is_empty() {
        s.engines = state
            .engines
            .parse(request.engines.as_deref())
            .map_err(field("engines"))?
            .iter()
            .map(|e| e.as_str().to_owned())
            .collect();
    }
    if let Some(mode) = &request.mode {
        s.mode = parse_mode(Some(mode))?;
    }
    if let Some(policy) = &request.concurrency_policy {
        s.concurrency_policy = parse_policy(policy)?;
    }
    if let Some(suspend) = request.suspend {
        s.suspend = suspend;
    }
    if let Some(n) = request.successful_jobs_history_limit {
        s.successful_jobs_history_limit = check_limit("successfulJobsHistoryLimit", n)?;
    }
    if let Some(n) = request.failed_jobs_history_limit {
        s.failed_jobs_history_limit = check_limit("failedJobsHistoryLimit", n)?;
    }
    if let Some(seconds) = request.starting_deadline_seconds {
        if !(0..=MAX_STARTING_DEADLINE_SECONDS).contains(&seconds) {
            return Err(Problem::invalid(
                "startingDeadlineSeconds",
                "range",
                format!(
                    "startingDeadlineSeconds must be between 0 and {MAX_STARTING_DEADLINE_SECONDS} (one year)"
                ),
            ));
        }
        s.starting_deadline_seconds = Some(seconds);
    }
    Ok(s)
}

fn defaults(name: &JobName, now: i64) -> Schedule {
    Schedule {
        name: name.as_str().to_owned(),
        cron: DEFAULT_CRON.to_owned(),
        time_zone: None,
        repo_url: String::new(),
        git_ref: None,
        engines: Vec::new(),
        mode: ScanMode::Tree,
        concurrency_policy: ConcurrencyPolicy::Allow,
        suspend: false,
        successful_jobs_history_limit: 3,
        failed_jobs_history_limit: 1,
        starting_deadline_seconds: None,
        created_at: now,
        updated_at: now,
    }
}

/// Reads the topic to its end: what any ingest committed before is then in the table.
pub(crate) async fn sync(state: &AppState, schedules: &Schedules) -> Result<(), Problem> {
    schedules.table.sync(SYNC_TIMEOUT).await.map_err(|e| {
        Problem::unavailable(
            format!("schedules cannot be read now: {e}; retry later"),
            state.settings.retry_after.as_secs(),
        )
    })
}

/// The stored schedule named `name`, after reading the topic to its end.
pub(crate) async fn stored(
    state: &AppState,
    schedules: &Schedules,
    name: &str,
) -> Result<Option<Schedule>, Problem> {
    sync(state, schedules).await?;
    Ok(schedules.table.read(|t| t.get(name).cloned()))
}

async fn write(
    state: &AppState,
    context: &RequestContext,
    name: &str,
    value: Option<&Schedule>,
) -> Result<(), Problem> {
    let payload = match value {
        Some(s) => Some(encode(state, Topic::Schedules, s).await?),
        None => None,
    };
    state
        .writer
        .write(vec![Record {
            topic: Topic::Schedules,
            key: name.to_owned(),
            payload,
            target: Target::Keyed,
            traceparent: context.traceparent.clone(),
            correlation_id: context.correlation_id.clone(),
        }])
        .await
        .map_err(|e| unavailable(state, &e))
}

fn answer(status: u16, schedule: &Schedule, now: i64) -> HttpResponse {
    let mut response = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::OK),
    );
    if status == 201 {
        response.insert_header((
            header::LOCATION,
            format!("/jobs/schedule/{}", schedule.name),
        ));
    }
    response.json(view(schedule, now))
}

/// The schedule a `GET`/`DELETE` path names: authorized for `scope`, the name valid, and the
/// schedule stored (else `404`).
async fn existing(
    state: &AppState,
    schedules: &Schedules,
    req: &HttpRequest,
    path: &str,
    scope: Scope,
) -> Result<(JobName, Schedule), Problem> {
    authorize(state, req, scope)?;
    let name = parse_name(path)?;
    match stored(state, schedules, name.as_str()).await? {
        Some(schedule) => Ok((name, schedule)),
        None => Err(not_found(name.as_str())),
    }
}

fn not_found(name: &str) -> Problem {
    Problem::new(
        404,
        "not-found",
        "Not Found",
        format!("no schedule is named {name}"),
    )
}

async fn create(
    state: web::Data<AppState>,
    schedules: web::Data<Schedules>,
    req: HttpRequest,
    context: RequestContext,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let principal = authorize(&state, &req, Scope::ScansWrite)?;
    let (request, _) =
        json_body::<ScheduleRequest>(&req, payload, state.settings.body_limit_bytes).await?;
    let name = parse_name(request.name.as_deref().unwrap_or_default())?;
    let now = schedules.clock.now_ms();
    let schedule = merge(&state, &name, defaults(&name, now), &request, true).await?;
    if !crate::creates::create_once(&state, &schedules, &context, &schedule).await? {
        return Err(Problem::new(
            409,
            "schedule-exists",
            "Conflict",
            format!(
                "a schedule named {name} exists; change it with PUT or PATCH /jobs/schedule/{name}",
                name = name.as_str()
            ),
        ));
    }
    tracing::info!(schedule = %name.as_str(), cron = %schedule.cron, by = ?principal.name, "schedule created");
    Ok(answer(201, &schedule, now))
}

async fn list(
    state: web::Data<AppState>,
    schedules: web::Data<Schedules>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorize(&state, &req, Scope::ScansRead)?;
    sync(&state, &schedules).await?;
    let now = schedules.clock.now_ms();
    let all: Vec<ScheduleView> = schedules
        .table
        .read(|t| t.values().map(|s| view(s, now)).collect());
    Ok(HttpResponse::Ok().json(serde_json::json!({ "schedules": all })))
}

async fn show(
    state: web::Data<AppState>,
    schedules: web::Data<Schedules>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let (_, schedule) = existing(&state, &schedules, &req, &path, Scope::ScansRead).await?;
    Ok(answer(200, &schedule, schedules.clock.now_ms()))
}

/// A `PUT`/`PATCH`: authorized for writing, the path's name valid, the body's `name` (when
/// given) the same.
async fn named_request(
    state: &AppState,
    req: &HttpRequest,
    path: &str,
    payload: web::Payload,
) -> Result<(JobName, ScheduleRequest), Problem> {
    authorize(state, req, Scope::ScansWrite)?;
    let name = parse_name(path)?;
    let (request, _) =
        json_body::<ScheduleRequest>(req, payload, state.settings.body_limit_bytes).await?;
    match &request.name {
        Some(n) if n != name.as_str() => Err(Problem::invalid(
            "name",
            "path",
            "name in the body must match the name in the path (a schedule cannot be renamed)",
        )),
        _ => Ok((name, request)),
    }
}

async fn replace(
    state: web::Data<AppState>,
    schedules: web::Data<Schedules>,
    req: HttpRequest,
    context: RequestContext,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let (name, request) = named_request(&state, &req, &path, payload).await?;
    let now = schedules.clock.now_ms();
    let mut schedule = merge(&state, &name, defaults(&name, now), &request, true).await?;
    let existing = stored(&state, &schedules, name.as_str()).await?;
    if let Some(old) = &existing {
        // The same schedule, changed: its ticks so far stay handled.
        schedule.created_at = old.created_at;
    }
    write(&state, &context, name.as_str(), Some(&schedule)).await?;
    tracing::info!(schedule = %name.as_str(), "schedule replaced");
    Ok(answer(
        if existing.is_some() { 200 } else { 201 },
        &schedule,
        now,
    ))
}

async fn update(
    state: web::Data<AppState>,
    schedules: web::Data<Schedules>,
    req: HttpRequest,
    context: RequestContext,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let (name, request) = named_request(&state, &req, &path, payload).await?;
    let Some(old) = stored(&state, &schedules, name.as_str()).await? else {
        return Err(not_found(name.as_str()));
    };
    let now = schedules.clock.now_ms();
    let mut schedule = merge(&state, &name, old, &request, false).await?;
    schedule.updated_at = now;
    write(&state, &context, name.as_str(), Some(&schedule)).await?;
    tracing::info!(schedule = %name.as_str(), suspend = schedule.suspend, "schedule updated");
    Ok(answer(200, &schedule, now))
}

async fn remove(
    state: web::Data<AppState>,
    schedules: web::Data<Schedules>,
    req: HttpRequest,
    context: RequestContext,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let (name, _) = existing(&state, &schedules, &req, &path, Scope::ScansWrite).await?;
    write(&state, &context, name.as_str(), None).await?;
    tracing::info!(schedule = %name.as_str(), at_ms = now_millis(), "schedule deleted");
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "name": name.as_str(),
        "status": "deleted",
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_may_be_written_as_floats_without_a_fraction() {
        let request: ScheduleRequest = serde_json::from_str(
            r#"{"successfulJobsHistoryLimit": 3.0, "startingDeadlineSeconds": 82686.0}"#,
        )
        .unwrap();
        assert_eq!(request.successful_jobs_history_limit, Some(3));
        assert_eq!(request.starting_deadline_seconds, Some(82686));
        for bad in [
            r#"{"failedJobsHistoryLimit": 1.5}"#,
            r#"{"failedJobsHistoryLimit": 4294967296}"#,
            r#"{"failedJobsHistoryLimit": "1"}"#,
        ] {
            assert!(
                serde_json::from_str::<ScheduleRequest>(bad).is_err(),
                "{bad}"
            );
        }
        let empty: ScheduleRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.failed_jobs_history_limit, None);
    }
}
