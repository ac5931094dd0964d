//! `Idempotency-Key` on `POST /jobs`: a retried request gets the first answer again and writes
//! nothing new; the same key with another body is refused.

use scanstream_contracts::Topic;

use crate::helpers::spawn_app;

#[tokio::test]
async fn an_idempotency_key_replays_the_answer_and_writes_nothing_new() {
    let app = spawn_app("idempotency", "").await;
    let send = |key: &'static str, body: &'static str| {
        app.http
            .post(format!("{}/jobs", app.base))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body)
            .send()
    };
    let body = r#"{"name": "idem", "repo": "https://git.example.com/i.git"}"#;
    let first = send("key-1", body).await.unwrap();
    assert_eq!(first.status().as_u16(), 202);
    let first_body = first.text().await.unwrap_or_default();
    let second = send("key-1", body).await.unwrap();
    assert_eq!(second.status().as_u16(), 202);
    assert_eq!(
        second
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(second.text().await.unwrap_or_default(), first_body);
    let other_body = send(
        "key-1",
        r#"{"name": "idem2", "repo": "https://git.example.com/i.git"}"#,
    )
    .await
    .unwrap();
    assert_eq!(other_body.status().as_u16(), 422);
    assert_eq!(app.reader.read_all(Topic::Commands).len(), 1);
    assert_eq!(app.reader.read_all(Topic::Events).len(), 1);
    app.shutdown().await;
}
