//! The routes every server has: each route of the OpenAPI document answers, and `/metrics` is
//! Prometheus text.

use scanstream_contracts::JobId;

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_documented_route_answers_and_metrics_parse() {
    let app = spawn_app("routes", "").await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    // Paths in document order (`/jobs/schedule` is created before `/jobs/schedule/{name}` is
    // read, changed and deleted); methods in create, read, change, delete order.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let item = item.as_object().expect("item");
        for method in ["post", "get", "put", "patch", "delete"] {
            if !item.contains_key(method) {
                continue;
            }
            let url = format!(
                "{}{}",
                app.base,
                path.replace("{uuid}", &JobId::from_name("x").to_string())
                    .replace("{name}", "route")
            );
            let body = r#"{"name": "route", "repo": "https://git.example.com/r.git"}"#;
            let json = |request: reqwest::RequestBuilder, body: &str| {
                request
                    .header("content-type", "application/json")
                    .body(body.to_owned())
            };
            let request = match method {
                "get" => app.http.get(&url),
                "post" => json(app.http.post(&url), body),
                "put" => json(app.http.put(&url), body),
                "patch" => json(app.http.patch(&url), r#"{"suspend": true}"#),
                _ => app.http.delete(&url),
            };
            let status = request.send().await.unwrap().status().as_u16();
            assert!(status < 300, "{method} {path}: {status}");
        }
    }
    let metrics = app.get("/metrics").await.text().await.unwrap_or_default();
    assert!(
        metrics.contains("scanstream_http_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scanstream_ingest_batch_size"),
        "{metrics}"
    );
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "not Prometheus text: {line}");
    }
    app.shutdown().await;
}
