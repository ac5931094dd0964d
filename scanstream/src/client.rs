//! `scanstream submit` and `scanstream stats`: thin clients of the REST API for scripts.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use scanstream_platform::Settings;
use serde_json::{Map, Value, json};

use crate::cli::{ApiClientArgs, StatsArgs, SubmitArgs};

/// Exit status when the API cannot be reached.
const UNREACHABLE: u8 = 2;

/// A client of the REST API: base URL, bearer token, HTTP client.
pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot create the HTTP client")?;
        Ok(Api {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    pub fn from_args(settings: &Settings, args: &ApiClientArgs) -> anyhow::Result<Api> {
        let base = args
            .api_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", settings.api.listen));
        let read = |file: &std::path::Path| {
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the token file {}", file.display()))
                .map(|token| token.trim().to_owned())
        };
        let token = match &args.token_file {
            Some(file) => Some(read(file)?),
            None => match std::env::var("SCANSTREAM_TOKEN") {
                Ok(token) => Some(token),
                Err(_) => {
                    let file = crate::datadir::token_file(&crate::datadir::data_dir(None));
                    if file.is_file() {
                        Some(read(&file)?)
                    } else {
                        None
                    }
                }
            },
        };
        Api::new(&base, token)
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`: the status and the JSON body (`null` when the body is not JSON).
    pub async fn get_json(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .with_context(|| format!("cannot reach the scanstream API at {}", self.base))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends the request and prints the answer: pretty JSON on stdout when it succeeded, the
    /// problem on stderr when it did not.
    async fn print(&self, request: reqwest::RequestBuilder) -> ExitCode {
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                eprintln!("cannot reach the scanstream API at {}: {e}", self.base);
                return ExitCode::from(UNREACHABLE);
            }
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let shown = serde_json::from_str::<Value>(&body)
            .map(|v| format!("{v:#}"))
            .unwrap_or(body);
        if status.is_success() {
            println!("{shown}");
            ExitCode::SUCCESS
        } else {
            eprintln!("{status}\n{shown}");
            ExitCode::from(1)
        }
    }
}

pub async fn submit(settings: &Settings, args: &SubmitArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from_args(settings, &args.api)?;
    let mut body = Map::new();
    body.insert("name".into(), json!(args.name));
    if let Some(repo) = &args.repo {
        body.insert("repo".into(), json!(repo));
    }
    if let Some(git_ref) = &args.git_ref {
        body.insert("ref".into(), json!(git_ref));
    }
    if !args.engines.is_empty() {
        body.insert("engines".into(), json!(args.engines));
    }
    if let Some(mode) = &args.mode {
        body.insert("mode".into(), json!(mode));
    }
    let mut request = api
        .request(reqwest::Method::POST, "/jobs")
        .json(&Value::Object(body));
    if let Some(key) = &args.idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    Ok(api.print(request).await)
}

pub async fn stats(settings: &Settings, args: &StatsArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from_args(settings, &args.api)?;
    let path = match &args.job {
        Some(job) => format!("/jobs/{job}"),
        None => "/jobs/stats".to_owned(),
    };
    Ok(api.print(api.request(reqwest::Method::GET, &path)).await)
}
