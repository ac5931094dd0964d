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
use scanstream_platform::http::responses::{
    ForbiddenRead, ForbiddenWrite, TooLarge, Unauthorized, UnsupportedMediaType,
};
use scanstream_platform::http::{Problem, ProblemBody, RequestContext, json_body};
use scanstream_platform::tail::Table;
use scanstream_platform::writer::{Record, Target};
use scanstream_scheduler::{Clock, DEFAULT_CRON, Timetable, minute_of};
use serde::{Deserialize, Serialize};

use crate::api::{
    AppState, EngineIds, ModeName, authorize, encode, field, now_millis, parse_mode, resolve_repo,
    unavailable,
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
/// optional, with the CronJob defaults. `PATCH` takes any subset. The document shows it as
/// [`ScheduleCreate`] and [`ScheduleChange`].
#[derive(Debug, Default, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduleRequest {
    /// Schedule name (Kubernetes name rules; at most 52 characters, as for a CronJob).
    #[serde(default)]
    #[schema(
        pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length = 52,
        nullable = false
    )]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(schema_with = crate::openapi::cron_schema)]
    pub schedule: Option<String>,
    /// Only UTC is supported.
    #[serde(default)]
    #[schema(value_type = Option<TimeZoneName>)]
    pub time_zone: Option<String>,
    #[serde(default)]
    #[schema(schema_with = crate::openapi::repo_schema)]
    pub repo: Option<String>,
    #[serde(default, rename = "ref")]
    #[schema(schema_with = crate::openapi::ref_schema)]
    pub git_ref: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<EngineIds>)]
    pub engines: Option<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<ModeName>)]
    pub mode: Option<String>,
    /// Allow (default): runs may overlap; Forbid: a tick is skipped while a run is active;
    /// Replace: the active run is cancelled and the tick fires.
    #[serde(default)]
    #[schema(value_type = Option<PolicyName>)]
    pub concurrency_policy: Option<String>,
    /// True stops firing; ticks that pass while suspended never fire.
    #[serde(default)]
    #[schema(default = false)]
    pub suspend: Option<bool>,
    /// Succeeded runs GET /jobs/stats keeps listing.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 100, default = 3)]
    pub successful_jobs_history_limit: Option<i32>,
    /// Failed runs GET /jobs/stats keeps listing.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 100, default = 1)]
    pub failed_jobs_history_limit: Option<i32>,
    /// A tick that could not fire on time (no scheduler leader) still fires within this many
    /// seconds; older ones are recorded as missed. Default: scheduler.starting_deadline_seconds.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 31536000)]
    pub starting_deadline_seconds: Option<i64>,
}

/// The path of one schedule's routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Documents the path; the handlers read it as text and check it.
pub struct SchedulePath {
    /// The schedule's name.
    #[param(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 52)]
    name: String,
}

/// `400` of a schedule route whose path breaks the naming rules.
#[derive(utoipa::ToResponse)]
#[response(
    description = "The name breaks the naming rules.",
    content_type = "application/problem+json"
)]
#[allow(dead_code)] // Documents the answer; handlers build it as a Problem.
pub struct BadScheduleName(pub ProblemBody);

/// `404` of a schedule route whose path names no schedule.
#[derive(utoipa::ToResponse)]
#[response(
    description = "No schedule has this name.",
    content_type = "application/problem+json"
)]
#[allow(dead_code)] // Documents the answer; handlers build it as a Problem.
pub struct NoSuchSchedule(pub ProblemBody);

/// [`ScheduleRequest`] as `POST /jobs/schedule` takes it: `name` required.
pub struct ScheduleCreate;

/// [`ScheduleRequest`] as `PUT` and `PATCH /jobs/schedule/{name}` take it: the name is the
/// path's, so the body has none.
pub struct ScheduleChange;

/// The request schema with `name` required (`true`) or left out (`false`).
fn request_schema(
    with_name: bool,
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::PartialSchema;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;
    let mut schema = ScheduleRequest::schema();
    if let RefOr::T(Schema::Object(object)) = &mut schema {
        if with_name {
            object.required = vec!["name".to_owned()];
        } else {
            object.properties.shift_remove("name");
            object.required.clear();
        }
        object.description = Some(description.to_owned());
    }
    schema
}

impl utoipa::PartialSchema for ScheduleCreate {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        request_schema(true, "A new schedule. Omitted fields take the defaults.")
    }
}

impl utoipa::ToSchema for ScheduleCreate {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <ScheduleRequest as utoipa::ToSchema>::schemas(schemas);
    }
}

impl utoipa::PartialSchema for ScheduleChange {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        request_schema(
            false,
            "PUT (omitted fields take the defaults) or PATCH (omitted fields stay as they are). The name is the path's.",
        )
    }
}

impl utoipa::ToSchema for ScheduleChange {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <ScheduleRequest as utoipa::ToSchema>::schemas(schemas);
    }
}

/// The time zones a schedule may name.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // The names the document lists; requests carry them as text.
pub enum TimeZoneName {
    #[schema(rename = "UTC")]
    Utc,
    #[schema(rename = "Etc/UTC")]
    EtcUtc,
}

/// What a tick does while a run of the schedule is active.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // The names the document lists; requests carry them as text.
pub enum PolicyName {
    Allow,
    Forbid,
    Replace,
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Schedule)]
pub struct ScheduleView {
    pub name: String,
    pub schedule: String,
    #[schema(pattern = "^UTC$")]
    pub time_zone: String,
    /// The normalized repository URL.
    pub repo: String,
    #[serde(rename = "ref")]
    #[schema(required = true)]
    pub git_ref: Option<String>,
    pub engines: Vec<String>,
    #[schema(value_type = ModeName)]
    pub mode: String,
    #[schema(value_type = PolicyName)]
    pub concurrency_policy: String,
    pub suspend: bool,
    pub successful_jobs_history_limit: i32,
    pub failed_jobs_history_limit: i32,
    #[schema(required = true)]
    pub starting_deadline_seconds: Option<i64>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// The next five run times (RFC 3339, UTC); empty while suspended or when the schedule
    /// cannot fire.
    #[schema(value_type = Vec<DateTimeText>)]
    pub next_runs: Vec<String>,
    /// Why the schedule never fires, when its stored expression does not parse (a record this
    /// API did not write: an older version's, or one copied in with `replay --into`). The
    /// scheduler skips it and lists it under `invalid_schedules` in `/readyz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub problem: Option<String>,
}

/// An RFC 3339 time in UTC.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = DateTime)]
#[allow(dead_code)] // Documents the items of nextRuns.
pub struct DateTimeText(String);

/// `GET /jobs/schedule`: every schedule, by name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
}

/// `status` of a deletion.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeletedStatus {
    Deleted,
}

/// A schedule deleted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub name: String,
    pub status: DeletedStatus,
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
    let timetable = Timetable::parse(&schedule.cron);
    let next_runs = match &timetable {
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
        problem: timetable
            .err()
            .map(|e| format!("{e}: the scheduler skips this schedule until it is replaced")),
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

/// Create a schedule (Kubernetes CronJob semantics).
///
/// Stores the schedule as a record of the compacted scans.schedules topic. The leading scheduler
/// fires each tick once, as a run named <name>-<minutes since the Unix epoch> submitted exactly
/// like POST /jobs.
#[utoipa::path(post, path = "/jobs/schedule", tag = "schedules", request_body = ScheduleCreate, responses(
        (status = 201, description = "Created; the body shows the schedule with its next run times.", body = ScheduleView,
            headers(("Location" = String, description = "/jobs/schedule/{name}"))),
        (status = 400, description = "A field breaks a rule (invalid cron expression, unknown concurrencyPolicy, bad name, ...); nothing was written.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = ForbiddenWrite),
        (status = 409, description = "A schedule with this name exists; use PUT or PATCH.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, description = "Kafka or the schema registry is unavailable; nothing was written.", body = ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn create(
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

/// List the schedules.
#[utoipa::path(get, path = "/jobs/schedule", tag = "schedules", responses(
        (status = 200, description = "Every schedule, by name.", body = ScheduleList),
        (status = 401, response = Unauthorized),
        (status = 403, response = ForbiddenRead),
        (status = 503, description = "The schedules topic cannot be read now.", body = ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn list(
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
    Ok(HttpResponse::Ok().json(ScheduleList { schedules: all }))
}

/// Show a schedule and its next run times.
#[utoipa::path(get, path = "/jobs/schedule/{name}", tag = "schedules",
    params(SchedulePath),
    responses(
        (status = 200, description = "The schedule and its next run times.", body = ScheduleView),
        (status = 400, response = BadScheduleName),
        (status = 401, response = Unauthorized),
        (status = 403, response = ForbiddenRead),
        (status = 404, response = NoSuchSchedule),
        (status = 503, description = "The schedules topic cannot be read now.", body = ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn show(
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

/// Create or replace a schedule.
///
/// Fields left out take their defaults. Replacing keeps the schedule's creation time, so ticks
/// already handled are not fired again.
#[utoipa::path(put, path = "/jobs/schedule/{name}", tag = "schedules",
    params(SchedulePath),
    request_body = ScheduleChange,
    responses(
        (status = 200, description = "Replaced.", body = ScheduleView),
        (status = 201, description = "Created.", body = ScheduleView),
        (status = 400, description = "A field breaks a rule, or the body's name differs from the path's; nothing was written.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = ForbiddenWrite),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, description = "Kafka or the schema registry is unavailable; nothing was written.", body = ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn replace(
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

/// Change some fields of a schedule (suspend: true / false to suspend and resume).
///
/// A resumed schedule fires from its next tick on; ticks that passed while it was suspended
/// never fire.
#[utoipa::path(patch, path = "/jobs/schedule/{name}", tag = "schedules",
    params(SchedulePath),
    request_body = ScheduleChange,
    responses(
        (status = 200, description = "Changed.", body = ScheduleView),
        (status = 400, description = "A field breaks a rule; nothing was written.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = ForbiddenWrite),
        (status = 404, response = NoSuchSchedule),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, description = "Kafka or the schema registry is unavailable; nothing was written.", body = ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn update(
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

/// Delete a schedule.
///
/// Writes a tombstone to scans.schedules. No tick after the deletion fires; runs already
/// submitted are not cancelled.
#[utoipa::path(delete, path = "/jobs/schedule/{name}", tag = "schedules",
    params(SchedulePath),
    responses(
        (status = 200, description = "Deleted.", body = Deleted),
        (status = 400, response = BadScheduleName),
        (status = 401, response = Unauthorized),
        (status = 403, response = ForbiddenWrite),
        (status = 404, response = NoSuchSchedule),
        (status = 503, description = "Kafka is unavailable; nothing was written.", body = ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn remove(
    state: web::Data<AppState>,
    schedules: web::Data<Schedules>,
    req: HttpRequest,
    context: RequestContext,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let (name, _) = existing(&state, &schedules, &req, &path, Scope::ScansWrite).await?;
    write(&state, &context, name.as_str(), None).await?;
    tracing::info!(schedule = %name.as_str(), at_ms = now_millis(), "schedule deleted");
    Ok(HttpResponse::Ok().json(Deleted {
        name: name.as_str().to_owned(),
        status: DeletedStatus::Deleted,
    }))
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

    #[test]
    fn a_stored_schedule_that_cannot_fire_says_why() {
        let name = JobName::parse("nightly").unwrap();
        let mut schedule = defaults(&name, 0);
        let fine = serde_json::to_value(view(&schedule, 0)).unwrap();
        assert!(fine.get("problem").is_none(), "{fine}");
        assert_eq!(fine["nextRuns"].as_array().map(Vec::len), Some(NEXT_RUNS));
        schedule.cron = "61 * * * *".to_owned();
        let shown = view(&schedule, 0);
        assert!(shown.next_runs.is_empty());
        let problem = shown.problem.unwrap_or_default();
        assert!(problem.contains("61 * * * *"), "{problem}");
        assert!(problem.contains("skips"), "{problem}");
    }
}
