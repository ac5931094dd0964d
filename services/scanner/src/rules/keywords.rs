//! The keyword prefilter: every occurrence of every rule keyword, ASCII case-insensitively,
//! found by one Vectorscan pass over the content.
//!
//! Vectorscan's multi-literal matcher (FDR) searches the pack's hundreds of keywords at over a
//! gigabyte per second and core, about twice the speed of the Aho-Corasick DFA it replaced; that
//! pass is what every scanned byte costs. The database is compiled once per pack; each scan uses
//! a scratch cloned from the pack's (a clone is a copy, where allocating one costs as much as
//! scanning a small file).

use vectorscan_rs::{BlockDatabase, BlockScanner, Flag, Pattern, Scan};

use crate::Error;

self_cell::self_cell!(
    /// The compiled database and a scanner whose scratch every search clones.
    struct Compiled {
        owner: BlockDatabase,
        #[covariant]
        dependent: BlockScanner,
    }
    impl {Debug}
);

/// Vectorscan scans at most `u32::MAX` bytes at once: longer content is searched in chunks of
/// this many bytes, each extended by the longest keyword less one byte.
const CHUNK: usize = 1 << 30;

/// A keyword as searched: its bytes, in any ASCII case or in exactly this case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyword {
    text: String,
    exact_case: bool,
}

impl Keyword {
    /// Found in any ASCII case (kept lowercase, so equal keywords of two rules are one).
    pub fn any_case(text: &str) -> Self {
        Self {
            text: text.to_ascii_lowercase(),
            exact_case: false,
        }
    }

    /// Found only as written.
    pub fn exact(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            exact_case: true,
        }
    }
}

/// The pack's keywords, compiled.
#[derive(Debug)]
pub struct Keywords {
    /// None without keywords (Vectorscan compiles no empty database).
    compiled: Option<Compiled>,
    /// Length in bytes of keyword `i`.
    lengths: Vec<usize>,
    /// The longest keyword's length (1 without keywords).
    longest: usize,
}

impl Keywords {
    /// Compiles `keywords` (each non-empty); a match reports its index in this slice.
    pub fn new(keywords: &[Keyword]) -> Result<Self, Error> {
        if keywords.is_empty() {
            return Ok(Self {
                compiled: None,
                lengths: Vec::new(),
                longest: 1,
            });
        }
        let patterns = keywords
            .iter()
            .enumerate()
            .map(|(index, keyword)| {
                // Every byte escaped: the keyword is a literal, whatever it holds.
                let expression: String = keyword
                    .text
                    .bytes()
                    .map(|b| format!("\\x{b:02x}"))
                    .collect();
                let id = u32::try_from(index)
                    .map_err(|_| Error::Rules("more keywords than a u32 counts".into()))?;
                let flags = if keyword.exact_case {
                    Flag::default()
                } else {
                    Flag::CASELESS
                };
                Ok(Pattern::new(expression.into_bytes(), flags, Some(id)))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let database = BlockDatabase::new(patterns)
            .map_err(|e| Error::Rules(format!("keyword prefilter: {e}")))?;
        let compiled = Compiled::try_new(database, |database| database.create_scanner())
            .map_err(|e| Error::Rules(format!("keyword prefilter scratch: {e}")))?;
        let lengths: Vec<usize> = keywords.iter().map(|k| k.text.len()).collect();
        let longest = lengths.iter().copied().max().unwrap_or(1);
        Ok(Self {
            compiled: Some(compiled),
            lengths,
            longest,
        })
    }

    /// A searcher for one scan at a time (one per thread).
    pub fn searcher(&self) -> Searcher<'_> {
        Searcher {
            scanner: self.compiled.as_ref().map(|c| c.borrow_dependent().clone()),
            lengths: &self.lengths,
            longest: self.longest,
        }
    }
}

/// Searches content for the keywords with a scratch of its own.
pub struct Searcher<'a> {
    scanner: Option<BlockScanner<'a>>,
    lengths: &'a [usize],
    longest: usize,
}

impl Searcher<'_> {
    /// Calls `found(keyword, start, end)` for every occurrence of every keyword in `content`,
    /// overlapping ones included, in no particular order.
    pub fn find(
        &mut self,
        content: &[u8],
        found: impl FnMut(usize, usize, usize),
    ) -> Result<(), vectorscan_rs::Error> {
        self.find_in_chunks(content, CHUNK, found)
    }

    fn find_in_chunks(
        &mut self,
        content: &[u8],
        chunk: usize,
        mut found: impl FnMut(usize, usize, usize),
    ) -> Result<(), vectorscan_rs::Error> {
        let Some(scanner) = self.scanner.as_mut() else {
            return Ok(());
        };
        let mut chunk_start: usize = 0;
        loop {
            let end = chunk_start
                .saturating_add(chunk + self.longest - 1)
                .min(content.len());
            let lengths = self.lengths;
            scanner.scan(&content[chunk_start..end], |id, _, to, _| {
                let keyword = id as usize;
                let to = chunk_start + to as usize;
                let from = to - lengths[keyword];
                // Each match is reported by the chunk it starts in: the chunk's extension
                // holds it whole.
                if (chunk_start..chunk_start + chunk).contains(&from) {
                    found(keyword, from, to);
                }
                Scan::Continue
            })?;
            // Every start up to here is covered.
            if chunk_start.saturating_add(chunk) >= content.len() {
                return Ok(());
            }
            chunk_start += chunk;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(keywords: &[&str], content: &[u8]) -> Vec<(usize, usize, usize)> {
        let keywords: Vec<Keyword> = keywords.iter().map(|k| Keyword::any_case(k)).collect();
        let compiled = Keywords::new(&keywords).unwrap();
        let mut found = Vec::new();
        compiled
            .searcher()
            .find(content, |k, s, e| found.push((k, s, e)))
            .unwrap();
        found.sort_unstable();
        found
    }

    #[test]
    fn finds_every_occurrence_overlapping_and_in_any_case() {
        assert_eq!(
            all(&["ab", "abc", "bc"], b"xABC abc"),
            vec![
                (0, 1, 3),
                (0, 5, 7),
                (1, 1, 4),
                (1, 5, 8),
                (2, 2, 4),
                (2, 6, 8)
            ]
        );
    }

    #[test]
    fn an_exact_case_keyword_is_found_only_as_written() {
        let keywords = vec![Keyword::exact("AC"), Keyword::any_case("Key")];
        let compiled = Keywords::new(&keywords).unwrap();
        let mut found = Vec::new();
        compiled
            .searcher()
            .find(b"ac Ac AC aC KEY key", |k, s, e| found.push((k, s, e)))
            .unwrap();
        found.sort_unstable();
        assert_eq!(found, vec![(0, 6, 8), (1, 12, 15), (1, 16, 19)]);
    }

    #[test]
    fn keywords_are_literals_whatever_bytes_they_hold() {
        assert_eq!(
            all(&["a.b", "$5$", "(x"], b"axb a.b $5$ (x"),
            vec![(0, 4, 7), (1, 8, 11), (2, 12, 14)]
        );
        assert!(all(&["q~"], b"no match here").is_empty());
        assert!(all(&[], b"no keywords").is_empty());
    }

    #[test]
    fn searchers_are_independent() {
        let keywords = vec![Keyword::any_case("key")];
        let compiled = Keywords::new(&keywords).unwrap();
        let (mut one, mut two) = (compiled.searcher(), compiled.searcher());
        let (mut outer, mut inner) = (0, 0);
        one.find(b"key key", |_, _, _| {
            outer += 1;
            two.find(b"key", |_, _, _| inner += 1).unwrap();
        })
        .unwrap();
        assert_eq!((outer, inner), (2, 2));
    }

    #[test]
    fn content_in_chunks_reports_each_occurrence_once() {
        let keywords = vec![Keyword::any_case("key"), Keyword::any_case("ey")];
        let compiled = Keywords::new(&keywords).unwrap();
        let content = b"key.key..keykey";
        let mut whole = Vec::new();
        compiled
            .searcher()
            .find(content, |k, s, e| whole.push((k, s, e)))
            .unwrap();
        whole.sort_unstable();
        assert_eq!(whole.len(), 8);
        for chunk in 1..=6 {
            let mut chunked = Vec::new();
            compiled
                .searcher()
                .find_in_chunks(content, chunk, |k, s, e| chunked.push((k, s, e)))
                .unwrap();
            chunked.sort_unstable();
            assert_eq!(chunked, whole, "chunks of {chunk} bytes");
        }
    }
}
