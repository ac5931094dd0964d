//! Rule files in gitleaks' TOML format, read as they are so a gitleaks user switches without
//! rewriting: `[[rules]]` (`id`, `description`, `regex`, `secretGroup`, `entropy`, `keywords`,
//! `path`, `[rules.allowlist]` and `[[rules.allowlists]]`), the global `[allowlist]` and
//! `[[allowlists]]` (with `targetRules`), and `[extend]` (`useDefault`, `path`,
//! `disabledRules`). Keys are matched case-insensitively, as gitleaks does.
//!
//! What differs, and why:
//! - `useDefault = true` extends scanstream's built-in pack (gitleaks' own rules are not ours
//!   to ship); without it, the file's rules replace the built-in ones (the global allowlist of
//!   lock files, binaries and placeholders stays).
//! - gitleaks has no severities: its rules report `high`.
//! - Allowlist `regexTarget = "match"` is checked against the whole line holding the match
//!   (a superset: a regex that matches inside the match matches the line). `commits` are not
//!   applied (a finding names the commit that introduced it; allowlist it by fingerprint).
//!   `condition = "AND"` is refused: its meaning cannot be kept with these allowlists.
//! - `[extend] url` is refused: scans never fetch rules from the network.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{AllowlistDef, PackFile, RuleDef};
use crate::Error;

/// gitleaks rules without a severity report this one.
const SEVERITY: &str = "high";

/// A gitleaks file read into the pack format.
#[derive(Debug)]
pub(super) struct Converted {
    pub file: PackFile,
    /// `useDefault` was not set: drop the rules defined before this file.
    pub replaces_builtin: bool,
    /// Rule ids named by `disabledRules` that the pack may not have (gitleaks' own ids).
    pub disabled: Vec<String>,
    /// Files named by `[extend] path`, to read before this one.
    pub extends: Vec<PathBuf>,
}

/// True when `text` is a gitleaks file rather than one in scanstream's own format: gitleaks-only
/// keys at the top or in a rule, or a rule without a `severity` (which scanstream requires).
pub(super) fn is_gitleaks(table: &Table) -> bool {
    let top = ["title", "extend", "allowlists", "minversion"];
    if table
        .keys()
        .any(|k| top.contains(&k.to_ascii_lowercase().as_str()))
    {
        return true;
    }
    let Some(Value::Array(rules)) = table.get("rules") else {
        return false;
    };
    // A key neither format knows: read as scanstream's, whose error names it.
    let known = [
        "id",
        "description",
        "regex",
        "secretgroup",
        "entropy",
        "keywords",
        "path",
        "tags",
        "allowlist",
        "allowlists",
        "required",
        "skipreport",
    ];
    let rules: Vec<&Table> = rules.iter().filter_map(Value::as_table).collect();
    rules.iter().all(|rule| {
        rule.keys()
            .all(|k| known.contains(&k.to_ascii_lowercase().as_str()))
    }) && rules.iter().any(|rule| {
        let gitleaks_only = [
            "secretgroup",
            "tags",
            "allowlists",
            "skipreport",
            "required",
        ];
        rule.keys()
            .any(|k| gitleaks_only.contains(&k.to_ascii_lowercase().as_str()))
            || !rule.contains_key("severity")
    })
}

/// The value of `key` in `table`, whatever its case.
fn get<'a>(table: &'a Table, key: &str) -> Option<&'a Value> {
    table
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn string(table: &Table, key: &str, at: &str) -> Result<Option<String>, Error> {
    match get(table, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::Rules(format!(
            "{at}: {key} must be a string, not {}",
            other.type_str()
        ))),
    }
}

fn strings(table: &Table, key: &str, at: &str) -> Result<Vec<String>, Error> {
    match get(table, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Error::Rules(format!("{at}: {key} must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(Error::Rules(format!(
            "{at}: {key} must be a list of strings"
        ))),
    }
}

/// The allowlists of a rule or of the file (`allowlist` table and `allowlists` array), merged.
/// Returns the merged allowlist and, for global ones, the rules each applies to (empty: all).
fn allowlists(table: &Table, at: &str) -> Result<Vec<(AllowlistDef, Vec<String>)>, Error> {
    let mut tables: Vec<&Table> = Vec::new();
    for key in ["allowlist", "allowlists"] {
        match get(table, key) {
            None => {}
            Some(Value::Table(t)) => tables.push(t),
            Some(Value::Array(items)) => {
                for item in items {
                    tables
                        .push(item.as_table().ok_or_else(|| {
                            Error::Rules(format!("{at}: {key} must hold tables"))
                        })?);
                }
            }
            Some(_) => return Err(Error::Rules(format!("{at}: {key} must be a table"))),
        }
    }
    let mut out = Vec::new();
    for t in tables {
        if let Some(condition) = string(t, "condition", at)?
            && !condition.eq_ignore_ascii_case("or")
        {
            return Err(Error::Rules(format!(
                "{at}: allowlist condition {condition:?} is not supported (only OR, the default)"
            )));
        }
        let regexes = strings(t, "regexes", at)?;
        let target = string(t, "regexTarget", at)?.unwrap_or_else(|| "secret".to_owned());
        let mut def = AllowlistDef {
            paths: strings(t, "paths", at)?,
            stopwords: strings(t, "stopwords", at)?,
            ..AllowlistDef::default()
        };
        match target.to_ascii_lowercase().as_str() {
            "secret" => def.values = regexes,
            "match" | "line" => def.lines = regexes,
            other => {
                return Err(Error::Rules(format!(
                    "{at}: regexTarget {other:?} is not secret, match or line"
                )));
            }
        }
        out.push((def, strings(t, "targetRules", at)?));
    }
    Ok(out)
}

/// Converts a gitleaks file (`name` for errors, `dir` for relative `[extend] path`s).
pub(super) fn convert(name: &str, table: &Table, dir: Option<&Path>) -> Result<Converted, Error> {
    let mut file = PackFile::default();
    let mut extends = Vec::new();
    let mut use_default = false;
    let mut disabled = Vec::new();
    if let Some(extend) = get(table, "extend") {
        let extend = extend
            .as_table()
            .ok_or_else(|| Error::Rules(format!("{name}: extend must be a table")))?;
        use_default = matches!(get(extend, "useDefault"), Some(Value::Boolean(true)));
        if get(extend, "url").is_some() {
            return Err(Error::Rules(format!(
                "{name}: [extend] url is not supported: scans never fetch rules; download the \
                 file and name it with [extend] path"
            )));
        }
        if let Some(path) = string(extend, "path", name)? {
            let path = PathBuf::from(path);
            extends.push(match dir {
                Some(dir) if path.is_relative() => dir.join(path),
                _ => path,
            });
        }
        disabled = strings(extend, "disabledRules", name)?;
    }
    let mut targeted: Vec<(AllowlistDef, Vec<String>)> = Vec::new();
    for (def, targets) in allowlists(table, name)? {
        if targets.is_empty() {
            file.allowlist.extend(def);
        } else {
            targeted.push((def, targets));
        }
    }
    let rules = match get(table, "rules") {
        None => Vec::new(),
        Some(Value::Array(rules)) => rules.clone(),
        Some(_) => return Err(Error::Rules(format!("{name}: rules must be an array"))),
    };
    for (index, rule) in rules.iter().enumerate() {
        let rule = rule
            .as_table()
            .ok_or_else(|| Error::Rules(format!("{name}: rules[{index}] must be a table")))?;
        let id = string(rule, "id", name)?
            .ok_or_else(|| Error::Rules(format!("{name}: rules[{index}] has no id")))?;
        let at = format!("{name}: rule {id:?}");
        let secret_group = match get(rule, "secretGroup") {
            None => None,
            Some(Value::Integer(n)) if *n >= 0 => Some(usize::try_from(*n).unwrap_or(0)),
            Some(_) => {
                return Err(Error::Rules(format!(
                    "{at}: secretGroup must be a non-negative integer"
                )));
            }
        };
        let entropy = match get(rule, "entropy") {
            None => None,
            Some(Value::Float(f)) => Some(*f),
            Some(Value::Integer(n)) => Some(*n as f64),
            Some(_) => return Err(Error::Rules(format!("{at}: entropy must be a number"))),
        };
        let mut allowlist = AllowlistDef::default();
        for (def, _) in allowlists(rule, &at)? {
            allowlist.extend(def);
        }
        for (def, targets) in &targeted {
            if targets.contains(&id) {
                allowlist.extend(def.clone());
            }
        }
        let keywords: Vec<String> = strings(rule, "keywords", &at)?
            .into_iter()
            .map(|k| k.to_ascii_lowercase())
            .filter(|k| !k.is_empty())
            .collect();
        file.rules.push(RuleDef {
            description: string(rule, "description", &at)?.unwrap_or_else(|| id.clone()),
            regex: string(rule, "regex", &at)?,
            path: string(rule, "path", &at)?,
            // gitleaks: 0 or unset means the first capture group that matched, else the match.
            secret_group: secret_group.unwrap_or(0),
            first_group: secret_group.unwrap_or(0) == 0,
            keywords,
            // gitleaks matches keywords in any case.
            keywords_exact_case: false,
            entropy,
            severity: SEVERITY.to_owned(),
            allowlist,
            any_content: true,
            id,
        });
    }
    Ok(Converted {
        file,
        replaces_builtin: !use_default,
        disabled,
        extends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn gitleaks_files_are_told_from_scanstream_files() {
        assert!(is_gitleaks(&parse("title = \"x\"\n")));
        assert!(is_gitleaks(&parse("[extend]\nuseDefault = true\n")));
        assert!(is_gitleaks(&parse(
            "[[rules]]\nid = \"a\"\nregex = '''x'''\nsecretGroup = 1\n"
        )));
        assert!(is_gitleaks(&parse(
            "[[rules]]\nid = \"a\"\nregex = '''x'''\n"
        )));
        assert!(!is_gitleaks(&parse(
            "[[rules]]\nid = \"a\"\ndescription = \"d\"\nregex = '''x'''\nkeywords = [\"x\"]\nseverity = \"low\"\n"
        )));
        assert!(!is_gitleaks(&parse("disable = [\"jwt\"]\n")));
    }

    #[test]
    fn rules_allowlists_and_extend_are_converted() {
        let table = parse(
            r#"
title = "ours"
[extend]
useDefault = true
disabledRules = ["generic-api-key"]
[allowlist]
paths = ['''(^|/)fixtures/''']
[[allowlists]]
targetRules = ["internal-token"]
regexTarget = "line"
regexes = ['''# test only''']
[[rules]]
id = "internal-token"
description = "Internal token"
regex = '''itk_([a-z0-9]{32})'''
entropy = 3
keywords = ["ITK_"]
[rules.allowlist]
stopWords = ["deadbeef"]
[[rules]]
id = "by-path"
path = '''\.secret$'''
"#,
        );
        assert!(is_gitleaks(&table));
        let c = convert("g.toml", &table, None).unwrap();
        assert!(!c.replaces_builtin);
        assert_eq!(c.disabled, vec!["generic-api-key".to_owned()]);
        assert_eq!(c.file.allowlist.paths, vec!["(^|/)fixtures/".to_owned()]);
        let rule = &c.file.rules[0];
        assert_eq!(rule.id, "internal-token");
        assert_eq!(rule.keywords, vec!["itk_".to_owned()]);
        assert!(rule.first_group);
        assert_eq!(rule.entropy, Some(3.0));
        assert_eq!(rule.severity, "high");
        assert_eq!(rule.allowlist.stopwords, vec!["deadbeef".to_owned()]);
        assert_eq!(rule.allowlist.lines, vec!["# test only".to_owned()]);
        assert_eq!(c.file.rules[1].path.as_deref(), Some(r"\.secret$"));
        assert!(c.file.rules[1].regex.is_none());
    }

    #[test]
    fn unsupported_settings_are_refused_with_a_reason() {
        let and = parse("[allowlist]\ncondition = \"AND\"\nregexes = ['''x''']\n");
        let err = convert("g.toml", &and, None).unwrap_err().to_string();
        assert!(err.contains("condition \"AND\""), "{err}");
        let url = parse("[extend]\nurl = \"https://example.test/rules.toml\"\n");
        let err = convert("g.toml", &url, None).unwrap_err().to_string();
        assert!(err.contains("never fetch"), "{err}");
        let target = parse(
            "[[rules]]\nid = \"a\"\nregex = '''x'''\n[rules.allowlist]\nregexTarget = \"path\"\nregexes = ['''x''']\n",
        );
        assert!(convert("g.toml", &target, None).is_err());
    }
}
