//! The OpenAPI 3.1 document of the aggregator, served at `/openapi.json` and tested against
//! [`crate::api::ROUTES`].

use serde_json::{Value, json};

fn problem(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

pub fn document() -> Value {
    let read = |summary: &str, description: &str, ok: Value| {
        json!({"get": {
            "summary": summary, "description": description,
            "responses": {"200": ok, "401": problem("Missing or unknown bearer token."), "403": problem("The token lacks scans:read.")}
        }})
    };
    let mut paths = serde_json::Map::new();
    paths.insert("/jobs/stats".into(), read(
        "Every job in the job manager's format",
        "Normal jobs as \"name\": {failed, jobtype: normal, succeeded, uuid}; each schedule as \"schedule\": [{failed, jobtype: schedule, name: <schedule>-<minutes since epoch>, succeeded, uuid}, …]. succeeded/failed count attempts over all runs.",
        json!({"description": "Stats body.", "content": {"application/json": {"schema": {"type": "object"}}}}),
    ));
    let mut job = read(
        "One job's full state",
        "The folded JobState (schemas/JobState.avsc) as JSON.",
        json!({"description": "The job.", "content": {"application/json": {"schema": {"type": "object"}}}}),
    );
    job["get"]["parameters"] = json!([{"name": "uuid", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}]);
    job["get"]["responses"]["404"] = problem("No such job.");
    job["get"]["responses"]["400"] = problem("The id is not a uuid.");
    paths.insert("/jobs/{uuid}".into(), job);
    let mut list = read(
        "Jobs, filtered and paginated",
        "Jobs in stable (job id) order; pass next_cursor as cursor for the next page.",
        json!({"description": "A page.", "content": {"application/json": {"schema": {
            "type": "object", "required": ["jobs", "next_cursor"],
            "properties": {"jobs": {"type": "array", "items": {"type": "object"}}, "next_cursor": {"type": ["string", "null"], "format": "uuid"}}
        }}}}),
    );
    list["get"]["parameters"] = json!([
        {"name": "status", "in": "query", "schema": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]}},
        {"name": "repo", "in": "query", "schema": {"type": "string"}, "description": "Normalized repository URL."},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
        {"name": "cursor", "in": "query", "schema": {"type": "string", "format": "uuid", "description": "next_cursor of the previous page"}}
    ]);
    list["get"]["responses"]["400"] = problem("A bad filter, limit or cursor.");
    paths.insert("/jobs".into(), list);
    paths.insert("/stats/summary".into(), read("Counts by status, run durations, findings", "Run durations are finished_at - started_at in milliseconds.",
        json!({"description": "Summary.", "content": {"application/json": {"schema": {"type": "object"}}}})));
    for (path, summary) in [
        ("/health_check", "Job-manager health check"),
        ("/livez", "Liveness probe"),
        (
            "/readyz",
            "Ready when the store is restored from the changelog and the fold runs",
        ),
        ("/metrics", "Prometheus metrics"),
        ("/openapi.json", "This document"),
    ] {
        paths.insert(path.into(), json!({"get": {"summary": summary, "security": [], "responses": {"200": {"description": "OK"}}}}));
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "scanstream aggregator API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Job state folded from scans.events; every instance answers for every job."},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "A token from api.tokens with scans:read."}},
            "schemas": {"Problem": {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
                "field": {"type": "string"}, "rule": {"type": "string"}, "correlation_id": {"type": "string"}}}}
        }
    })
}

#[cfg(test)]
mod tests {
    use scanstream_platform::server::{documented_routes, route_set};

    use super::*;
    use crate::api::ROUTES;

    #[test]
    fn documents_exactly_the_served_routes() {
        let doc = document();
        assert_eq!(documented_routes(&doc), route_set(ROUTES));
    }
}
