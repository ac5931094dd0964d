//! The OpenAPI 3.1 document of ingest, generated from the handlers and the types they read and
//! answer with. A test checks that its paths and methods are exactly [`crate::api::ROUTES`];
//! the API tests check each route against the running service. The server adds the shared
//! routes (`scanstream_platform::server::served_openapi`).

use scanstream_platform::http::BearerAuth;
use scanstream_platform::http::responses::{
    ForbiddenRead, ForbiddenWrite, InvalidJobId, TooLarge, Unauthorized, UnsupportedMediaType,
};
use utoipa::OpenApi;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaFormat, SchemaType, Type};

use crate::api::ENGINE_ID;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "scanstream ingest API",
        description = "Accepts scan requests and writes them to Kafka. `202` is returned only after Kafka acknowledged the write. Compatible with the job-manager API (`POST /jobs {\"name\": ...}`, `GET /health_check`)."
    ),
    paths(
        crate::api::submit,
        crate::api::cancel,
        crate::schedules::create,
        crate::schedules::list,
        crate::schedules::show,
        crate::schedules::replace,
        crate::schedules::update,
        crate::schedules::remove
    ),
    components(responses(
        Unauthorized,
        ForbiddenRead,
        ForbiddenWrite,
        InvalidJobId,
        TooLarge,
        UnsupportedMediaType,
        crate::schedules::BadScheduleName,
        crate::schedules::NoSuchSchedule
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct IngestApi;

/// A nullable string field of a request with a custom `format`: what the format means is the
/// description's, and a client generating requests (schemathesis, in the tests) is taught it.
fn formatted(format: &str, description: &str, max_length: usize) -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .format(Some(SchemaFormat::Custom(format.to_owned())))
        .min_length(Some(1))
        .max_length(Some(max_length))
        .description(Some(description))
        .build()
}

/// `repo`: a repository URL.
pub(crate) fn repo_schema() -> Object {
    formatted(
        "repo-url",
        "https://host/path, git://host/path, ssh://[user@]host[:port]/path, scp-style user@host:path, or file:///path under ingest.file_roots; no credentials, query, fragment, '.'/'..' segments, or part starting with '-'. Hosts must not resolve to loopback, private, link-local or metadata addresses unless allowed. When omitted, derived from the name with ingest.repo_template.",
        scanstream_platform::repo::MAX_URL_LEN,
    )
}

/// `ref`: a git ref or commit id.
pub(crate) fn ref_schema() -> Object {
    formatted(
        "git-ref",
        "Branch, tag, full ref name or commit id, by the rules of git check-ref-format (no spaces, control characters, ~ ^ : ? * [ \\, '..', '@{', '//', leading '-' or '/', trailing '/' or '.', component starting with '.' or ending with '.lock'). The default branch when omitted.",
        crate::domain::GitRef::MAX_LEN,
    )
}

/// `schedule`: a cron expression.
pub(crate) fn cron_schema() -> Object {
    let mut schema = formatted(
        "cron",
        "Standard 5-field cron expression (minute hour day-of-month month day-of-week; names, ranges, steps and lists) or a macro: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly. Read in UTC; an expression that never fires is refused. Empty or omitted: the default.",
        256,
    );
    // Empty is the default too.
    schema.min_length = None;
    schema.default = Some(scanstream_scheduler::DEFAULT_CRON.into());
    schema
}

/// The document, with `engines` (ingest.engines and the command engines) as the engine ids
/// requests may name.
pub fn document(engines: &[String]) -> utoipa::openapi::OpenApi {
    let mut document = IngestApi::openapi();
    let engine_id = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("An engine id of this deployment: the built-in secrets engine (ingest.engines) or a command engine ([engines.<id>])."))
        .enum_values(Some(engines.iter().map(String::as_str)));
    document
        .components
        .get_or_insert_with(Default::default)
        .schemas
        .insert(ENGINE_ID.to_owned(), engine_id.into());
    document
}

#[cfg(test)]
mod tests {
    use scanstream_platform::server::{documented_routes, route_set};
    use serde_json::Value;

    use super::*;
    use crate::api::ROUTES;

    fn json() -> Value {
        serde_json::to_value(document(&["secrets".to_owned()])).unwrap_or_default()
    }

    #[test]
    fn documents_exactly_the_served_routes() {
        let doc = json();
        assert_eq!(documented_routes(&doc), route_set(ROUTES));
        assert_eq!(doc["openapi"], "3.1.0");
        // Every referenced schema and response exists.
        let text = doc.to_string();
        for kind in ["schemas", "responses"] {
            let defined = doc["components"][kind].as_object().unwrap();
            for reference in text.split(&format!("#/components/{kind}/")).skip(1) {
                let name = reference.split('"').next().unwrap();
                assert!(
                    defined.contains_key(name),
                    "{kind}/{name} is referenced but missing"
                );
            }
        }
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
    }

    #[test]
    fn schedule_bodies_are_one_type_seen_two_ways() {
        let doc = json();
        let schemas = &doc["components"]["schemas"];
        let fields = |schema: &str| -> Vec<String> {
            schemas[schema]["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default()
        };
        let mut create = fields("ScheduleCreate");
        assert_eq!(
            schemas["ScheduleCreate"]["required"],
            serde_json::json!(["name"])
        );
        assert_eq!(schemas["ScheduleCreate"]["additionalProperties"], false);
        create.retain(|f| f != "name");
        assert_eq!(fields("ScheduleChange"), create);
        assert!(schemas["ScheduleChange"].get("required").is_none());
        // The deployment's engines are the only ids a request may name.
        assert_eq!(schemas["EngineId"]["enum"], serde_json::json!(["secrets"]));
    }
}
