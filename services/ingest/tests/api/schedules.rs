//! `/jobs/schedule`: schedules created, listed, changed and deleted as records of the compacted
//! scans.schedules, the seed's schedule request, and bad schedules refused without a write.

use reqwest::Method;
use scanstream_contracts::Topic;
use scanstream_contracts::schedule::Schedule;

use crate::helpers::spawn_app;

#[tokio::test]
async fn schedules_are_created_listed_changed_and_deleted_as_records_of_the_topic() {
    let app = spawn_app("schedule-crud", "").await;
    let body = r#"{"name": "nightly", "schedule": "0 3 * * *", "repo": "https://github.com/example/a.git", "ref": "main"}"#;
    let response = app.send(Method::POST, "/jobs/schedule", Some(body)).await;
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(
        response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("/jobs/schedule/nightly")
    );
    let created: serde_json::Value = response.json().await.unwrap();
    assert_eq!(created["schedule"], "0 3 * * *");
    assert_eq!(created["concurrencyPolicy"], "Allow");
    assert_eq!(created["successfulJobsHistoryLimit"], 3);
    assert_eq!(created["failedJobsHistoryLimit"], 1);
    let next: Vec<&str> = created["nextRuns"]
        .as_array()
        .unwrap_or_else(|| panic!("{created}"))
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(next.len(), 5, "{created}");
    assert!(next.iter().all(|t| t.ends_with("T03:00:00Z")), "{next:?}");
    assert!(next.windows(2).all(|w| w[0] < w[1]));

    // The same name again is a conflict and writes nothing.
    let before = app.settled_watermark(Topic::Schedules).await;
    let (status, problem) = app.json(Method::POST, "/jobs/schedule", Some(body)).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (409, Some("/problems/schedule-exists"))
    );
    assert_eq!(app.reader.watermark(Topic::Schedules), before);

    let (status, list) = app.json(Method::GET, "/jobs/schedule", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["schedules"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["schedules"][0]["name"], "nightly");
    let (status, shown) = app.json(Method::GET, "/jobs/schedule/nightly", None).await;
    assert_eq!((status, &shown["ref"]), (200, &serde_json::json!("main")));

    // Suspend, then resume, through PATCH.
    let (status, suspended) = app
        .json(
            Method::PATCH,
            "/jobs/schedule/nightly",
            Some(r#"{"suspend": true}"#),
        )
        .await;
    assert_eq!(
        (status, &suspended["suspend"]),
        (200, &serde_json::json!(true))
    );
    assert_eq!(suspended["nextRuns"], serde_json::json!([]));
    assert_eq!(suspended["schedule"], "0 3 * * *");
    let (_, resumed) = app
        .json(
            Method::PATCH,
            "/jobs/schedule/nightly",
            Some(r#"{"suspend": false}"#),
        )
        .await;
    assert_eq!(resumed["suspend"], false);
    assert_eq!(resumed["nextRuns"].as_array().map(Vec::len), Some(5));

    // PUT replaces every field but keeps the creation time.
    let (status, replaced) = app
        .json(
            Method::PUT,
            "/jobs/schedule/nightly",
            Some(r#"{"repo": "https://github.com/example/b.git", "concurrencyPolicy": "Forbid", "failedJobsHistoryLimit": 2}"#),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(replaced["schedule"], "*/1 * * * *");
    assert_eq!(replaced["concurrencyPolicy"], "Forbid");
    assert_eq!(replaced["ref"], serde_json::Value::Null);
    assert_eq!(replaced["createdAt"], created["createdAt"]);

    let (status, _) = app
        .json(Method::DELETE, "/jobs/schedule/nightly", None)
        .await;
    assert_eq!(status, 200);
    let (status, problem) = app.json(Method::GET, "/jobs/schedule/nightly", None).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (404, Some("/problems/not-found"))
    );
    let (status, _) = app
        .json(Method::DELETE, "/jobs/schedule/nightly", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .json(Method::PATCH, "/jobs/schedule/nightly", Some("{}"))
        .await;
    assert_eq!(status, 404);

    // The topic holds exactly what happened: create, suspend, resume, replace, tombstone.
    let records = app.schedule_records().await;
    assert_eq!(records.len(), 5, "{records:?}");
    assert!(records.iter().all(|(k, _)| k == "nightly"));
    let values: Vec<&Option<Schedule>> = records.iter().map(|(_, v)| v).collect();
    assert_eq!(values[1].as_ref().map(|s| s.suspend), Some(true));
    assert_eq!(values[2].as_ref().map(|s| s.suspend), Some(false));
    assert_eq!(
        values[3].as_ref().map(|s| s.repo_url.as_str()),
        Some("https://github.com/example/b.git")
    );
    assert!(values[4].is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn the_seed_schedule_request_gets_the_default_cron() {
    let app = spawn_app(
        "schedule-seed",
        "[ingest]\nrepo_template = \"https://git.example.com/{name}.git\"\n",
    )
    .await;
    // curl --location --request POST '…/jobs/schedule' --header 'Content-Type: application/json' --data-raw '{"name": "test6"}'
    let (status, body) = app
        .json(
            Method::POST,
            "/jobs/schedule",
            Some("{\n    \"name\": \"test6\"\n}"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["schedule"], "*/1 * * * *");
    assert_eq!(body["repo"], "https://git.example.com/test6.git");
    let next: Vec<String> = serde_json::from_value(body["nextRuns"].clone()).unwrap_or_default();
    assert_eq!(next.len(), 5);
    assert!(next.iter().all(|t| t.ends_with(":00Z")), "{next:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn bad_schedules_get_problem_bodies_and_write_nothing() {
    let app = spawn_app("schedule-bad", "").await;
    let repo = r#""repo": "https://github.com/example/a.git""#;
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!(r#"{{"name": "a", "schedule": "61 * * * *", {repo}}}"#),
            "schedule",
            "cron",
        ),
        (
            format!(r#"{{"name": "a", "schedule": "* * * *", {repo}}}"#),
            "schedule",
            "cron",
        ),
        (
            format!(r#"{{"name": "a", "schedule": "@sometimes", {repo}}}"#),
            "schedule",
            "cron",
        ),
        (
            format!(r#"{{"name": "a", "concurrencyPolicy": "Sometimes", {repo}}}"#),
            "concurrencyPolicy",
            "enum",
        ),
        (
            format!(r#"{{"name": "a", "concurrencyPolicy": "forbid", {repo}}}"#),
            "concurrencyPolicy",
            "enum",
        ),
        (
            format!(r#"{{"name": "Bad_Name", {repo}}}"#),
            "name",
            "kubernetes-name",
        ),
        (
            format!(r#"{{"name": "{}", {repo}}}"#, "a".repeat(53)),
            "name",
            "kubernetes-name",
        ),
        (format!(r#"{{"name": "", {repo}}}"#), "name", "required"),
        (
            format!(r#"{{"name": "a", "successfulJobsHistoryLimit": -1, {repo}}}"#),
            "successfulJobsHistoryLimit",
            "range",
        ),
        (
            format!(r#"{{"name": "a", "startingDeadlineSeconds": -5, {repo}}}"#),
            "startingDeadlineSeconds",
            "range",
        ),
        (
            format!(r#"{{"name": "a", "startingDeadlineSeconds": 9223372036854775807, {repo}}}"#),
            "startingDeadlineSeconds",
            "range",
        ),
        (
            format!(r#"{{"name": "a", "startingDeadlineSeconds": 31536001, {repo}}}"#),
            "startingDeadlineSeconds",
            "range",
        ),
        (
            format!(r#"{{"name": "a", "timeZone": "Europe/Paris", {repo}}}"#),
            "timeZone",
            "enum",
        ),
        (r#"{"name": "a"}"#.to_owned(), "repo", "required"),
        (
            r#"{"name": "a", "repo": "http://169.254.169.254/x.git"}"#.to_owned(),
            "repo",
            "private-address",
        ),
    ];
    let before = app.reader.watermark(Topic::Schedules);
    for (body, field, _rule) in &cases {
        let (status, problem) = app.json(Method::POST, "/jobs/schedule", Some(body)).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert_eq!(problem["field"], *field, "{body}: {problem}");
    }
    for (body, _, rule) in &cases[..11] {
        let (_, problem) = app.json(Method::POST, "/jobs/schedule", Some(body)).await;
        assert_eq!(problem["rule"], *rule, "{body}: {problem}");
    }
    // Unknown fields and non-JSON bodies.
    let (status, _) = app
        .json(
            Method::POST,
            "/jobs/schedule",
            Some(&format!(r#"{{"name": "a", "cron": "* * * * *", {repo}}}"#)),
        )
        .await;
    assert_eq!(status, 400);
    let response = app
        .http
        .post(format!("{}/jobs/schedule", app.base))
        .header("content-type", "text/plain")
        .body("name=a")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    // A PUT whose body names another schedule, a PATCH with a bad value.
    let (status, problem) = app
        .json(
            Method::PUT,
            "/jobs/schedule/a",
            Some(&format!(r#"{{"name": "b", {repo}}}"#)),
        )
        .await;
    assert_eq!(
        (status, &problem["field"]),
        (400, &serde_json::json!("name"))
    );
    let (status, _) = app
        .json(
            Method::POST,
            "/jobs/schedule",
            Some(&format!(r#"{{"name": "a", {repo}}}"#)),
        )
        .await;
    assert_eq!(status, 201);
    let written = app.settled_watermark(Topic::Schedules).await;
    assert!(written > before);
    let (status, problem) = app
        .json(
            Method::PATCH,
            "/jobs/schedule/a",
            Some(r#"{"schedule": "every minute"}"#),
        )
        .await;
    assert_eq!(
        (status, &problem["field"]),
        (400, &serde_json::json!("schedule"))
    );
    assert_eq!(app.reader.watermark(Topic::Schedules), written);
    let records = app.schedule_records().await;
    assert_eq!(records.len(), 1, "only the one valid schedule was written");
    app.shutdown().await;
}

/// Twenty simultaneous creates of one name, spread over two ingest instances: exactly one 201,
/// the others 409, and one record on the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_name_have_exactly_one_winner_across_instances() {
    let a = spawn_app("schedule-race", "").await;
    let b = crate::helpers::spawn_on(a.scope.clone(), "", true).await;
    let body = r#"{"name": "raced", "repo": "https://github.com/example/a.git"}"#;
    let creates = (0..20).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.json(Method::POST, "/jobs/schedule", Some(body))
    });
    let answers = futures::future::join_all(creates).await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?} {answers:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    let records = a.schedule_records().await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].0, "raced");
    b.shutdown().await;
    a.shutdown().await;
}
