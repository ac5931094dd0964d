//! What every scanstream HTTP role shares: RFC 9457 problem bodies
//! (`application/problem+json`), the JSON body rules, request correlation and trace context,
//! and per-request logging and metrics.

use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;
use tracing::Instrument;

use crate::auth::AuthError;

pub const PROBLEM_JSON: &str = "application/problem+json";
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// An error answer: what went wrong, for which field, by which rule. Boxed, so results that
/// carry it stay small.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Problem(Box<ProblemBody>);

impl std::ops::Deref for Problem {
    type Target = ProblemBody;
    fn deref(&self) -> &ProblemBody {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemBody {
        &mut self.0
    }
}

/// The fields of a [`Problem`] (RFC 9457), documented as the `Problem` schema.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(
    as = Problem,
    description = "An error answer (RFC 9457 problem details, application/problem+json)."
)]
pub struct ProblemBody {
    /// A URI reference naming the problem kind (`/problems/validation`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the problem kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this request.
    pub detail: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub field: Option<String>,
    /// The rule it broke, a stable identifier clients may match on.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub rule: Option<String>,
    /// The request's correlation id (`X-Correlation-Id`), to find it in the logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub correlation_id: Option<String>,
    /// Seconds for `Retry-After` (503).
    #[serde(skip)]
    pub retry_after: Option<u64>,
    /// The methods the path supports, for `Allow` (405).
    #[serde(skip)]
    pub allow: Option<String>,
    /// Bounded reason for the rejection metric.
    #[serde(skip)]
    pub reason: &'static str,
}

impl Problem {
    pub fn new(status: u16, kind: &'static str, title: &str, detail: impl Into<String>) -> Self {
        Self(Box::new(ProblemBody {
            kind: format!("/problems/{kind}"),
            title: title.to_owned(),
            status,
            detail: detail.into(),
            field: None,
            rule: None,
            correlation_id: None,
            retry_after: None,
            allow: None,
            reason: kind,
        }))
    }

    /// A 400 for one field breaking one rule.
    pub fn invalid(field: &str, rule: &'static str, detail: impl Into<String>) -> Self {
        let mut p = Self::new(400, "validation", "Invalid request", detail);
        p.field = Some(field.to_owned());
        p.rule = Some(rule.to_owned());
        p.reason = rule;
        p
    }

    /// A 503 telling the client when to retry.
    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Self {
        let mut p = Self::new(503, "unavailable", "Service unavailable", detail);
        p.retry_after = Some(retry_after);
        p
    }

    pub fn with_correlation(mut self, id: Option<String>) -> Self {
        self.correlation_id = id;
        self
    }

    /// The answer, without counting it (see [`ResponseError::error_response`]).
    fn response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.content_type(PROBLEM_JSON);
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if let Some(methods) = &self.allow {
            response.insert_header((header::ALLOW, methods.as_str()));
        }
        if self.status == 401 {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(&*self.0)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.title, self.status, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The answer, counted by reason.
    fn error_response(&self) -> HttpResponse {
        metrics::counter!(crate::metrics::HTTP_REJECTIONS, "reason" => self.reason).increment(1);
        self.response()
    }
}

impl From<AuthError> for Problem {
    fn from(e: AuthError) -> Self {
        let (kind, title) = match e {
            AuthError::Forbidden(_) => ("forbidden", "Forbidden"),
            _ => ("unauthorized", "Unauthorized"),
        };
        let mut p = Problem::new(e.status(), kind, title, e.to_string());
        p.reason = e.metric_label();
        p
    }
}

/// The longest a request body may take to arrive once the handler starts reading it (after the
/// headers), as app data of a role (`cfg.app_data(BodyReadTimeout(…))`, from
/// `ingest.body_read_timeout_ms`); [`DEFAULT_BODY_READ_TIMEOUT`] where a role sets none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyReadTimeout(pub Duration);

/// The body read bound where no [`BodyReadTimeout`] is registered (the configured default).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads a JSON request body: `Content-Type: application/json` required (415), at most
/// `limit` bytes (413), all of it within the [`BodyReadTimeout`] (408: a client that trickles
/// its body must not hold a worker's connection forever), and a problem body naming the field
/// serde rejected (400); the body must be a JSON object. Returns the value and the raw bytes
/// (for idempotency hashing).
pub async fn json_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<(T, Vec<u8>), Problem> {
    use futures::StreamExt;
    let bound = req
        .app_data::<BodyReadTimeout>()
        .copied()
        .or_else(|| {
            req.app_data::<web::Data<BodyReadTimeout>>()
                .map(|data| *data.get_ref())
        })
        .map_or(DEFAULT_BODY_READ_TIMEOUT, |timeout| timeout.0);
    let deadline = tokio::time::Instant::now() + bound;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(Problem::new(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "the body must be JSON sent with Content-Type: application/json",
        ));
    }
    let too_large = || {
        Problem::new(
            413,
            "body-too-large",
            "Body too large",
            format!("the body exceeds {limit} bytes"),
        )
    };
    if let Some(length) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && length > limit
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, payload.next()).await else {
            return Err(Problem::new(
                408,
                "request-timeout",
                "Request timeout",
                format!(
                    "the request body did not arrive within {} ms",
                    bound.as_millis()
                ),
            ));
        };
        let Some(chunk) = next else {
            break;
        };
        let chunk =
            chunk.map_err(|e| Problem::new(400, "invalid-body", "Invalid body", e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    // A struct also deserializes from a JSON array of its fields in order; every body here is
    // an object with named fields, so an array (or any other JSON type) is refused.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        let mut p = Problem::invalid("body", "type", "the body must be a JSON object");
        p.field = None;
        return Err(p);
    }
    let value = serde_json::from_slice(&body).map_err(|e| json_problem(&e))?;
    Ok((value, body))
}

/// A 400 for a body serde rejected, naming the field when serde does.
fn json_problem(e: &serde_json::Error) -> Problem {
    let message = e.to_string();
    let quoted = message.split('`').nth(1).map(str::to_owned);
    if e.is_syntax() || e.is_eof() {
        let mut p = Problem::new(400, "invalid-json", "Invalid JSON", message);
        p.rule = Some("json-syntax".to_owned());
        return p;
    }
    if message.starts_with("unknown field") {
        return Problem::invalid(
            quoted.as_deref().unwrap_or("body"),
            "unknown-field",
            message,
        );
    }
    if message.starts_with("missing field") {
        return Problem::invalid(quoted.as_deref().unwrap_or("body"), "required", message);
    }
    let mut p = Problem::invalid("body", "type", message);
    p.field = None;
    p
}

/// Per-request context: correlation id and W3C trace context, put on the request by
/// [`observe`] and copied into Kafka headers by the roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub correlation_id: String,
    pub traceparent: String,
}

impl RequestContext {
    pub fn of(req: &HttpRequest) -> Option<RequestContext> {
        req.extensions().get::<RequestContext>().cloned()
    }

    fn from_headers(req: &ServiceRequest) -> RequestContext {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let correlation_id = header(CORRELATION_HEADER)
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= 64
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            })
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let traceparent = child_traceparent(header("traceparent"));
        RequestContext {
            correlation_id,
            traceparent,
        }
    }
}

impl FromRequest for RequestContext {
    type Error = Problem;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(RequestContext::of(req).ok_or_else(|| {
            Problem::new(500, "internal", "Internal error", "request context missing")
        }))
    }
}

/// A `traceparent` for work done on behalf of a request: a new span in the caller's trace
/// when it sent a valid one, else a new trace.
pub fn child_traceparent(incoming: Option<&str>) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let span_id = &random[..16];
    let parsed = incoming.and_then(|v| {
        let parts: Vec<&str> = v.trim().split('-').collect();
        let ok = parts.len() == 4
            && parts[0] == "00"
            && parts[1].len() == 32
            && parts[2].len() == 16
            && parts[3].len() == 2
            && parts[1..]
                .iter()
                .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
            && parts[1].chars().any(|c| c != '0');
        ok.then(|| (parts[1].to_ascii_lowercase(), parts[3].to_owned()))
    });
    match parsed {
        Some((trace_id, flags)) => format!("00-{trace_id}-{span_id}-{flags}"),
        None => format!("00-{}-{span_id}-01", uuid::Uuid::new_v4().simple()),
    }
}

/// The `role` label of a server's request metrics, as app data.
#[derive(Debug, Clone, Copy)]
pub struct RoleLabel(pub &'static str);

/// Middleware for every route: request context, a tracing span, the correlation id on the
/// answer (its header, and the body of a [`Problem`]), and request count/latency metrics
/// labelled by role ([`RoleLabel`]), route pattern, method and status.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let role = req
        .app_data::<web::Data<RoleLabel>>()
        .map_or("http", |label| label.0);
    let context = RequestContext::from_headers(&req);
    let correlation = context.correlation_id.clone();
    req.extensions_mut().insert(context);
    let method = req.method().to_string();
    let span = tracing::info_span!("request", role, %method, path = %req.path(), correlation_id = %correlation);
    // Exported spans belong to the trace written to Kafka with the request's records.
    if let Some(context) = req.extensions().get::<RequestContext>() {
        crate::telemetry::set_parent(&span, &context.traceparent);
    }
    let result = next.call(req).instrument(span.clone()).await;
    let mut response = with_correlation(result?.map_into_boxed_body(), &correlation);
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16();
    if let Ok(value) = HeaderValue::from_str(&correlation) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static(CORRELATION_HEADER), value);
    }
    let elapsed = started.elapsed();
    metrics::counter!(
        crate::metrics::HTTP_REQUESTS,
        "role" => role, "route" => route.clone(), "method" => method.clone(), "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!(crate::metrics::HTTP_REQUEST_DURATION, "role" => role, "route" => route.clone())
        .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::debug!(
            status,
            route,
            elapsed_ms = elapsed.as_millis() as u64,
            "request done"
        );
    });
    Ok(response)
}

/// A problem answer again, with the request's correlation id in its body: the one place
/// problems get it.
fn with_correlation(
    response: ServiceResponse<BoxBody>,
    correlation: &str,
) -> ServiceResponse<BoxBody> {
    let problem = response
        .response()
        .error()
        .and_then(|e| e.as_error::<Problem>())
        .filter(|p| p.correlation_id.is_none())
        .cloned();
    match problem {
        Some(problem) => {
            let (req, _) = response.into_parts();
            let answer = problem
                .with_correlation(Some(correlation.to_owned()))
                .response();
            ServiceResponse::new(req, answer)
        }
        None => response,
    }
}

/// The fallback route of a service whose routes are `routes` ((method, path) pairs, `{x}` for a
/// path parameter): `405` on a known path with another method (its methods in `Allow`), `404`
/// otherwise.
pub fn unmatched(routes: &[(&str, &str)], req: &HttpRequest) -> Problem {
    // The routes of the path as written (`/jobs/stats`) rather than the patterns that would
    // also take it as a parameter (`/jobs/{uuid}`): those are the path's methods.
    let matching: Vec<&(&str, &str)> = routes
        .iter()
        .filter(|(_, pattern)| path_matches(pattern, req.path()))
        .collect();
    let literal = matching.iter().any(|(_, pattern)| !pattern.contains('{'));
    let mut allowed: Vec<String> = matching
        .iter()
        .filter(|(_, pattern)| !literal || !pattern.contains('{'))
        .map(|(method, _)| method.to_ascii_uppercase())
        .collect();
    if !allowed.is_empty() {
        allowed.sort();
        allowed.dedup();
        let mut problem = Problem::new(
            405,
            "method-not-allowed",
            "Method not allowed",
            format!(
                "{} is not supported here; {} is",
                req.method(),
                allowed.join(", ")
            ),
        );
        problem.allow = Some(allowed.join(", "));
        problem
    } else {
        Problem::new(
            404,
            "not-found",
            "Not found",
            "no such route; see /openapi.json",
        )
    }
}

pub(crate) fn path_matches(pattern: &str, path: &str) -> bool {
    let a: Vec<&str> = pattern.split('/').collect();
    let b: Vec<&str> = path.split('/').collect();
    a.len() == b.len() && a.iter().zip(&b).all(|(p, s)| p.starts_with('{') || p == s)
}

/// The problem answers every role documents alike, once each (`components.responses` of the
/// OpenAPI documents; a role's `#[openapi(components(responses(…)))]` lists the ones it uses).
pub mod responses {
    use super::ProblemBody;

    /// `401`.
    #[derive(utoipa::ToResponse)]
    #[response(
        description = "Missing or unknown bearer token.",
        content_type = "application/problem+json"
    )]
    pub struct Unauthorized(pub ProblemBody);

    /// `403` of a route that needs `scans:read`.
    #[derive(utoipa::ToResponse)]
    #[response(
        description = "The token lacks the scans:read scope.",
        content_type = "application/problem+json"
    )]
    pub struct ForbiddenRead(pub ProblemBody);

    /// `403` of a route that needs `scans:write`.
    #[derive(utoipa::ToResponse)]
    #[response(
        description = "The token lacks the scans:write scope.",
        content_type = "application/problem+json"
    )]
    pub struct ForbiddenWrite(pub ProblemBody);

    /// `403` of a route that needs `findings:triage`.
    #[derive(utoipa::ToResponse)]
    #[response(
        description = "The token lacks the findings:triage scope.",
        content_type = "application/problem+json"
    )]
    pub struct ForbiddenTriage(pub ProblemBody);

    /// `400` of a route whose path names a job by a text that is not a uuid.
    #[derive(utoipa::ToResponse)]
    #[response(
        description = "The id is not a uuid.",
        content_type = "application/problem+json"
    )]
    pub struct InvalidJobId(pub ProblemBody);

    /// `413`.
    #[derive(utoipa::ToResponse)]
    #[response(
        description = "The body is too large.",
        content_type = "application/problem+json"
    )]
    pub struct TooLarge(pub ProblemBody);

    /// `415`.
    #[derive(utoipa::ToResponse)]
    #[response(
        description = "The body is not application/json.",
        content_type = "application/problem+json"
    )]
    pub struct UnsupportedMediaType(pub ProblemBody);
}

/// Adds the `bearer` security scheme to a role's OpenAPI document (`#[openapi(modifiers(&BearerAuth),
/// security(("bearer" = [])))]`): operations need a token unless they say otherwise.
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A token from api.tokens; each operation's 403 names the scope it needs (scans:write, scans:read, findings:triage). Without an Authorization header, the dashboard's session cookie `scanstream_session` stands for the token that logged in; a session request that changes anything also carries the session's CSRF value in `X-CSRF-Token`.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The path of a route on one job (`/jobs/{uuid}`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Documents the path; handlers read it as text with [`job_id`].
pub struct JobPath {
    /// The job's id.
    uuid: uuid::Uuid,
}

/// The job a `/jobs/{uuid}` path names; a `400` (`uuid`) when it is not a uuid.
pub fn job_id(text: &str) -> Result<scanstream_contracts::JobId, Problem> {
    uuid::Uuid::parse_str(text)
        .map(scanstream_contracts::JobId)
        .map_err(|_| Problem::invalid("uuid", "uuid", "the job id must be a uuid"))
}

/// The body of `/health_check` and `/livez`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProcessStatus {
    /// `ok` (`/health_check`) or `alive` (`/livez`).
    #[schema(pattern = "^(ok|alive)$")]
    pub status: &'static str,
}

/// The job manager's health route: up while the process runs.
#[utoipa::path(get, path = "/health_check", tag = "probes", security(()), responses(
    (status = 200, description = "The process is up.", body = ProcessStatus),
))]
pub async fn health_check() -> HttpResponse {
    HttpResponse::Ok().json(ProcessStatus { status: "ok" })
}

/// Liveness probe.
#[utoipa::path(get, path = "/livez", tag = "probes", security(()), responses(
    (status = 200, description = "The process is alive.", body = ProcessStatus),
))]
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(ProcessStatus { status: "alive" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_patterns_match_paths_segment_by_segment() {
        assert!(path_matches("/jobs/{uuid}", "/jobs/abc"));
        assert!(path_matches("/jobs", "/jobs"));
        assert!(!path_matches("/jobs/{uuid}", "/jobs"));
        assert!(!path_matches("/jobs/stats", "/jobs/other"));
    }

    #[test]
    fn traceparent_continues_a_valid_trace_and_starts_one_otherwise() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let child = child_traceparent(Some(incoming));
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(child.ends_with("-01"));
        assert_ne!(child, incoming);
        for bad in [
            None,
            Some("garbage"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        ] {
            let fresh = child_traceparent(bad);
            assert_eq!(fresh.len(), 55, "{fresh}");
            assert!(fresh.starts_with("00-") && !fresh.starts_with("00-0000000000000000"));
        }
    }

    #[test]
    fn serde_errors_name_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            name: String,
        }
        let problem = |text: &str| {
            json_problem(
                &serde_json::from_str::<Body>(text)
                    .err()
                    .unwrap_or_else(|| panic!("{text}")),
            )
        };
        let unknown = problem(r#"{"name":"a","nmae":"b"}"#);
        assert_eq!(
            (unknown.field.as_deref(), unknown.rule.as_deref()),
            (Some("nmae"), Some("unknown-field"))
        );
        let missing = problem("{}");
        assert_eq!(
            (missing.field.as_deref(), missing.rule.as_deref()),
            (Some("name"), Some("required"))
        );
        assert_eq!(problem("{").kind, "/problems/invalid-json");
        assert_eq!(problem(r#"{"name": 5}"#).rule.as_deref(), Some("type"));
    }
}
