//! `POST /jobs` and `DELETE /jobs/{uuid}`: what a request writes to scans.commands and
//! scans.events, and the seed job manager's requests.

use rdkafka::Message;
use scanstream_contracts::command::{Command, ScanCommand, ScanMode};
use scanstream_contracts::event::{EventPayload, ScanEvent};
use scanstream_contracts::{JobId, Topic};
use scanstream_testcontainers::header;

use crate::helpers::{PARTITIONS, spawn_app};

#[tokio::test]
async fn a_post_writes_its_command_and_event_and_they_decode_to_what_was_sent() {
    let app = spawn_app("post", "").await;
    let response = app
        .post(r#"{"name": "payments-api", "repo": "git@git.example.com:team/payments.git", "ref": "main", "engines": ["secrets"], "mode": "history"}"#)
        .await;
    assert_eq!(response.status().as_u16(), 202);
    let location = response.headers()["location"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let correlation = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    let job = JobId::from_name("payments-api");
    assert_eq!(body["uuid"], job.to_string());
    assert_eq!(body["name"], "payments-api");
    assert_eq!(body["status"], "queued");
    assert_eq!(location, format!("/jobs/{job}"));

    let codec = app.scope.codec();
    let commands = app.reader.read_all(Topic::Commands);
    assert_eq!(commands.len(), 1);
    let command: ScanCommand = codec
        .decode(commands[0].payload().unwrap_or_default())
        .await
        .unwrap();
    assert_eq!(
        commands[0].key(),
        Some(&b"ssh://git@git.example.com/team/payments.git"[..])
    );
    let Command::RequestScan(request) = command.command else {
        panic!("not a RequestScan")
    };
    assert_eq!(request.job_id, job);
    assert_eq!(request.job_name, "payments-api");
    assert_eq!(
        request.repo_url,
        "ssh://git@git.example.com/team/payments.git"
    );
    assert_eq!(request.git_ref.as_deref(), Some("main"));
    assert_eq!(request.engines, ["secrets"]);
    assert_eq!(request.mode, ScanMode::History);
    assert_eq!(request.run_id.to_string(), body["run_id"]);

    let events = app.reader.read_all(Topic::Events);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key(), Some(job.key().as_bytes()));
    let event: ScanEvent = codec
        .decode(events[0].payload().unwrap_or_default())
        .await
        .unwrap();
    assert_eq!(
        (event.job_id, event.run_id, event.attempt, event.sequence),
        (job, request.run_id, 0, 0)
    );
    let EventPayload::JobSubmitted(submitted) = event.payload else {
        panic!("not JobSubmitted")
    };
    assert_eq!(submitted.repo_url, request.repo_url);
    for message in [&commands[0], &events[0]] {
        assert_eq!(
            header(message, "correlation-id").as_deref(),
            Some(correlation.as_str())
        );
        assert!(
            header(message, "traceparent").is_some_and(|t| t.starts_with("00-") && t.len() == 55)
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn the_seed_job_manager_requests_work_unchanged() {
    let app = spawn_app(
        "seed",
        "[ingest]\nrepo_template = \"https://git.example.com/{name}.git\"\n",
    )
    .await;
    // curl --location --request POST '…/jobs' --header 'Content-Type: application/json' --data-raw '{"name": "test10"}'
    let response = app.post("{\n    \"name\": \"test10\"\n}").await;
    assert_eq!(response.status().as_u16(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["uuid"], JobId::from_name("test10").to_string());
    // Posting the same name again queues another run of the same job.
    let again: serde_json::Value = app
        .post(r#"{"name": "test10"}"#)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["uuid"], body["uuid"]);
    assert_ne!(again["run_id"], body["run_id"]);
    let commands = app.reader.read_all(Topic::Commands);
    assert_eq!(commands.len(), 2);
    assert_eq!(
        commands[0].key(),
        Some(&b"https://git.example.com/test10.git"[..])
    );
    // curl --location --request GET '…/health_check'
    let health = app.get("/health_check").await;
    assert_eq!(health.status().as_u16(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn cancel_reaches_every_command_partition() {
    let app = spawn_app("cancel", "").await;
    let job = JobId::from_name("to-cancel");
    let response = app
        .http
        .delete(format!("{}/jobs/{job}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let commands = app.reader.read_all(Topic::Commands);
    let mut partitions: Vec<i32> = commands.iter().map(|m| m.partition()).collect();
    partitions.sort();
    assert_eq!(partitions, (0..PARTITIONS).collect::<Vec<_>>());
    for message in &commands {
        let command: ScanCommand = app
            .scope
            .codec()
            .decode(message.payload().unwrap_or_default())
            .await
            .unwrap();
        assert!(matches!(command.command, Command::CancelScan(ref c) if c.job_id == job));
    }
    assert_eq!(app.reader.watermark(Topic::Events), 0);
    app.shutdown().await;
}
