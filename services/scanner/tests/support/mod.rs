//! Test fixtures shared by the scanner's tests and the `scanstream` binary's tests (included by
//! path): the rule samples and a git runner.
//!
//! Secret-looking samples live in `rules/samples.toml` in pieces, so this repository holds no
//! whole token; tests join the pieces.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[derive(serde::Deserialize)]
pub struct Samples {
    pub positive: Vec<Positive>,
    pub negative: Vec<Negative>,
}

/// Text that must yield exactly one finding of `rule`, whose secret is `secret`.
#[derive(serde::Deserialize)]
pub struct Positive {
    pub rule: String,
    pub text: Vec<String>,
    pub secret: Vec<String>,
}

/// Text that must yield no finding.
#[derive(serde::Deserialize)]
pub struct Negative {
    pub why: String,
    pub text: Vec<String>,
}

pub fn samples() -> Samples {
    toml::from_str(include_str!("../../rules/samples.toml")).unwrap()
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
