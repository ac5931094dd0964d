//! Reports of a local scan (`scanstream scan`): human text, JSON and SARIF 2.1.0. Every format
//! carries fingerprints and redacted previews only.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use scanstream_contracts::finding::{Severity, SeverityCounts};
use serde_json::{Value, json};

use crate::engine::RuleInfo;
use crate::runner::{EngineRun, Found};

/// What a local scan found, over every engine it ran.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scanned folder or repository, as the user named it.
    pub target: String,
    /// The commit scanned, for repository scans.
    pub commit: Option<String>,
    pub runs: Vec<EngineRun>,
    /// Every rule any engine may report.
    pub rules: Vec<RuleInfo>,
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
        Severity::Info => "info",
    }
}

fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

impl Report {
    pub fn findings(&self) -> impl Iterator<Item = &Found> {
        self.runs.iter().flat_map(|r| r.found.iter())
    }

    pub fn totals(&self) -> SeverityCounts {
        let mut counts = SeverityCounts::default();
        for found in self.findings() {
            counts.add(found.hit.severity);
        }
        counts
    }

    /// One line per finding and a summary, for a terminal.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for found in self.findings() {
            let place = &found.place;
            let _ = write!(
                out,
                "{:<8} {:<28} {}:{}",
                severity_name(found.hit.severity).to_uppercase(),
                found.hit.rule,
                place.path,
                found.hit.line
            );
            if let Some(commit) = &place.commit {
                let _ = write!(out, "  commit {}", &commit[..commit.len().min(12)]);
            }
            let _ = writeln!(
                out,
                "\n         {}  fingerprint {}",
                found.hit.preview, found.hit.fingerprint
            );
        }
        let files: u64 = self.runs.iter().map(|r| r.files).sum();
        let bytes: u64 = self.runs.iter().map(|r| r.bytes).sum();
        let millis: u64 = self.runs.iter().map(|r| r.duration_ms).sum();
        let totals = self.totals();
        let _ = writeln!(
            out,
            "{} finding(s) (critical {}, high {}, medium {}, low {}, info {}) in {} file(s), {:.1} MB, {:.2} s",
            totals.total(),
            totals.critical,
            totals.high,
            totals.medium,
            totals.low,
            totals.info,
            files,
            bytes as f64 / 1e6,
            millis as f64 / 1000.0
        );
        out
    }

    /// A JSON document: `findings` and `summary`, fields in a stable order.
    pub fn json(&self) -> Value {
        let findings: Vec<Value> = self
            .findings()
            .map(|f| {
                json!({
                    "rule": f.hit.rule,
                    "severity": severity_name(f.hit.severity),
                    "path": f.place.path,
                    "line": f.hit.line,
                    "commit": f.place.commit,
                    "fingerprint": f.hit.fingerprint,
                    "preview": f.hit.preview,
                })
            })
            .collect();
        let engines: Vec<Value> = self
            .runs
            .iter()
            .map(|r| {
                json!({
                    "engine": r.engine,
                    "files": r.files,
                    "bytes": r.bytes,
                    "cached": r.cached,
                    "skipped": r.skipped,
                    "duration_ms": r.duration_ms,
                    "findings": r.found.len(),
                })
            })
            .collect();
        let totals = self.totals();
        json!({
            "target": self.target,
            "commit": self.commit,
            "findings": findings,
            "summary": {
                "findings": totals.total(),
                "by_severity": {
                    "critical": totals.critical,
                    "high": totals.high,
                    "medium": totals.medium,
                    "low": totals.low,
                    "info": totals.info,
                },
                "engines": engines,
            },
        })
    }

    /// A SARIF 2.1.0 log with one run, as code-scanning services ingest it.
    pub fn sarif(&self) -> Value {
        let index: BTreeMap<&str, usize> = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i))
            .collect();
        let rules: Vec<Value> = self
            .rules
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "name": r.id,
                    "shortDescription": { "text": r.description },
                    "defaultConfiguration": { "level": sarif_level(r.severity) },
                    "properties": { "severity": severity_name(r.severity), "tags": ["security", "secret"] },
                })
            })
            .collect();
        let results: Vec<Value> = self
            .findings()
            .map(|f| {
                let mut result = json!({
                    "ruleId": f.hit.rule,
                    "level": sarif_level(f.hit.severity),
                    "message": { "text": format!("{} found: {}", f.hit.rule, f.hit.preview) },
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": { "uri": f.place.path },
                            "region": { "startLine": f.hit.line.max(1) },
                        }
                    }],
                    "partialFingerprints": { "scanstream/v1": f.hit.fingerprint },
                    "properties": {
                        "severity": severity_name(f.hit.severity),
                        "commit": f.place.commit,
                    },
                });
                if let (Some(i), Some(object)) =
                    (index.get(f.hit.rule.as_str()), result.as_object_mut())
                {
                    object.insert("ruleIndex".into(), json!(i));
                }
                result
            })
            .collect();
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {
                    "driver": {
                        "name": "scanstream",
                        "version": env!("CARGO_PKG_VERSION"),
                        "rules": rules,
                    }
                },
                "results": results,
            }],
        })
    }
}
