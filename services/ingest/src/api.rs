//! The routes. Every rejection is an `application/problem+json` body naming the field and the
//! rule, and writes nothing to Kafka.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use scanstream_contracts::command::{CancelScan, Command, ScanCommand, ScanMode};
use scanstream_contracts::submission::Submission;
use scanstream_contracts::{AvroRecord, Codec, CodecError, JobId, RunId, Topic};
use scanstream_platform::auth::{Authenticator, Principal, Scope};
use scanstream_platform::config::IngestSettings;
use scanstream_platform::http::responses::{
    ForbiddenWrite, InvalidJobId, TooLarge, Unauthorized, UnsupportedMediaType,
};
use scanstream_platform::http::{
    JobPath, Problem, ProblemBody, RequestContext, job_id, json_body, unmatched,
};
use scanstream_platform::server::ServedRoutes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{EngineSet, GitRef, Invalid, JobName, RepoPolicy, RepoUrl};
use crate::idempotency::{Begin, IdempotencyStore, StoredResponse, scoped_key};
use scanstream_platform::writer::{Record, Target, WriteError, Writer};

/// Ingest's own routes, as (method, path): registration and the OpenAPI document are both
/// checked against this list (the server adds the shared probes, `/metrics` and `/openapi.json`).
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/jobs"),
    ("delete", "/jobs/{uuid}"),
    ("post", "/jobs/schedule"),
    ("get", "/jobs/schedule"),
    ("get", "/jobs/schedule/{name}"),
    ("put", "/jobs/schedule/{name}"),
    ("patch", "/jobs/schedule/{name}"),
    ("delete", "/jobs/schedule/{name}"),
];

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// An `Idempotency-Key`: a value the client generates once per distinct request (a UUID is a
/// good choice) and sends again only with retries of that request. The same key with another
/// body is refused (`422`).
pub struct IdempotencyKey;

impl utoipa::PartialSchema for IdempotencyKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("idempotency-key".to_owned())))
            .pattern(Some("^[!-~]+$"))
            .max_length(Some(MAX_IDEMPOTENCY_KEY_LEN))
            .description(Some("1 to 255 visible ASCII characters."))
            .into()
    }
}

impl utoipa::ToSchema for IdempotencyKey {}

/// The longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// What the handlers share.
pub struct AppState {
    pub settings: IngestSettings,
    pub auth: Authenticator,
    pub codec: Arc<Codec>,
    pub writer: Writer,
    pub policy: RepoPolicy,
    pub engines: EngineSet,
    pub idempotency: IdempotencyStore,
    /// This instance's name in events' `producer` field.
    pub instance: String,
}

/// Registers ingest's own routes; the shared server adds the probes, `/metrics` and
/// `/openapi.json` (see `scanstream_platform::server`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/jobs", web::post().to(submit))
        .route("/jobs/{uuid}", web::delete().to(cancel));
}

/// A scan request: the job manager's `{"name": …}` plus optional scan parameters.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Job name (Kubernetes name rules).
    #[schema(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63)]
    pub name: String,
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
}

/// Engine ids (the deployment's ingest.engines and command engines); ingest.default_engines when omitted.
pub struct EngineIds;

impl utoipa::PartialSchema for EngineIds {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::ArrayBuilder;
        ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name(ENGINE_ID))
            .min_items(Some(1))
            .max_items(Some(EngineSet::MAX_PER_REQUEST))
            .unique_items(true)
            .into()
    }
}

impl utoipa::ToSchema for EngineIds {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        // The ids a deployment configures; the document lists them as this schema's enum.
        let id = utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("An engine id of this deployment: the built-in secrets engine (ingest.engines) or a command engine ([engines.<id>])."));
        schemas.push((ENGINE_ID.to_owned(), id.into()));
    }
}

/// The schema name of one engine id.
pub const ENGINE_ID: &str = "EngineId";

/// How much of a repository a scan reads.
///
/// tree (the default): the tree at the ref; history: every unique blob reachable; incremental:
/// only blobs new since the last scanned commit.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // The names the document lists; requests carry them as text.
pub enum ModeName {
    Tree,
    History,
    Incremental,
}

/// `status` of an accepted request.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueuedStatus {
    Queued,
}

/// Queued: the command and event are committed to Kafka.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Accepted {
    /// The job's id, derived from its name.
    #[schema(format = Uuid)]
    pub uuid: String,
    pub name: String,
    pub status: QueuedStatus,
    /// This run of the job.
    #[schema(format = Uuid)]
    pub run_id: String,
}

/// `status` of a cancellation.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CancellingStatus {
    Cancelling,
}

/// The cancellation is committed to Kafka.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Cancelling {
    pub uuid: JobId,
    pub status: CancellingStatus,
}

pub(crate) fn authorize(
    state: &AppState,
    req: &HttpRequest,
    scope: Scope,
) -> Result<Principal, Problem> {
    let principal = state.auth.from_request(req)?;
    principal.require(scope)?;
    Ok(principal)
}

pub(crate) fn field(name: &str) -> impl FnOnce(Invalid) -> Problem + '_ {
    move |invalid| Problem::invalid(name, invalid.rule, invalid.message)
}

pub(crate) use scanstream_platform::now_ms as now_millis;

pub(crate) fn unavailable(state: &AppState, error: &WriteError) -> Problem {
    Problem::unavailable(
        format!("the scan was not accepted: {error}; retry later"),
        state.settings.retry_after.as_secs(),
    )
}

fn codec_problem(state: &AppState, error: &CodecError) -> Problem {
    if error.is_transient() {
        Problem::unavailable(
            "the schema registry is not reachable; retry later",
            state.settings.retry_after.as_secs(),
        )
    } else {
        tracing::error!(%error, "encoding failed");
        Problem::new(
            500,
            "internal",
            "Internal error",
            "the request could not be encoded",
        )
    }
}

pub(crate) async fn encode<T: AvroRecord>(
    state: &AppState,
    topic: Topic,
    value: &T,
) -> Result<Vec<u8>, Problem> {
    state
        .codec
        .encode(topic, value)
        .await
        .map_err(|e| codec_problem(state, &e))
}

/// The idempotency key of a request, scoped to its caller unambiguously ([`scoped_key`]).
fn idempotency_key(req: &HttpRequest, principal: &Principal) -> Result<Option<String>, Problem> {
    let Some(value) = req.headers().get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let key = value.to_str().ok().filter(|k| {
        !k.is_empty()
            && k.len() <= MAX_IDEMPOTENCY_KEY_LEN
            && k.bytes().all(|b| (0x21..0x7f).contains(&b))
    });
    match key {
        Some(key) => Ok(Some(scoped_key(principal.name.as_deref(), key))),
        None => Err(Problem::invalid(
            "Idempotency-Key",
            "idempotency-key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

fn replay(stored: StoredResponse) -> HttpResponse {
    let mut response = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(stored.status)
            .unwrap_or(actix_web::http::StatusCode::ACCEPTED),
    );
    response
        .content_type("application/json")
        .insert_header(("Idempotent-Replayed", "true"));
    if let Some(location) = stored.location {
        response.insert_header((header::LOCATION, location));
    }
    response.body(stored.body)
}

/// Queue a run of a job (scan one repository).
///
/// The job's uuid is derived from its name: posting the same name again queues another run of the
/// same job. The RequestScan command and the JobSubmitted event are written in one Kafka
/// transaction before the answer.
#[utoipa::path(post, path = "/jobs", tag = "jobs",
    params(("Idempotency-Key" = inline(Option<IdempotencyKey>), Header, nullable = false,
        description = "Replays the original answer for a retried request with the same key and body (kept 24 h by default) and writes nothing new.")),
    request_body = JobRequest,
    responses(
        (status = 202, description = "Queued: the command and event are committed to Kafka.", body = Accepted,
            headers(("Location" = String, description = "/jobs/{uuid}"))),
        (status = 400, description = "A field breaks a rule; `field` and `rule` say which.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = ForbiddenWrite),
        (status = 408, description = "The body did not arrive within ingest.body_read_timeout_ms.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is still being processed.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "The Idempotency-Key was used with a different body.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Kafka or the schema registry is unavailable; nothing was accepted. Retry after `Retry-After` seconds.", body = ProblemBody, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ))]
pub(crate) async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    context: RequestContext,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let principal = authorize(&state, &req, Scope::ScansWrite)?;
    let key = idempotency_key(&req, &principal)?;
    let (request, raw) =
        json_body::<JobRequest>(&req, payload, state.settings.body_limit_bytes).await?;
    let body_hash: [u8; 32] = Sha256::digest(&raw).into();
    if let Some(key) = &key {
        match state.idempotency.begin(key, body_hash) {
            Begin::New => {}
            Begin::Replay(stored) => return Ok(replay(stored)),
            Begin::InFlight => {
                return Err(Problem::new(
                    409,
                    "idempotency-in-flight",
                    "Conflict",
                    "a request with this Idempotency-Key is still being processed",
                ));
            }
            Begin::Mismatch => {
                return Err(Problem::new(
                    422,
                    "idempotency-mismatch",
                    "Idempotency-Key reused",
                    "this Idempotency-Key was used with a different request body",
                ));
            }
        }
    }
    let result = accept(&state, &principal, &context, request, key.as_deref()).await;
    match (&key, result) {
        (Some(key), Ok((response, stored))) => {
            state.idempotency.finish(key, body_hash, stored);
            Ok(response)
        }
        (None, Ok((response, _))) => Ok(response),
        (Some(key), Err(problem)) => {
            state.idempotency.abandon(key);
            Err(problem)
        }
        (None, Err(problem)) => Err(problem),
    }
}

/// The repository a request names, or the one `ingest.repo_template` derives from `name`,
/// checked against the repository policy (schemes, hosts, file roots).
pub(crate) async fn resolve_repo(
    state: &AppState,
    name: &JobName,
    repo: Option<&str>,
) -> Result<RepoUrl, Problem> {
    let repo_text = match (repo, state.settings.repo_template.as_str()) {
        (Some(repo), _) => repo.to_owned(),
        (None, "") => {
            return Err(Problem::invalid(
                "repo",
                "required",
                "repo is required: this deployment has no ingest.repo_template to derive it from the name",
            ));
        }
        (None, template) => template.replace("{name}", name.as_str()),
    };
    state.policy.parse(&repo_text).await.map_err(field("repo"))
}

/// `tree` (the default), `history` or `incremental`.
pub(crate) fn parse_mode(mode: Option<&str>) -> Result<ScanMode, Problem> {
    match mode {
        None | Some("tree") => Ok(ScanMode::Tree),
        Some("history") => Ok(ScanMode::History),
        Some("incremental") => Ok(ScanMode::Incremental),
        Some(_) => Err(Problem::invalid(
            "mode",
            "enum",
            "mode must be tree, history or incremental",
        )),
    }
}

/// Validates, writes the command and the event in one transaction, and builds the answer.
async fn accept(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    request: JobRequest,
    idempotency_key: Option<&str>,
) -> Result<(HttpResponse, StoredResponse), Problem> {
    let name = JobName::parse(&request.name).map_err(field("name"))?;
    let repo = resolve_repo(state, &name, request.repo.as_deref()).await?;
    let git_ref = request
        .git_ref
        .as_deref()
        .map(GitRef::parse)
        .transpose()
        .map_err(field("ref"))?;
    let engines = state
        .engines
        .parse(request.engines.as_deref())
        .map_err(field("engines"))?;
    let mode = parse_mode(request.mode.as_deref())?;

    let job = JobId::from_name(name.as_str());
    let run = match idempotency_key {
        Some(key) => RunId::derived(job, &format!("idempotency/{key}")),
        None => RunId::random(),
    };
    let now = now_millis();
    let submission = Submission {
        job,
        job_name: name.as_str().to_owned(),
        run,
        repo_url: repo.as_str().to_owned(),
        git_ref: git_ref.as_ref().map(|r| r.as_str().to_owned()),
        engines: engines.iter().map(|e| e.as_str().to_owned()).collect(),
        mode,
        schedule: None,
        requested_by: principal.name.clone(),
    };
    let command = submission.command(now);
    let event = submission.event(now, Some(state.instance.clone()));
    let records = vec![
        Record {
            topic: Topic::Commands,
            key: repo.key().as_str().to_owned(),
            payload: Some(encode(state, Topic::Commands, &command).await?),
            target: Target::Keyed,
            traceparent: context.traceparent.clone(),
            correlation_id: context.correlation_id.clone(),
        },
        Record {
            topic: Topic::Events,
            key: job.key(),
            payload: Some(encode(state, Topic::Events, &event).await?),
            target: Target::Keyed,
            traceparent: context.traceparent.clone(),
            correlation_id: context.correlation_id.clone(),
        },
    ];
    state
        .writer
        .write(records)
        .await
        .map_err(|e| unavailable(state, &e))?;
    tracing::info!(job = %job, run = %run, name = %name, "scan queued");

    let body = Accepted {
        uuid: job.to_string(),
        name: name.as_str().to_owned(),
        status: QueuedStatus::Queued,
        run_id: run.to_string(),
    };
    let body = serde_json::to_string(&body)
        .map_err(|e| Problem::new(500, "internal", "Internal error", e.to_string()))?;
    let location = format!("/jobs/{job}");
    let response = HttpResponse::Accepted()
        .content_type("application/json")
        .insert_header((header::LOCATION, location.clone()))
        .body(body.clone());
    Ok((
        response,
        StoredResponse {
            status: 202,
            location: Some(location),
            body,
        },
    ))
}

/// Cancel a job's queued and running scans.
#[utoipa::path(delete, path = "/jobs/{uuid}", tag = "jobs",
    params(JobPath),
    responses(
        (status = 202, description = "The cancellation is committed to Kafka.", body = Cancelling),
        (status = 400, response = InvalidJobId),
        (status = 401, response = Unauthorized),
        (status = 403, response = ForbiddenWrite),
        (status = 503, description = "Kafka is unavailable; retry later.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    context: RequestContext,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    // `DELETE /jobs/schedule` or `/jobs/stats` is a method those paths do not have, not a job.
    if let Some(routes) = req.app_data::<web::Data<ServedRoutes>>()
        && routes.is_literal(req.path())
    {
        return Err(unmatched(&routes.0, &req));
    }
    let principal = authorize(&state, &req, Scope::ScansWrite)?;
    let job = job_id(&path)?;
    let command = ScanCommand {
        command_id: Uuid::new_v4(),
        issued_at: now_millis(),
        command: Command::CancelScan(CancelScan {
            job_id: job,
            run_id: None,
            reason: Some("cancelled through the API".to_owned()),
            requested_by: principal.name.clone(),
        }),
    };
    // Ingest does not know the job's repository, so the cancellation goes to every
    // partition; the scanner that holds the job acts on it (docs/topics.md).
    let record = Record {
        topic: Topic::Commands,
        key: job.key(),
        payload: Some(encode(&state, Topic::Commands, &command).await?),
        target: Target::AllPartitions,
        traceparent: context.traceparent.clone(),
        correlation_id: context.correlation_id.clone(),
    };
    state
        .writer
        .write(vec![record])
        .await
        .map_err(|e| unavailable(&state, &e))?;
    tracing::info!(job = %job, "cancellation queued");
    Ok(HttpResponse::Accepted().json(Cancelling {
        uuid: job,
        status: CancellingStatus::Cancelling,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;
    use scanstream_platform::auth::hash_token;
    use scanstream_platform::config::{ApiSettings, TokenSettings};

    #[test]
    fn idempotency_keys_of_two_tokens_never_collide() {
        let token = |name: &str, value: &str| TokenSettings {
            name: name.to_owned(),
            sha256: hash_token(value),
            scopes: vec!["scans:write".to_owned()],
        };
        let auth = Authenticator::new(&ApiSettings {
            listen: "127.0.0.1:0".to_owned(),
            auth_enabled: true,
            session_key: None,
            session_ttl: std::time::Duration::from_secs(60),
            tokens: vec![token("a:b", "first-token"), token("a", "second-token")],
        });
        let key = |bearer: &str, key: &str| {
            let principal = auth.authenticate(Some(bearer)).unwrap();
            let req = TestRequest::default()
                .insert_header((IDEMPOTENCY_HEADER, key))
                .to_http_request();
            idempotency_key(&req, &principal).unwrap().unwrap()
        };
        // Token "a:b" with key "c", and token "a" with key "b:c": two callers, two keys.
        assert_ne!(
            key("Bearer first-token", "c"),
            key("Bearer second-token", "b:c")
        );
    }
}
