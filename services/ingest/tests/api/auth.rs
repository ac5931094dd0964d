//! Bearer tokens and their scopes, when `api.auth_enabled` is on.

use rdkafka::Message;
use scanstream_contracts::Topic;
use scanstream_contracts::event::{EventPayload, ScanEvent};
use scanstream_platform::auth::hash_token;

use crate::helpers::spawn_app;

#[tokio::test]
async fn tokens_and_scopes_are_enforced() {
    let toml = format!(
        "[api]\nauth_enabled = true\n[[api.tokens]]\nname = \"ci\"\nsha256 = \"{}\"\nscopes = [\"scans:write\"]\n[[api.tokens]]\nname = \"dashboard\"\nsha256 = \"{}\"\nscopes = [\"scans:read\"]\n",
        hash_token("write-token"),
        hash_token("read-token")
    );
    let app = spawn_app("auth", &toml).await;
    let body = r#"{"name": "authed", "repo": "https://git.example.com/a.git"}"#;
    let send = |token: Option<&'static str>| {
        let mut request = app
            .http
            .post(format!("{}/jobs", app.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            request = request.header("authorization", t);
        }
        request.send()
    };
    let none = send(None).await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    assert_eq!(
        none.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    assert_eq!(
        send(Some("Bearer wrong"))
            .await
            .map(|r| r.status().as_u16())
            .ok(),
        Some(401)
    );
    assert_eq!(
        send(Some("Basic d3JpdGU="))
            .await
            .map(|r| r.status().as_u16())
            .ok(),
        Some(401)
    );
    let forbidden = send(Some("Bearer read-token")).await.unwrap();
    assert_eq!(forbidden.status().as_u16(), 403);
    let problem: serde_json::Value = forbidden.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/forbidden");
    assert_eq!(app.reader.watermark(Topic::Commands), 0);
    let ok = send(Some("Bearer write-token")).await.unwrap();
    assert_eq!(ok.status().as_u16(), 202);
    let events = app.reader.read_all(Topic::Events);
    let event: ScanEvent = app
        .scope
        .codec()
        .decode(events[0].payload().unwrap_or_default())
        .await
        .unwrap();
    let EventPayload::JobSubmitted(submitted) = event.payload else {
        panic!("not JobSubmitted")
    };
    assert_eq!(submitted.requested_by.as_deref(), Some("ci"));
    // Probes and metrics need no token.
    for path in [
        "/health_check",
        "/livez",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    app.shutdown().await;
}
