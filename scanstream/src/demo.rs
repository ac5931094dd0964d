//! `scanstream up --demo`: a small repository with planted fake secrets, scanned through the
//! REST API while the terminal shows the scans going through, then the job stats and the
//! redacted findings read back from `scans.findings`.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use scanstream_contracts::JobId;
use scanstream_platform::Settings;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::client::Api;

/// How long the demo's scans may take.
const SCAN_TIMEOUT: Duration = Duration::from_secs(180);

/// A secret planted in a repository by [`plant_repository`].
#[derive(Debug, Clone)]
pub struct Planted {
    /// The rule that must report it.
    pub rule: &'static str,
    pub path: &'static str,
    pub secret: String,
    /// Present in the tip commit's tree; otherwise only in history (removed by a later commit).
    pub in_tree: bool,
}

/// Random characters from `alphabet`, from the operating system's random source.
fn random(alphabet: &[u8], len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for byte in uuid::Uuid::new_v4().into_bytes() {
            // Bytes 6 and 8 carry the version and variant bits; the rest are random.
            if out.len() < len {
                out.push(char::from(alphabet[usize::from(byte) % alphabet.len()]));
            }
        }
    }
    out
}

const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "user.name=scanstream demo",
            "-c",
            "user.email=demo@scanstream.invalid",
        ])
        .args(args)
        .output()
        .with_context(|| format!("cannot run git {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn write(dir: &Path, path: &str, text: &str) -> anyhow::Result<()> {
    let file = dir.join(path);
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))
}

/// Creates (or recreates) a git repository at `dir` with freshly generated fake secrets: four in
/// the tip commit's tree and one that a second commit removed, so only a history scan finds it.
/// The values are random, valid in shape only, and belong to no account.
pub fn plant_repository(dir: &Path) -> anyhow::Result<Vec<Planted>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let planted = vec![
        Planted {
            rule: "aws-access-key-id",
            path: "config/settings.py",
            secret: format!("AKIA{}", random(UPPER_DIGITS, 16)),
            in_tree: true,
        },
        Planted {
            rule: "aws-secret-access-key",
            path: "config/settings.py",
            secret: random(BASE64, 40),
            in_tree: true,
        },
        Planted {
            rule: "github-pat",
            path: "deploy/env.sh",
            secret: format!("ghp_{}", random(ALNUM, 36)),
            in_tree: true,
        },
        Planted {
            rule: "slack-webhook-url",
            path: "deploy/env.sh",
            secret: format!(
                "https://hooks.slack.com/services/T{}/B{}/{}",
                random(UPPER_DIGITS, 8),
                random(UPPER_DIGITS, 8),
                random(ALNUM, 24)
            ),
            in_tree: true,
        },
        Planted {
            rule: "stripe-live-key",
            path: "scripts/release.sh",
            secret: format!("sk_live_{}", random(ALNUM, 24)),
            in_tree: false,
        },
    ];
    git(dir, &["init", "--quiet"])?;
    write(
        dir,
        "README.md",
        "# payments-service\n\nA small service, used by the scanstream demo.\n",
    )?;
    write(
        dir,
        "src/app.py",
        "def handler(event):\n    return {\"status\": 200, \"body\": event.get(\"name\", \"\")}\n",
    )?;
    write(
        dir,
        "config/settings.py",
        &format!(
            "REGION = \"eu-west-1\"\nAWS_ACCESS_KEY_ID = \"{}\"\nAWS_SECRET_ACCESS_KEY = \"{}\"\n",
            planted[0].secret, planted[1].secret
        ),
    )?;
    write(
        dir,
        "deploy/env.sh",
        &format!(
            "export GITHUB_TOKEN={}\nexport SLACK_WEBHOOK={}\n",
            planted[2].secret, planted[3].secret
        ),
    )?;
    write(
        dir,
        "scripts/release.sh",
        &format!(
            "#!/bin/sh\ncurl -u {}: https://api.stripe.com/v1/charges\n",
            planted[4].secret
        ),
    )?;
    git(dir, &["add", "--all"])?;
    git(dir, &["commit", "--quiet", "-m", "First version"])?;
    std::fs::remove_file(dir.join("scripts/release.sh"))?;
    write(
        dir,
        "README.md",
        "# payments-service\n\nA small service, used by the scanstream demo. Releases run in CI now.\n",
    )?;
    git(dir, &["add", "--all"])?;
    git(dir, &["commit", "--quiet", "-m", "Release from CI"])?;
    Ok(planted)
}

/// Prints the repository's inventory once the fold has an item for each of the `expected`
/// planted secrets: two scans, one item per secret.
async fn show_inventory(
    api: &Api,
    url: &str,
    repo_url: &str,
    expected: usize,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let path = format!(
        "/findings?repo={}",
        url::form_urlencoded::byte_serialize(repo_url.as_bytes()).collect::<String>()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let items = loop {
        let page: Value = api
            .request(reqwest::Method::GET, &path)
            .send()
            .await?
            .json()
            .await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= expected || Instant::now() > deadline {
            break items;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(150)) => {}
        }
    };
    say!();
    say!(
        "The inventory, GET {url}/findings?repo=… ({} items: one per secret, however many scans saw it; triage with PATCH /findings/{{id}}):",
        items.len()
    );
    for item in &items {
        let place = match (item["path"].as_str(), item["line"].as_i64()) {
            (Some(path), Some(line)) => format!("{path}:{line}"),
            _ => String::new(),
        };
        say!(
            "  {:<6} {:<8} {:<22} {:<24} {:<12} {}",
            item["status"].as_str().unwrap_or_default().to_lowercase(),
            item["severity"].as_str().unwrap_or_default().to_lowercase(),
            item["rule_id"].as_str().unwrap_or_default(),
            place,
            if item["in_tip"] == true {
                "in tip"
            } else {
                "history only"
            },
            item["item_id"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// One submitted scan being watched.
struct Watched {
    name: String,
    job: String,
    run: String,
    submitted: Instant,
    status: String,
    bar: ProgressBar,
    done: bool,
}

fn terminal(status: &str) -> bool {
    matches!(status, "SUCCEEDED" | "FAILED" | "CANCELLED")
}

/// The status of run `run` in a `GET /jobs/{uuid}` body (`QUEUED` until the job is folded).
fn run_status(job: &Value, run: &str) -> (String, Option<String>) {
    let runs = job["runs"].as_array().cloned().unwrap_or_default();
    match runs.iter().find(|r| r["run_id"] == run) {
        Some(r) => (
            r["status"].as_str().unwrap_or("QUEUED").to_owned(),
            r["last_error"].as_str().map(str::to_owned),
        ),
        None => ("QUEUED".to_owned(), None),
    }
}

pub async fn run(
    settings: &Settings,
    url: &str,
    token: Option<String>,
    repos: &Path,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let repo = repos.join("demo");
    let planted = {
        let repo = repo.clone();
        tokio::task::spawn_blocking(move || plant_repository(&repo)).await??
    };
    say!(
        "Demo: planted {} fake secrets in {} ({} in the tip commit, 1 only in its history).",
        planted.len(),
        repo.display(),
        planted.iter().filter(|p| p.in_tree).count()
    );
    let since_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
        - 1_000;
    let api = Api::new(url, token)?;
    let repo_url = format!("file://{}", repo.display());
    let is_tty = std::io::stdout().is_terminal();
    let bars = MultiProgress::with_draw_target(if is_tty {
        ProgressDrawTarget::stdout()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("  {spinner} {prefix:<14} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let mut watched = Vec::new();
    for (name, mode) in [("demo-tree", "tree"), ("demo-history", "history")] {
        let response = api
            .request(reqwest::Method::POST, "/jobs")
            .json(&json!({"name": name, "repo": repo_url, "mode": mode}))
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST /jobs for {name} answered {status}: {body}");
        }
        let bar = bars.add(ProgressBar::new_spinner());
        bar.set_style(style.clone());
        bar.set_prefix(name);
        bar.enable_steady_tick(Duration::from_millis(120));
        watched.push(Watched {
            name: name.to_owned(),
            job: body["uuid"].as_str().unwrap_or_default().to_owned(),
            run: body["run_id"].as_str().unwrap_or_default().to_owned(),
            submitted: Instant::now(),
            status: String::new(),
            bar,
            done: false,
        });
    }
    say!("Submitted {} scans through POST {url}/jobs:", watched.len());
    let deadline = Instant::now() + SCAN_TIMEOUT;
    while watched.iter().any(|w| !w.done) {
        if Instant::now() > deadline {
            bail!("the demo's scans did not finish within {SCAN_TIMEOUT:?}; see the log");
        }
        for w in watched.iter_mut().filter(|w| !w.done) {
            let response = api
                .request(reqwest::Method::GET, &format!("/jobs/{}", w.job))
                .send()
                .await?;
            let (status, error) = if response.status().is_success() {
                run_status(&response.json().await?, &w.run)
            } else {
                ("QUEUED".to_owned(), None)
            };
            if status != w.status {
                let elapsed = w.submitted.elapsed().as_secs_f64();
                let mut message = format!("{} after {elapsed:.1} s", status.to_lowercase());
                if let Some(error) = error.filter(|_| status == "FAILED") {
                    message.push_str(&format!(": {error}"));
                }
                if !is_tty {
                    say!("  {:<14} {message}", w.name);
                }
                w.status = status;
                w.done = terminal(&w.status);
                if w.done {
                    w.bar.finish_with_message(message);
                } else {
                    w.bar.set_message(message);
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(150)) => {}
        }
    }

    let stats: Value = api
        .request(reqwest::Method::GET, "/jobs/stats")
        .send()
        .await?
        .json()
        .await?;
    let mine: serde_json::Map<String, Value> = stats
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| name.starts_with("demo-"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    say!();
    say!("GET {url}/jobs/stats (the demo's jobs):");
    // As the API renders it: sorted keys, four-space indentation.
    say!(
        "{}",
        scanstream_aggregator::stats::render(&Value::Object(mine))
    );

    let jobs: HashSet<JobId> = watched
        .iter()
        .filter_map(|w| w.job.parse::<uuid::Uuid>().ok().map(JobId))
        .collect();
    let runs: HashSet<&str> = watched.iter().map(|w| w.run.as_str()).collect();
    let mut findings = crate::findings::read(settings, &jobs, since_ms, Duration::from_secs(30))
        .await?
        .into_iter()
        .filter(|f| runs.contains(f.run_id.to_string().as_str()))
        .collect::<Vec<_>>();
    findings.sort_by(|a, b| (&a.path, a.line, &a.rule_id).cmp(&(&b.path, b.line, &b.rule_id)));
    say!();
    say!("Findings on scans.findings (secrets redacted; fingerprints are keyed hashes):");
    for w in &watched {
        say!("  {}:", w.name);
        for f in findings.iter().filter(|f| f.job_id.to_string() == w.job) {
            let commit = f.commit.as_deref().map_or("", |c| &c[..c.len().min(8)]);
            say!(
                "    {:<8} {:<22} {}:{} {commit}  {}  fp {}",
                format!("{:?}", f.severity).to_lowercase(),
                f.rule_id,
                f.path,
                f.line,
                f.redacted_preview,
                f.fingerprint
            );
        }
    }
    if let Some(repo_url) = findings.first().map(|f| f.repo_url.clone()) {
        show_inventory(&api, url, &repo_url, planted.len(), shutdown).await?;
    }
    say!();
    say!(
        "The history scan also finds the key removed from scripts/release.sh. Try `scanstream stats`, \
         `scanstream submit <name> --repo file://<repo under {}>`, `scanstream replay --topic \
         scans.events`, `scanstream audit`, POST {url}/jobs/schedule, or GET {url}/openapi.json.",
        repos.display()
    );
    Ok(())
}
