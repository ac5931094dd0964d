//! One level of decoding for the `secrets` engine: regions of a blob that are base64, percent
//! (URL) encoded or JSON-string escaped are decoded, and the decoded text is scanned too, so a
//! token hidden in `Authorization: Basic …`, a Kubernetes Secret's `data:`, a `%2F`-encoded URL
//! or a JSON-escaped PEM is found. Only text-like results are kept: decoding random base64 (an
//! image, a hash) gives binary, which is dropped before any rule runs.

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

/// How a region was encoded; named in the findings it reveals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Base64,
    Percent,
    JsonEscape,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Base64 => "base64",
            Encoding::Percent => "url",
            Encoding::JsonEscape => "json",
        }
    }
}

/// A decoded region: `start..end` in the scanned content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub start: usize,
    pub end: usize,
    pub encoding: Encoding,
    pub text: Vec<u8>,
}

/// Shortest base64 run decoded: 24 characters are 18 bytes, enough for a 20-character key
/// id encoded alone (a Kubernetes Secret's `data:` value).
const MIN_BASE64: usize = 24;
/// Longest region decoded; longer ones are data, not configuration.
const MAX_REGION: usize = 64 * 1024;
/// Shortest decoded text kept.
const MIN_TEXT: usize = 16;

/// Bytes of the standard and URL-safe base64 alphabets.
const BASE64: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_');
        b += 1;
    }
    table
};

fn is_base64(b: u8) -> bool {
    BASE64[usize::from(b)]
}

/// Text-like: printable ASCII or common whitespace, at least 95 % of it, and no NUL.
fn is_text(bytes: &[u8]) -> bool {
    if bytes.len() < MIN_TEXT || bytes.contains(&0) {
        return false;
    }
    let printable = bytes
        .iter()
        .filter(|&&b| (0x20..0x7f).contains(&b) || matches!(b, b'\n' | b'\r' | b'\t'))
        .count();
    printable * 100 >= bytes.len() * 95
}

/// Standard or URL-safe alphabet, padding optional.
const BASE64_CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const BASE64_ENGINES: [GeneralPurpose; 2] = [
    GeneralPurpose::new(&base64::alphabet::STANDARD, BASE64_CONFIG),
    GeneralPurpose::new(&base64::alphabet::URL_SAFE, BASE64_CONFIG),
];

/// Every encoded region of `content` whose decoding is text, in order of position.
pub fn regions(content: &[u8]) -> Vec<Decoded> {
    let mut out = Vec::new();
    base64_regions(content, &mut out);
    percent_regions(content, &mut out);
    json_regions(content, &mut out);
    out.sort_by_key(|d| (d.start, d.end));
    out
}

fn base64_regions(content: &[u8], out: &mut Vec<Decoded>) {
    // `at` follows a byte outside the alphabet (or is 0), so no run extends before it. A run of
    // MIN_BASE64 bytes from `at` or later covers the byte MIN_BASE64 - 1 ahead: when that byte
    // is outside the alphabet, all of those starts are skipped at once.
    let mut at = 0;
    while at + MIN_BASE64 <= content.len() {
        let probe = at + MIN_BASE64 - 1;
        if !is_base64(content[probe]) {
            at = probe + 1;
            continue;
        }
        let mut start = probe;
        while start > at && is_base64(content[start - 1]) {
            start -= 1;
        }
        let mut stop = probe + 1;
        while stop < content.len() && is_base64(content[stop]) {
            stop += 1;
        }
        let mut end = stop;
        while end < content.len() && content[end] == b'=' && end - stop < 2 {
            end += 1;
        }
        // Past the run and its padding; without padding, past the byte that ended it.
        at = if end > stop { end } else { stop + 1 };
        let run = &content[start..stop];
        if run.len() < MIN_BASE64 || run.len() > MAX_REGION {
            continue;
        }
        // Words and identifiers are letters only; base64 of text mixes cases and digits.
        if !run.iter().any(u8::is_ascii_digit) && !run.contains(&b'+') && !run.contains(&b'/') {
            continue;
        }
        let url_safe = run.contains(&b'-') || run.contains(&b'_');
        let engine = &BASE64_ENGINES[usize::from(url_safe)];
        if let Ok(text) = engine.decode(run)
            && is_text(&text)
        {
            out.push(Decoded {
                start,
                end,
                encoding: Encoding::Base64,
                text,
            });
        }
    }
}

fn is_url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'%' | b'.' | b'_' | b'~' | b'+' | b'-' | b'=' | b'&')
}

fn percent_regions(content: &[u8], out: &mut Vec<Decoded>) {
    let mut from = 0;
    while let Some(found) = memchr::memchr(b'%', &content[from..]) {
        let pct = from + found;
        let mut start = pct;
        while start > 0 && is_url_char(content[start - 1]) {
            start -= 1;
        }
        let mut end = pct;
        while end < content.len() && is_url_char(content[end]) {
            end += 1;
        }
        from = end.max(pct + 1);
        let region = &content[start..end];
        let escapes = region
            .windows(3)
            .filter(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
            .count();
        if escapes < 2 || region.len() < MIN_TEXT || region.len() > MAX_REGION {
            continue;
        }
        let text: Vec<u8> = percent_encoding::percent_decode(region).collect();
        if is_text(&text) {
            out.push(Decoded {
                start,
                end,
                encoding: Encoding::Percent,
                text,
            });
        }
    }
}

fn json_regions(content: &[u8], out: &mut Vec<Decoded>) {
    // A JSON string literal with escapes: from a quote to the next unescaped quote on the line.
    let mut from = 0;
    while let Some(found) = memchr::memchr(b'\\', &content[from..]) {
        let slash = from + found;
        // No literal opens before `from` (the end of the last one, or a stretch already found
        // quote-free): the search back stops there, so a long line of backslashes is not
        // searched again for each of them.
        let floor =
            from.max(memchr::memrchr(b'\n', &content[from..slash]).map_or(from, |p| from + p + 1));
        let Some(open) = memchr::memrchr(b'"', &content[floor..slash]).map(|p| floor + p) else {
            from = slash + 2;
            continue;
        };
        let mut end = slash;
        let mut close = None;
        while end < content.len() && content[end] != b'\n' {
            match content[end] {
                b'\\' => end += 2,
                b'"' => {
                    close = Some(end);
                    break;
                }
                _ => end += 1,
            }
        }
        let Some(close) = close else {
            from = end.max(slash + 2);
            continue;
        };
        from = close + 1;
        let literal = &content[open..=close];
        if literal.len() < MIN_TEXT || literal.len() > MAX_REGION {
            continue;
        }
        // Only escapes that change what a rule sees: \n, \/, \uXXXX, \t, \".
        let inner = &content[open + 1..close];
        let meaningful = inner
            .windows(2)
            .any(|w| w[0] == b'\\' && matches!(w[1], b'n' | b'/' | b'u' | b't' | b'"' | b'r'));
        if !meaningful {
            continue;
        }
        if let Ok(text) = serde_json::from_slice::<String>(literal)
            && is_text(text.as_bytes())
        {
            out.push(Decoded {
                start: open + 1,
                end: close,
                encoding: Encoding::JsonEscape,
                text: text.into_bytes(),
            });
        }
    }
}

/// Encodes `text` as standard base64 (for tests and samples).
pub fn base64_of(text: &[u8]) -> String {
    general_purpose::STANDARD.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_text_is_decoded_and_binary_or_words_are_not() {
        let hidden = base64_of(b"user=admin password=Zq8rT2mVx9Lk");
        let content = format!("auth: {hidden}\nid: AbstractSingletonProxyFactoryBeanImpl\n");
        let found = regions(content.as_bytes());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].encoding, Encoding::Base64);
        assert_eq!(found[0].text, b"user=admin password=Zq8rT2mVx9Lk");
        assert_eq!(&content[found[0].start..found[0].end], hidden);
        let binary = base64_of(&[
            0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 3, 250, 251, 252, 253, 254, 255, 1, 2, 3, 4, 5, 6, 7,
            8, 9, 10,
        ]);
        assert!(regions(binary.as_bytes()).is_empty());
    }

    #[test]
    fn percent_and_json_escapes_are_decoded() {
        let url = "https://h/cb?next=%2Fhome%3Ftoken%3Dabc123def456ghi789";
        let found = regions(url.as_bytes());
        assert!(
            found.iter().any(|d| d.encoding == Encoding::Percent
                && d.text.ends_with(b"?token=abc123def456ghi789")),
            "{found:?}"
        );
        let json = r#"{"key": "-----BEGIN KEY-----\nMIIBOgIBAAJBAK\n-----END KEY-----"}"#;
        let found = regions(json.as_bytes());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].encoding, Encoding::JsonEscape);
        assert!(found[0].text.starts_with(b"-----BEGIN KEY-----\nMIIB"));
    }

    #[test]
    fn json_literals_are_found_after_backslashes_outside_strings_on_the_same_line() {
        // Backslashes before the literal (a Windows path, a regex) and between literals.
        let line = format!(
            r#"{} {{"a": "x\ty\tz\t0123456789", "b": "-----BEGIN KEY-----\nMIIBOgIBAAJBAK"}}"#,
            r"C:\dir\sub\file ".repeat(50)
        );
        let found = regions(line.as_bytes());
        let texts: Vec<String> = found
            .iter()
            .map(|d| String::from_utf8_lossy(&d.text).into_owned())
            .collect();
        assert_eq!(
            texts,
            ["x\ty\tz\t0123456789", "-----BEGIN KEY-----\nMIIBOgIBAAJBAK"]
        );
    }

    #[test]
    fn base64_runs_are_found_wherever_they_start() {
        let hidden = base64_of(b"api_key=Zq8rT2mVx9Lk3Np7Qw1Ab");
        for lead in 0..70 {
            let prefix: String = "a-b c_d\"e=f/g ".chars().cycle().take(lead).collect();
            let content = format!("{prefix} {hidden} tail");
            let found = regions(content.as_bytes());
            assert_eq!(found.len(), 1, "lead {lead}: {found:?}");
            assert_eq!(
                &content[found[0].start..found[0].end],
                hidden,
                "lead {lead}"
            );
        }
    }

    #[test]
    fn plain_strings_and_unfinished_literals_are_left_alone() {
        assert!(regions(br#"say("hello world, nothing escaped here")"#).is_empty());
        assert!(regions(b"path = \"C:\\\\dir\\\\file\" and an unfinished \"\\n").is_empty());
    }
}
