//! The OpenAPI 3.1 document of this service, served at `/openapi.json`. A test checks that its
//! paths and methods are exactly [`crate::api::ROUTES`], and the API tests check each route
//! against the running service.

use serde_json::{Value, json};

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "scanstream ingest API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Accepts scan requests and writes them to Kafka. `202` is returned only after Kafka acknowledged the write. Compatible with the job-manager API (`POST /jobs {\"name\": ...}`, `GET /health_check`)."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/jobs": {
                "post": {
                    "summary": "Queue a run of a job (scan one repository)",
                    "description": "The job's uuid is derived from its name: posting the same name again queues another run of the same job. The RequestScan command and the JobSubmitted event are written in one Kafka transaction before the answer.",
                    "parameters": [{
                        "name": "Idempotency-Key", "in": "header", "required": false,
                        "description": "Replays the original answer for a retried request with the same key and body (kept 24 h by default) and writes nothing new.",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255}
                    }],
                    "requestBody": {
                        "required": true,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}}
                    },
                    "responses": {
                        "202": {
                            "description": "Queued: the command and event are committed to Kafka.",
                            "headers": {"Location": {"schema": {"type": "string"}, "description": "/jobs/{uuid}"}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}
                        },
                        "400": problem_response("A field breaks a rule; `field` and `rule` say which."),
                        "401": problem_response("Missing or unknown bearer token."),
                        "403": problem_response("The token lacks the scans:write scope."),
                        "409": problem_response("A request with this Idempotency-Key is still being processed."),
                        "413": problem_response("The body is too large."),
                        "415": problem_response("The body is not application/json."),
                        "422": problem_response("The Idempotency-Key was used with a different body."),
                        "503": {
                            "description": "Kafka or the schema registry is unavailable; nothing was accepted. Retry after `Retry-After` seconds.",
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
                        }
                    }
                }
            },
            "/jobs/{uuid}": {
                "delete": {
                    "summary": "Cancel a job's queued and running scans",
                    "parameters": [{"name": "uuid", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
                    "responses": {
                        "202": {
                            "description": "The cancellation is committed to Kafka.",
                            "content": {"application/json": {"schema": {
                                "type": "object", "required": ["uuid", "status"],
                                "properties": {"uuid": {"type": "string", "format": "uuid"}, "status": {"const": "cancelling"}}
                            }}}
                        },
                        "400": problem_response("The id is not a uuid."),
                        "401": problem_response("Missing or unknown bearer token."),
                        "403": problem_response("The token lacks the scans:write scope."),
                        "503": problem_response("Kafka is unavailable; retry later.")
                    }
                }
            },
            "/health_check": {"get": {"summary": "Job-manager health check", "security": [], "responses": {"200": {"description": "The process is up.", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/livez": {"get": {"summary": "Liveness probe", "security": [], "responses": {"200": {"description": "The process is alive."}}}},
            "/readyz": {"get": {"summary": "Readiness probe", "security": [], "responses": {
                "200": {"description": "The producer is connected and its transactions initialized."},
                "503": {"description": "Not ready; requests would get 503."}
            }}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": {"200": {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1 document.", "content": {"application/json": {"schema": {"type": "object"}}}}}}}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "A token from api.tokens; scans:write to submit and cancel."}},
            "schemas": {
                "JobRequest": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": false,
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63, "description": "Job name (Kubernetes name rules)."},
                        "repo": {"type": ["string", "null"], "description": "https, ssh (or scp-style git@host:path), git or file URL without credentials. When omitted, derived from the name with ingest.repo_template."},
                        "ref": {"type": ["string", "null"], "description": "Branch, tag or commit; default branch when omitted."},
                        "engines": {"type": ["array", "null"], "items": {"type": "string"}, "minItems": 1, "maxItems": 16, "uniqueItems": true, "description": "Engine ids; ingest.default_engines when omitted."},
                        "mode": {"type": ["string", "null"], "enum": ["tree", "history", "incremental", null], "description": "tree (default): the tree at the ref; history: every unique blob reachable; incremental: only blobs new since the last scanned commit."}
                    }
                },
                "Accepted": {
                    "type": "object",
                    "required": ["uuid", "name", "status", "run_id"],
                    "properties": {
                        "uuid": {"type": "string", "format": "uuid", "description": "The job's id, derived from its name."},
                        "name": {"type": "string"},
                        "status": {"const": "queued"},
                        "run_id": {"type": "string", "format": "uuid", "description": "This run of the job."}
                    }
                },
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string", "description": "/problems/<kind>"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "field": {"type": "string", "description": "The request field at fault."},
                        "rule": {"type": "string", "description": "The rule it broke (stable identifier)."},
                        "correlation_id": {"type": "string"}
                    }
                }
            }
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
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
