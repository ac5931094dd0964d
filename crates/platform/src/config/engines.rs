//! Command engines (`[engines.<id>]`): any program that scans a folder and writes SARIF 2.1.0,
//! run by the scanner on a worktree of the scanned commit, locally or as a Kubernetes Job
//! (`scanner.executor`). Presets fill in the command lines of semgrep, gitleaks and kingfisher;
//! any field set next to a preset wins over it.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::{ConfigError, invalid};

/// The built-in engine's id; no command engine may take it.
pub const BUILT_IN_ENGINE: &str = "secrets";

/// The placeholders a command line may hold.
pub const PLACEHOLDERS: [&str; 4] = ["{worktree}", "{output}", "{ref}", "{config}"];

/// A well-known scanner whose command line scanstream knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnginePreset {
    /// `semgrep scan` with local rule files only (`config`), metrics and version checks off.
    Semgrep,
    /// `gitleaks dir` with a SARIF report.
    Gitleaks,
    /// `kingfisher scan` with a SARIF report; secret validation off unless `validate = true`.
    Kingfisher,
}

/// One `[engines.<id>]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    #[serde(default)]
    pub preset: Option<EnginePreset>,
    /// The program and its arguments (no shell), with `{worktree}` (the folder to scan),
    /// `{output}` (where to write SARIF), `{ref}` (the scanned commit id) and `{config}` (this
    /// table's `config`). Without `{output}` the SARIF is read from standard output.
    #[serde(default)]
    pub command: Vec<String>,
    /// Prints the engine's version (first line kept), run once when the scanner starts.
    #[serde(default)]
    pub version_command: Vec<String>,
    /// Output format; only `sarif` (SARIF 2.1.0).
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Exit statuses that mean the engine ran to its end (default `[0]`).
    #[serde(default)]
    pub ok_exit_codes: Option<Vec<i32>>,
    /// Environment of the engine, besides `PATH`, `HOME`, `TMPDIR` and `LANG`; values may be
    /// secret and are never logged.
    #[serde(default)]
    pub env: BTreeMap<String, SecretString>,
    /// What `{config}` stands for: semgrep's rule file or folder (a local path; registry rule
    /// sets would phone home and are refused).
    #[serde(default)]
    pub config: Option<String>,
    /// kingfisher only: check found secrets against their services (off by default: it calls
    /// out to them).
    #[serde(default)]
    pub validate: bool,
    /// A failure of a required engine fails the attempt; any other engine's failure is reported
    /// in its `EngineCompleted` and the attempt completes with the other engines' findings.
    #[serde(default)]
    pub required: bool,
    /// Severity of results whose SARIF gives neither `security-severity` nor a level
    /// (critical, high, medium, low, info; default medium, high for gitleaks).
    #[serde(default)]
    pub severity: Option<String>,
    /// The engine's container image, for `scanner.executor = "kubernetes"`.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub cpu_request: Option<String>,
    #[serde(default)]
    pub cpu_limit: Option<String>,
    #[serde(default)]
    pub memory_request: Option<String>,
    #[serde(default)]
    pub memory_limit: Option<String>,
}

/// A command engine with its preset applied and every default filled in.
#[derive(Debug, Clone)]
pub struct CommandEngineSettings {
    pub id: String,
    pub command: Vec<String>,
    pub version_command: Vec<String>,
    pub timeout: Duration,
    pub ok_exit_codes: Vec<i32>,
    pub env: BTreeMap<String, SecretString>,
    pub config: Option<String>,
    pub required: bool,
    /// Severity of results the SARIF gives none for (a name of `SEVERITY_NAMES`).
    pub default_severity: String,
    pub image: String,
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_request: String,
    pub memory_limit: String,
}

/// Default of `timeout_seconds`: 10 minutes.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

fn words(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_owned()).collect()
}

/// What a preset fills in: command, version command, success statuses, environment, image.
struct Preset {
    severity: &'static str,
    command: Vec<String>,
    version_command: Vec<String>,
    ok_exit_codes: Vec<i32>,
    env: Vec<(&'static str, &'static str)>,
    image: &'static str,
}

fn preset(kind: EnginePreset, validate: bool) -> Preset {
    match kind {
        EnginePreset::Semgrep => Preset {
            severity: "medium",
            command: words(&[
                "semgrep",
                "scan",
                "--config",
                "{config}",
                "--sarif",
                "--output",
                "{output}",
                "--metrics=off",
                "--disable-version-check",
                "--quiet",
                "{worktree}",
            ]),
            version_command: words(&["semgrep", "--version"]),
            // Findings exit 0 too; 2 and 7 are errors.
            ok_exit_codes: vec![0],
            env: vec![
                ("SEMGREP_SEND_METRICS", "off"),
                ("SEMGREP_ENABLE_VERSION_CHECK", "0"),
            ],
            image: "semgrep/semgrep:1.185.0",
        },
        EnginePreset::Gitleaks => Preset {
            // Every gitleaks result is a secret, and its SARIF gives no level.
            severity: "high",
            command: words(&[
                "gitleaks",
                "dir",
                "{worktree}",
                "--report-format",
                "sarif",
                "--report-path",
                "{output}",
                "--no-banner",
                "--exit-code",
                "0",
                "--log-level",
                "error",
            ]),
            version_command: words(&["gitleaks", "version"]),
            ok_exit_codes: vec![0],
            env: Vec::new(),
            image: "ghcr.io/gitleaks/gitleaks:v8.30.1",
        },
        EnginePreset::Kingfisher => {
            let mut command = words(&[
                "kingfisher",
                "scan",
                "{worktree}",
                "--format",
                "sarif",
                "--output",
                "{output}",
                "--no-update-check",
                // Every finding, in a stable order; and no history: the worktree has none.
                "--no-dedup",
                "--git-history",
                "none",
            ]);
            if !validate {
                command.push("--no-validate".to_owned());
            }
            Preset {
                severity: "medium",
                command,
                version_command: words(&["kingfisher", "--version"]),
                // 200: findings; 205: validated findings.
                ok_exit_codes: vec![0, 200, 205],
                env: Vec::new(),
                image: "ghcr.io/mongodb/kingfisher:2.14.0",
            }
        }
    }
}

/// An engine id: what requests name, part of metric labels, Job names and rule ids.
fn valid_id(id: &str) -> bool {
    (1..=40).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && id.as_bytes()[0].is_ascii_lowercase()
}

impl EngineSettings {
    /// The engine `id` with its preset and defaults applied, checked.
    pub fn resolve(&self, id: &str) -> Result<CommandEngineSettings, ConfigError> {
        let key = "engines";
        let problem = |what: String| ConfigError::Invalid {
            key,
            problem: format!("[engines.{id}]: {what}"),
        };
        if !valid_id(id) || id == BUILT_IN_ENGINE {
            return Err(problem(format!(
                "an engine id is 1 to 40 lower-case letters, digits and '-', starting with a letter, and not {BUILT_IN_ENGINE:?}"
            )));
        }
        if let Some(format) = &self.format
            && format != "sarif"
        {
            return Err(problem(format!(
                "format {format:?} is not supported; engines write sarif (SARIF 2.1.0)"
            )));
        }
        let preset = self.preset.map(|kind| preset(kind, self.validate));
        let command = if self.command.is_empty() {
            preset
                .as_ref()
                .map(|p| p.command.clone())
                .unwrap_or_default()
        } else {
            self.command.clone()
        };
        if command
            .first()
            .is_none_or(|program| program.trim().is_empty())
        {
            return Err(problem("needs a command or a preset".into()));
        }
        if !command.iter().any(|arg| arg.contains("{worktree}")) {
            return Err(problem(
                "the command must name {worktree}, the folder to scan".into(),
            ));
        }
        if command.iter().any(|arg| arg.contains("{config}")) && self.config.is_none() {
            return Err(problem(
                "the command names {config}: set config (for semgrep, a local rule file or folder)"
                    .into(),
            ));
        }
        if self.preset == Some(EnginePreset::Semgrep)
            && let Some(config) = &self.config
            && (config == "auto"
                || config.starts_with("p/")
                || config.starts_with("r/")
                || config.contains("://"))
        {
            return Err(problem(format!(
                "config {config:?} names a registry rule set, which semgrep downloads; give a local rule file or folder"
            )));
        }
        let timeout =
            Duration::from_secs(self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT.as_secs()));
        if timeout.is_zero() {
            return Err(problem("timeout_seconds must be positive".into()));
        }
        let ok_exit_codes = self
            .ok_exit_codes
            .clone()
            .or_else(|| preset.as_ref().map(|p| p.ok_exit_codes.clone()))
            .unwrap_or_else(|| vec![0]);
        if ok_exit_codes.is_empty() {
            return Err(problem(
                "ok_exit_codes must list at least one status".into(),
            ));
        }
        let mut env: BTreeMap<String, SecretString> = preset
            .as_ref()
            .map(|p| {
                p.env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), SecretString::from(*v)))
                    .collect()
            })
            .unwrap_or_default();
        for (name, value) in &self.env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(problem(format!("env name {name:?} is not a variable name")));
            }
            env.insert(name.clone(), value.clone());
        }
        let version_command = if self.version_command.is_empty() {
            preset
                .as_ref()
                .map(|p| p.version_command.clone())
                .unwrap_or_default()
        } else {
            self.version_command.clone()
        };
        let image = self
            .image
            .clone()
            .or_else(|| preset.as_ref().map(|p| p.image.to_owned()))
            .unwrap_or_default();
        let default_severity = self
            .severity
            .clone()
            .or_else(|| preset.as_ref().map(|p| p.severity.to_owned()))
            .unwrap_or_else(|| "medium".into());
        if !super::SEVERITY_NAMES.contains(&default_severity.as_str()) {
            return Err(problem(format!(
                "severity {default_severity:?} is not one of {}",
                super::SEVERITY_NAMES.join(", ")
            )));
        }
        Ok(CommandEngineSettings {
            default_severity,
            id: id.to_owned(),
            command,
            version_command,
            timeout,
            ok_exit_codes,
            env,
            config: self.config.clone(),
            required: self.required,
            image,
            cpu_request: self.cpu_request.clone().unwrap_or_else(|| "250m".into()),
            cpu_limit: self.cpu_limit.clone().unwrap_or_else(|| "1".into()),
            memory_request: self
                .memory_request
                .clone()
                .unwrap_or_else(|| "256Mi".into()),
            memory_limit: self.memory_limit.clone().unwrap_or_else(|| "1Gi".into()),
        })
    }
}

/// Every configured command engine, resolved, in id order.
pub fn resolve_all(
    engines: &BTreeMap<String, EngineSettings>,
) -> Result<Vec<CommandEngineSettings>, ConfigError> {
    engines.iter().map(|(id, e)| e.resolve(id)).collect()
}

/// The executor of command engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Executor {
    /// A child process of the scanner, on the scanner's own file system.
    #[default]
    Local,
    /// A Kubernetes Job per engine run, mounting the cache volume.
    Kubernetes,
}

/// `[scanner.kubernetes]`: how engine Jobs are made.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesExecutorSettings {
    /// Namespace of the Jobs; empty: the scanner's own (its service account's namespace file).
    #[serde(default)]
    pub namespace: String,
    /// The ReadWriteMany claim holding `scanner.cache_dir`, mounted read-only into engine pods
    /// at the same path.
    #[serde(default = "default_claim")]
    pub cache_claim: String,
    /// The engine pods' service account (no token is mounted).
    #[serde(default = "default_engine_account")]
    pub service_account: String,
    /// Finished Jobs the scanner could not delete are removed by Kubernetes after this long.
    #[serde(default = "default_ttl")]
    pub ttl_seconds_after_finished: i32,
    /// Pull secrets for engine images.
    #[serde(default)]
    pub image_pull_secrets: Vec<String>,
}

fn default_claim() -> String {
    "scanstream-repo-cache".into()
}

fn default_engine_account() -> String {
    "scanstream-engine".into()
}

fn default_ttl() -> i32 {
    600
}

impl Default for KubernetesExecutorSettings {
    fn default() -> Self {
        Self {
            namespace: String::new(),
            cache_claim: default_claim(),
            service_account: default_engine_account(),
            ttl_seconds_after_finished: default_ttl(),
            image_pull_secrets: Vec::new(),
        }
    }
}

impl KubernetesExecutorSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.cache_claim.trim().is_empty() || self.service_account.trim().is_empty() {
            return Err(invalid(
                "scanner.kubernetes",
                "cache_claim and service_account must be set",
            ));
        }
        if self.ttl_seconds_after_finished < 0 {
            return Err(invalid(
                "scanner.kubernetes.ttl_seconds_after_finished",
                "must not be negative",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> EngineSettings {
        use config::{Config, File, FileFormat};
        Config::builder()
            .add_source(File::from_str(text, FileFormat::Toml))
            .build()
            .and_then(Config::try_deserialize)
            .unwrap()
    }

    #[test]
    fn presets_fill_in_what_is_not_set() {
        let gitleaks = table("preset = \"gitleaks\"\ntimeout_seconds = 30\n")
            .resolve("gitleaks")
            .unwrap();
        assert_eq!(gitleaks.command[0], "gitleaks");
        assert!(gitleaks.command.contains(&"{output}".to_owned()));
        assert_eq!(gitleaks.timeout, Duration::from_secs(30));
        let kingfisher = table("preset = \"kingfisher\"").resolve("kf").unwrap();
        assert!(kingfisher.command.contains(&"--no-validate".to_owned()));
        let validating = table("preset = \"kingfisher\"\nvalidate = true")
            .resolve("kf")
            .unwrap();
        assert!(!validating.command.contains(&"--no-validate".to_owned()));
        let own = table("preset = \"gitleaks\"\ncommand = [\"gl\", \"{worktree}\"]")
            .resolve("gl")
            .unwrap();
        assert_eq!(own.command, vec!["gl", "{worktree}"]);
    }

    #[test]
    fn engines_that_cannot_work_offline_or_at_all_are_refused() {
        let refused = |text: &str, id: &str| {
            let error = table(text).resolve(id).unwrap_err().to_string();
            assert!(error.contains(&format!("[engines.{id}]")), "{error}");
            error
        };
        refused("preset = \"semgrep\"", "semgrep");
        assert!(
            refused("preset = \"semgrep\"\nconfig = \"p/secrets\"", "semgrep").contains("registry")
        );
        refused("command = [\"x\", \"{output}\"]", "x");
        refused("command = []", "x");
        refused("preset = \"gitleaks\"", "secrets");
        refused("preset = \"gitleaks\"", "Bad_Id");
        refused("preset = \"gitleaks\"\nformat = \"json\"", "g");
        refused("preset = \"gitleaks\"\ntimeout_seconds = 0", "g");
        refused("preset = \"gitleaks\"\nseverity = \"dire\"", "g");
    }
}
