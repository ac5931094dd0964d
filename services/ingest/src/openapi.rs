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

/// The kubernetes-name rule of job and schedule names.
const NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// The document, with `engines` (ingest.engines) as the engine ids requests may name.
pub fn document(engines: &[String]) -> Value {
    let engine_id = json!({"type": "string", "enum": engines});
    let mut document = json!({
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
                        "408": problem_response("The body did not arrive within ingest.body_read_timeout_ms."),
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
            "/jobs/schedule": {
                "post": {
                    "summary": "Create a schedule (Kubernetes CronJob semantics)",
                    "description": "Stores the schedule as a record of the compacted scans.schedules topic. The leading scheduler fires each tick once, as a run named <name>-<minutes since the Unix epoch> submitted exactly like POST /jobs.",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScheduleCreate"}}}},
                    "responses": {
                        "201": {
                            "description": "Created; the body shows the schedule with its next run times.",
                            "headers": {"Location": {"schema": {"type": "string"}, "description": "/jobs/schedule/{name}"}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Schedule"}}}
                        },
                        "400": problem_response("A field breaks a rule (invalid cron expression, unknown concurrencyPolicy, bad name, ...); nothing was written."),
                        "401": problem_response("Missing or unknown bearer token."),
                        "403": problem_response("The token lacks the scans:write scope."),
                        "409": problem_response("A schedule with this name exists; use PUT or PATCH."),
                        "415": problem_response("The body is not application/json."),
                        "503": problem_response("Kafka or the schema registry is unavailable; nothing was written.")
                    }
                },
                "get": {
                    "summary": "List the schedules",
                    "responses": {
                        "200": {"description": "Every schedule, by name.", "content": {"application/json": {"schema": {
                            "type": "object", "required": ["schedules"],
                            "properties": {"schedules": {"type": "array", "items": {"$ref": "#/components/schemas/Schedule"}}}
                        }}}},
                        "401": problem_response("Missing or unknown bearer token."),
                        "403": problem_response("The token lacks the scans:read scope."),
                        "503": problem_response("The schedules topic cannot be read now.")
                    }
                }
            },
            "/jobs/schedule/{name}": {
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 52}}],
                "get": {
                    "summary": "Show a schedule",
                    "responses": {
                        "200": {"description": "The schedule and its next run times.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Schedule"}}}},
                        "400": problem_response("The name breaks the naming rules."),
                        "401": problem_response("Missing or unknown bearer token."),
                        "403": problem_response("The token lacks the scans:read scope."),
                        "404": problem_response("No schedule has this name."),
                        "503": problem_response("The schedules topic cannot be read now.")
                    }
                },
                "put": {
                    "summary": "Create or replace a schedule",
                    "description": "Fields left out take their defaults. Replacing keeps the schedule's creation time, so ticks already handled are not fired again.",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScheduleChange"}}}},
                    "responses": {
                        "200": {"description": "Replaced.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Schedule"}}}},
                        "201": {"description": "Created.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Schedule"}}}},
                        "400": problem_response("A field breaks a rule, or the body's name differs from the path's; nothing was written."),
                        "415": problem_response("The body is not application/json."),
                        "401": problem_response("Missing or unknown bearer token."),
                        "403": problem_response("The token lacks the scans:write scope."),
                        "503": problem_response("Kafka or the schema registry is unavailable; nothing was written.")
                    }
                },
                "patch": {
                    "summary": "Change some fields of a schedule (suspend: true / false to suspend and resume)",
                    "description": "A resumed schedule fires from its next tick on; ticks that passed while it was suspended never fire.",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScheduleChange"}}}},
                    "responses": {
                        "200": {"description": "Changed.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Schedule"}}}},
                        "400": problem_response("A field breaks a rule; nothing was written."),
                        "415": problem_response("The body is not application/json."),
                        "401": problem_response("Missing or unknown bearer token."),
                        "403": problem_response("The token lacks the scans:write scope."),
                        "404": problem_response("No schedule has this name."),
                        "503": problem_response("Kafka or the schema registry is unavailable; nothing was written.")
                    }
                },
                "delete": {
                    "summary": "Delete a schedule",
                    "description": "Writes a tombstone to scans.schedules. No tick after the deletion fires; runs already submitted are not cancelled.",
                    "responses": {
                        "200": {"description": "Deleted.", "content": {"application/json": {"schema": {
                            "type": "object", "required": ["name", "status"],
                            "properties": {"name": {"type": "string"}, "status": {"const": "deleted"}}
                        }}}},
                        "400": problem_response("The name breaks the naming rules."),
                        "401": problem_response("Missing or unknown bearer token."),
                        "403": problem_response("The token lacks the scans:write scope."),
                        "404": problem_response("No schedule has this name."),
                        "503": problem_response("Kafka is unavailable; nothing was written.")
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
            "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1 document.", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/asyncapi.json": {"get": {"summary": "The AsyncAPI 3.0 document of the topics", "security": [], "responses": {"200": {"description": "AsyncAPI 3.0 document: every topic's address, Kafka bindings, key and Avro schema.", "content": {"application/json": {"schema": {"type": "object", "required": ["asyncapi", "channels"], "properties": {"asyncapi": {"const": "3.0.0"}, "channels": {"type": "object"}}}}}}}}}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "A token from api.tokens; scans:write to submit, cancel and change schedules, scans:read to read schedules."}},
            "schemas": {
                "JobRequest": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": false,
                    "properties": {
                        "name": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 63, "description": "Job name (Kubernetes name rules)."},
                        "repo": {"type": ["string", "null"], "minLength": 1, "description": "https, ssh (or scp-style git@host:path), git or file URL without credentials. When omitted, derived from the name with ingest.repo_template."},
                        "ref": {"type": ["string", "null"], "minLength": 1, "description": "Branch, tag or commit; default branch when omitted."},
                        "engines": {"type": ["array", "null"], "items": engine_id, "minItems": 1, "maxItems": 16, "uniqueItems": true, "description": "Engine ids; ingest.default_engines when omitted."},
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
                "ScheduleCreate": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name"],
                    "description": "A new schedule. Omitted fields take the defaults.",
                    "properties": {
                        "name": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 52, "description": "Schedule name (Kubernetes name rules; at most 52 characters, as for a CronJob)."},
                        "schedule": {"type": "string", "default": "*/1 * * * *", "description": "Standard 5-field cron expression (minute hour day-of-month month day-of-week) or a macro: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly. Read in UTC."},
                        "timeZone": {"type": "string", "enum": ["UTC", "Etc/UTC"], "description": "Only UTC is supported."},
                        "repo": {"type": "string", "minLength": 1, "description": "As for POST /jobs; derived from the name with ingest.repo_template when omitted."},
                        "ref": {"type": "string", "minLength": 1},
                        "engines": {"type": "array", "items": engine_id, "minItems": 1, "maxItems": 16, "uniqueItems": true},
                        "mode": {"type": "string", "enum": ["tree", "history", "incremental"]},
                        "concurrencyPolicy": {"type": "string", "enum": ["Allow", "Forbid", "Replace"], "default": "Allow", "description": "Allow: runs may overlap; Forbid: a tick is skipped while a run is active; Replace: the active run is cancelled and the tick fires."},
                        "suspend": {"type": "boolean", "default": false, "description": "True stops firing; ticks that pass while suspended never fire."},
                        "successfulJobsHistoryLimit": {"type": "integer", "minimum": 0, "maximum": 100, "default": 3, "description": "Succeeded runs GET /jobs/stats keeps listing."},
                        "failedJobsHistoryLimit": {"type": "integer", "minimum": 0, "maximum": 100, "default": 1, "description": "Failed runs GET /jobs/stats keeps listing."},
                        "startingDeadlineSeconds": {"type": "integer", "minimum": 0, "description": "A tick that could not fire on time (no scheduler leader) still fires within this many seconds; older ones are recorded as missed. Default: scheduler.starting_deadline_seconds."}
                    }
                },
                "Schedule": {
                    "type": "object",
                    "required": ["name", "schedule", "timeZone", "repo", "engines", "mode", "concurrencyPolicy", "suspend", "successfulJobsHistoryLimit", "failedJobsHistoryLimit", "createdAt", "updatedAt", "nextRuns"],
                    "properties": {
                        "name": {"type": "string"},
                        "schedule": {"type": "string"},
                        "timeZone": {"const": "UTC"},
                        "repo": {"type": "string", "description": "The normalized repository URL."},
                        "ref": {"type": ["string", "null"]},
                        "engines": {"type": "array", "items": {"type": "string"}},
                        "mode": {"type": "string", "enum": ["tree", "history", "incremental"]},
                        "concurrencyPolicy": {"type": "string", "enum": ["Allow", "Forbid", "Replace"]},
                        "suspend": {"type": "boolean"},
                        "successfulJobsHistoryLimit": {"type": "integer"},
                        "failedJobsHistoryLimit": {"type": "integer"},
                        "startingDeadlineSeconds": {"type": ["integer", "null"]},
                        "createdAt": {"type": "string", "format": "date-time"},
                        "updatedAt": {"type": "string", "format": "date-time"},
                        "nextRuns": {"type": "array", "items": {"type": "string", "format": "date-time"}, "description": "The next five run times; empty while suspended."}
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
    });
    // PUT and PATCH take the same fields as POST but the name, which is the path's.
    let create = &document["components"]["schemas"]["ScheduleCreate"];
    let mut change = create.clone();
    if let Some(fields) = change["properties"].as_object_mut() {
        fields.remove("name");
    }
    if let Some(schema) = change.as_object_mut() {
        schema.remove("required");
        schema.insert(
            "description".into(),
            json!("PUT (omitted fields take the defaults) or PATCH (omitted fields stay as they are). The name is the path's: a body may repeat it, but not change it."),
        );
    }
    document["components"]["schemas"]["ScheduleChange"] = change;
    document
}

#[cfg(test)]
mod tests {
    use scanstream_platform::server::{documented_routes, route_set};

    use super::*;
    use crate::api::ROUTES;

    #[test]
    fn documents_exactly_the_served_routes() {
        let doc = document(&["secrets".to_owned()]);
        let mut served = route_set(ROUTES);
        // Ingest has the topics' AsyncAPI document.
        served.insert(("get".to_owned(), "/asyncapi.json".to_owned()));
        assert_eq!(documented_routes(&doc), served);
        // Every referenced schema exists; a change of a schedule has every field but the name.
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let text = doc.to_string();
        for reference in text.split("#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                schemas.contains_key(name),
                "{name} is referenced but missing"
            );
        }
        let fields = |schema: &str| -> Vec<String> {
            schemas[schema]["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        let mut create = fields("ScheduleCreate");
        create.retain(|f| f != "name");
        assert_eq!(fields("ScheduleChange"), create);
        // Every operation that takes a JSON body says what a body of another type gets.
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                if operation.get("requestBody").is_some() {
                    assert!(
                        operation["responses"]["415"].is_object(),
                        "{method} {path} does not document 415"
                    );
                }
            }
        }
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
