//! Test fixtures shared by the scanner's tests and the `scanstream` binary's tests (included by
//! path): the rule samples and a git runner.
//!
//! Secret-looking samples live in `rules/samples.toml` and `rules/samples/*.toml` in pieces, so this repository holds no
//! whole token; tests join the pieces.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[derive(serde::Deserialize)]
pub struct Samples {
    #[serde(default)]
    pub positive: Vec<Positive>,
    #[serde(default)]
    pub negative: Vec<Negative>,
}

/// Text that must yield exactly one finding of `rule`, whose secret is `secret`.
#[derive(serde::Deserialize)]
pub struct Positive {
    pub rule: String,
    pub text: Vec<String>,
    pub secret: Vec<String>,
    /// The file's path, for rules restricted to paths (`sample.txt` when absent).
    #[serde(default = "default_path")]
    pub path: String,
}

fn default_path() -> String {
    "sample.txt".to_owned()
}

/// Text that must yield no finding.
#[derive(serde::Deserialize)]
pub struct Negative {
    pub why: String,
    pub text: Vec<String>,
    /// The file's path (`sample.txt` when absent).
    #[serde(default = "default_path")]
    pub path: String,
}

/// The samples of every built-in rule file.
pub fn samples() -> Samples {
    let files = [
        include_str!("../../rules/samples.toml"),
        include_str!("../../rules/samples/cloud.toml"),
        include_str!("../../rules/samples/devtools.toml"),
        include_str!("../../rules/samples/saas.toml"),
        include_str!("../../rules/samples/platforms.toml"),
        include_str!("../../rules/samples/ai-data.toml"),
        include_str!("../../rules/samples/commerce.toml"),
        include_str!("../../rules/samples/structure.toml"),
    ];
    let mut all = Samples {
        positive: Vec::new(),
        negative: Vec::new(),
    };
    for text in files {
        let file: Samples = toml::from_str(text).unwrap();
        all.positive.extend(file.positive);
        all.negative.extend(file.negative);
    }
    all
}

/// The text and secret of the first sample of `rule`.
pub fn sample(rule: &str) -> (String, String) {
    let s = samples()
        .positive
        .into_iter()
        .find(|p| p.rule == rule)
        .unwrap_or_else(|| panic!("no sample for {rule}"));
    (s.text.concat(), s.secret.concat())
}

/// Runs git in `dir` with a fixed identity, no user or system configuration, and `date` as the
/// author and committer date when given; returns its trimmed output.
pub fn git(dir: &Path, args: &[&str], date: Option<&str>) -> String {
    let mut command = Command::new("git");
    command
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir);
    if let Some(date) = date {
        command
            .env("GIT_AUTHOR_DATE", date)
            .env("GIT_COMMITTER_DATE", date);
    }
    let out = command.output().expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The OASIS SARIF 2.1.0 schema (errata 01), compiled.
pub fn sarif_validator() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/sarif-schema-2.1.0.json")).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Why `log` is not a valid SARIF 2.1.0 log, each with where; empty when it is.
pub fn sarif_errors(log: &serde_json::Value) -> Vec<String> {
    sarif_validator()
        .iter_errors(log)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}
