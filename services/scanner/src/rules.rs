//! The rule pack of the `secrets` engine: TOML rule files (the built-in `rules/default.toml` plus
//! any user files), compiled once into regexes, a keyword prefilter ([`keywords`]) and allowlists.
//!
//! User files are merged onto the built-in pack in order: a rule whose id already exists replaces
//! it, `disable = ["rule-id", …]` drops rules, and allowlists add up. The pack's hash covers every
//! source text and the engine's matching version, so cached results of another pack never apply.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use regex_automata::meta;
use scanstream_contracts::finding::Severity;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::Error;

/// The rule pack shipped in the binary.
/// The built-in pack, in order: the base file (global allowlist and the first rules), one file
/// per family, and the generic rules.
pub const BUILTIN: &[(&str, &str)] = &[
    ("built-in rules", include_str!("../rules/default.toml")),
    (
        "built-in rules (cloud)",
        include_str!("../rules/families/cloud.toml"),
    ),
    (
        "built-in rules (devtools)",
        include_str!("../rules/families/devtools.toml"),
    ),
    (
        "built-in rules (saas)",
        include_str!("../rules/families/saas.toml"),
    ),
    (
        "built-in rules (platforms)",
        include_str!("../rules/families/platforms.toml"),
    ),
    (
        "built-in rules (ai-data)",
        include_str!("../rules/families/ai-data.toml"),
    ),
    (
        "built-in rules (commerce)",
        include_str!("../rules/families/commerce.toml"),
    ),
    (
        "built-in rules (structure)",
        include_str!("../rules/families/structure.toml"),
    ),
    (
        "built-in rules (generic)",
        include_str!("../rules/generic.toml"),
    ),
];

/// Rules whose id starts with this settle overlaps after every other rule, wherever defined.
pub const GENERIC_PREFIX: &str = "generic-";

/// Bumped whenever matching changes in a way that changes results for the same rules, so result
/// caches written by an older scanner are not reused.
const MATCHING_VERSION: &str = "secrets/4";

/// Regexes may compile to at most this much memory each; a rule file cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 16 << 20;

mod gitleaks;
pub mod keywords;
pub mod reach;

pub use reach::Reach;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    /// Descriptive only: names the pack in the file.
    #[serde(default)]
    #[allow(dead_code)]
    pack: Option<PackMeta>,
    #[serde(default)]
    allowlist: AllowlistDef,
    #[serde(default)]
    disable: Vec<String>,
    #[serde(default)]
    rules: Vec<RuleDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PackMeta {
    name: String,
    #[serde(default)]
    version: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowlistDef {
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    /// Matched (searched) against the whole line holding a match.
    #[serde(default)]
    lines: Vec<String>,
}

impl AllowlistDef {
    fn extend(&mut self, other: AllowlistDef) {
        self.paths.extend(other.paths);
        self.values.extend(other.values);
        self.stopwords.extend(other.stopwords);
        self.lines.extend(other.lines);
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    id: String,
    description: String,
    /// Content rule: what a secret looks like.
    #[serde(default)]
    regex: Option<String>,
    /// Restricts a content rule to matching paths; alone, makes a file rule: a file at a
    /// matching path is itself the secret (key stores).
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    secret_group: usize,
    #[serde(default)]
    keywords: Vec<String>,
    /// The keywords are searched in the case they are written in, not in any case: for a regex
    /// that only matches that case, where the keyword in other cases is common (`AC` of a
    /// Twilio SID against every `ac` of ordinary text).
    #[serde(default)]
    keywords_exact_case: bool,
    #[serde(default)]
    entropy: Option<f64>,
    severity: String,
    #[serde(default)]
    allowlist: AllowlistDef,
    /// The secret is the first capture group that matched (gitleaks' `secretGroup = 0`).
    #[serde(skip)]
    first_group: bool,
    /// Runs without keywords, on every content (gitleaks rules may have none).
    #[serde(skip)]
    any_content: bool,
}

/// Paths, secret values, stopwords and lines that veto a match.
#[derive(Debug)]
pub struct Allowlist {
    paths: Option<RegexSet>,
    /// Asked only of a candidate secret: built-in ones are built when first asked.
    values: Option<LazySet>,
    /// Lowercase, each with its searcher made once (a candidate secret is asked against all).
    stopwords: Vec<memchr::memmem::Finder<'static>>,
    lines: Option<LazySet>,
}

/// Something built from its source the first time it is needed, or built already. Built-in
/// rules' regexes and built-in allowlists' value and line sets wait (building them all was most
/// of a small scan's start-up, most scans need few of them, and the tests build each one);
/// anything from a user's or a repository's file is built when the pack loads, so what cannot be
/// built is an error then, not in the middle of a scan.
#[derive(Debug)]
struct Deferred<S, T> {
    /// Kept until built.
    source: Option<S>,
    /// `None` if building failed, which the tests prove of nothing built in.
    built: std::sync::OnceLock<Option<T>>,
}

impl<S, T> Deferred<S, T> {
    fn ready(value: T) -> Self {
        Self {
            source: None,
            built: std::sync::OnceLock::from(Some(value)),
        }
    }

    fn later(source: S) -> Self {
        Self {
            source: Some(source),
            built: std::sync::OnceLock::new(),
        }
    }

    /// The value, built now if it is not yet; `None` if it cannot be built (logged, with
    /// `what` says what then happens).
    fn get(&self, build: impl FnOnce(&S) -> Result<T, String>, what: &str) -> Option<&T> {
        self.built
            .get_or_init(|| match build(self.source.as_ref()?) {
                Ok(value) => Some(value),
                Err(e) => {
                    tracing::error!(error = %e, what, "a built-in rule or allowlist does not build");
                    None
                }
            })
            .as_ref()
    }
}

/// Whether `source` is one of the built-in rule files.
fn is_builtin(source: &str) -> bool {
    BUILTIN.iter().any(|(name, _)| *name == source)
}

/// Allowlist regexes asked only of candidate secrets: a built-in allowlist's are built when
/// first asked ([`Deferred`]).
#[derive(Debug)]
struct LazySet(Deferred<Vec<String>, RegexSet>);

impl LazySet {
    fn build(patterns: &[String]) -> Result<RegexSet, String> {
        RegexSetBuilder::new(patterns)
            .unicode(false)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| e.to_string())
    }

    /// The set; `None` if it cannot be built, when it allows nothing (so nothing is missed).
    fn get(&self) -> Option<&RegexSet> {
        self.0.get(
            |patterns| Self::build(patterns),
            "the allowlist allows nothing",
        )
    }
}

impl Allowlist {
    /// Compiles `def` from `source`; `builtin` defers the sets only candidates need.
    fn compile(def: &AllowlistDef, source: &str, builtin: bool) -> Result<Self, Error> {
        let problem =
            |what: &str, e: String| Error::Rules(format!("{source}: {what} allowlist: {e}"));
        let lazy = |patterns: &[String], what: &str| -> Result<Option<LazySet>, Error> {
            if patterns.is_empty() {
                return Ok(None);
            }
            let patterns = patterns.to_vec();
            Ok(Some(LazySet(if builtin {
                Deferred::later(patterns)
            } else {
                Deferred::ready(LazySet::build(&patterns).map_err(|e| problem(what, e))?)
            })))
        };
        let paths = if def.paths.is_empty() {
            None
        } else {
            Some(LazySet::build(&def.paths).map_err(|e| problem("path", e))?)
        };
        Ok(Self {
            paths,
            values: lazy(&def.values, "value")?,
            stopwords: def
                .stopwords
                .iter()
                .map(|s| memchr::memmem::Finder::new(&s.to_lowercase()).into_owned())
                .collect(),
            lines: lazy(&def.lines, "line")?,
        })
    }

    /// True when the line holding a match is allowlisted.
    pub fn allows_line(&self, line: &[u8]) -> bool {
        self.lines
            .as_ref()
            .and_then(LazySet::get)
            .is_some_and(|set| set.is_match(line))
    }

    /// True when `path` is allowlisted.
    pub fn allows_path(&self, path: &str) -> bool {
        self.paths
            .as_ref()
            .is_some_and(|set| set.is_match(path.as_bytes()))
    }

    /// Whether any path is allowlisted.
    pub fn has_paths(&self) -> bool {
        self.paths.is_some()
    }

    /// True when the secret value is allowlisted (a value regex or a stopword matches).
    pub fn allows_value(&self, secret: &[u8]) -> bool {
        if self
            .values
            .as_ref()
            .and_then(LazySet::get)
            .is_some_and(|set| set.is_match(secret))
        {
            return true;
        }
        if self.stopwords.is_empty() {
            return false;
        }
        let lower = secret.to_ascii_lowercase();
        self.stopwords.iter().any(|w| w.find(&lower).is_some())
    }
}

/// One compiled rule: a content rule (`regex`, optionally only at `path`), or a file rule (only
/// `path`: a file there is reported whole).
#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub description: String,
    /// Matches searched in a span of a blob, look-around seeing past its ends.
    pub regex: Option<RuleRegex>,
    /// Where matches lie relative to the rule's keywords, when the regex proves it: the regex
    /// then runs only near the keyword occurrences.
    pub reach: Option<Reach>,
    pub path: Option<Regex>,
    pub secret_group: usize,
    /// The secret is the first capture group that matched, else the whole match.
    pub first_group: bool,
    pub entropy: Option<f64>,
    pub severity: Severity,
    pub allowlist: Allowlist,
}

impl Rule {
    /// Whether the rule reports at some paths only (a `path` or allowlisted paths of its own):
    /// its matches are settled against other rules' per path ([`crate::engine::Hit::shadowed_by`]).
    pub fn depends_on_path(&self) -> bool {
        self.path.is_some() || self.allowlist.has_paths()
    }

    /// Whether the rule reports a match found in a blob at `path` (the pack's allowlist aside).
    pub fn applies_at(&self, path: &str) -> bool {
        !self.allowlist.allows_path(path)
            && self
                .path
                .as_ref()
                .is_none_or(|p| p.is_match(path.as_bytes()))
    }
}

/// A content rule's regex: a built-in rule's is built the first time a scan needs it
/// ([`Deferred`]).
#[derive(Debug)]
pub struct RuleRegex(Deferred<regex_syntax::hir::Hir, meta::Regex>);

impl RuleRegex {
    /// Builds the matcher; the error is the builder's message.
    fn build(hir: &regex_syntax::hir::Hir) -> Result<meta::Regex, String> {
        meta::Builder::new()
            .configure(
                meta::Config::new()
                    .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                    .utf8_empty(false),
            )
            .build_from_hir(hir)
            .map_err(|e| e.to_string())
    }

    /// The regex; `None` if it cannot be built, when the rule does not run.
    pub fn get(&self) -> Option<&meta::Regex> {
        self.0.get(Self::build, "the rule does not run")
    }
}

/// Every rule, the keyword prefilter and the global allowlist.
#[derive(Debug)]
pub struct RulePack {
    pub rules: Vec<Rule>,
    pub allowlist: Allowlist,
    /// Finds every rule keyword, ASCII case-insensitively.
    pub keywords: keywords::Keywords,
    /// For keyword pattern `i`, the indexes of the rules it triggers.
    pub keyword_rules: Vec<Vec<usize>>,
    /// Per rule: whether its regex runs only near its keywords' occurrences (it has a
    /// [`Rule::reach`]); kept apart from the rules so the keyword pass reads one small table.
    pub searched_near: Vec<bool>,
    /// Content rules without keywords (from gitleaks files): they run on every content.
    pub always: Vec<usize>,
    /// File rules (a path, no regex), and one set of their paths: a path that matches none,
    /// as nearly every path, is settled by one search instead of one per rule.
    pub file_rules: Vec<usize>,
    pub file_paths: Option<RegexSet>,
    hash: String,
}

impl RulePack {
    /// The built-in pack.
    pub fn builtin() -> Result<Self, Error> {
        Self::from_sources(BUILTIN)
    }

    /// The built-in pack merged with the user rule files, in order.
    pub fn load(user_files: &[impl AsRef<Path>]) -> Result<Self, Error> {
        Self::with_user_files(user_files, None)
    }

    /// The built-in pack merged with the user rule files, then a scanned repository's own
    /// `.gitleaks.toml` text (whose `[extend] path` is refused: a repository may not make the
    /// scanner read its files).
    pub fn load_with_repository(
        user_files: &[impl AsRef<Path>],
        repository: &str,
    ) -> Result<Self, Error> {
        Self::with_user_files(user_files, Some(repository))
    }

    fn with_user_files(
        user_files: &[impl AsRef<Path>],
        repository: Option<&str>,
    ) -> Result<Self, Error> {
        let mut read: Vec<(String, String)> = Vec::with_capacity(user_files.len());
        for path in user_files {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::Rules(format!("cannot read rule file {}: {e}", path.display()))
            })?;
            read.push((path.display().to_string(), text));
        }
        let mut sources: Vec<(&str, &str)> = BUILTIN.to_vec();
        sources.extend(
            read.iter()
                .map(|(name, text)| (name.as_str(), text.as_str())),
        );
        sources.extend(repository.map(|text| (REPOSITORY_SOURCE, text)));
        Self::from_sources(&sources)
    }

    /// Merges and compiles `(name, TOML text)` sources; the first is the base pack. Rules keep
    /// the order they are first defined in, except that generic rules come last.
    pub fn from_sources(sources: &[(&str, &str)]) -> Result<Self, Error> {
        let mut hasher = Sha256::new();
        hasher.update(MATCHING_VERSION.as_bytes());
        let mut defs: BTreeMap<String, (usize, RuleDef, String)> = BTreeMap::new();
        let mut allow = AllowlistDef::default();
        // Whether the global allowlist comes from built-in files alone.
        let mut allow_builtin = true;
        let mut order = 0;
        let mut files: Vec<(String, PackFile)> = Vec::new();
        // Parsed on every core; read in order (a gitleaks file's conversion looks at the files
        // before it).
        let parsed: Vec<Result<Parsed, Error>> = sources
            .par_iter()
            .map(|(name, text)| parse_source(name, text))
            .collect();
        for ((name, text), parsed) in sources.iter().zip(parsed) {
            hasher.update([0]);
            hasher.update(text.as_bytes());
            read_source(name, parsed?, 0, &mut files, &mut hasher)?;
        }
        for (name, file) in files {
            let name = name.as_str();
            for id in &file.disable {
                if defs.remove(id).is_none() {
                    return Err(Error::Rules(format!(
                        "{name}: disable names unknown rule {id:?}"
                    )));
                }
            }
            let contributes = !(file.allowlist.paths.is_empty()
                && file.allowlist.values.is_empty()
                && file.allowlist.stopwords.is_empty()
                && file.allowlist.lines.is_empty());
            if contributes && !is_builtin(name) {
                allow_builtin = false;
            }
            allow.extend(file.allowlist);
            for rule in file.rules {
                let position = defs.get(&rule.id).map_or_else(
                    || {
                        order += 1;
                        order
                    },
                    |(position, _, _)| *position,
                );
                defs.insert(rule.id.clone(), (position, rule, (*name).to_owned()));
            }
        }
        let mut ordered: Vec<(usize, RuleDef, String)> = defs.into_values().collect();
        ordered.sort_by_key(|(position, def, _)| (def.id.starts_with(GENERIC_PREFIX), *position));
        // Compiling hundreds of regexes, the keyword prefilter and the allowlist is most of a
        // scan's start-up: the regexes are spread over the threads, the prefilter (the longest
        // single piece) and the allowlist compiled beside them.
        let (rules, (keywords, allowlist)) = rayon::join(
            || compile_rules(&ordered),
            || {
                rayon::join(
                    || keyword_index(ordered.iter().map(|(_, def, _)| def)),
                    || Allowlist::compile(&allow, "allowlist", allow_builtin),
                )
            },
        );
        let (rules, file_rules, file_paths) = rules?;
        let (keywords, keyword_rules) = keywords?;
        let always: Vec<usize> = ordered
            .iter()
            .enumerate()
            .filter(|(_, (_, def, _))| def.regex.is_some() && def.keywords.is_empty())
            .map(|(index, _)| index)
            .collect();
        let searched_near = rules.iter().map(|rule| rule.reach.is_some()).collect();
        Ok(Self {
            rules,
            allowlist: allowlist?,
            keywords,
            keyword_rules,
            searched_near,
            always,
            file_rules,
            file_paths,
            hash: hex::encode(hasher.finalize()),
        })
    }

    /// Hex SHA-256 over every source and the matching version.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

/// Compiled rules, the indexes of the file rules (a path and no regex) among them, and those
/// rules' paths as one set.
type CompiledRules = (Vec<Rule>, Vec<usize>, Option<RegexSet>);

/// The rules of `ordered` (position, definition, source), compiled on every thread.
fn compile_rules(ordered: &[(usize, RuleDef, String)]) -> Result<CompiledRules, Error> {
    let rules = ordered
        .par_iter()
        .map(|(_, def, source)| compile_rule(def, source, is_builtin(source)))
        .collect::<Result<Vec<_>, _>>()?;
    if rules.is_empty() {
        return Err(Error::Rules("the rule pack has no rules".into()));
    }
    let file_rules: Vec<usize> = rules
        .iter()
        .enumerate()
        .filter(|(_, rule)| rule.regex.is_none() && rule.path.is_some())
        .map(|(index, _)| index)
        .collect();
    let file_paths = if file_rules.is_empty() {
        None
    } else {
        let patterns = file_rules
            .iter()
            .filter_map(|&index| rules[index].path.as_ref().map(Regex::as_str));
        // Each pattern compiled alone within the limit: together within their sum.
        Some(
            RegexSetBuilder::new(patterns)
                .unicode(false)
                .size_limit(REGEX_SIZE_LIMIT.saturating_mul(file_rules.len()))
                .build()
                .map_err(|e| Error::Rules(format!("file rule paths: {e}")))?,
        )
    };
    Ok((rules, file_rules, file_paths))
}

/// The keyword prefilter of `defs` (in pack order), and for each of its keywords the rules (by
/// index) it triggers.
fn keyword_index<'a>(
    defs: impl Iterator<Item = &'a RuleDef>,
) -> Result<(keywords::Keywords, Vec<Vec<usize>>), Error> {
    let mut keywords: Vec<keywords::Keyword> = Vec::new();
    let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
    for (index, def) in defs.enumerate() {
        for keyword in &def.keywords {
            let keyword = if def.keywords_exact_case {
                keywords::Keyword::exact(keyword)
            } else {
                keywords::Keyword::any_case(keyword)
            };
            match keywords.iter().position(|k| *k == keyword) {
                Some(at) => keyword_rules[at].push(index),
                None => {
                    keywords.push(keyword);
                    keyword_rules.push(vec![index]);
                }
            }
        }
    }
    Ok((keywords::Keywords::new(&keywords)?, keyword_rules))
}

/// The name of a scanned repository's own rule file among the sources.
const REPOSITORY_SOURCE: &str = "the repository's .gitleaks.toml";

/// How deep gitleaks `[extend] path` chains may go.
const MAX_EXTEND_DEPTH: usize = 2;

/// Reads one source into `files`: a scanstream rule file as it is; a gitleaks file converted,
/// after the files it extends, with a `disable` of every rule so far unless it extends the
/// default.
fn read_source(
    name: &str,
    parsed: Parsed,
    depth: usize,
    files: &mut Vec<(String, PackFile)>,
    hasher: &mut Sha256,
) -> Result<(), Error> {
    let table = match parsed {
        Parsed::Pack(file) => {
            files.push((name.to_owned(), file));
            return Ok(());
        }
        Parsed::Gitleaks(table) => table,
    };
    let dir = Path::new(name).parent().filter(|d| d.is_dir());
    let converted = gitleaks::convert(name, &table, dir)?;
    for path in &converted.extends {
        if name == REPOSITORY_SOURCE {
            return Err(Error::Rules(format!(
                "{name}: [extend] path is not honoured in a scanned repository's rules"
            )));
        }
        if depth >= MAX_EXTEND_DEPTH {
            return Err(Error::Rules(format!(
                "{name}: [extend] path goes deeper than {MAX_EXTEND_DEPTH} files"
            )));
        }
        let extended = std::fs::read_to_string(path).map_err(|e| {
            Error::Rules(format!(
                "{name}: cannot read [extend] path {}: {e}",
                path.display()
            ))
        })?;
        hasher.update([0]);
        hasher.update(extended.as_bytes());
        let path = path.display().to_string();
        read_source(
            &path,
            parse_source(&path, &extended)?,
            depth + 1,
            files,
            hasher,
        )?;
    }
    let mut file = converted.file;
    if converted.replaces_builtin && depth == 0 {
        // Only the rules of this file, what it extends and other user files stay.
        let mut seen = std::collections::BTreeSet::new();
        file.disable = files
            .iter()
            .filter(|(n, _)| n.starts_with("built-in"))
            .flat_map(|(_, f)| f.rules.iter().map(|r| r.id.clone()))
            .filter(|id| seen.insert(id.clone()))
            .collect();
    } else {
        // gitleaks' own rule ids are not scanstream's: only those the pack has are disabled.
        let defined: Vec<&str> = files
            .iter()
            .flat_map(|(_, f)| f.rules.iter().map(|r| r.id.as_str()))
            .collect();
        file.disable = converted
            .disabled
            .into_iter()
            .filter(|id| defined.contains(&id.as_str()))
            .collect();
    }
    files.push((name.to_owned(), file));
    Ok(())
}

/// A rule file, parsed.
enum Parsed {
    Pack(PackFile),
    /// A gitleaks configuration, converted when it is read.
    Gitleaks(toml::Table),
}

/// Parses the rule file `name` holding `text`: a scanstream rule file or a gitleaks
/// configuration.
fn parse_source(name: &str, text: &str) -> Result<Parsed, Error> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| Error::Rules(format!("{name}: {e}")))?;
    if gitleaks::is_gitleaks(&table) {
        return Ok(Parsed::Gitleaks(table));
    }
    // From the table already parsed; a file that does not fit is parsed again from its text,
    // for an error that gives the line.
    match toml::Value::Table(table).try_into::<PackFile>() {
        Ok(file) => Ok(Parsed::Pack(file)),
        Err(_) => match toml::from_str::<PackFile>(text) {
            Ok(file) => Ok(Parsed::Pack(file)),
            Err(e) => Err(Error::Rules(format!("{name}: {e}"))),
        },
    }
}

/// Compiles one rule; a built-in rule's regex is checked but built when first used.
fn compile_rule(def: &RuleDef, source: &str, builtin: bool) -> Result<Rule, Error> {
    let at = |problem: String| Error::Rules(format!("{source}: rule {:?}: {problem}", def.id));
    if def.id.is_empty()
        || !def
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(at(
            "id must be ASCII letters, digits, '-', '_' or '.'".into()
        ));
    }
    let compile = |pattern: &str, what: &str| {
        // ASCII semantics for `\b`, `\w`, `\s` and `(?i)`: the rules are ASCII, and a Unicode
        // word boundary makes the fast lazy DFA give up on any non-ASCII byte (source files
        // are full of them), falling back to a much slower engine.
        RegexBuilder::new(pattern)
            .unicode(false)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| at(format!("{what}: {e}")))
    };
    let path = def
        .path
        .as_deref()
        .map(|p| compile(p, "path"))
        .transpose()?;
    let mut reach = None;
    let regex = match &def.regex {
        Some(pattern) => {
            if (def.keywords.is_empty() && !def.any_content)
                || def.keywords.iter().any(|k| k.is_empty())
            {
                return Err(at(
                    "needs at least one non-empty keyword for the prefilter".into()
                ));
            }
            // The same syntax as `compile`: parsed once, for the reach and the matcher.
            let hir = regex_syntax::ParserBuilder::new()
                .unicode(false)
                .utf8(false)
                .build()
                .parse(pattern)
                .map_err(|e| at(format!("regex: {e}")))?;
            // Keywords in exact case mark no occurrence in another case, where a regex that
            // ignores case may still start a match: such a rule searches around them instead.
            reach = reach::reach(&hir, &def.keywords).map(|reach| Reach {
                at_keyword: reach.at_keyword && !def.keywords_exact_case,
                ..reach
            });
            let groups = hir.properties().explicit_captures_len();
            if def.secret_group > groups {
                return Err(at(format!(
                    "secret_group {} but the regex has {groups} groups",
                    def.secret_group,
                )));
            }
            Some(RuleRegex(if builtin {
                Deferred::later(hir)
            } else {
                Deferred::ready(RuleRegex::build(&hir).map_err(|e| at(format!("regex: {e}")))?)
            }))
        }
        None if path.is_none() => {
            return Err(at("needs a regex, a path, or both".into()));
        }
        None if !def.keywords.is_empty() => {
            return Err(at("keywords apply only to rules with a regex".into()));
        }
        None => None,
    };
    let severity = match def.severity.to_ascii_lowercase().as_str() {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        "low" => Severity::Low,
        "info" => Severity::Info,
        other => {
            return Err(at(format!(
                "severity {other:?} is not critical, high, medium, low or info"
            )));
        }
    };
    if let Some(entropy) = def.entropy
        && !(0.0..=8.0).contains(&entropy)
    {
        return Err(at("entropy must be between 0 and 8 bits per byte".into()));
    }
    Ok(Rule {
        id: def.id.clone(),
        description: def.description.clone(),
        regex,
        reach,
        path,
        secret_group: def.secret_group,
        first_group: def.first_group,
        entropy: def.entropy,
        severity,
        allowlist: Allowlist::compile(&def.allowlist, source, builtin)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(extra: &str) -> Result<RulePack, Error> {
        let mut sources = BUILTIN.to_vec();
        sources.push(("user.toml", extra));
        RulePack::from_sources(&sources)
    }

    #[test]
    fn a_stopword_drops_a_secret_holding_it_in_any_case() {
        let pack = pack(
            "[allowlist]\nstopwords = [\"Sandbox\"]\n[[rules]]\nid = \"x\"\ndescription = \"d\"\n\
             regex = \"a\"\nkeywords = [\"a\"]\nseverity = \"low\"\n\
             [rules.allowlist]\nstopwords = [\"notreal\"]\n",
        )
        .unwrap();
        let rule = pack.rules.iter().find(|r| r.id == "x").unwrap();
        for secret in ["sk_SANDBOX_4eC39HqLyjWD", "key-sandbox", "example-key"] {
            assert!(pack.allowlist.allows_value(secret.as_bytes()), "{secret}");
        }
        assert!(rule.allowlist.allows_value(b"tok_NotReal_abc"));
        for secret in ["sk_live_4eC39HqLyjWD", "sandbo-x"] {
            assert!(!pack.allowlist.allows_value(secret.as_bytes()), "{secret}");
            assert!(!rule.allowlist.allows_value(secret.as_bytes()), "{secret}");
        }
    }

    #[test]
    fn the_builtin_pack_compiles_with_unique_ids() {
        let pack = RulePack::builtin().unwrap();
        let mut ids: Vec<&str> = pack.rules.iter().map(|r| r.id.as_str()).collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count);
        assert!(count >= 25, "only {count} rules");
        // Built-in allowlists' value and line sets are built when first needed: each must build.
        let deferred = |a: &Allowlist| {
            for set in [&a.values, &a.lines].into_iter().flatten() {
                let patterns = set.0.source.as_ref().expect("built-in: not built yet");
                LazySet::build(patterns).unwrap();
            }
        };
        deferred(&pack.allowlist);
        pack.rules.iter().for_each(|rule| deferred(&rule.allowlist));
        // Built-in regexes are built when first used: each must build, and have the groups its
        // rule names.
        for rule in &pack.rules {
            if let Some(regex) = &rule.regex {
                let built =
                    RuleRegex::build(regex.0.source.as_ref().expect("built-in: not built yet"))
                        .unwrap_or_else(|e| panic!("rule {}: {e}", rule.id));
                assert!(rule.secret_group < built.captures_len(), "rule {}", rule.id);
            }
        }
    }

    #[test]
    fn user_files_replace_disable_and_add_rules_and_change_the_hash() {
        let base = RulePack::builtin().unwrap();
        let merged = pack(
            r#"
disable = ["jwt"]
[[rules]]
id = "internal-token"
description = "Our own tokens"
regex = '''itk_[a-z0-9]{20}'''
keywords = ["itk_"]
severity = "high"
"#,
        )
        .unwrap();
        assert!(merged.rules.iter().any(|r| r.id == "internal-token"));
        assert!(!merged.rules.iter().any(|r| r.id == "jwt"));
        assert_ne!(merged.hash(), base.hash());
    }

    #[test]
    fn bad_rule_files_are_clear_errors() {
        for (text, needle) in [
            (
                "[[rules]]\nid = \"x\"\ndescription = \"d\"\nseverity = \"high\"\n",
                "a regex, a path",
            ),
            (
                "[[rules]]\nid = \"x\"\ndescription = \"d\"\npath = \"(\"\nseverity = \"high\"\n",
                "path",
            ),
            (
                "[[rules]]\nid = \"x\"\ndescription = \"d\"\npath = \"a\"\nkeywords = [\"a\"]\nseverity = \"high\"\n",
                "keywords apply only",
            ),
            (
                "[[rules]]\nid = \"x\"\ndescription = \"d\"\nregex = \"(\"\nkeywords = [\"a\"]\nseverity = \"high\"\n",
                "regex",
            ),
            (
                "[[rules]]\nid = \"x\"\ndescription = \"d\"\nregex = \"a\"\nkeywords = []\nseverity = \"high\"\n",
                "keyword",
            ),
            (
                "[[rules]]\nid = \"x\"\ndescription = \"d\"\nregex = \"a\"\nkeywords = [\"a\"]\nseverity = \"urgent\"\n",
                "severity",
            ),
            (
                "[[rules]]\nid = \"x\"\ndescription = \"d\"\nregex = \"a\"\nsecret_group = 2\nkeywords = [\"a\"]\nseverity = \"low\"\n",
                "secret_group",
            ),
            // Built-in rules and allowlists are built when first needed; a user's still when
            // the pack loads.
            ("[allowlist]\nvalues = [\"(\"]\n", "value allowlist"),
            (
                "[[rules]]\nid = \"x\"\ndescription = \"d\"\nregex = \"a\"\nkeywords = [\"a\"]\nseverity = \"low\"\n[rules.allowlist]\nlines = [\"[\"]\n",
                "line allowlist",
            ),
            (
                "[[rules]]\nid = \"x\"\ndescription = \"d\"\nregex = \"\\\\w{1000}{1000}\"\nkeywords = [\"a\"]\nseverity = \"low\"\n",
                "error building",
            ),
            ("disable = [\"no-such-rule\"]\n", "unknown rule"),
            ("[[rules]]\nid = \"x\"\nbogus = 1\n", "bogus"),
        ] {
            match pack(text) {
                Err(e) => assert!(e.to_string().contains(needle), "{e} lacks {needle}"),
                Ok(_) => panic!("accepted {text}"),
            }
        }
    }
}
