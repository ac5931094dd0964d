//! Roles and their one lifecycle: started, served on one HTTP server, stopped.
//!
//! A role (ingest, aggregator, scanner, scheduler) is started by its crate's `start`, which
//! returns it running; it brings its own routes, its readiness and its OpenAPI document, and
//! knows how to stop. [`Application`] serves one or more started roles on one port and stops
//! them in order; [`serve`] adds what every server has: [`SHARED_ROUTES`] (`/health_check`,
//! `/livez`, `/readyz`: ready only when every role is, `/metrics`), `/openapi.json` (the roles'
//! documents merged) when a role has one, the request middleware and `404`/`405` problem
//! answers. A role's own command serves it alone; `scanstream up` serves all four on one port.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Map, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::{Problem, RoleLabel, health_check, livez, observe, path_matches, unmatched};

/// The routes [`serve`] answers for every server, whatever its roles.
pub const SHARED_ROUTES: &[(&str, &str)] = &[
    ("get", "/health_check"),
    ("get", "/livez"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

/// Served when at least one role has an OpenAPI document.
pub const OPENAPI_ROUTE: (&str, &str) = ("get", "/openapi.json");
pub const ASYNCAPI_ROUTE: (&str, &str) = ("get", "/asyncapi.json");

/// Whether a role can do its work, and why (the body of its part of `/readyz`).
#[derive(Debug, Clone)]
pub struct Readiness {
    pub ready: bool,
    /// Role-specific fields (`restored`, `folding`, `consuming`, `reason`…).
    pub detail: Map<String, Value>,
}

impl Readiness {
    pub fn new(ready: bool, detail: Value) -> Self {
        let detail = match detail {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Self { ready, detail }
    }
}

/// When a role stops relative to the HTTP server that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOrder {
    /// After the server: the role's routes need its tasks until the last request finished
    /// (ingest's writer, the aggregator's store).
    AfterServer,
    /// Before the server: the role has no routes of its own and drains long-running work while
    /// the probes still answer (the scanner's running scans).
    BeforeServer,
}

/// A started role: the part of an HTTP server it contributes and how it stops.
pub trait Role: Send + Sync + 'static {
    /// Short name: the key of its `/readyz` entry.
    fn name(&self) -> &'static str;
    /// The `role` label of request metrics when it is served alone; `None` for a part every
    /// process serves beside its roles (Kafka reachability).
    fn label(&self) -> Option<&'static str> {
        Some(self.name())
    }
    /// The (method, path) pairs of the role's own routes ([`SHARED_ROUTES`] are added by
    /// [`serve`]); they decide between `404` and `405` for requests nothing matched.
    fn routes(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// Registers the role's own routes and their app data.
    fn configure(&self, _cfg: &mut web::ServiceConfig) {}
    fn readiness(&self) -> Readiness;
    /// The role's OpenAPI document of its own routes, if it has a public API (generated from
    /// its types with utoipa; [`serve`] adds the shared routes).
    fn openapi(&self) -> Option<utoipa::openapi::OpenApi> {
        None
    }
    /// The AsyncAPI document of the topics, served at `/asyncapi.json` (ingest's: it knows the
    /// deployment's topic names).
    fn asyncapi(&self) -> Option<Value> {
        None
    }
    /// Refreshes gauges that are read on demand, before `/metrics` renders.
    fn refresh_metrics(&self) {}
    /// HTTP worker threads the role needs; `None` is one per core.
    fn http_workers(&self) -> Option<usize> {
        None
    }
    /// How long the role's in-flight requests may take to finish after a graceful stop.
    fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
    fn stop_order(&self) -> StopOrder {
        StopOrder::AfterServer
    }
    /// Stops the role's tasks cleanly (drains, commits, leaves groups); returns once they ended.
    fn stop(&self) -> BoxFuture<'_, ()>;
    /// Stops like a killed process: tasks aborted, nothing flushed; returns once the role
    /// released what another instance would need (files, locks). For crash tests.
    fn kill(&self) -> BoxFuture<'_, ()> {
        self.stop()
    }
}

/// How [`serve`] runs the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The `role` label of request metrics.
    pub label: &'static str,
    /// Worker threads; `None` is one per core.
    pub workers: Option<usize>,
    /// How long in-flight requests may take to finish after a graceful stop.
    pub shutdown_timeout: Duration,
}

impl ServeOptions {
    /// What `roles` ask for together: the role's name as the label (`up` for several), the most
    /// workers any role needs (one per core if one asks for that), the longest shutdown timeout.
    pub fn for_roles(roles: &[Arc<dyn Role>]) -> ServeOptions {
        let labels: Vec<&'static str> = roles.iter().filter_map(|r| r.label()).collect();
        let label = match labels[..] {
            [one] => one,
            _ => "up",
        };
        let workers = roles
            .iter()
            .map(|r| r.http_workers())
            .try_fold(1, |most, w| w.map(|w| most.max(w)));
        let shutdown_timeout = roles
            .iter()
            .map(|r| r.shutdown_timeout())
            .max()
            .unwrap_or(Duration::from_secs(5));
        ServeOptions {
            label,
            workers,
            shutdown_timeout,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Server(#[source] std::io::Error),
    #[error(
        "{later} route {route} would be answered by {earlier}'s {pattern}: serve {later} before {earlier}"
    )]
    Shadowed {
        later: &'static str,
        route: String,
        earlier: &'static str,
        pattern: String,
    },
}

/// Started roles served on one port: the one lifecycle of every scanstream process.
pub struct Application {
    roles: Vec<Arc<dyn Role>>,
    server: Served,
}

impl Application {
    /// Binds `listen` (port 0 picks a free port) and serves the started `roles` on it. Roles
    /// are matched in the order given; a role whose route an earlier role's path parameter
    /// would swallow is refused ([`ServeError::Shadowed`]).
    pub fn build(
        listen: &str,
        roles: Vec<Arc<dyn Role>>,
        metrics: PrometheusHandle,
    ) -> Result<Application, ServeError> {
        let options = ServeOptions::for_roles(&roles);
        let server = serve(listen, roles.clone(), metrics, options)?;
        tracing::info!(port = server.port(), "listening");
        Ok(Application { roles, server })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The roles served, in the order given to [`Application::build`].
    pub fn roles(&self) -> &[Arc<dyn Role>] {
        &self.roles
    }

    /// Serves until `shutdown` is cancelled, then stops: roles that stop before the server (in
    /// reverse order), the server (in-flight requests finish), the other roles (in reverse).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        shutdown.cancelled().await;
        self.stop().await
    }

    /// Stops now, as [`Application::run_until_stopped`] does once told to.
    pub async fn stop(self) -> Result<(), ServeError> {
        tracing::info!("stopping");
        stop_in_order(&self.roles, StopOrder::BeforeServer).await;
        let served = self.server.stop(true).await;
        stop_in_order(&self.roles, StopOrder::AfterServer).await;
        served
    }

    /// Stops like a killed process ([`Role::kill`]): the server without draining, then every
    /// role; returns once every role is dropped, so its files are closed.
    pub async fn kill(self) {
        let _ = self.server.stop(false).await;
        for role in self.roles.iter().rev() {
            role.kill().await;
        }
        let roles: Vec<std::sync::Weak<dyn Role>> = self.roles.iter().map(Arc::downgrade).collect();
        drop(self.roles);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while roles.iter().any(|r| r.strong_count() > 0) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Stops started `roles` that are not served (yet): in the order an [`Application`] would.
pub async fn stop_roles(roles: &[Arc<dyn Role>]) {
    stop_in_order(roles, StopOrder::BeforeServer).await;
    stop_in_order(roles, StopOrder::AfterServer).await;
}

/// Stops the `roles` of one order, last started first.
async fn stop_in_order(roles: &[Arc<dyn Role>], order: StopOrder) {
    for role in roles.iter().rev().filter(|r| r.stop_order() == order) {
        role.stop().await;
    }
}

/// Every route a server of `roles` answers: theirs and the shared ones.
pub fn served_routes(roles: &[Arc<dyn Role>]) -> Vec<(&'static str, &'static str)> {
    let with_openapi = roles.iter().any(|r| r.openapi().is_some());
    let with_asyncapi = roles.iter().any(|r| r.asyncapi().is_some());
    let own = roles.iter().flat_map(|r| r.routes().iter().copied());
    let mut routes: Vec<(&'static str, &'static str)> = Vec::new();
    for route in own
        .chain(SHARED_ROUTES.iter().copied())
        .chain(with_openapi.then_some(OPENAPI_ROUTE))
        .chain(with_asyncapi.then_some(ASYNCAPI_ROUTE))
    {
        if !routes.contains(&route) {
            routes.push(route);
        }
    }
    routes
}

/// Refuses an order of roles in which a later role's route would be matched by an earlier
/// role's path parameter for the same method (actix tries resources in registration order).
fn check_order(roles: &[Arc<dyn Role>]) -> Result<(), ServeError> {
    for (i, earlier) in roles.iter().enumerate() {
        for later in &roles[i + 1..] {
            for (method, route) in later.routes() {
                for (_, pattern) in earlier.routes().iter().filter(|(m, _)| m == method) {
                    if pattern != route && pattern.contains('{') && path_matches(pattern, route) {
                        return Err(ServeError::Shadowed {
                            later: later.name(),
                            route: (*route).to_owned(),
                            earlier: earlier.name(),
                            pattern: (*pattern).to_owned(),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// A running server.
pub struct Served {
    handle: ServerHandle,
    serving: JoinHandle<std::io::Result<()>>,
    port: u16,
}

/// Every (method, path pattern) the server answers, as app data: a handler whose path parameter
/// took a path that is another route's literal path (`DELETE /jobs/{uuid}` for `/jobs/stats`)
/// answers as the server would for that path ([`crate::http::unmatched`]).
#[derive(Debug, Clone)]
pub struct ServedRoutes(pub Vec<(&'static str, &'static str)>);

impl ServedRoutes {
    /// Whether `path` is the literal path (no parameter) of a served route.
    pub fn is_literal(&self, path: &str) -> bool {
        self.0.iter().any(|(_, p)| !p.contains('{') && *p == path)
    }
}

struct Shared {
    roles: Vec<Arc<dyn Role>>,
    metrics: PrometheusHandle,
    /// The served OpenAPI document, rendered once.
    openapi: Option<Value>,
    asyncapi: Option<Value>,
}

/// Binds `listen` (port 0 picks a free port) and serves `roles` on it, in the order given.
pub fn serve(
    listen: &str,
    roles: Vec<Arc<dyn Role>>,
    metrics: PrometheusHandle,
    options: ServeOptions,
) -> Result<Served, ServeError> {
    check_order(&roles)?;
    let served = web::Data::new(ServedRoutes(served_routes(&roles)));
    let asyncapi = roles.iter().find_map(|r| r.asyncapi());
    let openapi = served_openapi(&roles, asyncapi.is_some()).map(|document| {
        serde_json::to_value(document).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the OpenAPI document cannot be rendered");
            Value::Null
        })
    });
    let shared = web::Data::new(Shared {
        roles,
        metrics,
        openapi,
        asyncapi,
    });
    let label = web::Data::new(RoleLabel(options.label));
    let listener = TcpListener::bind(listen).map_err(|source| ServeError::Bind {
        address: listen.to_owned(),
        source,
    })?;
    let port = listener.local_addr().map_err(ServeError::Server)?.port();
    let mut server = HttpServer::new(move || {
        let roles = shared.roles.clone();
        let has_openapi = shared.openapi.is_some();
        let has_asyncapi = shared.asyncapi.is_some();
        App::new()
            .app_data(shared.clone())
            .app_data(label.clone())
            .app_data(served.clone())
            .wrap(from_fn(observe))
            .configure(|cfg| {
                for role in &roles {
                    role.configure(cfg);
                }
                cfg.route("/health_check", web::get().to(health_check))
                    .route("/livez", web::get().to(livez))
                    .route("/readyz", web::get().to(readyz))
                    .route("/metrics", web::get().to(render_metrics));
                if has_openapi {
                    cfg.route("/openapi.json", web::get().to(openapi_document));
                }
                if has_asyncapi {
                    cfg.route("/asyncapi.json", web::get().to(asyncapi_document));
                }
            })
            .default_service(web::to(not_found))
    })
    .disable_signals()
    // A client must send a connection's first request head within this (then `408` and the
    // connection closes); bodies are bounded by the roles (`http::BodyReadTimeout`).
    .client_request_timeout(Duration::from_secs(5))
    // After an answer sent before the body was read (413, 408, 401…), the rest of the body is
    // read and dropped for at most this long, then the connection is closed.
    .client_disconnect_timeout(Duration::from_secs(1))
    .shutdown_timeout(options.shutdown_timeout.as_secs().max(1));
    if let Some(workers) = options.workers {
        server = server.workers(workers.max(1));
    }
    let server = server.listen(listener).map_err(ServeError::Server)?.run();
    let handle = server.handle();
    let serving = tokio::spawn(server);
    Ok(Served {
        handle,
        serving,
        port,
    })
}

impl Served {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops accepting connections; with `graceful`, in-flight requests finish first.
    pub async fn stop(self, graceful: bool) -> Result<(), ServeError> {
        self.handle.stop(graceful).await;
        match self.serving.await {
            Ok(result) => result.map_err(ServeError::Server),
            Err(e) => Err(ServeError::Server(std::io::Error::other(e))),
        }
    }
}

/// The body of `/readyz`: `ready` and one entry per role.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ReadyBody {
    /// Whether every role is ready.
    pub ready: bool,
    /// Each role's entry, under its name.
    #[serde(flatten)]
    pub roles: std::collections::BTreeMap<String, RoleReadiness>,
}

/// One role's `/readyz` entry.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RoleReadiness {
    pub ready: bool,
    /// Role-specific fields (`restored`, `folding`, `consuming`, `reason`…).
    #[serde(flatten)]
    pub detail: Map<String, Value>,
}

/// Readiness probe: ready only when every role is; each role's entry says why not.
#[utoipa::path(get, path = "/readyz", tag = "probes", security(()), responses(
    (status = 200, description = "Every role is ready.", body = ReadyBody),
    (status = 503, description = "A role is not ready; its entry says why.", body = ReadyBody),
))]
async fn readyz(shared: web::Data<Shared>) -> HttpResponse {
    let mut roles = std::collections::BTreeMap::new();
    let mut all = true;
    for role in &shared.roles {
        let readiness = role.readiness();
        all &= readiness.ready;
        let entry = RoleReadiness {
            ready: readiness.ready,
            detail: readiness.detail,
        };
        roles.insert(role.name().to_owned(), entry);
    }
    let body = ReadyBody { ready: all, roles };
    if all {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "probes", security(()), responses(
    (status = 200, description = "Prometheus text format 0.0.4.", body = String, content_type = "text/plain"),
))]
async fn render_metrics(shared: web::Data<Shared>) -> HttpResponse {
    for role in &shared.roles {
        role.refresh_metrics();
    }
    crate::metrics::collect_process();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(shared.metrics.render())
}

/// The AsyncAPI 3.0 document of the topics.
#[utoipa::path(get, path = "/asyncapi.json", tag = "documents", security(()), responses(
    (status = 200, description = "Every topic's address, Kafka bindings, key, headers and Avro schema.", body = Object),
))]
async fn asyncapi_document(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(shared.asyncapi.as_ref().unwrap_or(&Value::Null))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "documents", security(()), responses(
    (status = 200, description = "The OpenAPI 3.1 document of every route this server answers.", body = Object),
))]
async fn openapi_document(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(shared.openapi.as_ref().unwrap_or(&Value::Null))
}

async fn not_found(
    served: web::Data<ServedRoutes>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    Err(unmatched(&served.0, &req))
}

/// The (method, path) pairs an OpenAPI document describes, to check it against a role's
/// [`Role::routes`] with [`route_set`].
pub fn documented_routes(document: &Value) -> BTreeSet<(String, String)> {
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        // A path item also holds shared `parameters`, `summary`, …: only operations count.
        let methods = [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ];
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            if methods.contains(&method.as_str()) {
                documented.insert((method.clone(), path.clone()));
            }
        }
    }
    documented
}

/// `routes` as a set comparable with [`documented_routes`].
pub fn route_set(routes: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    routes
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect()
}

/// The routes every server answers, as an OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    crate::http::health_check,
    crate::http::livez,
    readyz,
    render_metrics,
    openapi_document,
    asyncapi_document
))]
struct SharedApi;

/// What a server of `roles` documents: the roles' own documents (the first one's info wins;
/// several get a combined title), their operations united per path, and the shared routes
/// (`/asyncapi.json` only `with_asyncapi`). `None` when no role has a document.
pub fn served_openapi(
    roles: &[Arc<dyn Role>],
    with_asyncapi: bool,
) -> Option<utoipa::openapi::OpenApi> {
    let documents: Vec<utoipa::openapi::OpenApi> =
        roles.iter().filter_map(|r| r.openapi()).collect();
    let count = documents.len();
    let mut documents = documents.into_iter();
    let mut served = documents.next()?;
    for document in documents {
        served.merge(document);
    }
    if count > 1 {
        served.info.title = "scanstream".to_owned();
        served.info.description = Some(
            "Every role of scanstream on one server: ingest and the aggregator's read API."
                .to_owned(),
        );
    }
    let mut shared = <SharedApi as utoipa::OpenApi>::openapi();
    if !with_asyncapi {
        shared.paths.paths.shift_remove(ASYNCAPI_ROUTE.1);
    }
    served.merge(shared);
    Some(served)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A role with routes and, unless `Value::Null`, a document read from JSON as a role's
    /// generated one would be.
    struct Routes(&'static str, &'static [(&'static str, &'static str)], Value);

    impl Role for Routes {
        fn name(&self) -> &'static str {
            self.0
        }
        fn routes(&self) -> &'static [(&'static str, &'static str)] {
            self.1
        }
        fn readiness(&self) -> Readiness {
            Readiness::new(true, Value::Null)
        }
        fn openapi(&self) -> Option<utoipa::openapi::OpenApi> {
            serde_json::from_value(self.2.clone()).ok()
        }
        fn stop(&self) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    #[test]
    fn a_route_an_earlier_role_would_swallow_is_refused() {
        let ingest: Arc<dyn Role> = Arc::new(Routes(
            "ingest",
            &[("delete", "/jobs/{uuid}"), ("get", "/jobs/schedule")],
            Value::Null,
        ));
        let aggregator: Arc<dyn Role> = Arc::new(Routes(
            "aggregator",
            &[("get", "/jobs/{uuid}"), ("get", "/jobs/stats")],
            Value::Null,
        ));
        assert!(check_order(&[ingest.clone(), aggregator.clone()]).is_ok());
        let refused = check_order(&[aggregator.clone(), ingest.clone()]);
        assert!(
            matches!(
                &refused,
                Err(ServeError::Shadowed {
                    later: "ingest",
                    earlier: "aggregator",
                    ..
                })
            ),
            "{refused:?}"
        );
        let routes = served_routes(&[ingest, aggregator]);
        assert!(routes.contains(&("get", "/readyz")) && routes.contains(&("get", "/jobs/stats")));
        assert!(!routes.contains(&OPENAPI_ROUTE), "no role has a document");
    }

    #[test]
    fn serve_options_follow_the_roles() {
        let one: Vec<Arc<dyn Role>> = vec![Arc::new(Routes("scanner", &[], Value::Null))];
        let options = ServeOptions::for_roles(&one);
        assert_eq!((options.label, options.workers), ("scanner", None));
        assert_eq!(options.shutdown_timeout, Duration::from_secs(5));
    }

    #[test]
    fn the_served_document_unites_the_roles_and_the_shared_routes() {
        let a: Arc<dyn Role> = Arc::new(Routes(
            "a",
            &[("post", "/jobs")],
            json!({
                "openapi": "3.1.0", "info": {"title": "a", "version": "1"},
                "paths": {"/jobs": {"post": {"summary": "submit", "responses": {}}}},
                "components": {"schemas": {"Problem": {"type": "object"}}}
            }),
        ));
        let b: Arc<dyn Role> = Arc::new(Routes(
            "b",
            &[("get", "/jobs"), ("get", "/jobs/stats")],
            json!({
                "openapi": "3.1.0", "info": {"title": "b", "version": "1"},
                "paths": {
                    "/jobs": {"get": {"summary": "list", "responses": {}}},
                    "/jobs/stats": {"get": {"summary": "stats", "responses": {}}}
                },
                "components": {"schemas": {"JobState": {"type": "object"}}}
            }),
        ));
        let roles = [a.clone(), b];
        let served =
            served_openapi(&roles, false).map(|d| serde_json::to_value(d).unwrap_or_default());
        let served = served.unwrap_or_default();
        assert_eq!(served["openapi"], "3.1.0");
        assert_eq!(served["info"]["title"], "scanstream");
        assert_eq!(served["paths"]["/jobs"]["post"]["summary"], "submit");
        assert_eq!(served["paths"]["/jobs"]["get"]["summary"], "list");
        assert!(served["components"]["schemas"]["Problem"].is_object());
        assert!(served["components"]["schemas"]["JobState"].is_object());
        assert_eq!(
            documented_routes(&served),
            route_set(&served_routes(&roles))
        );
        // One role keeps its title; `/asyncapi.json` is documented where it is served.
        let one = served_openapi(&[a], true).map(|d| serde_json::to_value(d).unwrap_or_default());
        let one = one.unwrap_or_default();
        assert_eq!(one["info"]["title"], "a");
        assert!(one["paths"]["/asyncapi.json"]["get"].is_object());
        assert!(served_openapi(&[], true).is_none());
    }
}
