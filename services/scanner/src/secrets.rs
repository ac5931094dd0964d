//! The built-in `secrets` engine: keyword prefilter, rule regexes, entropy and allowlists.
//!
//! For each blob, one Vectorscan pass ([`crate::rules::keywords`]) finds which rules' keywords
//! occur; only those rules' regexes run. A candidate secret is dropped when its entropy is below
//! the rule's minimum, when an allowlist matches it, or when its line carries the inline marker
//! [`ALLOW_MARKER`]. When two rules match overlapping text, the earlier rule in the pack wins
//! (specific rules come before the generic one), so a secret is reported once.
//!
//! A blob larger than the runner's window is scanned one window after another (`Windows`):
//! each rule's regex resumes in the next window where its last match ended, each window reports
//! the matches that start in the part it owns, and overlaps between rules are settled over the
//! whole blob, so the hits are the ones a scan of the whole content would give.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::decode;
use crate::engine::{Engine, Hit, RuleInfo, Window, WindowScan};
use crate::rules::{Reach, RulePack};
use regex_automata::util::captures::Captures;
use regex_automata::{Anchored, Input, meta};

/// A line holding this text is never reported (for test fixtures and documented examples).
pub const ALLOW_MARKER: &[u8] = b"scanstream:allow";

/// Inline markers that silence their line: ours and gitleaks' (honoured so a repository that
/// uses gitleaks needs no edits).
const ALLOW_MARKERS: [&[u8]; 2] = [ALLOW_MARKER, b"gitleaks:allow"];

/// Part of the result cache key besides the rule pack's hash (which covers the rules and
/// `rules::MATCHING_VERSION`): results cached before it changed are not used. `windows/1`: blobs
/// larger than the runner's window are scanned in windows, and binary blobs are cached as binary
/// (they were cached as holding nothing, so a rescan could not report them as not scanned).
/// `secret-ids/1`: hits hold the secret's id, for merging with other engines' findings.
const RESULTS_REVISION: &str = "secret-ids/1";

/// The fingerprint key used when none is configured. Fingerprints are then comparable between
/// every installation that also left it unset; set `scanner.fingerprint_key` to make them
/// unlinkable to other installations' fingerprints.
pub const DEFAULT_FINGERPRINT_KEY: &str = "scanstream-default-fingerprint-key";

/// A fingerprint key; its `Debug` never prints it.
#[derive(Clone)]
struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(***)")
    }
}

#[derive(Debug)]
pub struct SecretsEngine {
    pack: RulePack,
    key: Key,
    cache_key: String,
}

impl SecretsEngine {
    pub fn new(pack: RulePack, fingerprint_key: &[u8]) -> Self {
        let key = Key(fingerprint_key.to_vec());
        // The cache key depends on the fingerprint key (cached hits hold fingerprints) without
        // revealing it.
        let key_id = keyed(&key, &[b"result-cache"]);
        let cache_key = hex::encode(
            &Sha256::digest(format!("{}/{key_id}/{RESULTS_REVISION}", pack.hash()))[..16],
        );
        Self {
            pack,
            key,
            cache_key,
        }
    }

    pub fn pack(&self) -> &RulePack {
        &self.pack
    }

    /// The file rules that report a file at `path`.
    fn file_rules<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a crate::rules::Rule> {
        let pack = &self.pack;
        // Every path of a history is asked: most match no file rule, settled by one search.
        let candidates: &[usize] = if pack
            .file_paths
            .as_ref()
            .is_some_and(|set| set.is_match(path.as_bytes()))
            && !pack.allowlist.allows_path(path)
        {
            &pack.file_rules
        } else {
            &[]
        };
        candidates
            .iter()
            .map(|&index| &pack.rules[index])
            .filter(move |rule| {
                rule.path
                    .as_ref()
                    .is_some_and(|p| p.is_match(path.as_bytes()))
                    && !rule.allowlist.allows_path(path)
            })
    }

    /// The fingerprint of `secret` under `rule`: HMAC-SHA256 with the fingerprint key over the
    /// rule id, a zero byte and the secret, first 128 bits in hex.
    pub fn fingerprint(&self, rule: &str, secret: &[u8]) -> String {
        keyed(&self.key, &[rule.as_bytes(), &[0], secret])
    }

    /// The [`Hit::secret_id`] of `secret`: HMAC-SHA256 with the fingerprint key over a marker
    /// and the secret, whatever rule found it.
    pub fn secret_id(&self, secret: &[u8]) -> String {
        secret_id(&self.key.0, secret)
    }
}

/// [`SecretsEngine::secret_id`] under `key`, for engines that are not a [`SecretsEngine`].
pub fn secret_id(key: &[u8], secret: &[u8]) -> String {
    keyed(&Key(key.to_vec()), &[b"secret", &[0], secret])
}

fn keyed(key: &Key, parts: &[&[u8]]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(&key.0) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    for part in parts {
        mac.update(part);
    }
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Shannon entropy in bits per byte.
pub fn entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for b in bytes {
        counts[usize::from(*b)] += 1;
    }
    let len = bytes.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / len;
            -p * p.log2()
        })
        .sum()
}

/// A preview that shows the kind of secret but not the secret: a short prefix of long secrets
/// (token prefixes such as `ghp_` are not secret), then a mask and the length.
pub fn redact(secret: &[u8]) -> String {
    let text = String::from_utf8_lossy(secret);
    let count = text.chars().count();
    let shown = match count {
        0..16 => 0,
        16..32 => 3,
        _ => 4,
    };
    let prefix: String = text
        .chars()
        .take(shown)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{prefix}****** ({count} chars)")
}

/// A secret that passed its rule's filters, before overlaps between rules are settled.
#[derive(Debug)]
struct Candidate {
    /// Index of the rule in the pack: earlier rules win overlaps.
    rule: usize,
    /// Offsets of the secret in the blob.
    start: u64,
    end: u64,
    /// Found in decoded text: loses to any overlapping match in the text as it is.
    decoded: bool,
    hit: Hit,
}

/// Blobs scanned one after another, each in one or more windows. One is kept per thread: the
/// per-rule state, the regexes' capture slots and the scan of decoded text live as long as it
/// does, so a blob's scan allocates little beyond its candidates.
///
/// Each rule's regex walks the blob as it would walk the whole content: in a window it resumes
/// where its last match ended (matches never overlap the previous one), or at the window's first
/// owned offset, with the bytes before that as look-around context; it stops at the first match
/// the window does not own. Overlaps between rules are settled once every window is scanned, in
/// rule order then position, as over the whole content.
struct Windows<'a> {
    engine: &'a SecretsEngine,
    /// Per rule: the offset in the blob where its regex resumes.
    resume: Vec<u64>,
    candidates: Vec<Candidate>,
    /// Decode encoded regions and scan them too (one level: not inside decoded text).
    decode: bool,
    /// Per rule, in the current window: its keywords matched.
    triggered: Vec<bool>,
    /// The rules `triggered` in the current window: what is reset for the next one and the
    /// rules run, so that a window costs what its keywords trigger, not a pass over every rule.
    fired: Vec<usize>,
    /// Per rule with a known reach ([`crate::rules::Rule::reach`]): where its keywords occur
    /// in the current window (empty for every rule not `fired`).
    near: Vec<Vec<(usize, usize)>>,
    /// Per rule: capture slots for its regex, made when the rule first runs.
    captures: Vec<Option<Captures>>,
    /// Where the current rule's regex searches in the current window.
    spans: Vec<(usize, usize)>,
    /// The scan of decoded text, made for the first encoded region (most blobs have none).
    inner: Option<Box<Windows<'a>>>,
    keywords: crate::rules::keywords::Searcher<'a>,
}

impl<'a> Windows<'a> {
    fn new(engine: &'a SecretsEngine) -> Self {
        Self {
            engine,
            resume: vec![0; engine.pack.rules.len()],
            candidates: Vec::new(),
            decode: true,
            triggered: vec![false; engine.pack.rules.len()],
            fired: Vec::new(),
            near: vec![Vec::new(); engine.pack.rules.len()],
            captures: vec![None; engine.pack.rules.len()],
            spans: Vec::new(),
            inner: None,
            keywords: engine.pack.keywords.searcher(),
        }
    }

    /// Scans the decoded text of every encoded region that starts in the window's owned part
    /// (see [`crate::decode`]). A secret found there is placed at the region's first line, in
    /// the part of the region its decoded position corresponds to, and its preview names the
    /// decoding. Generic rules are not run on decoded text (a high-entropy value is expected
    /// there and is not evidence of a secret), only on a layout rewritten as it is written
    /// ([`decode::Encoding::is_layout`]).
    fn decoded(&mut self, content: &[u8], window: &Window) {
        let engine = self.engine;
        let (mut counted, mut line) = (0, window.line);
        // One scan of decoded text, reset for each region.
        let mut inner = self.inner.take();
        for region in decode::regions(content) {
            let start = window.offset.saturating_add(region.start as u64);
            if start < window.owned_start || start >= window.owned_end {
                continue;
            }
            // An encoded value that is itself a placeholder (`…EXAMPLE`) holds example secrets.
            // (A layout's region is markup around its value, which the rules' allowlists see.)
            if !region.encoding.is_layout()
                && engine
                    .pack
                    .allowlist
                    .allows_value(&content[region.start..region.end])
            {
                continue;
            }
            let inner = inner.get_or_insert_with(|| {
                Box::new(Windows {
                    decode: false,
                    ..Windows::new(engine)
                })
            });
            inner.resume.fill(0);
            inner.window(&region.text, &Window::whole());
            if inner.candidates.is_empty() {
                continue;
            }
            line += memchr::memchr_iter(b'\n', &content[counted..region.start]).count() as u64;
            counted = region.start;
            let span = (region.end - region.start) as u64;
            let decoded_len = region.text.len().max(1) as u64;
            for candidate in inner.candidates.drain(..) {
                let rule = &engine.pack.rules[candidate.rule];
                if rule.id.starts_with(crate::rules::GENERIC_PREFIX) && !region.encoding.is_layout()
                {
                    continue;
                }
                let mut hit = candidate.hit;
                hit.line = u32::try_from(line).unwrap_or(u32::MAX);
                hit.preview = format!("{} ({}-decoded)", hit.preview, region.encoding.name());
                self.candidates.push(Candidate {
                    rule: candidate.rule,
                    start: start + candidate.start * span / decoded_len,
                    end: start + (candidate.end * span).div_ceil(decoded_len).max(1),
                    decoded: true,
                    hit,
                });
            }
        }
        self.inner = inner;
    }

    /// The matches of rule `index` in `spans` of the window's content (in order, disjoint), from
    /// `from` on: each one that passes the rule's filters becomes a candidate. `anchored`: the
    /// spans are the starts of the rule's keyword occurrences instead, in order, each to the end
    /// of the content ([`Reach::at_keyword`]), and only a match starting there is tried.
    #[allow(clippy::too_many_arguments)]
    fn matches(
        &mut self,
        index: usize,
        regex: &meta::Regex,
        caps: &mut Captures,
        content: &[u8],
        window: &Window,
        from: usize,
        spans: &[(usize, usize)],
        anchored: bool,
    ) {
        let engine = self.engine;
        let pack = &engine.pack;
        let rule = &pack.rules[index];
        let absolute = |at: usize| window.offset.saturating_add(at as u64);
        let mut at = from;
        // Lines are counted up to each secret from the previous one: a rule's matches come in
        // order.
        let (mut counted, mut line) = (0, window.line);
        let anchor = if anchored {
            Anchored::Yes
        } else {
            Anchored::No
        };
        for &(span_start, span_end) in spans {
            while at.max(span_start) <= span_end {
                if anchored && at > span_start {
                    // A match ended past this start, or this start's match was tried.
                    break;
                }
                regex.search_captures(
                    &Input::new(content)
                        .span(at.max(span_start)..span_end)
                        .anchored(anchor),
                    caps,
                );
                let Some(whole) = caps.get_match() else { break };
                if absolute(whole.start()) >= window.owned_end {
                    // The next window's: it holds this match whole.
                    return;
                }
                at = if whole.end() > whole.start() {
                    whole.end()
                } else {
                    whole.end() + 1
                };
                self.resume[index] = absolute(at);
                let secret = if rule.first_group {
                    (1..caps.group_len())
                        .find_map(|i| caps.get_group(i).filter(|g| !g.is_empty()))
                        .unwrap_or(whole.span())
                } else {
                    caps.get_group(rule.secret_group).unwrap_or(whole.span())
                };
                let value = &content[secret.range()];
                if value.is_empty() {
                    continue;
                }
                if rule.entropy.is_some_and(|min| entropy(value) < min) {
                    continue;
                }
                if pack.allowlist.allows_value(value) || rule.allowlist.allows_value(value) {
                    continue;
                }
                let line_start =
                    memchr::memrchr(b'\n', &content[..whole.start()]).map_or(0, |p| p + 1);
                let line_end = memchr::memchr(b'\n', &content[whole.end()..])
                    .map_or(content.len(), |p| whole.end() + p);
                let text_line = &content[line_start..line_end];
                if ALLOW_MARKERS
                    .iter()
                    .any(|marker| memchr::memmem::find(text_line, marker).is_some())
                    || pack.allowlist.allows_line(text_line)
                    || rule.allowlist.allows_line(text_line)
                {
                    continue;
                }
                if secret.start < counted {
                    (counted, line) = (0, window.line);
                }
                let lines = &content[counted..secret.start];
                line += memchr::memchr_iter(b'\n', lines).count() as u64;
                counted = secret.start;
                self.candidates.push(Candidate {
                    rule: index,
                    start: absolute(secret.start),
                    end: absolute(secret.end),
                    decoded: false,
                    hit: Hit {
                        rule: rule.id.clone(),
                        severity: rule.severity,
                        line: u32::try_from(line).unwrap_or(u32::MAX),
                        fingerprint: engine.fingerprint(&rule.id, value),
                        secret_id: engine.secret_id(value),
                        preview: redact(value),
                        shadowed_by: Vec::new(),
                    },
                });
            }
        }
    }

    /// Every candidate of the blob that no earlier rule's (or earlier match's) secret overlaps,
    /// by line. A rule that reports at some paths only wins an overlap only where it applies:
    /// the candidate it overlaps stays, [`Hit::shadowed_by`] it, for the paths where it does
    /// not. The scan is then ready for the next blob.
    fn hits(&mut self) -> Vec<Hit> {
        self.resume.fill(0);
        let rules = &self.engine.pack.rules;
        let mut candidates = std::mem::take(&mut self.candidates);
        // Matches in the text as it is come first: one in decoded text only fills a place
        // nothing else was found at.
        candidates.sort_by_key(|c| (c.decoded, c.rule, c.start));
        // Kept so far: (start, end, rule index).
        let mut taken: Vec<(u64, u64, usize)> = Vec::new();
        let mut hits = Vec::new();
        for mut candidate in candidates {
            let mut beaten = false;
            for &(start, end, rule) in &taken {
                if candidate.start < end && start < candidate.end {
                    if rules[rule].depends_on_path() {
                        if !candidate.hit.shadowed_by.contains(&rules[rule].id) {
                            candidate.hit.shadowed_by.push(rules[rule].id.clone());
                        }
                    } else {
                        beaten = true;
                        break;
                    }
                }
            }
            if beaten {
                continue;
            }
            taken.push((candidate.start, candidate.end, candidate.rule));
            hits.push(candidate.hit);
        }
        hits.sort_by_key(|hit| hit.line);
        hits
    }
}

/// What starting one regex search costs, in bytes searched.
const SEARCH_COST: usize = 256;

/// What trying a regex at one position costs, in bytes searched (an anchored attempt stops
/// within a few bytes where nothing can match; measured on the registry tree, rules' regex time
/// was least from 8 to 64 and a third more at 256).
const ANCHORED_COST: usize = 32;

/// The disjoint spans of `content`, in order, that hold every match of a rule with `reach`
/// that contains one of the keyword occurrences `hits` (start, end); `hits` is sorted.
fn near_spans(
    content: &[u8],
    hits: &mut [(usize, usize)],
    reach: Reach,
    spans: &mut Vec<(usize, usize)>,
) {
    // Past this, a line (when the match stays on one) is the tighter and cheaper bound.
    const BYTES_FIRST: usize = 512;
    let by_line = match reach.bytes {
        Some(bytes) => reach.one_line && bytes > BYTES_FIRST,
        None => true,
    };
    hits.sort_unstable();
    for &(start, end) in hits.iter() {
        let (low, high) = if by_line {
            if spans.last().is_some_and(|&(_, last_end)| end < last_end) {
                // On the line the previous span ends with: inside it.
                continue;
            }
            // The line with the line feeds around it (a match may start or end with one).
            (
                memchr::memrchr(b'\n', &content[..start]).unwrap_or(0),
                memchr::memchr(b'\n', &content[end..]).map_or(content.len(), |p| end + p + 1),
            )
        } else {
            let bytes = reach.bytes.unwrap_or(usize::MAX);
            (
                end.saturating_sub(bytes),
                start.saturating_add(bytes).min(content.len()),
            )
        };
        match spans.last_mut() {
            Some((_, last_end)) if low <= *last_end => *last_end = (*last_end).max(high),
            _ => spans.push((low, high)),
        }
    }
}

/// Where a match of a rule whose matches start with its keywords may lie: from each keyword
/// occurrence in `hits` (start, end) on, once per start, in order.
fn keyword_starts(hits: &mut [(usize, usize)], len: usize, spans: &mut Vec<(usize, usize)>) {
    hits.sort_unstable();
    spans.extend(hits.iter().map(|&(start, _)| (start, len)));
    spans.dedup();
}

impl WindowScan for Windows<'_> {
    fn window(&mut self, content: &[u8], window: &Window) {
        if self.decode {
            self.decoded(content, window);
        }
        let engine = self.engine;
        let pack = &engine.pack;
        // What the last window triggered, and only that, is reset.
        let mut fired = std::mem::take(&mut self.fired);
        for &rule in &fired {
            self.triggered[rule] = false;
            self.near[rule].clear();
        }
        fired.clear();
        for &rule in &pack.always {
            self.triggered[rule] = true;
            fired.push(rule);
        }
        let (triggered, near) = (&mut self.triggered, &mut self.near);
        let searched = self.keywords.find(content, |keyword, start, end| {
            for &rule in &pack.keyword_rules[keyword] {
                if !triggered[rule] {
                    triggered[rule] = true;
                    fired.push(rule);
                }
                if pack.searched_near[rule] {
                    near[rule].push((start, end));
                }
            }
        });
        if let Err(e) = searched {
            // Never seen; should it happen, every rule searches the whole content: slower,
            // but nothing is missed.
            tracing::warn!(error = %e, "keyword prefilter failed: every rule runs on the content");
            for &rule in &fired {
                self.triggered[rule] = false;
            }
            fired.clear();
            for (index, rule) in pack.rules.iter().enumerate() {
                self.near[index].clear();
                if rule.regex.is_some() {
                    self.triggered[index] = true;
                    fired.push(index);
                }
            }
        }
        // In rule order, as every rule used to be looked at.
        fired.sort_unstable();
        let mut spans = std::mem::take(&mut self.spans);
        for &index in &fired {
            let rule = &pack.rules[index];
            let (Some(regex), Some(from)) = (
                rule.regex.as_ref().and_then(crate::rules::RuleRegex::get),
                self.resume[index]
                    .max(window.owned_start)
                    .checked_sub(window.offset)
                    .and_then(|at| usize::try_from(at).ok()),
            ) else {
                continue;
            };
            spans.clear();
            let mut anchored = false;
            if let Some(reach) = rule.reach {
                let cost = if reach.at_keyword {
                    anchored = true;
                    keyword_starts(&mut self.near[index], content.len(), &mut spans);
                    spans.len() * ANCHORED_COST
                } else {
                    near_spans(content, &mut self.near[index], reach, &mut spans);
                    let covered: usize = spans.iter().map(|(start, end)| end - start).sum();
                    covered.saturating_add(spans.len() * SEARCH_COST)
                };
                // Each search has a fixed cost: where the keyword is everywhere, one search
                // of the whole content is cheaper.
                if cost >= content.len() - from {
                    spans.clear();
                    anchored = false;
                }
            }
            if spans.is_empty() {
                spans.push((0, content.len()));
            }
            let mut caps = self.captures[index]
                .take()
                .unwrap_or_else(|| regex.create_captures());
            self.matches(
                index, regex, &mut caps, content, window, from, &spans, anchored,
            );
            self.captures[index] = Some(caps);
        }
        self.spans = spans;
        self.fired = fired;
    }

    fn finish(&mut self) -> Vec<Hit> {
        self.hits()
    }
}

impl Engine for SecretsEngine {
    fn id(&self) -> &str {
        "secrets"
    }

    fn cache_key(&self) -> &str {
        &self.cache_key
    }

    fn scan(&self, content: &[u8]) -> Vec<Hit> {
        let mut scan = Windows::new(self);
        scan.window(content, &Window::whole());
        scan.hits()
    }

    fn windows(&self) -> Box<dyn WindowScan + '_> {
        Box::new(Windows::new(self))
    }

    fn accepts(&self, hit: &Hit, path: &str) -> bool {
        if self.pack.allowlist.allows_path(path) {
            return false;
        }
        let applies = |id: &str| {
            self.pack
                .rules
                .iter()
                .find(|r| r.id == id)
                .is_none_or(|rule| rule.applies_at(path))
        };
        // A rule that won the overlap where it applies reports there instead.
        applies(&hit.rule) && !hit.shadowed_by.iter().any(|id| applies(id))
    }

    fn reports_file(&self, path: &str) -> bool {
        self.file_rules(path).next().is_some()
    }

    fn file_hits(&self, path: &str, blob_id: &[u8], size: u64) -> Vec<Hit> {
        self.file_rules(path)
            .map(|rule| Hit {
                rule: rule.id.clone(),
                severity: rule.severity,
                line: 1,
                fingerprint: keyed(&self.key, &[rule.id.as_bytes(), &[0], blob_id]),
                secret_id: keyed(&self.key, &[b"file", &[0], blob_id]),
                preview: format!("whole file ({size} bytes)"),
                shadowed_by: Vec::new(),
            })
            .collect()
    }

    fn wants_path(&self, path: &str) -> bool {
        !self.pack.allowlist.allows_path(path)
    }

    /// `rules-<first 12 hex of the rule pack's hash>`: what decides what it reports.
    fn version(&self) -> Option<String> {
        Some(format!(
            "rules-{}",
            self.pack.hash().get(..12).unwrap_or(self.pack.hash())
        ))
    }

    fn rules(&self) -> Vec<RuleInfo> {
        self.pack
            .rules
            .iter()
            .map(|r| RuleInfo {
                id: r.id.clone(),
                description: r.description.clone(),
                severity: r.severity,
            })
            .collect()
    }
}

/// The rule samples, shared with the integration tests.
#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod test_support;

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> SecretsEngine {
        SecretsEngine::new(
            RulePack::builtin().unwrap(),
            DEFAULT_FINGERPRINT_KEY.as_bytes(),
        )
    }

    use super::test_support::samples;

    /// The text of a positive sample that fits on one line, without its line end.
    fn one_line() -> String {
        samples()
            .positive
            .into_iter()
            .map(|s| s.text.concat().trim_end().to_owned())
            .find(|text| !text.contains('\n'))
            .unwrap_or_else(|| panic!("no one-line sample"))
    }

    #[test]
    fn every_rule_finds_its_samples_and_nothing_else() {
        let engine = engine();
        let samples = samples();
        for sample in &samples.positive {
            let text = sample.text.concat();
            let secret = sample.secret.concat();
            let hits: Vec<Hit> = engine
                .scan(text.as_bytes())
                .into_iter()
                .filter(|hit| engine.accepts(hit, &sample.path))
                .collect();
            assert_eq!(hits.len(), 1, "{}: {hits:?}", sample.rule);
            assert_eq!(hits[0].rule, sample.rule);
            assert_eq!(
                hits[0].fingerprint,
                engine.fingerprint(&sample.rule, secret.as_bytes()),
                "{}: the reported secret is not the sample's",
                sample.rule
            );
        }
        for rule in engine.pack().rules.iter().filter(|r| r.regex.is_some()) {
            assert!(
                samples.positive.iter().any(|s| s.rule == rule.id),
                "rule {} has no positive sample",
                rule.id
            );
        }
    }

    #[test]
    fn placeholders_and_examples_are_not_findings() {
        let engine = engine();
        for sample in samples().negative {
            let hits: Vec<Hit> = engine
                .scan(sample.text.concat().as_bytes())
                .into_iter()
                .filter(|hit| engine.accepts(hit, &sample.path))
                .collect();
            assert!(hits.is_empty(), "{}: {hits:?}", sample.why);
        }
    }

    #[test]
    fn gitleaks_rule_files_run_as_gitleaks_runs_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".gitleaks.toml");
        std::fs::write(
            &file,
            "title = \"team rules\"\n\
             [[rules]]\n\
             id = \"internal-token\"\n\
             description = \"Internal token\"\n\
             regex = '(?:itk|ITK)-(?:live-)?([a-z0-9]{24})\\b'\n\
             [[rules.allowlists]]\n\
             regexTarget = \"line\"\n\
             regexes = ['fixture:']\n",
        )
        .unwrap();
        let engine = SecretsEngine::new(
            RulePack::load(&[&file]).unwrap(),
            DEFAULT_FINGERPRINT_KEY.as_bytes(),
        );
        // Without useDefault only the file's rules run: no keywords, so on every content.
        assert_eq!(engine.pack().rules.len(), 1);
        let text = "a = itk-live-q8z2m4x7c1v9b3n6k0j5h2g8\n\
                    b = itk-q8z2m4x7c1v9b3n6k0j5h2g8 # gitleaks:allow\n\
                    fixture: itk-q8z2m4x7c1v9b3n6k0j5h2g8\n";
        let hits = engine.scan(text.as_bytes());
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].line, 1);
        // secretGroup unset: the first group that matched is the secret.
        assert_eq!(
            hits[0].fingerprint,
            engine.fingerprint("internal-token", b"q8z2m4x7c1v9b3n6k0j5h2g8")
        );
        // useDefault keeps the built-in rules.
        std::fs::write(&file, "[extend]\nuseDefault = true\n").unwrap();
        let extended = RulePack::load(&[&file]).unwrap();
        assert_eq!(
            extended.rules.len(),
            RulePack::builtin().unwrap().rules.len()
        );
    }

    #[test]
    fn a_rule_for_some_paths_wins_an_overlap_only_where_it_applies() {
        let rules = r#"
[[rules]]
id = "team-config-token"
description = "Team token in a .cfg file"
regex = '''(?m)^token[ \t]*=[ \t]*([a-z0-9]{24})$'''
secret_group = 1
keywords = ["token"]
path = '''\.cfg$'''
severity = "high"

[[rules]]
id = "team-token"
description = "Team token anywhere"
regex = '''token[ \t]*=[ \t]*([a-z0-9]{24})'''
secret_group = 1
keywords = ["token"]
severity = "medium"
"#;
        let pack = RulePack::from_sources(&[("team", rules)]).unwrap();
        let engine = SecretsEngine::new(pack, DEFAULT_FINGERPRINT_KEY.as_bytes());
        let hits = engine.scan(b"token = q8z2m4x7c1v9b3n6k0j5h2g8\n");
        let reported = |path: &str| -> Vec<&str> {
            hits.iter()
                .filter(|hit| engine.accepts(hit, path))
                .map(|hit| hit.rule.as_str())
                .collect()
        };
        // Where the earlier rule applies it wins; elsewhere the overlapped rule reports.
        assert_eq!(reported("app.cfg"), ["team-config-token"]);
        assert_eq!(reported("src/app.py"), ["team-token"]);
    }

    #[test]
    fn the_inline_marker_silences_its_line_only() {
        let engine = engine();
        let secret_line = one_line();
        let allowed = format!("{secret_line} # scanstream:allow\n{secret_line}\n");
        let hits = engine.scan(allowed.as_bytes());
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].line, 2);
    }

    /// Settings in XML whose values stand on their own lines (found in the decoded layout).
    fn xml_settings() -> String {
        // Split so the repository holds no whole value.
        let (key, password) = (
            ["9c4d1f07", "b2e85a63f0c9d7e21ab8e564"].concat(),
            ["Wq7ZfR2", "mXk9LpV4sTn8"].concat(),
        );
        format!(
            "<settings>\n  <openWeatherApiKey>\n    {key}\n  </openWeatherApiKey>\n  \
             <dbPassword>\n    {password}\n  </dbPassword>\n</settings>\n"
        )
    }

    #[test]
    fn an_xml_value_on_its_own_line_is_read_with_its_element_name() {
        let engine = engine();
        let xml = xml_settings();
        let mut hits: Vec<(String, u32, bool)> = engine
            .scan(xml.as_bytes())
            .into_iter()
            .map(|h| (h.rule, h.line, h.preview.ends_with("(xml-decoded)")))
            .collect();
        hits.sort();
        assert_eq!(
            hits,
            [
                ("generic-secret-assignment".to_owned(), 5, true),
                ("openweather-api-key".to_owned(), 2, true),
            ]
        );
    }

    #[test]
    fn no_output_holds_the_secret() {
        let engine = engine();
        for sample in samples().positive {
            let secret = sample.secret.concat();
            for hit in engine.scan(sample.text.concat().as_bytes()) {
                // What a report shows of a finding besides its rule (whose id may name a
                // format's fixed prefix, as `framework-django-insecure-key` does).
                let shown = format!("{} {} {}", hit.preview, hit.fingerprint, hit.line);
                assert!(!shown.contains(&secret), "{shown}");
                // Not even a long piece of it.
                if secret.len() >= 16 {
                    assert!(!shown.contains(&secret[4..16]), "{shown}");
                }
            }
        }
    }

    #[test]
    fn fingerprints_depend_on_the_key_rule_and_secret() {
        let a = engine();
        let b = SecretsEngine::new(RulePack::builtin().unwrap(), b"another key");
        assert_eq!(a.fingerprint("r", b"s"), a.fingerprint("r", b"s"));
        assert_ne!(a.fingerprint("r", b"s"), a.fingerprint("r", b"t"));
        assert_ne!(a.fingerprint("r", b"s"), a.fingerprint("q", b"s"));
        assert_ne!(a.fingerprint("r", b"s"), b.fingerprint("r", b"s"));
        assert_ne!(a.cache_key(), b.cache_key());
    }

    #[test]
    fn key_stores_are_reported_whole_by_path() {
        let engine = engine();
        assert!(engine.reports_file("certs/client.p12"));
        assert!(engine.reports_file("android/release.keystore"));
        assert!(!engine.reports_file("src/main.rs"));
        let hits = engine.file_hits("certs/CLIENT.PFX", b"blob-id", 2048);
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].rule, "pkcs12-file");
        assert_eq!(hits[0].preview, "whole file (2048 bytes)");
        // The fingerprint follows the content, not the path.
        assert_eq!(
            hits[0].fingerprint,
            engine.file_hits("other/place.p12", b"blob-id", 2048)[0].fingerprint
        );
        assert!(engine.file_hits("src/main.rs", b"blob-id", 1).is_empty());
    }

    /// Scans `content` in two windows that meet at `split`: the first owns the matches that
    /// start before it and ends `reach` bytes after it; the second starts `context` bytes before
    /// it and owns the rest.
    fn two_windows(
        engine: &SecretsEngine,
        content: &[u8],
        split: usize,
        context: usize,
        reach: usize,
    ) -> Vec<Hit> {
        let mut scan = engine.windows();
        let end = content.len().min(split + reach);
        scan.window(
            &content[..end],
            &Window {
                offset: 0,
                line: 1,
                owned_start: 0,
                owned_end: split as u64,
                last: false,
            },
        );
        let start = split - context;
        scan.window(
            &content[start..],
            &Window {
                offset: start as u64,
                line: 1 + memchr::memchr_iter(b'\n', &content[..start]).count() as u64,
                owned_start: split as u64,
                owned_end: u64::MAX,
                last: true,
            },
        );
        scan.finish()
    }

    #[test]
    fn a_scan_kept_for_many_blobs_reports_each_as_a_fresh_scan_would() {
        let engine = engine();
        let samples = samples();
        let github = samples
            .positive
            .iter()
            .find(|s| s.rule == "github-pat")
            .unwrap()
            .text
            .concat();
        // The same secret late in one blob and early in the next (where the rule resumes must
        // not carry over), decoded text (the scan kept for it too) and secrets side by side.
        let late = format!("{}\n{github}", "filler line\n".repeat(400));
        let both = format!("{github}\n{}", xml_settings());
        let blobs = [
            late.as_str(),
            github.as_str(),
            &xml_settings(),
            &late,
            &both,
            &github,
        ];
        let mut scan = engine.windows();
        for (index, blob) in blobs.iter().enumerate() {
            scan.window(blob.as_bytes(), &Window::whole());
            let hits = scan.finish();
            assert!(!hits.is_empty(), "blob {index}");
            assert_eq!(hits, engine.scan(blob.as_bytes()), "blob {index}");
        }
        // A blob left after its first window (binary further on, cancelled, unreadable) is
        // finished and dropped: the next blob starts afresh.
        scan.window(
            late.as_bytes(),
            &Window {
                owned_end: late.len() as u64 / 2,
                last: false,
                ..Window::whole()
            },
        );
        scan.finish();
        assert_eq!(scan.finish(), Vec::new());
        scan.window(github.as_bytes(), &Window::whole());
        assert_eq!(scan.finish(), engine.scan(github.as_bytes()));
    }

    /// The built-in engine, built once for the property tests.
    static ENGINE: std::sync::LazyLock<SecretsEngine> = std::sync::LazyLock::new(engine);

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]

        /// Any mix of keywords, token prefixes, encodings and stray bytes, however it ends, is
        /// scanned whole and in two windows split anywhere without a panic.
        #[test]
        fn any_content_is_scanned_without_a_panic(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => proptest::sample::select(vec![
                        "token", "password=", "secret: ", "api_key", "ghp_", "AKIA", "xoxb-",
                        "-----BEGIN PRIVATE KEY-----", "-----END", "://user:", "@host",
                        "\"", "\\", "\\n", "\\u00", "%2F", "%", "<key>\n", "</key>",
                        "\n", "\r\n", " ", "=", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=",
                        "aGVsbG8gd29ybGQgcGFzc3dvcmQ9",
                    ].into_iter().map(|p| p.as_bytes().to_vec()).collect::<Vec<_>>()),
                    1 => proptest::collection::vec(proptest::num::u8::ANY, 1..8),
                ],
                0..80,
            ),
            split in 1usize..2000,
        ) {
            let content = pieces.concat();
            let engine = &*ENGINE;
            engine.scan(&content);
            if content.len() > 1 {
                let split = split % (content.len() - 1) + 1;
                two_windows(engine, &content, split, split.min(16), 64);
            }
        }
    }

    #[test]
    fn windows_split_anywhere_report_what_the_whole_content_holds() {
        let engine = engine();
        let samples = samples();
        // Secrets with context before them (an assignment, a label) and a multi-line key.
        let rules = [
            "aws-secret-access-key",
            "github-pat",
            "generic-secret-assignment",
            "private-key",
            "gcp-service-account-key",
            "slack-webhook-url",
        ];
        let mut content = String::new();
        let mut reach = 0;
        for rule in rules {
            let sample = samples.positive.iter().find(|s| s.rule == rule).unwrap();
            let text = sample.text.concat();
            reach = reach.max(text.len());
            content.push_str("..........\n");
            content.push_str(&text);
        }
        let content = content.as_bytes();
        let whole = engine.scan(content);
        assert_eq!(whole.len(), rules.len(), "{whole:?}");
        let context = 16;
        // Every split near a secret's start or end, and every 29th byte.
        let mut splits: Vec<usize> = (context..content.len()).step_by(29).collect();
        for sample in samples
            .positive
            .iter()
            .filter(|s| rules.contains(&s.rule.as_str()))
        {
            let secret = sample.secret.concat();
            if let Some(at) = memchr::memmem::find(content, secret.as_bytes()) {
                for edge in [at, at + secret.len()] {
                    let (from, to) = (edge.saturating_sub(3).max(context), edge + 4);
                    splits.extend(from..to.min(content.len()));
                }
            }
        }
        for split in splits {
            let windowed = two_windows(&engine, content, split, context, reach);
            assert_eq!(windowed, whole, "split at byte {split}");
        }
    }

    #[test]
    fn searching_near_keywords_finds_what_a_whole_search_finds() {
        let near = engine();
        let mut pack = RulePack::builtin().unwrap();
        let proven = pack.rules.iter().filter(|r| r.reach.is_some()).count();
        // Most rules are searched near their keywords: the proof must hold for the pack.
        assert!(
            proven * 10 >= pack.rules.len() * 8,
            "{proven} of {}",
            pack.rules.len()
        );
        for rule in &mut pack.rules {
            rule.reach = None;
        }
        let whole = SecretsEngine::new(pack, DEFAULT_FINGERPRINT_KEY.as_bytes());
        let samples = samples();
        let texts: Vec<String> = samples
            .positive
            .iter()
            .map(|s| s.text.concat())
            .chain(samples.negative.iter().map(|s| s.text.concat()))
            .collect();
        // Every sample alone, all of them in one blob (keywords of other rules everywhere),
        // and the blob with its line ends removed (one long line).
        let blob = texts.join("\n");
        let mut contents = texts.clone();
        contents.push(blob.clone());
        contents.push(blob.replace('\n', " "));
        for content in &contents {
            assert_eq!(
                near.scan(content.as_bytes()),
                whole.scan(content.as_bytes()),
                "{content}"
            );
        }
        assert!(near.scan(blob.as_bytes()).len() >= samples.positive.len() / 2);
    }

    #[test]
    fn entropy_and_redaction() {
        assert_eq!(entropy(b"aaaa"), 0.0);
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
        assert_eq!(redact(b"short"), "****** (5 chars)");
        let preview = redact(b"ghp_0123456789abcdefghijklmnopqrstuvwxyz");
        assert!(preview.starts_with("ghp_******"), "{preview}");
    }

    #[test]
    fn lines_are_counted_from_one_and_paths_can_be_allowlisted() {
        let engine = engine();
        let text = format!("\n\n{}\n", one_line());
        let hits = engine.scan(text.as_bytes());
        assert_eq!(hits[0].line, 3);
        assert!(engine.accepts(&hits[0], "src/config.py"));
        assert!(!engine.accepts(&hits[0], "web/node_modules/x/index.js"));
        assert!(!engine.wants_path("Cargo.lock"));
    }
}
