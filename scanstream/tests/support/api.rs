//! Talking to `scanstream up` in tests: the REST API, and git repositories that change
//! between scans.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use scanstream_contracts::JobId;
use scanstream_contracts::inventory::ItemId;
use serde_json::{Value, json};

use super::log;

pub fn git(dir: &Path, args: &[&str]) {
    let output = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "user.name=inventory test",
            "-c",
            "user.email=test@scanstream.invalid",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn commit(dir: &Path, files: &[(&str, &str)], message: &str) {
    for (path, text) in files {
        std::fs::write(dir.join(path), text).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "--quiet", "-m", message]);
}

/// A fresh, random, shape-valid GitHub token that belongs to no account.
pub fn github_token() -> String {
    let hex = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    format!("ghp_{}", &hex[..36])
}

pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
}

impl Client {
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Submits a scan and returns its run id (the answer must be `202` for the job `name`).
    pub async fn submit(&self, name: &str, repo: &str, mode: &str) -> String {
        let response = self
            .http
            .post(format!("{}/jobs", self.url))
            .bearer_auth(&self.token)
            .json(&json!({"name": name, "repo": repo, "mode": mode}))
            .send()
            .await
            .expect("POST /jobs");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["uuid"], JobId::from_name(name).to_string());
        body["run_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"))
            .to_owned()
    }

    /// Waits until `/readyz` says every role is ready.
    pub async fn wait_ready(&self, data_dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, body) = self.get("/readyz").await;
            if status == 200 {
                assert_eq!(body["ready"], true);
                for role in ["ingest", "scanner", "aggregator"] {
                    assert_eq!(body[role]["ready"], true, "{body}");
                }
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never ready: {body}\n{}",
                log(data_dir)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn patch(&self, path: &str, body: Value, key: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .patch(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Submits a scan of `repo` and waits until it succeeded.
    pub async fn scan(&self, name: &str, repo: &str, mode: &str, data_dir: &Path) {
        let response = self
            .http
            .post(format!("{}/jobs", self.url))
            .bearer_auth(&self.token)
            .json(&json!({"name": name, "repo": repo, "mode": mode}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, job) = self.get(&format!("/jobs/{}", JobId::from_name(name))).await;
            if status == 200 && job["status"] == "SUCCEEDED" {
                return;
            }
            assert!(
                job["status"] != "FAILED" && Instant::now() < deadline,
                "{name}: {job}\n{}",
                log(data_dir)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `check` holds for the items of a `GET /findings` page.
    pub async fn list_until(
        &self,
        path: &str,
        what: &str,
        check: impl Fn(&[Value]) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, page) = self.get(path).await;
            assert_eq!(status, 200, "{path}: {page}");
            if check(page["items"].as_array().map_or(&[][..], Vec::as_slice)) {
                return page;
            }
            assert!(Instant::now() < deadline, "{what}: {page}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `check` holds for `GET /findings/{id}` (the fold runs behind the scans).
    pub async fn item_until(
        &self,
        id: ItemId,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, item) = self.get(&format!("/findings/{id}")).await;
            if status == 200 && check(&item) {
                return item;
            }
            assert!(Instant::now() < deadline, "{what}: {status} {item}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
