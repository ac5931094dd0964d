//! One HTTP server for one or more roles.
//!
//! A role (ingest, aggregator, scanner) brings its own routes, its readiness and its OpenAPI
//! document; [`serve`] adds what every server has: `/health_check`, `/livez`, `/readyz` (ready
//! only when every role is), `/metrics`, `/openapi.json` (the roles' documents merged), the
//! request middleware and `404`/`405` problem answers. A role's own command serves it alone;
//! `scanstream up` serves all three on one port.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

use crate::http::{RoleLabel, health_check, livez, observe, unmatched};

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

/// The part of an HTTP server that one role contributes.
pub trait Role: Send + Sync + 'static {
    /// Short name: the `role` label of request metrics and the key of its `/readyz` entry.
    fn name(&self) -> &'static str;
    /// Every (method, path) the role answers, the shared routes included; it decides between
    /// `404` and `405` for requests nothing matched.
    fn routes(&self) -> &'static [(&'static str, &'static str)];
    /// Registers the role's own routes and their app data (not the shared routes).
    fn configure(&self, cfg: &mut web::ServiceConfig);
    fn readiness(&self) -> Readiness;
    /// The role's OpenAPI document, if it has a public API.
    fn openapi(&self) -> Option<Value> {
        None
    }
    /// Refreshes gauges that are read on demand, before `/metrics` renders.
    fn refresh_metrics(&self) {}
}

/// How [`serve`] runs the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The `role` label of request metrics.
    pub label: &'static str,
    /// Worker threads; `None` is one per core.
    pub workers: Option<usize>,
    /// How long in-flight requests may take to finish after a graceful stop.
    pub shutdown_timeout_seconds: u64,
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
}

/// A running server.
pub struct Served {
    handle: ServerHandle,
    serving: JoinHandle<std::io::Result<()>>,
    port: u16,
}

struct Shared {
    roles: Vec<Arc<dyn Role>>,
    metrics: PrometheusHandle,
    routes: Vec<(&'static str, &'static str)>,
    openapi: Option<Value>,
}

/// Binds `listen` (port 0 picks a free port) and serves `roles` on it.
pub fn serve(
    listen: &str,
    roles: Vec<Arc<dyn Role>>,
    metrics: PrometheusHandle,
    options: ServeOptions,
) -> Result<Served, ServeError> {
    let mut routes: Vec<(&'static str, &'static str)> = Vec::new();
    for role in &roles {
        for route in role.routes() {
            if !routes.contains(route) {
                routes.push(*route);
            }
        }
    }
    let openapi = merged_openapi(roles.iter().filter_map(|r| r.openapi()).collect());
    let shared = web::Data::new(Shared {
        roles,
        metrics,
        routes,
        openapi,
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
        App::new()
            .app_data(shared.clone())
            .app_data(label.clone())
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
            })
            .default_service(web::to(not_found))
    })
    .disable_signals()
    .shutdown_timeout(options.shutdown_timeout_seconds);
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

/// `{"ready": all, "<role>": {"ready": …, …}}`; `503` until every role is ready.
async fn readyz(shared: web::Data<Shared>) -> HttpResponse {
    let mut body = Map::new();
    let mut all = true;
    for role in &shared.roles {
        let readiness = role.readiness();
        all &= readiness.ready;
        let mut entry = Map::new();
        entry.insert("ready".to_owned(), Value::Bool(readiness.ready));
        entry.extend(readiness.detail);
        body.insert(role.name().to_owned(), Value::Object(entry));
    }
    body.insert("ready".to_owned(), Value::Bool(all));
    if all {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn render_metrics(shared: web::Data<Shared>) -> HttpResponse {
    for role in &shared.roles {
        role.refresh_metrics();
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(shared.metrics.render())
}

async fn openapi_document(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(shared.openapi.as_ref().unwrap_or(&Value::Null))
}

async fn not_found(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    unmatched(&shared.routes, &req)
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

/// One document from several: the first one's scalars win, objects (paths, methods,
/// components) are united. Several documents get a combined title.
fn merged_openapi(documents: Vec<Value>) -> Option<Value> {
    let count = documents.len();
    let mut documents = documents.into_iter();
    let mut merged = documents.next()?;
    for document in documents {
        merge(&mut merged, document);
    }
    if count > 1 {
        merged["info"]["title"] = json!("scanstream");
        merged["info"]["description"] =
            json!("Every role of scanstream on one server: ingest and the aggregator's read API.");
    }
    Some(merged)
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        into.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(into), Value::Array(from)) => {
            for value in from {
                if !into.contains(&value) {
                    into.push(value);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_unites_paths_and_methods_and_keeps_the_first_scalars() {
        let a = json!({"openapi": "3.1.0", "info": {"title": "a"}, "paths": {
            "/jobs": {"post": {"summary": "submit"}},
            "/livez": {"get": {"summary": "live"}}
        }, "components": {"schemas": {"Problem": {"type": "object"}}}});
        let b = json!({"openapi": "3.0.0", "info": {"title": "b"}, "paths": {
            "/jobs": {"get": {"summary": "list"}},
            "/jobs/stats": {"get": {"summary": "stats"}},
            "/livez": {"get": {"summary": "other"}}
        }, "components": {"schemas": {"JobState": {"type": "object"}}}});
        let merged = merged_openapi(vec![a.clone(), b]).unwrap_or_default();
        assert_eq!(merged["openapi"], "3.1.0");
        assert_eq!(merged["info"]["title"], "scanstream");
        assert_eq!(merged["paths"]["/jobs"]["post"]["summary"], "submit");
        assert_eq!(merged["paths"]["/jobs"]["get"]["summary"], "list");
        assert_eq!(merged["paths"]["/jobs/stats"]["get"]["summary"], "stats");
        assert_eq!(merged["paths"]["/livez"]["get"]["summary"], "live");
        assert!(merged["components"]["schemas"]["Problem"].is_object());
        assert!(merged["components"]["schemas"]["JobState"].is_object());
        assert_eq!(merged_openapi(vec![a.clone()]), Some(a));
        assert_eq!(merged_openapi(Vec::new()), None);
    }
}
