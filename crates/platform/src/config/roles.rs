//! The settings of the aggregator, scheduler and scanner roles, each with its own checks.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use serde_with::{DurationMilliSeconds, DurationSeconds, serde_as};

use super::{ConfigError, instance_id, invalid};

/// Whole hours in a settings file, a [`Duration`] in code.
fn hours<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let hours = u64::deserialize(deserializer)?;
    hours
        .checked_mul(3600)
        .map(Duration::from_secs)
        .ok_or_else(|| serde::de::Error::custom("too many hours"))
}

#[serde_as]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorSettings {
    pub data_dir: String,
    pub instance_id: String,
    pub group_id: String,
    pub batch_max_events: usize,
    #[serde(rename = "batch_linger_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub batch_linger: Duration,
}

impl AggregatorSettings {
    /// `instance_id`, else `$HOSTNAME`, else `aggregator`.
    pub fn instance(&self) -> String {
        instance_id(&self.instance_id, "aggregator")
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.batch_max_events == 0 {
            return Err(invalid("aggregator.batch_max_events", "must be positive"));
        }
        Ok(())
    }
}

#[serde_as]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Consumer group whose owner of partition 0 of `scans.schedules` is the leader.
    pub group_id: String,
    pub instance_id: String,
    /// How long a leader that stopped heartbeating keeps the leadership.
    #[serde(rename = "session_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub session_timeout: Duration,
    /// Window in which a missed tick still fires, for schedules that set none.
    pub starting_deadline_seconds: i64,
    /// The schedule clock runs `clock_scale` times faster than real time from `clock_origin_ms`
    /// on (tests and demos only; 1 is real time).
    pub clock_scale: f64,
    pub clock_origin_ms: i64,
}

impl SchedulerSettings {
    /// `instance_id`, else `$HOSTNAME`, else `scheduler`.
    pub fn instance(&self) -> String {
        instance_id(&self.instance_id, "scheduler")
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.clock_scale.is_finite() && self.clock_scale >= 1.0) {
            return Err(invalid(
                "scheduler.clock_scale",
                "must be a number of at least 1",
            ));
        }
        if self.starting_deadline_seconds < 0 {
            return Err(invalid(
                "scheduler.starting_deadline_seconds",
                "must not be negative",
            ));
        }
        if !(Duration::from_secs(6)..=Duration::from_secs(300)).contains(&self.session_timeout) {
            return Err(invalid(
                "scheduler.session_timeout_ms",
                "must be between 6000 and 300000 (the broker's default group session limits)",
            ));
        }
        Ok(())
    }
}

#[serde_as]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerSettings {
    /// Shared cache folder: repository mirrors, the result cache and the attempt ledger.
    pub cache_dir: String,
    pub group_id: String,
    /// Names this instance in events (`ScanStarted.scanner_id`); empty means `$HOSTNAME`.
    pub instance_id: String,
    /// Scans run at once by one scanner.
    pub concurrency: usize,
    /// Commands read ahead beyond the running scans before the partitions are paused.
    pub queue_max: usize,
    #[serde(rename = "job_timeout_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub job_timeout: Duration,
    /// Attempts of one run, interrupted ones included.
    pub max_attempts: i32,
    #[serde(rename = "retry_backoff_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub retry_backoff: Duration,
    #[serde(rename = "fetch_timeout_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub fetch_timeout: Duration,
    #[serde(rename = "lock_timeout_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub lock_timeout: Duration,
    #[serde(rename = "refetch_after_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub refetch_after: Duration,
    /// Larger blobs are not scanned; they are counted and reported as skipped.
    pub max_blob_bytes: u64,
    /// Larger blobs are read and scanned in overlapping windows of this many bytes.
    pub window_bytes: u64,
    #[serde(rename = "mirror_max_idle_hours", deserialize_with = "hours")]
    pub mirror_max_idle: Duration,
    pub mirror_budget_bytes: u64,
    #[serde(rename = "gc_interval_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub gc_interval: Duration,
    /// Attempt ledger entries older than this are removed (longer than command retention).
    #[serde(rename = "ledger_retention_hours", deserialize_with = "hours")]
    pub ledger_retention: Duration,
    /// On shutdown, running scans get this long to finish before they are abandoned.
    #[serde(rename = "drain_timeout_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub drain_timeout: Duration,
    /// User rule files merged onto the built-in rule pack.
    pub rule_files: Vec<String>,
    /// A file of finding fingerprints to ignore, one per line; empty for none.
    pub ignore_file: String,
    /// Honour a scanned repository's own `.gitleaks.toml` (its rules, merged like a rule file;
    /// `[extend] path` refused) and `.gitleaksignore`. Off: a repository cannot change what is
    /// reported about it.
    #[serde(default)]
    pub repo_config: bool,
    /// Key of the findings' fingerprints (HMAC); unset uses a built-in key.
    #[serde(default)]
    pub fingerprint_key: Option<SecretString>,
    #[serde(default)]
    pub credentials: Vec<CredentialSettings>,
    /// Where command engines run: `local` (child processes) or `kubernetes` (a Job each).
    #[serde(default)]
    pub executor: super::Executor,
    /// A worktree larger than this is not materialized: command engines fail for that scan.
    pub worktree_max_bytes: u64,
    /// Longest time materializing one worktree may take.
    #[serde(rename = "worktree_timeout_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub worktree_timeout: Duration,
    #[serde(default)]
    pub kubernetes: super::KubernetesExecutorSettings,
}

/// The smallest `scanner.window_bytes`: windows overlap by 64 KiB, so smaller ones would mostly
/// rescan their overlap.
const MIN_WINDOW_BYTES: u64 = 1 << 20;

impl ScannerSettings {
    /// `instance_id`, else `$HOSTNAME`, else `scanner`.
    pub fn instance(&self) -> String {
        instance_id(&self.instance_id, "scanner")
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.concurrency == 0 || self.max_attempts < 1 {
            return Err(invalid(
                "scanner.concurrency",
                "concurrency and max_attempts must be at least 1",
            ));
        }
        if self.window_bytes < MIN_WINDOW_BYTES {
            return Err(invalid(
                "scanner.window_bytes",
                "must be at least 1048576 (1 MiB): windows overlap by 64 KiB",
            ));
        }
        if self.worktree_timeout.is_zero() {
            return Err(invalid(
                "scanner.worktree_timeout_seconds",
                "must be positive",
            ));
        }
        self.kubernetes.validate()?;
        for credential in &self.credentials {
            if credential.host.trim().is_empty()
                || (credential.token.is_none() && credential.ssh_key_file.is_none())
            {
                return Err(invalid(
                    "scanner.credentials",
                    "every entry needs a host and a token or an ssh_key_file",
                ));
            }
        }
        Ok(())
    }
}

/// Credentials for private repositories on one host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSettings {
    pub host: String,
    /// Sent with the token over HTTPS (`x-access-token` suits GitHub, `oauth2` GitLab).
    #[serde(default = "default_git_user")]
    pub username: String,
    #[serde(default)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub ssh_key_file: Option<String>,
}

fn default_git_user() -> String {
    "x-access-token".to_owned()
}

/// What a destination receives: a generic JSON webhook signed with HMAC-SHA256, or a Slack
/// incoming-webhook message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    Webhook,
    Slack,
}

/// One place the notifier tells about newly open inventory items.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSettings {
    /// Names the destination in logs, metrics and dead letters.
    pub name: String,
    pub kind: DestinationKind,
    /// Where to POST: an http(s) URL.
    pub url: String,
    /// The HMAC-SHA256 key a webhook's body is signed with (at least 16 bytes); unused by Slack.
    #[serde(default)]
    pub secret: Option<SecretString>,
    /// Items below this severity are not sent (critical, high, medium, low, info).
    #[serde(default = "default_min_severity")]
    pub min_severity: String,
    /// Only items of repositories matching one of these globs (`*` matches any text, `?` one
    /// character); empty: every repository.
    #[serde(default)]
    pub repos: Vec<String>,
}

fn default_min_severity() -> String {
    "info".to_owned()
}

#[serde_as]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierSettings {
    /// Consumer group of the notifiers on scans.inventory.
    pub group_id: String,
    /// Tries per notification and destination before it is dead-lettered.
    pub max_attempts: u32,
    /// Backoff between tries: exponential from the first to the longest, with full jitter.
    #[serde(rename = "initial_backoff_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub initial_backoff: Duration,
    #[serde(rename = "max_backoff_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub max_backoff: Duration,
    /// Longest one HTTP request may take.
    #[serde(rename = "request_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub request_timeout: Duration,
    #[serde(default)]
    pub destinations: Vec<DestinationSettings>,
}

/// The severities, most severe first, as destinations name them.
pub const SEVERITY_NAMES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

impl NotifierSettings {
    /// Checks the settings (also those a caller adds after loading, like `up --webhook`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == 0 {
            return Err(invalid("notifier.max_attempts", "must be positive"));
        }
        if self.initial_backoff.is_zero() || self.max_backoff < self.initial_backoff {
            return Err(invalid(
                "notifier.initial_backoff_ms",
                "must be positive and at most notifier.max_backoff_ms",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("notifier.request_timeout_ms", "must be positive"));
        }
        let mut names = std::collections::BTreeSet::new();
        for d in &self.destinations {
            let problem = |p: String| ConfigError::Invalid {
                key: "notifier.destinations",
                problem: format!("destination {:?}: {p}", d.name),
            };
            if d.name.trim().is_empty() || !names.insert(d.name.as_str()) {
                return Err(invalid(
                    "notifier.destinations",
                    "every destination needs a name of its own",
                ));
            }
            let url_ok = url::Url::parse(&d.url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !url_ok {
                return Err(problem("url must be an http(s) URL".to_owned()));
            }
            if d.kind == DestinationKind::Webhook {
                use secrecy::ExposeSecret;
                if d.secret
                    .as_ref()
                    .is_none_or(|s| s.expose_secret().len() < 16)
                {
                    return Err(problem(
                        "a webhook needs a secret of at least 16 bytes to sign its bodies with"
                            .to_owned(),
                    ));
                }
            }
            if !SEVERITY_NAMES.contains(&d.min_severity.to_ascii_lowercase().as_str()) {
                return Err(problem(format!(
                    "min_severity must be one of {}",
                    SEVERITY_NAMES.join(", ")
                )));
            }
            for glob in &d.repos {
                if glob::Pattern::new(glob).is_err() {
                    return Err(problem(format!("repos: {glob:?} is not a glob")));
                }
            }
        }
        Ok(())
    }
}
