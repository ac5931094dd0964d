//! How far a rule's matches can lie from its keywords, proven from the regex itself.
//!
//! The keyword prefilter says which rules can match a blob. For most rules it says more: every
//! match contains one of the rule's keywords, and a match is no longer than some bound or never
//! spans a line. Such a rule's regex only needs to run near the keyword occurrences the
//! prefilter found, not over the whole blob: a context rule that starts with a class (a service
//! name after any non-letter) has no literal for the regex engine to skip ahead with, and on a
//! large file that only mentions its keyword once, searching a few hundred bytes instead of the
//! whole file is most of the engine's work saved.
//!
//! The proof is conservative: when the regex's syntax does not show that every match holds a
//! keyword (one of an alternation's branches lacks one, the keyword sits in an optional part),
//! the rule keeps searching whole blobs, which is always correct.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Where a rule's match lies relative to an occurrence of one of its keywords that it contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    /// The longest match, in bytes, when bounded.
    pub bytes: Option<usize>,
    /// A match holds no line feed, except perhaps as its first or last byte (the one ending the
    /// line before or the keyword's line, matched as a separator): it lies on its keyword's
    /// line and those two bytes.
    pub one_line: bool,
    /// Every match starts with one of the keywords: it starts where an occurrence starts, so
    /// the regex is tried there alone, anchored, instead of searching around the occurrence.
    pub at_keyword: bool,
}

/// The reach of a rule whose regex parsed to `hir`, with its keywords (any ASCII case), or
/// `None` when a match need not contain a keyword or may be unboundedly long across lines.
pub fn reach(hir: &Hir, keywords: &[String]) -> Option<Reach> {
    let keywords: Vec<Vec<u8>> = keywords
        .iter()
        .filter(|k| !k.is_empty())
        .map(|k| k.to_ascii_lowercase().into_bytes())
        .collect();
    if keywords.is_empty() || !holds_keyword(hir, &keywords) {
        return None;
    }
    let reach = Reach {
        bytes: hir.properties().maximum_len(),
        one_line: line_feeds_at(hir, Edge::Either),
        at_keyword: starts_with_keyword(hir, &keywords),
    };
    (reach.bytes.is_some() || reach.one_line).then_some(reach)
}

/// Every string `hir` matches contains one of `keywords` (lowercase), ASCII case aside.
fn holds_keyword(hir: &Hir, keywords: &[Vec<u8>]) -> bool {
    let holds = |strings: &[Vec<u8>]| {
        strings.iter().all(|string| {
            keywords
                .iter()
                .any(|k| memchr::memmem::find(string, k).is_some())
        })
    };
    if let Some(strings) = folded(hir) {
        return holds(&strings);
    }
    match hir.kind() {
        HirKind::Capture(capture) => holds_keyword(&capture.sub, keywords),
        HirKind::Repetition(repetition) => {
            repetition.min >= 1 && holds_keyword(&repetition.sub, keywords)
        }
        HirKind::Alternation(branches) => branches.iter().all(|b| holds_keyword(b, keywords)),
        HirKind::Concat(items) => {
            if items.iter().any(|item| holds_keyword(item, keywords)) {
                return true;
            }
            // A keyword spelled across items: `(?i)api[_.\-]?key` is classes and an optional
            // class. Each item is spelled out once, for every start below.
            let spelled: Vec<Option<Vec<Vec<u8>>>> = items.iter().map(folded).collect();
            for first in 0..items.len() {
                // From the whole of an item that can be spelled out (`(?:api|sdk)-` spells
                // `api-`), else from its last byte: `(?:[a-z]+[_.\-])+pw` ends its name part
                // with a separator before `pw`.
                let mut strings = spelled[first]
                    .clone()
                    .filter(|strings| strings.iter().all(|s| !s.is_empty()))
                    .or_else(|| {
                        last_bytes(&items[first])
                            .map(|bytes| bytes.into_iter().map(|b| vec![b]).collect())
                    })
                    .unwrap_or_else(|| vec![Vec::new()]);
                let start = if strings[0].is_empty() {
                    first
                } else {
                    first + 1
                };
                for tail in &spelled[start..] {
                    let Some(longer) = tail.as_ref().and_then(|tail| product(&strings, tail))
                    else {
                        break;
                    };
                    strings = longer;
                    if holds(&strings) {
                        return true;
                    }
                }
            }
            false
        }
        HirKind::Empty | HirKind::Class(_) | HirKind::Literal(_) | HirKind::Look(_) => false,
    }
}

/// Every string `hir` matches starts with one of `keywords` (lowercase), ASCII case aside:
/// spelled out from its first part on (zero-width assertions spell nothing), each string
/// begins with a keyword once enough parts are spelled.
fn starts_with_keyword(hir: &Hir, keywords: &[Vec<u8>]) -> bool {
    // The regex as one sequence of parts: groups and concatenations inside it opened up (a
    // token's group starts with its prefix: `\b(AC[0-9a-f]{32})` is `\b`, `AC`, ...).
    fn parts<'h>(hir: &'h Hir, out: &mut Vec<&'h Hir>) {
        match hir.kind() {
            HirKind::Capture(capture) => parts(&capture.sub, out),
            HirKind::Concat(items) => items.iter().for_each(|item| parts(item, out)),
            _ => out.push(hir),
        }
    }
    let mut items = Vec::new();
    parts(hir, &mut items);
    let mut strings = vec![Vec::new()];
    for item in items {
        let Some(longer) = folded(item).and_then(|tail| product(&strings, &tail)) else {
            return false;
        };
        strings = longer;
        if strings
            .iter()
            .all(|string| keywords.iter().any(|k| string.starts_with(k)))
        {
            return true;
        }
    }
    false
}

/// The bytes (lowercased, at most four) that every string `hir` matches ends with, when it
/// never matches the empty string.
fn last_bytes(hir: &Hir) -> Option<Vec<u8>> {
    if hir.properties().minimum_len().is_none_or(|len| len == 0) {
        return None;
    }
    let bytes: Vec<u8> = match hir.kind() {
        HirKind::Capture(capture) => last_bytes(&capture.sub)?,
        HirKind::Repetition(repetition) => last_bytes(&repetition.sub)?,
        HirKind::Concat(items) => {
            let last = items
                .iter()
                .rposition(|item| item.properties().maximum_len() != Some(0))?;
            last_bytes(&items[last])?
        }
        HirKind::Alternation(branches) => {
            let mut bytes = Vec::new();
            for branch in branches {
                for b in last_bytes(branch)? {
                    if !bytes.contains(&b) {
                        bytes.push(b);
                    }
                }
            }
            bytes
        }
        _ => folded(hir)?
            .into_iter()
            .map(|string| string.last().copied())
            .collect::<Option<Vec<u8>>>()?,
    };
    (bytes.len() <= 4).then_some(bytes)
}

/// At most this many strings are spelled out for a part of a regex.
const FOLDED_LIMIT: usize = 64;

/// Every string `hir` matches, ASCII-lowercased, when there are at most [`FOLDED_LIMIT`]
/// (zero-width assertions match the empty string).
fn folded(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(vec![Vec::new()]),
        HirKind::Literal(literal) => Some(vec![literal.0.to_ascii_lowercase()]),
        HirKind::Class(class) => {
            let mut bytes: Vec<u8> = Vec::new();
            let mut add = |start: u32, end: u32| -> Option<()> {
                for b in start..=end {
                    let b = u8::try_from(b).ok()?.to_ascii_lowercase();
                    if !bytes.contains(&b) {
                        bytes.push(b);
                        if bytes.len() > 4 {
                            return None;
                        }
                    }
                }
                Some(())
            };
            match class {
                Class::Bytes(class) => {
                    for range in class.ranges() {
                        add(range.start().into(), range.end().into())?;
                    }
                }
                Class::Unicode(class) => {
                    for range in class.ranges() {
                        add(range.start().into(), range.end().into())?;
                    }
                }
            }
            Some(bytes.into_iter().map(|b| vec![b]).collect())
        }
        HirKind::Capture(capture) => folded(&capture.sub),
        HirKind::Concat(items) => {
            let mut strings = vec![Vec::new()];
            for item in items {
                strings = product(&strings, &folded(item)?)?;
            }
            Some(strings)
        }
        HirKind::Alternation(branches) => {
            let mut strings = Vec::new();
            for branch in branches {
                strings.extend(folded(branch)?);
                if strings.len() > FOLDED_LIMIT {
                    return None;
                }
            }
            Some(strings)
        }
        HirKind::Repetition(repetition) => {
            let max = repetition.max?;
            if max > 4 {
                return None;
            }
            let sub = folded(&repetition.sub)?;
            let mut strings = Vec::new();
            let mut times = vec![Vec::new()];
            for count in 0..=max {
                if count >= repetition.min {
                    strings.extend(times.iter().cloned());
                }
                if count < max {
                    times = product(&times, &sub)?;
                }
                if strings.len() > FOLDED_LIMIT {
                    return None;
                }
            }
            Some(strings)
        }
    }
}

/// Every string of `heads` followed by one of `tails`, when at most [`FOLDED_LIMIT`].
fn product(heads: &[Vec<u8>], tails: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if heads.len().saturating_mul(tails.len()) > FOLDED_LIMIT {
        return None;
    }
    Some(
        heads
            .iter()
            .flat_map(|head| tails.iter().map(move |tail| [&head[..], tail].concat()))
            .collect(),
    )
}

/// Where in the strings `hir` matches a line feed may be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Edge {
    /// Only as the first byte.
    First,
    /// Only as the last byte.
    Last,
    /// Only as the first or the last byte.
    Either,
}

/// Every line feed in every string `hir` matches is at the `edge` allowed (a separator class
/// before or after the part that matters, such as `(?:^|[^a-z0-9])` or `(?:[^\w]|$)`).
fn line_feeds_at(hir: &Hir, edge: Edge) -> bool {
    if !can_match_line_feed(hir) {
        return true;
    }
    let zero_width = |items: &[Hir]| {
        items
            .iter()
            .all(|item| item.properties().maximum_len() == Some(0))
    };
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        // One byte is both the first and the last.
        HirKind::Class(_) => true,
        HirKind::Literal(literal) => {
            let last = literal.0.len().saturating_sub(1);
            literal.0.iter().enumerate().all(|(at, b)| {
                *b != b'\n'
                    || (at == 0 && edge != Edge::Last)
                    || (at == last && edge != Edge::First)
            })
        }
        HirKind::Capture(capture) => line_feeds_at(&capture.sub, edge),
        HirKind::Alternation(branches) => branches.iter().all(|b| line_feeds_at(b, edge)),
        HirKind::Repetition(repetition) => {
            repetition.max.is_some_and(|max| max <= 1) && line_feeds_at(&repetition.sub, edge)
        }
        HirKind::Concat(items) => {
            let feeding: Vec<usize> = (0..items.len())
                .filter(|at| can_match_line_feed(&items[*at]))
                .collect();
            let (first, last) = (feeding[0], feeding[feeding.len() - 1]);
            let leading =
                |at: usize, edge: Edge| zero_width(&items[..at]) && line_feeds_at(&items[at], edge);
            let trailing = |at: usize, edge: Edge| {
                zero_width(&items[at + 1..]) && line_feeds_at(&items[at], edge)
            };
            match (feeding.len(), edge) {
                (1, Edge::Either) => {
                    (zero_width(&items[..first])
                        && zero_width(&items[first + 1..])
                        && line_feeds_at(&items[first], Edge::Either))
                        || leading(first, Edge::First)
                        || trailing(first, Edge::Last)
                }
                (1, Edge::First) => leading(first, Edge::First),
                (1, Edge::Last) => trailing(first, Edge::Last),
                (2, Edge::Either) => leading(first, Edge::First) && trailing(last, Edge::Last),
                _ => false,
            }
        }
    }
}

/// Some string `hir` matches holds a line feed.
fn can_match_line_feed(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => false,
        HirKind::Literal(literal) => literal.0.contains(&b'\n'),
        HirKind::Class(Class::Bytes(class)) => class
            .ranges()
            .iter()
            .any(|r| r.start() <= b'\n' && b'\n' <= r.end()),
        HirKind::Class(Class::Unicode(class)) => class
            .ranges()
            .iter()
            .any(|r| r.start() <= '\n' && '\n' <= r.end()),
        HirKind::Capture(capture) => can_match_line_feed(&capture.sub),
        HirKind::Repetition(repetition) => {
            repetition.max != Some(0) && can_match_line_feed(&repetition.sub)
        }
        HirKind::Concat(items) | HirKind::Alternation(items) => {
            items.iter().any(can_match_line_feed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(pattern: &str, keywords: &[&str]) -> Option<Reach> {
        let hir = regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(pattern)
            .expect("pattern parses");
        let keywords: Vec<String> = keywords.iter().map(|k| (*k).to_owned()).collect();
        reach(&hir, &keywords)
    }

    #[test]
    fn a_keyword_spelled_in_any_case_across_classes_bounds_the_match() {
        // `[ \t]*` is unbounded; the separators around may be the line feeds around the line.
        let r = of(
            r"(?i)(?:^|[^a-z0-9])fal[_.\-]?key[ \t]*=[ \t]*([a-f0-9]{32})(?:[^a-z0-9]|$)",
            &["fal"],
        )
        .expect("local");
        assert_eq!((r.bytes, r.one_line), (None, true));
        let r = of(r"(?i)(?:^|[^a-z0-9])fal[_.\-]?key=([a-f0-9]{32})", &["fal"]).expect("local");
        assert_eq!((r.bytes, r.one_line), (Some(1 + 3 + 1 + 3 + 1 + 32), true));
        let r = of(r"\b(AC[0-9a-f]{32})\b", &["ac"]).expect("local");
        assert_eq!((r.bytes, r.one_line), (Some(34), true));
        // Every branch holds a keyword, one spelled with optional separators.
        let r = of(
            r"(?i)(?:secret|api[_.\-]?key)[ \t]*=[ \t]*([^\n]+)",
            &["secret", "api_key", "api-key", "api.key", "apikey"],
        )
        .expect("local");
        assert_eq!((r.bytes, r.one_line), (None, true));
        // A keyword begun by a whole alternation: every branch and the separator after it.
        let r = of(
            r"(?i)ld[_.\-][a-z]{0,20}key=((?-i:(?:api|sdk)-[a-f0-9]{8}))",
            &["api-", "sdk-"],
        )
        .expect("local");
        assert_eq!((r.bytes, r.one_line), (Some(3 + 20 + 4 + 4 + 8), true));
        // A keyword made of a separator that ends a repeated name part and what follows.
        let r = of(
            r"(?:[a-z0-9]+[_.\-])+(?:pass|pw)[ \t]*=[ \t]*(\S+)",
            &["pass", "_pw", ".pw", "-pw"],
        )
        .expect("local");
        assert_eq!((r.bytes, r.one_line), (None, true));
    }

    #[test]
    fn a_match_that_starts_with_its_keyword_is_tried_where_an_occurrence_starts() {
        let at = |pattern: &str, keywords: &[&str]| of(pattern, keywords).map(|r| r.at_keyword);
        // Every branch starts with a keyword, some spelled across classes (any case).
        assert_eq!(
            at(
                r"(?i)(?:secret|passw(?:or)?d|api[_.\-]?key)[ \t]*=[ \t]*([^\n]+)",
                &["secret", "passw", "api_key", "api-key", "api.key", "apikey"],
            ),
            Some(true)
        );
        // A token in a group, after a zero-width boundary.
        assert_eq!(at(r"\b(AC[0-9a-f]{32})\b", &["ac"]), Some(true));
        assert_eq!(at(r"ghp_[A-Za-z0-9]{36}", &["ghp_"]), Some(true));
        // A separator or a name before the keyword, or a keyword inside the match.
        assert_eq!(
            at(r"(?i)(?:^|[^a-z0-9])fal[_.\-]?key=([a-f0-9]{32})", &["fal"]),
            Some(false)
        );
        assert_eq!(
            at(
                r"(?:[a-z0-9]+[_.\-])+(?:pass|pw)[ \t]*=[ \t]*(\S+)",
                &["pass", "_pw", ".pw", "-pw"]
            ),
            Some(false)
        );
        assert_eq!(at(r"(?i)x?secret=[a-z]{8}", &["secret"]), Some(false));
        // One branch starts with something else.
        assert_eq!(
            at(r"(?:secret|my_secret)=[a-z]{8}", &["secret"]),
            Some(false)
        );
    }

    #[test]
    fn a_match_that_may_lack_every_keyword_searches_the_whole_blob() {
        // The keyword is optional, or one branch lacks it, or it is not in the regex at all.
        assert_eq!(of(r"(?:aws_)?AKIA[A-Z0-9]{16}", &["aws_"]), None);
        assert_eq!(of(r"(?:ghp_|gho_)[A-Za-z0-9]{36}", &["ghp_"]), None);
        assert_eq!(of(r"AKIA[A-Z0-9]{16}", &["aws"]), None);
        // A class wider than one letter's two cases does not spell it.
        assert_eq!(of(r"[a-z]ey=[0-9]{8}", &["key"]), None);
        // Unbounded across lines, or a line feed in the middle.
        assert_eq!(of(r"(?:transferwise|wise)[^a-z]+=", &["wise"]), None);
        assert_eq!(of(r"[^a-z]?[^a-z]wise[ \t]*=", &["wise"]), None);
        assert_eq!(of(r"wise=[a-z]+[^a-z][a-z]+", &["wise"]), None);
        // The name before `pw` need not end with a separator.
        assert_eq!(of(r"(?:[a-z]+[_.]?)+pw=([^\n]+)", &["_pw", ".pw"]), None);
        // One separator short of the keyword.
        assert_eq!(
            of(
                r"(?i)api[_.\-]?key=([^\n]+)",
                &["api_key", "api-key", "apikey"]
            ),
            None
        );
        assert_eq!(
            of(r"(?s)-----BEGIN KEY-----.*?-----END", &["begin key"]),
            None
        );
    }
}
