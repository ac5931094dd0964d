//! The baseline for `bench/ingest.sh`: an actix-web server that parses the same JSON body and
//! answers 202 without validation or Kafka, to show what the machine does with no work.
//! Usage: trivial_server ADDR

use actix_web::{App, HttpResponse, HttpServer, web};

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Body {
    name: String,
    repo: Option<String>,
}

async fn accept(body: web::Json<Body>) -> HttpResponse {
    HttpResponse::Accepted().json(serde_json::json!({"name": body.name, "status": "queued"}))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18182".to_owned());
    HttpServer::new(|| App::new().route("/jobs", web::post().to(accept)))
        .bind(address)?
        .run()
        .await
}
