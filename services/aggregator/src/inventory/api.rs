//! The inventory's routes: `GET /findings`, `GET /findings/{id}`, `PATCH /findings/{id}` (a
//! triage decision, written to `scans.triage`; the fold applies it) and `GET /repos`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use scanstream_contracts::finding::{Severity, SeverityCounts};
use scanstream_contracts::inventory::{
    InventoryItem, ItemId, ItemStatus, TriageDecision, TriageReason,
};
use scanstream_contracts::state::{JobState, JobStatus};
use scanstream_contracts::{Codec, Topic, TopicNames};
use scanstream_platform::auth::Scope;
use scanstream_platform::http::responses::{
    ForbiddenRead, ForbiddenTriage, TooLarge, Unauthorized, UnsupportedMediaType,
};
use scanstream_platform::http::{Problem, ProblemBody, json_body};
use scanstream_platform::kafka::StatsContext;
use serde::{Deserialize, Serialize};

use crate::api::{AppState, authorize_scope, filtered_page, internal, page_params};
use crate::store::Table;

/// Longest wait for Kafka to acknowledge a triage decision before answering 503.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest triage body, as large as ingest's default (`ingest.body_limit_bytes`): a comment at
/// its limit written as JSON escapes (up to 12 bytes a character) is about 24 KB, so a body is
/// judged by what it says (400 naming the field) rather than by its size.
const BODY_LIMIT: usize = 64 * 1024;
/// Longest comment, in characters.
const MAX_COMMENT: usize = 2000;

/// Writes triage decisions to `scans.triage`, each on its item's repository's partition.
pub struct TriageWriter {
    pub producer: FutureProducer<StatsContext>,
    pub names: TopicNames,
    pub codec: Arc<Codec>,
    pub partitions: tokio::sync::OnceCell<i32>,
}

impl TriageWriter {
    async fn write(&self, decision: &TriageDecision) -> Result<(), Problem> {
        let topic = self.names.name(Topic::Triage);
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "triage decision not written");
            Problem::unavailable(
                "Kafka or the schema registry is unavailable; nothing was recorded",
                5,
            )
        };
        let partitions = *self
            .partitions
            .get_or_try_init(|| async {
                let producer = self.producer.clone();
                let topic = topic.clone();
                tokio::task::spawn_blocking(move || {
                    scanstream_platform::kafka::partitions(producer.client(), &topic, WRITE_TIMEOUT)
                        .and_then(|p| match p.len() {
                            0 => Err(rdkafka::error::KafkaError::MetadataFetch(
                                rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
                            )),
                            n => Ok(i32::try_from(n).unwrap_or(i32::MAX)),
                        })
                })
                .await
                .map_err(|e| unavailable(&e))?
                .map_err(|e| unavailable(&e))
            })
            .await?;
        let bytes = self
            .codec
            .encode(Topic::Triage, decision)
            .await
            .map_err(|e| unavailable(&e))?;
        let key = decision.item_id.key();
        self.producer
            .send(
                FutureRecord::to(&topic)
                    .key(&key)
                    .payload(&bytes)
                    .partition(decision.item_id.partition(partitions)),
                WRITE_TIMEOUT,
            )
            .await
            .map_err(|(e, _)| unavailable(&e))?;
        Ok(())
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/findings", web::get().to(list))
        .route("/findings/{id}", web::get().to(item))
        .route("/findings/{id}", web::patch().to(triage))
        .route("/repos", web::get().to(repos));
}

fn parse_item(text: &str) -> Result<ItemId, Problem> {
    ItemId::parse(text).ok_or_else(|| {
        Problem::invalid(
            "id",
            "uuid",
            "the item id must be a uuid (an item_id from GET /findings)",
        )
    })
}

async fn stored_item(state: &AppState, id: ItemId) -> Result<Option<InventoryItem>, Problem> {
    let stored = state
        .store
        .blocking(move |s| s.get(Table::Items, id.0.as_u128()))
        .await
        .map_err(internal)?;
    match stored {
        Some(s) => Ok(Some(state.codec.decode(&s.value).await.map_err(internal)?)),
        None => Ok(None),
    }
}

/// Every item, decoded, in id order.
async fn all_items(state: &AppState) -> Result<Vec<InventoryItem>, Problem> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = state
            .store
            .blocking(move |s| s.page(Table::Items, after, 10_000))
            .await
            .map_err(internal)?;
        let Some(last) = page.last() else { break };
        after = Some(last.0);
        for (_, stored) in page {
            out.push(state.codec.decode(&stored.value).await.map_err(internal)?);
        }
    }
    Ok(out)
}

/// The filters and page of `GET /findings`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct FindingsQuery {
    /// Only items of this normalized repository URL.
    repo: Option<String>,
    /// Only items with this status.
    #[param(value_type = Option<StatusName>, inline)]
    status: Option<String>,
    /// Only items of this severity.
    #[param(value_type = Option<SeverityName>, inline)]
    severity: Option<String>,
    /// Only items of this rule id.
    rule: Option<String>,
    /// Only items that are (true) or are not (false) in the tip of the default ref.
    in_tip: Option<bool>,
    /// Items per page.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<uuid::Uuid>)]
    cursor: Option<String>,
}

/// An item status, as a filter or a decision.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // Documents the accepted values; parse_status reads them.
pub(crate) enum StatusName {
    Open,
    Resolved,
    Ignored,
}

/// A severity, as a filter.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // Documents the accepted values; parse_severity reads them.
pub(crate) enum SeverityName {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

/// One item in a listing: the item without its locations and triage trail.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemSummary {
    pub item_id: ItemId,
    pub repo_url: String,
    pub fingerprint: String,
    pub rule_id: String,
    pub severity: Severity,
    pub engines: Vec<String>,
    pub redacted_preview: String,
    pub status: ItemStatus,
    pub reason: Option<TriageReason>,
    pub in_tip: bool,
    pub first_seen: i64,
    pub last_seen: i64,
    pub reopened: i32,
    /// Distinct locations seen.
    pub locations: i64,
    /// The first kept location's path.
    pub path: Option<String>,
    pub line: Option<i32>,
}

impl From<&InventoryItem> for ItemSummary {
    fn from(i: &InventoryItem) -> Self {
        Self {
            item_id: i.item_id,
            repo_url: i.repo_url.clone(),
            fingerprint: i.fingerprint.clone(),
            rule_id: i.rule_id.clone(),
            severity: i.severity,
            engines: i.engines.clone(),
            redacted_preview: i.redacted_preview.clone(),
            status: i.status,
            reason: i.reason,
            in_tip: i.in_tip,
            first_seen: i.first_seen,
            last_seen: i.last_seen,
            reopened: i.reopened,
            locations: i.locations_total,
            path: i.locations.first().map(|l| l.path.clone()),
            line: i.locations.first().map(|l| l.line),
        }
    }
}

/// A page of `GET /findings`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FindingsPage {
    pub items: Vec<ItemSummary>,
    /// Pass as `cursor` for the next page; `null` after the last page.
    pub next_cursor: Option<uuid::Uuid>,
}

fn parse_status(text: &str) -> Result<ItemStatus, Problem> {
    match text.to_ascii_lowercase().as_str() {
        "open" => Ok(ItemStatus::Open),
        "resolved" => Ok(ItemStatus::Resolved),
        "ignored" => Ok(ItemStatus::Ignored),
        _ => Err(Problem::invalid(
            "status",
            "enum",
            "status must be open, resolved or ignored",
        )),
    }
}

fn parse_severity(text: &str) -> Result<Severity, Problem> {
    match text.to_ascii_lowercase().as_str() {
        "critical" => Ok(Severity::Critical),
        "high" => Ok(Severity::High),
        "medium" => Ok(Severity::Medium),
        "low" => Ok(Severity::Low),
        "info" => Ok(Severity::Info),
        _ => Err(Problem::invalid(
            "severity",
            "enum",
            "severity must be critical, high, medium, low or info",
        )),
    }
}

fn parse_reason(text: &str) -> Result<TriageReason, Problem> {
    match text.to_ascii_lowercase().as_str() {
        "revoked" => Ok(TriageReason::Revoked),
        "false_positive" => Ok(TriageReason::FalsePositive),
        "used_in_tests" => Ok(TriageReason::UsedInTests),
        "wont_fix" => Ok(TriageReason::WontFix),
        _ => Err(Problem::invalid(
            "reason",
            "enum",
            "reason must be revoked, false_positive, used_in_tests or wont_fix",
        )),
    }
}

/// The inventory: one item per secret per repository, filtered and paginated in item id order.
#[utoipa::path(get, path = "/findings", tag = "inventory", params(FindingsQuery), responses(
    (status = 200, description = "A page; pass next_cursor as cursor for the next one.", body = FindingsPage),
    (status = 400, description = "A bad filter, limit or cursor.", body = ProblemBody, content_type = "application/problem+json"),
    (status = 401, response = Unauthorized),
    (status = 403, response = ForbiddenRead),
))]
pub(crate) async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorize_scope(&state, &req, Scope::ScansRead)?;
    let query = web::Query::<FindingsQuery>::from_query(req.query_string())
        .map_err(|e| Problem::invalid("query", "query", e.to_string()))?
        .into_inner();
    let status = query.status.as_deref().map(parse_status).transpose()?;
    let severity = query.severity.as_deref().map(parse_severity).transpose()?;
    let (limit, mut after) = page_params(query.limit, query.cursor.as_deref())?;
    // A repository's items sort together: start at its range, stop after it.
    let range = query.repo.as_deref().map(ItemId::range_of);
    if let Some((low, _)) = range
        && after.is_none_or(|a| a < low)
    {
        after = low.checked_sub(1);
    }
    let (items, next_cursor) = filtered_page(
        &state,
        Table::Items,
        after,
        range.map(|(_, high)| high),
        limit,
        |item: InventoryItem| {
            let matches = query.repo.as_ref().is_none_or(|r| &item.repo_url == r)
                && status.is_none_or(|s| item.status == s)
                && severity.is_none_or(|s| item.severity == s)
                && query.rule.as_ref().is_none_or(|r| &item.rule_id == r)
                && query.in_tip.is_none_or(|t| item.in_tip == t);
            matches.then(|| ItemSummary::from(&item))
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(FindingsPage { items, next_cursor }))
}

/// The path of a route on one inventory item.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Documents the path; handlers read it as text.
pub(crate) struct ItemPath {
    /// The item's id (`item_id`).
    id: uuid::Uuid,
}

fn not_found(id: ItemId) -> Problem {
    Problem::new(
        404,
        "not-found",
        "Not found",
        format!("no inventory item {id}"),
    )
}

/// One item: every kept location and its triage trail (schemas/InventoryItem.avsc as JSON).
#[utoipa::path(get, path = "/findings/{id}", tag = "inventory", params(ItemPath), responses(
    (status = 200, description = "The item.", body = InventoryItem),
    (status = 400, description = "The id is not a uuid.", body = ProblemBody, content_type = "application/problem+json"),
    (status = 401, response = Unauthorized),
    (status = 403, response = ForbiddenRead),
    (status = 404, description = "No such item.", body = ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn item(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    authorize_scope(&state, &req, Scope::ScansRead)?;
    let id = parse_item(&path)?;
    match stored_item(&state, id).await? {
        Some(item) => Ok(HttpResponse::Ok().json(item)),
        None => Err(not_found(id)),
    }
}

/// The body of `PATCH /findings/{id}`; its schema (below) says which reasons go with which
/// status.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageRequest {
    /// open, resolved or ignored.
    pub status: String,
    /// revoked (with resolved); false_positive, used_in_tests or wont_fix (with ignored); none
    /// with open.
    pub reason: Option<String>,
    /// Why, for the trail (at most 2000 characters). Never paste a secret here.
    pub comment: Option<String>,
}

impl utoipa::PartialSchema for TriageRequest {
    /// One of: `open` (no reason), `resolved` with `revoked`, `ignored` with `false_positive`,
    /// `used_in_tests` or `wont_fix`; each with an optional comment.
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ObjectBuilder, OneOfBuilder, SchemaType, Type,
        };
        let text = |values: &[&str], description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(values.iter().copied()))
                .description(Some(description))
        };
        let comment = || {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .max_length(Some(MAX_COMMENT))
                .description(Some("Why, for the trail. Never paste a secret here."))
        };
        let choice = |status: &str, reasons: &[&str]| {
            let mut object = ObjectBuilder::new()
                .property("status", text(&[status], "The status decided."))
                .required("status")
                .property("comment", comment())
                .additional_properties(Some(AdditionalProperties::FreeForm(false)));
            object = if reasons.is_empty() {
                object.property(
                    "reason",
                    ObjectBuilder::new()
                        .schema_type(Type::Null)
                        .description(Some("An open item has no reason.")),
                )
            } else {
                object
                    .property("reason", text(reasons, "Why."))
                    .required("reason")
            };
            object.build()
        };
        OneOfBuilder::new()
            .item(choice("open", &[]))
            .item(choice("resolved", &["revoked"]))
            .item(choice("ignored", &["false_positive", "used_in_tests", "wont_fix"]))
            .description(Some(
                "A triage decision: open (no reason), resolved (revoked) or ignored (false_positive, used_in_tests, wont_fix), with an optional comment.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for TriageRequest {}

/// Records a triage decision about an item. The decision is written to `scans.triage` (who,
/// when, from and to status, reason, comment) and the inventory fold applies it within moments;
/// nothing is edited in place. With an `Idempotency-Key` header, a retried request records the
/// same decision once.
#[utoipa::path(patch, path = "/findings/{id}", tag = "inventory", params(ItemPath),
    request_body(content = TriageRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Recorded; the item's status follows once folded.", body = TriageDecision),
        (status = 400, description = "A bad id, status, reason or comment.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = ForbiddenTriage),
        (status = 404, description = "No such item.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, description = "Kafka is unavailable; nothing was recorded. Retry after `Retry-After` seconds.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn triage(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let principal = authorize_scope(&state, &req, Scope::FindingsTriage)?;
    let id = parse_item(&path)?;
    let (request, _) = json_body::<TriageRequest>(&req, payload, BODY_LIMIT).await?;
    let to = parse_status(&request.status)?;
    let reason = request.reason.as_deref().map(parse_reason).transpose()?;
    if !TriageReason::fits(reason, to) {
        return Err(Problem::invalid(
            "reason",
            "fits-status",
            "resolved needs reason revoked; ignored needs false_positive, used_in_tests or wont_fix; open takes no reason",
        ));
    }
    let comment = request
        .comment
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    if comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_COMMENT)
    {
        return Err(Problem::invalid(
            "comment",
            "length",
            format!("comment must be at most {MAX_COMMENT} characters"),
        ));
    }
    let Some(item) = stored_item(&state, id).await? else {
        return Err(not_found(id));
    };
    let actor = principal.name.unwrap_or_else(|| "anonymous".to_owned());
    let decision_id = match req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        Some(key) => scanstream_contracts::ids::derived_uuid("decision", &[&id.key(), &actor, key]),
        None => uuid::Uuid::new_v4(),
    };
    let decision = TriageDecision {
        decision_id,
        item_id: id,
        repo_url: item.repo_url.clone(),
        fingerprint: item.fingerprint.clone(),
        from_status: item.status,
        to_status: to,
        reason,
        comment,
        actor,
        decided_at: scanstream_platform::now_ms(),
    };
    state.triage.write(&decision).await?;
    tracing::info!(item = %id, from = decision.from_status.as_str(), to = to.as_str(), actor = %decision.actor, "triage decision recorded");
    metrics::counter!(crate::metrics::TRIAGE_DECISIONS, "to" => to.as_str()).increment(1);
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/findings/{id}")))
        .json(decision))
}

/// One repository in `GET /repos`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RepoSummary {
    pub repo_url: String,
    /// Open items by severity (ignored and resolved items do not count).
    pub open: SeverityCounts,
    pub resolved: u64,
    pub ignored: u64,
    /// Open items still in the tip of the default ref.
    pub open_in_tip: u64,
    /// The latest run of a job of this repository.
    pub last_scan: Option<LastScan>,
}

/// A repository's latest run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LastScan {
    pub job_id: scanstream_contracts::JobId,
    pub job_name: String,
    pub status: JobStatus,
    /// When it was queued (milliseconds since the Unix epoch).
    pub queued_at: i64,
    pub finished_at: Option<i64>,
}

/// Every repository with a job or an item: open items by severity, last scan and its result.
#[utoipa::path(get, path = "/repos", tag = "inventory", responses(
    (status = 200, description = "Repositories in URL order.", body = Vec<RepoSummary>),
    (status = 401, response = Unauthorized),
    (status = 403, response = ForbiddenRead),
))]
pub(crate) async fn repos(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    authorize_scope(&state, &req, Scope::ScansRead)?;
    let mut repos: BTreeMap<String, RepoSummary> = BTreeMap::new();
    for item in all_items(&state).await? {
        let repo = repos
            .entry(item.repo_url.clone())
            .or_insert_with(|| empty_repo(&item.repo_url));
        match item.status {
            ItemStatus::Open => {
                repo.open.add(item.severity);
                if item.in_tip {
                    repo.open_in_tip += 1;
                }
            }
            ItemStatus::Resolved => repo.resolved += 1,
            ItemStatus::Ignored => repo.ignored += 1,
        }
    }
    for job in crate::api::all_jobs(&state).await? {
        let JobState {
            job_id,
            job_name,
            repo_url,
            runs,
            ..
        } = job;
        if repo_url.is_empty() {
            continue;
        }
        let Some(run) = runs.last() else { continue };
        let repo = repos
            .entry(repo_url.clone())
            .or_insert_with(|| empty_repo(&repo_url));
        if repo
            .last_scan
            .as_ref()
            .is_none_or(|l| l.queued_at < run.queued_at)
        {
            repo.last_scan = Some(LastScan {
                job_id,
                job_name,
                status: run.status,
                queued_at: run.queued_at,
                finished_at: run.finished_at,
            });
        }
    }
    Ok(HttpResponse::Ok().json(repos.into_values().collect::<Vec<_>>()))
}

fn empty_repo(url: &str) -> RepoSummary {
    RepoSummary {
        repo_url: url.to_owned(),
        open: SeverityCounts::default(),
        resolved: 0,
        ignored: 0,
        open_in_tip: 0,
        last_scan: None,
    }
}
