//! Reading a command engine's SARIF 2.1.0 into [`Found`]s.
//!
//! Only what a finding needs is read, and leniently: a result that does not parse, or whose
//! location is not a file of the worktree, is counted and skipped, never fatal to the others.
//! Nothing an engine wrote reaches a topic as it is: rule ids are namespaced by engine and
//! limited to a safe alphabet, paths are made relative to the worktree, and the matched text
//! (`region.snippet`, or the region read from the file) becomes a redacted preview and keyed
//! hashes. Messages and properties are never read: engines quote secrets there.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path};

use scanstream_contracts::finding::Severity;
use serde::Deserialize;
use serde_json::Value;

use crate::engine::Hit;
use crate::runner::Found;
use crate::secrets::{redact, secret_id};
use crate::source::Place;

#[derive(Debug, Default, Deserialize)]
struct Log {
    #[serde(default)]
    runs: Vec<Run>,
}

#[derive(Debug, Default, Deserialize)]
struct Run {
    #[serde(default)]
    tool: Option<Tool>,
    #[serde(default)]
    results: Vec<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Tool {
    #[serde(default)]
    driver: Driver,
}

#[derive(Debug, Default, Deserialize)]
struct Driver {
    #[serde(default)]
    rules: Vec<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    default_configuration: Option<Configuration>,
    #[serde(default)]
    properties: Option<Properties>,
}

#[derive(Debug, Default, Deserialize)]
struct Configuration {
    #[serde(default)]
    level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Properties {
    #[serde(default, rename = "security-severity")]
    security_severity: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    #[serde(default)]
    rule_id: Option<String>,
    #[serde(default)]
    rule_index: Option<usize>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    locations: Vec<Location>,
    #[serde(default)]
    partial_fingerprints: BTreeMap<String, Value>,
    #[serde(default)]
    properties: Option<Properties>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    #[serde(default)]
    physical_location: Option<PhysicalLocation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    #[serde(default)]
    artifact_location: Option<ArtifactLocation>,
    #[serde(default)]
    region: Option<Region>,
}

#[derive(Debug, Default, Deserialize)]
struct ArtifactLocation {
    #[serde(default)]
    uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    #[serde(default)]
    start_line: Option<u32>,
    #[serde(default)]
    start_column: Option<u32>,
    #[serde(default)]
    end_line: Option<u32>,
    #[serde(default)]
    end_column: Option<u32>,
    #[serde(default)]
    snippet: Option<Snippet>,
}

#[derive(Debug, Default, Deserialize)]
struct Snippet {
    #[serde(default)]
    text: Option<String>,
}

/// What one SARIF document gave.
#[derive(Debug, Default)]
pub struct Read {
    pub found: Vec<Found>,
    /// Results skipped: unreadable, or not located in a file of the worktree.
    pub skipped: u64,
}

/// Why a document could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("the engine's output is not SARIF 2.1.0 JSON ({0})")]
pub struct NotSarif(String);

/// Reads `bytes` (a SARIF log) written by engine `engine` about the files of `worktree`.
/// `key` keys the fingerprints; `commit` is the scanned commit, placed on every finding.
pub fn read(
    bytes: &[u8],
    engine: &str,
    fallback: Severity,
    worktree: &Path,
    key: &[u8],
    commit: Option<&str>,
) -> Result<Read, NotSarif> {
    let log: Log = serde_json::from_slice(bytes).map_err(|e| {
        // serde_json's message names a line and column, never the text.
        NotSarif(e.classify_label().to_owned())
    })?;
    let mut out = Read::default();
    let mut lines = LineCache::default();
    for run in log.runs {
        let rules: Vec<Rule> = run
            .tool
            .map(|t| t.driver.rules)
            .unwrap_or_default()
            .into_iter()
            .map(|r| serde_json::from_value(r).unwrap_or_default())
            .collect();
        let by_id: HashMap<&str, &Rule> = rules
            .iter()
            .filter_map(|r| r.id.as_deref().map(|id| (id, r)))
            .collect();
        for value in run.results {
            let Ok(result) = serde_json::from_value::<SarifResult>(value) else {
                out.skipped += 1;
                continue;
            };
            let context = Context {
                engine,
                fallback,
                worktree,
                key,
                commit,
            };
            match finding(&result, &rules, &by_id, &context, &mut lines) {
                Some(found) => out.found.push(found),
                None => out.skipped += 1,
            }
        }
    }
    Ok(out)
}

trait Classify {
    fn classify_label(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_label(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "not a SARIF log",
            serde_json::error::Category::Eof => "cut short",
        }
    }
}

/// What every result of one document is read against.
struct Context<'a> {
    engine: &'a str,
    /// Severity of results that give none.
    fallback: Severity,
    worktree: &'a Path,
    key: &'a [u8],
    commit: Option<&'a str>,
}

fn finding(
    result: &SarifResult,
    rules: &[Rule],
    by_id: &HashMap<&str, &Rule>,
    context: &Context<'_>,
    lines: &mut LineCache,
) -> Option<Found> {
    let Context {
        engine,
        fallback,
        worktree,
        key,
        commit,
    } = *context;
    let rule = result
        .rule_id
        .as_deref()
        .and_then(|id| by_id.get(id).copied())
        .or_else(|| result.rule_index.and_then(|i| rules.get(i)));
    let raw_rule = result
        .rule_id
        .as_deref()
        .or_else(|| rule.and_then(|r| r.id.as_deref()))
        .unwrap_or("result");
    let rule_id = format!("{engine}/{}", safe_rule(raw_rule));
    let physical = result.locations.first()?.physical_location.as_ref()?;
    let path = relative_path(
        physical.artifact_location.as_ref()?.uri.as_deref()?,
        worktree,
    )?;
    let region = physical.region.as_ref();
    let line = region.and_then(|r| r.start_line).unwrap_or(1).max(1);
    let secret = matched_text(region, worktree, &path, lines);
    let severity = severity(result, rule).unwrap_or(fallback);
    let fingerprint = match &secret {
        Some(secret) => keyed(key, &[rule_id.as_bytes(), secret.as_bytes()]),
        None if result.partial_fingerprints.values().any(|v| !is_blank(v)) => {
            let parts: Vec<String> = result
                .partial_fingerprints
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            keyed(key, &[rule_id.as_bytes(), parts.join("\n").as_bytes()])
        }
        None => keyed(
            key,
            &[
                rule_id.as_bytes(),
                path.as_bytes(),
                line.to_string().as_bytes(),
            ],
        ),
    };
    let (secret_id, preview) = match &secret {
        Some(secret) => (secret_id(key, secret.as_bytes()), redact(secret.as_bytes())),
        None => (String::new(), format!("line {line}")),
    };
    Some(Found {
        hit: Hit {
            rule: rule_id,
            severity,
            line,
            fingerprint,
            secret_id,
            preview,
            shadowed_by: Vec::new(),
        },
        place: Place {
            path,
            commit: commit.map(str::to_owned),
        },
        versions: 1,
    })
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn keyed(key: &[u8], parts: &[&[u8]]) -> String {
    let joined: Vec<u8> = parts.join(&0u8);
    secret_id(key, &[b"sarif".as_slice(), &[0], &joined].concat())
}

/// Rule ids as reported: letters, digits and `._-/:`, at most 100 characters; anything else
/// becomes `_`.
fn safe_rule(id: &str) -> String {
    id.chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-/:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A SARIF location's path relative to the worktree, `/`-separated: `file://` and absolute
/// paths under the worktree lose the worktree's prefix; relative ones are taken as relative to
/// it (engines run in it). `None` for anything outside it.
fn relative_path(uri: &str, worktree: &Path) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(uri.strip_prefix("file://").unwrap_or(uri))
        .decode_utf8()
        .ok()?;
    let path = Path::new(decoded.as_ref());
    let relative = if path.is_absolute() {
        path.strip_prefix(worktree).ok()?
    } else {
        // Relative to the worktree; a tool that resolved against a parent folder names it.
        let name = worktree.file_name().map(Path::new);
        match name {
            Some(name) if path.starts_with(name) && !worktree.join(path).exists() => {
                path.strip_prefix(name).ok()?
            }
            _ => path,
        }
    };
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The text an engine matched: its snippet when it gave one, else the region's columns on its
/// line read from the file. Semgrep without a login gives a placeholder, which is no match.
fn matched_text(
    region: Option<&Region>,
    worktree: &Path,
    path: &str,
    lines: &mut LineCache,
) -> Option<String> {
    let region = region?;
    if let Some(text) = region.snippet.as_ref().and_then(|s| s.text.as_deref()) {
        let text = text.trim();
        if !text.is_empty() && text != "requires login" {
            return Some(text.to_owned());
        }
    }
    let (line, start, end) = (region.start_line?, region.start_column?, region.end_column?);
    if region.end_line.is_some_and(|l| l != line) || end <= start {
        return None;
    }
    let text = lines.line(&worktree.join(path), line)?;
    let chars: String = text
        .chars()
        .skip(usize::try_from(start - 1).ok()?)
        .take(usize::try_from(end - start).ok()?)
        .collect();
    (!chars.trim().is_empty()).then(|| chars.trim().to_owned())
}

/// Lines of worktree files, each file read once.
#[derive(Default)]
struct LineCache {
    files: HashMap<std::path::PathBuf, Option<Vec<String>>>,
}

impl LineCache {
    fn line(&mut self, path: &Path, line: u32) -> Option<String> {
        let lines = self.files.entry(path.to_path_buf()).or_insert_with(|| {
            std::fs::read(path).ok().map(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            })
        });
        lines
            .as_ref()?
            .get(usize::try_from(line).ok()?.checked_sub(1)?)
            .cloned()
    }
}

/// `security-severity` (a CVSS-like score, on the result or its rule) when given, else the
/// SARIF level (the result's, else its rule's default); `None` when neither is given.
fn severity(result: &SarifResult, rule: Option<&Rule>) -> Option<Severity> {
    let score = result
        .properties
        .as_ref()
        .and_then(|p| p.security_severity.as_ref())
        .or_else(|| {
            rule.and_then(|r| r.properties.as_ref())
                .and_then(|p| p.security_severity.as_ref())
        })
        .and_then(|v| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
        .filter(|s: &f64| s.is_finite());
    if let Some(score) = score {
        return Some(match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::Info,
        });
    }
    let level = result.level.as_deref().or_else(|| {
        rule.and_then(|r| r.default_configuration.as_ref())
            .and_then(|c| c.level.as_deref())
    });
    match level?.to_ascii_lowercase().as_str() {
        "error" => Some(Severity::High),
        "note" => Some(Severity::Low),
        "none" => Some(Severity::Info),
        _ => Some(Severity::Medium),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &[u8] = b"test-key";

    fn result(uri: &str, snippet: Option<&str>) -> Value {
        let mut region = json!({"startLine": 3, "startColumn": 5, "endLine": 3, "endColumn": 25});
        if let Some(text) = snippet {
            region["snippet"] = json!({ "text": text });
        }
        json!({
            "ruleId": "aws-access-token",
            "message": {"text": "found AKIAQ7RZ4MWXK2PLZTJH in here"},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}, "region": region}}],
            "partialFingerprints": {"commitSha": ""},
            "properties": {"validate_command": "curl -u AKIAQ7RZ4MWXK2PLZTJH"}
        })
    }

    fn log(results: Vec<Value>, rules: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "x", "rules": rules}}, "results": results}]
        }))
        .unwrap()
    }

    #[test]
    fn results_become_redacted_namespaced_findings_at_worktree_paths() {
        let tree = Path::new("/cache/worktrees/j/tree");
        let bytes = log(
            vec![
                result(
                    "/cache/worktrees/j/tree/conf/app.ini",
                    Some("AKIAQ7RZ4MWXK2PLZTJH"),
                ),
                result(
                    "file:///cache/worktrees/j/tree/a%20b.env",
                    Some("AKIAQ7RZ4MWXK2PLZTJH"),
                ),
                result("src/x.py", Some("AKIAQ7RZ4MWXK2PLZTJH")),
                result("/etc/passwd", Some("AKIAQ7RZ4MWXK2PLZTJH")),
                result("../outside", Some("AKIAQ7RZ4MWXK2PLZTJH")),
                json!({"ruleId": 7}),
            ],
            json!([]),
        );
        let read = read(&bytes, "gitleaks", Severity::Medium, tree, KEY, Some("abc")).unwrap();
        let paths: Vec<&str> = read.found.iter().map(|f| f.place.path.as_str()).collect();
        assert_eq!(paths, ["conf/app.ini", "a b.env", "src/x.py"]);
        assert_eq!(read.skipped, 3);
        let hit = &read.found[0].hit;
        assert_eq!(hit.rule, "gitleaks/aws-access-token");
        assert_eq!(hit.line, 3);
        assert_eq!(hit.severity, Severity::Medium);
        assert_eq!(hit.secret_id, secret_id(KEY, b"AKIAQ7RZ4MWXK2PLZTJH"));
        let shown = format!("{:?}", read.found);
        assert!(!shown.contains("Q7RZ4MWXK2PLZTJH"), "{shown}");
        assert_eq!(read.found[0].place.commit.as_deref(), Some("abc"));
    }

    #[test]
    fn the_match_is_read_from_the_file_when_no_snippet_is_given() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("k.txt"),
            "one\ntwo\nkey=ghp_abcdefghijklmnopqrstuvwxyz0123456789\n",
        )
        .unwrap();
        let mut value = result("k.txt", None);
        value["locations"][0]["physicalLocation"]["region"] =
            json!({"startLine": 3, "startColumn": 5, "endColumn": 45});
        let read = read(
            &log(vec![value], json!([])),
            "e",
            Severity::Medium,
            dir.path(),
            KEY,
            None,
        )
        .unwrap();
        assert_eq!(
            read.found[0].hit.secret_id,
            secret_id(KEY, b"ghp_abcdefghijklmnopqrstuvwxyz0123456789")
        );
        assert!(read.found[0].hit.preview.starts_with("ghp_******"));
    }

    #[test]
    fn severity_comes_from_security_severity_then_level() {
        let rules = json!([
            {"id": "crit", "properties": {"security-severity": "9.1"}},
            {"id": "err", "defaultConfiguration": {"level": "error"}},
        ]);
        let mut results = Vec::new();
        for (rule, level) in [
            ("crit", None),
            ("err", None),
            ("err", Some("note")),
            ("x", None),
            ("y", Some("warning")),
        ] {
            let mut r = result("a", Some("s"));
            r["ruleId"] = json!(rule);
            if let Some(level) = level {
                r["level"] = json!(level);
            }
            results.push(r);
        }
        let read = read(
            &log(results, rules),
            "e",
            Severity::Info,
            Path::new("/w"),
            KEY,
            None,
        )
        .unwrap();
        let severities: Vec<Severity> = read.found.iter().map(|f| f.hit.severity).collect();
        assert_eq!(
            severities,
            [
                Severity::Critical,
                Severity::High,
                Severity::Low,
                Severity::Info,
                Severity::Medium
            ]
        );
    }

    #[test]
    fn documents_that_are_not_sarif_are_refused_without_quoting_them() {
        let error = read(
            b"AKIAQ7RZ4MWXK2PLZTJH not json",
            "e",
            Severity::Low,
            Path::new("/w"),
            KEY,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(!error.contains("AKIA"), "{error}");
        assert!(
            read(
                b"{\"runs\": 5}",
                "e",
                Severity::Low,
                Path::new("/w"),
                KEY,
                None
            )
            .is_err()
        );
    }
}
