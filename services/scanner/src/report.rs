//! Reports of a local scan (`scanstream scan`): human text, JSON and SARIF 2.1.0. Every format
//! carries fingerprints and redacted previews only, and says which files were not scanned (too
//! large, binary) and why: a summary line, a list, SARIF tool execution notifications.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use scanstream_contracts::event::EngineOutcome;
use scanstream_contracts::finding::{Severity, SeverityCounts};
use serde_json::{Value, json};

use crate::engine::RuleInfo;
use crate::runner::{EngineRun, MAX_SKIPPED_LISTED, Merged, SkipReason, Skipped, merge};

/// SARIF notification descriptor ids of files not scanned, by reason.
const SKIPPED_TOO_LARGE: &str = "scanstream/not-scanned/too-large";
const SKIPPED_BINARY: &str = "scanstream/not-scanned/binary";
const SKIPPED_UNREADABLE: &str = "scanstream/not-scanned/unreadable";
const SKIPPED_FAILED: &str = "scanstream/not-scanned/failed";

/// Why a file the engine failed on was not scanned, in the human report and SARIF.
const FAILED_DETAIL: &str =
    "the engine failed on it (an internal error, logged with where it happened; please report it)";

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

/// `n` bytes in binary units when they are a whole number of them (`1 GiB`, `512 KiB`), else in
/// bytes.
pub fn byte_size(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (unit, name) in UNITS {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{} {name}", n / unit);
        }
    }
    format!("{n} bytes")
}

/// How many of `findings` there are of each severity.
fn totals(findings: &[Merged]) -> SeverityCounts {
    let mut counts = SeverityCounts::default();
    for merged in findings {
        counts.add(merged.severity);
    }
    counts
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The listed files `run` did not scan, for the JSON report.
fn skipped_files(run: &EngineRun) -> Vec<Value> {
    run.skipped
        .iter()
        .map(|s| {
            json!({
                "path": s.place.path,
                "commit": s.place.commit,
                "size": s.size,
                "reason": s.reason.label(),
            })
        })
        .collect()
}

/// What to do about a finding, in every rule's SARIF help.
const HELP_TEXT: &str = "Treat the secret as compromised: revoke or rotate it where it was \
     issued, then remove it from the code (and from the history when it was committed). If it \
     is not a secret, put scanstream:allow on its line or its fingerprint in .scanstreamignore.";
const HELP_MARKDOWN: &str = "Treat the secret as compromised:\n\n1. revoke or rotate it where \
     it was issued;\n2. remove it from the code, and from the history when it was committed.\n\n\
     If it is not a secret, put `scanstream:allow` on its line or its fingerprint in \
     `.scanstreamignore`.";

/// The `security-severity` code scanning ranks results by (over 9.0 critical, 7.0–8.9 high,
/// 4.0–6.9 medium, 0.1–3.9 low).
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "1.0",
    }
}

/// Bytes of a path written percent-encoded in a URI: besides controls and non-ASCII (always
/// encoded), those that are not allowed in a URI path or mean something else there (`#` starts a
/// fragment, `?` a query, `%` an escape, `:` in a first segment a scheme).
const URI_PATH_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b':')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A `/`-separated path as SARIF's `artifactLocation.uri`, a relative URI reference (SARIF
/// 2.1.0 §3.10.2): `dir with space/x#1.py` is `dir%20with%20space/x%231.py`, which code
/// scanning services decode back to the file.
fn sarif_uri(path: &str) -> String {
    percent_encoding::utf8_percent_encode(path, URI_PATH_ESCAPED).to_string()
}

fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// One finding as the JSON and JSON-lines reports write it.
fn finding_json(merged: &Merged) -> Value {
    let f = merged.found;
    json!({
        "rule": f.hit.rule,
        "severity": merged.severity.name(),
        "path": f.place.path,
        "line": f.hit.line,
        "commit": f.place.commit,
        "versions": f.versions,
        "fingerprint": f.hit.fingerprint,
        "preview": f.hit.preview,
        "engines": merged.engines,
    })
}

/// The columns of the CSV report, in order.
const CSV_COLUMNS: [&str; 9] = [
    "rule",
    "severity",
    "path",
    "line",
    "commit",
    "versions",
    "fingerprint",
    "preview",
    "engines",
];

impl Report {
    /// One JSON object per finding and line, the fields of the JSON report's findings; nothing
    /// else (the summary goes to standard error).
    pub fn jsonl(&self) -> String {
        let mut out = String::new();
        for merged in self.findings() {
            out.push_str(&finding_json(&merged).to_string());
            out.push('\n');
        }
        out
    }

    /// CSV with a header row: the JSON report's finding fields, one finding per row.
    pub fn csv(&self) -> String {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let mut rows = vec![CSV_COLUMNS.map(str::to_owned).to_vec()];
        for merged in self.findings() {
            let f = merged.found;
            rows.push(vec![
                f.hit.rule.clone(),
                merged.severity.name().to_owned(),
                f.place.path.clone(),
                f.hit.line.to_string(),
                f.place.commit.clone().unwrap_or_default(),
                f.versions.to_string(),
                f.hit.fingerprint.clone(),
                f.hit.preview.clone(),
                merged.engines.join(" "),
            ]);
        }
        for row in rows {
            // Writing to memory cannot fail.
            let _ = writer.write_record(&row);
        }
        let bytes = writer.into_inner().unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Every finding, one per secret and place over the engines that found it (as the
    /// scanner writes them to `scans.findings`), in the order the engines ran.
    pub fn findings(&self) -> Vec<Merged<'_>> {
        merge(&self.runs, self.commit.as_deref())
    }

    pub fn totals(&self) -> SeverityCounts {
        totals(&self.findings())
    }

    /// One line per finding and a summary, for a terminal.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let findings = self.findings();
        for merged in &findings {
            let found = merged.found;
            let place = &found.place;
            let _ = write!(
                out,
                "{:<8} {:<28} {}:{}",
                merged.severity.name().to_uppercase(),
                found.hit.rule,
                place.path,
                found.hit.line
            );
            if let Some(commit) = &place.commit {
                let _ = write!(out, "  commit {}", &commit[..commit.len().min(12)]);
            }
            if found.versions > 1 {
                let _ = write!(out, "  (in {} versions)", found.versions);
            }
            // Which engines, when more than one ran.
            if self.runs.len() > 1 {
                let _ = write!(out, "  found by {}", merged.engines.join(", "));
            }
            let _ = writeln!(
                out,
                "\n         {}  fingerprint {}",
                found.hit.preview, found.hit.fingerprint
            );
        }
        for (run, skipped) in self.skipped() {
            let (why, detail) = match skipped.reason {
                SkipReason::TooLarge => (
                    format!("over {}", byte_size(run.max_blob_bytes)),
                    format!("{} bytes (scanner.max_blob_bytes)", skipped.size),
                ),
                SkipReason::Unreadable(kind) => (
                    "unreadable".to_owned(),
                    format!("it could not be read ({kind})"),
                ),
                SkipReason::Failed => (format!("{} failed", run.engine), FAILED_DETAIL.to_owned()),
                // Binary files are only counted: a tree has many, and none is a surprise.
                SkipReason::Binary => continue,
            };
            let _ = write!(out, "{:<8} {:<28} {}", "SKIPPED", why, skipped.place.path);
            if let Some(commit) = &skipped.place.commit {
                let _ = write!(out, "  commit {}", &commit[..commit.len().min(12)]);
            }
            let _ = writeln!(out, "\n         not scanned: {detail}");
        }
        let files: u64 = self.runs.iter().map(|r| r.files).sum();
        let bytes: u64 = self.runs.iter().map(|r| r.bytes).sum();
        let millis: u64 = self.runs.iter().map(|r| r.duration_ms).sum();
        let totals = totals(&findings);
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
        if let Some(line) = self.not_scanned_summary() {
            let _ = writeln!(out, "{line}");
        }
        for line in self.engine_failures() {
            let _ = writeln!(out, "{line}");
        }
        out
    }

    /// One line per engine that gave no result: its id, outcome and why.
    pub fn engine_failures(&self) -> Vec<String> {
        self.runs
            .iter()
            .filter(|r| r.outcome != EngineOutcome::Completed)
            .map(|r| {
                format!(
                    "engine {} {}: {}",
                    r.engine,
                    r.outcome.name().replace('_', " "),
                    r.error.as_deref().unwrap_or("no reason given")
                )
            })
            .collect()
    }

    /// Every listed path not scanned, with the run that skipped it.
    pub fn skipped(&self) -> impl Iterator<Item = (&EngineRun, &Skipped)> {
        self.runs
            .iter()
            .flat_map(|run| run.skipped.iter().map(move |s| (run, s)))
    }

    /// `4 files not scanned: 1 over 1 GiB, 1 binary, 1 unreadable, 1 failed`, or `None` when
    /// every file was scanned.
    pub fn not_scanned_summary(&self) -> Option<String> {
        let large: u64 = self.runs.iter().map(|r| r.skipped_large).sum();
        let binary: u64 = self.runs.iter().map(|r| r.skipped_binary).sum();
        let unreadable: u64 = self.runs.iter().map(|r| r.skipped_unreadable).sum();
        let failed: u64 = self.runs.iter().map(|r| r.skipped_failed).sum();
        if large + binary + unreadable + failed == 0 {
            return None;
        }
        let limit = self
            .runs
            .iter()
            .map(|r| r.max_blob_bytes)
            .max()
            .unwrap_or(0);
        let mut reasons = Vec::new();
        if large > 0 {
            reasons.push(format!("{large} over {}", byte_size(limit)));
        }
        if binary > 0 {
            reasons.push(format!("{binary} binary"));
        }
        if unreadable > 0 {
            reasons.push(format!("{unreadable} unreadable"));
        }
        if failed > 0 {
            reasons.push(format!("{failed} failed"));
        }
        Some(format!(
            "{} not scanned: {}",
            plural(large + binary + unreadable + failed, "file", "files"),
            reasons.join(", ")
        ))
    }

    /// A JSON document: `findings` and `summary`, fields in a stable order.
    pub fn json(&self) -> Value {
        let merged = self.findings();
        let findings: Vec<Value> = merged.iter().map(finding_json).collect();
        let engines: Vec<Value> = self
            .runs
            .iter()
            .map(|r| {
                json!({
                    "engine": r.engine,
                    "files": r.files,
                    "bytes": r.bytes,
                    "cached": r.cached,
                    "allowlisted": r.allowlisted,
                    "skipped": r.not_scanned(),
                    "skipped_large": r.skipped_large,
                    "skipped_binary": r.skipped_binary,
                    "skipped_unreadable": r.skipped_unreadable,
                    "skipped_failed": r.skipped_failed,
                    "max_blob_bytes": r.max_blob_bytes,
                    "skipped_files": skipped_files(r),
                    "skipped_unlisted": r.skipped_unlisted,
                    "duration_ms": r.duration_ms,
                    "findings": r.found.len(),
                    "version": r.version,
                    "worktree_ms": r.worktree_ms,
                    "outcome": r.outcome.name(),
                    "error": r.error,
                })
            })
            .collect();
        let totals = totals(&merged);
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
                "not_scanned": self.not_scanned_summary(),
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
                    "fullDescription": { "text": r.description },
                    "help": {
                        "text": format!("{}. {}", r.description, HELP_TEXT),
                        "markdown": format!("**{}**\n\n{}", r.description, HELP_MARKDOWN),
                    },
                    "defaultConfiguration": { "level": sarif_level(r.severity) },
                    "properties": {
                        "severity": r.severity.name(),
                        "security-severity": security_severity(r.severity),
                        "precision": "high",
                        "tags": ["security", "secret"],
                    },
                })
            })
            .collect();
        let results: Vec<Value> = self
            .findings()
            .into_iter()
            .map(|merged| {
                let f = merged.found;
                let mut result = json!({
                    "ruleId": f.hit.rule,
                    "level": sarif_level(merged.severity),
                    "message": { "text": format!("{} found: {}", f.hit.rule, f.hit.preview) },
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": { "uri": sarif_uri(&f.place.path) },
                            "region": { "startLine": f.hit.line.max(1) },
                        }
                    }],
                    "partialFingerprints": { "scanstream/v1": f.hit.fingerprint },
                    "properties": {
                        "severity": merged.severity.name(),
                        "commit": f.place.commit,
                        "versions": f.versions,
                        "engines": merged.engines,
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
                        "semanticVersion": env!("CARGO_PKG_VERSION"),
                        "rules": rules,
                        "notifications": [
                            {
                                "id": SKIPPED_TOO_LARGE,
                                "name": "NotScannedTooLarge",
                                "shortDescription": {
                                    "text": "A file larger than scanner.max_blob_bytes was not scanned."
                                },
                                "defaultConfiguration": { "level": "warning" },
                            },
                            {
                                "id": SKIPPED_BINARY,
                                "name": "NotScannedBinary",
                                "shortDescription": {
                                    "text": "A binary file (a NUL byte in its first 8000 bytes) was not scanned."
                                },
                                "defaultConfiguration": { "level": "note" },
                            },
                            {
                                "id": SKIPPED_UNREADABLE,
                                "name": "NotScannedUnreadable",
                                "shortDescription": {
                                    "text": "A file that could not be read (gone since the folder was listed, no permission, a path that names that are not UTF-8 read as alike) was not scanned."
                                },
                                "defaultConfiguration": { "level": "warning" },
                            },
                            {
                                "id": SKIPPED_FAILED,
                                "name": "NotScannedFailed",
                                "shortDescription": {
                                    "text": "The engine failed on a file (an internal error, logged with the file's path): it was not scanned, and the other files were."
                                },
                                "defaultConfiguration": { "level": "error" },
                            },
                        ],
                    }
                },
                // `category/run-id`: code scanning keeps one analysis per tool and category.
                "automationDetails": { "id": "scanstream/" },
                "invocations": [{
                    "executionSuccessful": true,
                    "toolExecutionNotifications": self.sarif_notifications(),
                }],
                "results": results,
            }],
        })
    }

    /// One SARIF notification per file not scanned (too large or unreadable: `warning`,
    /// binary: `note`, the engine failed: `error`), with its path and the reason, and one for
    /// the files not listed.
    fn sarif_notifications(&self) -> Vec<Value> {
        let mut notifications: Vec<Value> = self
            .skipped()
            .map(|(run, skipped)| {
                let (id, index, level, why) = match skipped.reason {
                    SkipReason::TooLarge => (
                        SKIPPED_TOO_LARGE,
                        0,
                        "warning",
                        format!(
                            "larger than the {} limit (scanner.max_blob_bytes)",
                            byte_size(run.max_blob_bytes)
                        ),
                    ),
                    SkipReason::Binary => (
                        SKIPPED_BINARY,
                        1,
                        "note",
                        "binary (a NUL byte in its first 8000 bytes)".to_owned(),
                    ),
                    SkipReason::Unreadable(kind) => (
                        SKIPPED_UNREADABLE,
                        2,
                        "warning",
                        format!("it could not be read ({kind})"),
                    ),
                    SkipReason::Failed => (SKIPPED_FAILED, 3, "error", FAILED_DETAIL.to_owned()),
                };
                json!({
                    "level": level,
                    "message": {
                        "text": format!(
                            "{} was not scanned by {}: {} bytes, {why}.",
                            skipped.place.path, run.engine, skipped.size
                        )
                    },
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": { "uri": sarif_uri(&skipped.place.path) },
                        }
                    }],
                    // The index into `tool.driver.notifications`.
                    "descriptor": { "id": id, "index": index },
                    "properties": {
                        "reason": skipped.reason.label(),
                        "size": skipped.size,
                        "engine": run.engine,
                        "commit": skipped.place.commit,
                    },
                })
            })
            .collect();
        let unlisted: u64 = self.runs.iter().map(|r| r.skipped_unlisted).sum();
        if unlisted > 0 {
            notifications.push(json!({
                "level": "warning",
                "message": {
                    "text": format!(
                        "{} not scanned are not listed (at most {MAX_SKIPPED_LISTED} are, per engine).",
                        plural(unlisted, "more path", "more paths")
                    )
                },
            }));
        }
        notifications
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Hit;
    use crate::runner::Found;
    use crate::source::Place;

    fn found(rule: &str, severity: Severity, path: &str, line: u32, secret: &str) -> Found {
        Found {
            hit: Hit {
                rule: rule.into(),
                severity,
                line,
                fingerprint: format!("{rule}:{secret}"),
                secret_id: secret.into(),
                preview: "abcd****** (20 chars)".into(),
                shadowed_by: Vec::new(),
            },
            place: Place {
                path: path.into(),
                commit: None,
            },
            versions: 1,
        }
    }

    fn run(engine: &str, found: Vec<Found>) -> EngineRun {
        EngineRun {
            engine: engine.into(),
            found,
            ..EngineRun::default()
        }
    }

    #[test]
    fn a_secret_two_engines_found_at_one_place_is_one_finding_naming_both() {
        let report = Report {
            target: "repo".into(),
            commit: Some("c1".into()),
            runs: vec![
                run(
                    "secrets",
                    vec![
                        found("github-pat", Severity::High, "a.env", 2, "s1"),
                        // Another rule of the same engine on the same secret stays apart.
                        found("generic-token", Severity::Low, "a.env", 2, "s1"),
                        found("npm-token", Severity::High, "b.env", 1, "s2"),
                    ],
                ),
                run(
                    "gitleaks",
                    vec![
                        found("github-pat-gl", Severity::Critical, "a.env", 2, "s1"),
                        // The same secret elsewhere is another finding.
                        found("github-pat-gl", Severity::Critical, "c.env", 2, "s1"),
                    ],
                ),
            ],
            rules: Vec::new(),
        };
        let findings: Vec<(&str, &str, Vec<&str>, Severity)> = report
            .findings()
            .into_iter()
            .map(|m| {
                (
                    m.found.hit.rule.as_str(),
                    m.found.place.path.as_str(),
                    m.engines,
                    m.severity,
                )
            })
            .collect();
        assert_eq!(
            findings,
            [
                (
                    "github-pat",
                    "a.env",
                    vec!["secrets", "gitleaks"],
                    Severity::Critical
                ),
                ("generic-token", "a.env", vec!["secrets"], Severity::Low),
                ("npm-token", "b.env", vec!["secrets"], Severity::High),
                (
                    "github-pat-gl",
                    "c.env",
                    vec!["gitleaks"],
                    Severity::Critical
                ),
            ]
        );
        assert_eq!(report.totals().total(), 4);
        let json = report.json();
        assert_eq!(
            json["findings"][0]["engines"],
            json!(["secrets", "gitleaks"])
        );
        assert_eq!(json["findings"][0]["severity"], "critical");
        assert!(
            report
                .human()
                .contains("a.env:2  found by secrets, gitleaks"),
            "{}",
            report.human()
        );
        assert!(
            report
                .csv()
                .lines()
                .nth(1)
                .unwrap()
                .ends_with(",secrets gitleaks")
        );
        let sarif = report.sarif();
        assert_eq!(
            sarif["runs"][0]["results"][0]["properties"]["engines"],
            json!(["secrets", "gitleaks"])
        );
        assert_eq!(
            sarif["runs"][0]["results"].as_array().map(Vec::len),
            Some(4)
        );
    }

    #[test]
    fn sarif_uris_encode_what_a_uri_path_cannot_hold_and_decode_back() {
        for (path, uri) in [
            ("src/config.py", "src/config.py"),
            ("dir with space/x#1%.py", "dir%20with%20space/x%231%25.py"),
            ("a:b/c?d.txt", "a%3Ab/c%3Fd.txt"),
            ("café/ñ.env", "caf%C3%A9/%C3%B1.env"),
            ("nl\nname.txt", "nl%0Aname.txt"),
        ] {
            assert_eq!(sarif_uri(path), uri);
            let back = percent_encoding::percent_decode_str(uri)
                .decode_utf8()
                .unwrap();
            assert_eq!(back, path);
        }
    }
}
