//! The OpenAPI 3.1 document of the aggregator's read API, generated from the handlers and the
//! types they answer with, and tested against [`crate::api::ROUTES`]. The server adds the
//! shared routes (`scanstream_platform::server::served_openapi`).

use scanstream_platform::http::BearerAuth;
use scanstream_platform::http::responses::{
    ForbiddenRead, ForbiddenTriage, InvalidJobId, TooLarge, Unauthorized, UnsupportedMediaType,
};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "scanstream aggregator API",
        description = "Job state folded from scans.events, and the inventory of secrets folded from scans.sightings and scans.triage; every instance answers for every job and item."
    ),
    paths(
        crate::api::stats,
        crate::api::job,
        crate::api::list,
        crate::api::summary,
        crate::inventory::api::list,
        crate::inventory::api::item,
        crate::inventory::api::triage,
        crate::inventory::api::repos
    ),
    components(responses(
        Unauthorized,
        ForbiddenRead,
        ForbiddenTriage,
        InvalidJobId,
        TooLarge,
        UnsupportedMediaType
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct AggregatorApi;

pub fn document() -> utoipa::openapi::OpenApi {
    AggregatorApi::openapi()
}

#[cfg(test)]
mod tests {
    use scanstream_platform::server::{documented_routes, route_set};

    use super::*;
    use crate::api::ROUTES;

    #[test]
    fn documents_exactly_the_served_routes() {
        let doc = serde_json::to_value(document()).unwrap_or_default();
        assert_eq!(documented_routes(&doc), route_set(ROUTES));
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    }
}
