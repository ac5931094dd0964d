//! One level of decoding for the `secrets` engine: regions of a blob that are base64, percent
//! (URL) encoded or JSON-string escaped are decoded, and the decoded text is scanned too, so a
//! token hidden in `Authorization: Basic …`, a Kubernetes Secret's `data:`, a `%2F`-encoded URL
//! or a JSON-escaped PEM is found. An XML element whose value stands on a line of its own
//! (`<apiToken>` / value / `</apiToken>`) is rewritten as `apiToken = value`, the shape rules
//! that need a name next to the value read. Only text-like results are kept: decoding random base64 (an
//! image, a hash) gives binary, which is dropped before any rule runs.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

/// How a region was encoded; named in the findings it reveals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Base64,
    Percent,
    JsonEscape,
    /// Not an encoding but a layout: an XML element's value on a line of its own.
    XmlElement,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Base64 => "base64",
            Encoding::Percent => "url",
            Encoding::JsonEscape => "json",
            Encoding::XmlElement => "xml",
        }
    }

    /// Whether the text is the value as written (a layout, not an encoding), so rules that
    /// expect plain text (the generic ones) apply to it too.
    pub fn is_layout(self) -> bool {
        self == Encoding::XmlElement
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
    xml_element_regions(content, &mut out);
    out.sort_by_key(|d| (d.start, d.end));
    out
}

/// Bit `i` set when `block[i]` is in a base64 alphabet: sixteen bytes at a time with SSE2, which
/// every x86-64 has, whose byte mask (`movemask`) gives the bits at once. The same as
/// [`alphabet_mask_portable`] (a unit test compares them on every byte value).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn alphabet_mask(block: &[u8; 64]) -> u64 {
    // SAFETY: SSE2 is enabled for this build (the `cfg` above): the instructions exist on every
    // CPU it runs on.
    #[allow(unsafe_code)]
    unsafe {
        alphabet_mask_sse2(block)
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn alphabet_mask_sse2(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x,
        _mm_set1_epi8, _mm_sub_epi8,
    };
    let mut mask = 0u64;
    for (i, sixteen) in block.chunks_exact(16).enumerate() {
        let half = |from: usize| {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(&sixteen[from..from + 8]);
            i64::from_le_bytes(eight)
        };
        let c = _mm_set_epi64x(half(8), half(0));
        // `x < n` unsigned, as `min(x, n - 1) == x`.
        let below = |x, n: i8| _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(n - 1)), x);
        let lower = _mm_or_si128(c, _mm_set1_epi8(0x20));
        let letter = below(_mm_sub_epi8(lower, _mm_set1_epi8(b'a' as i8)), 26);
        let digit = below(_mm_sub_epi8(c, _mm_set1_epi8(b'0' as i8)), 10);
        let is = |b: u8| _mm_cmpeq_epi8(c, _mm_set1_epi8(b as i8));
        let sign = _mm_or_si128(
            _mm_or_si128(is(b'+'), is(b'/')),
            _mm_or_si128(is(b'-'), is(b'_')),
        );
        let flags = _mm_or_si128(_mm_or_si128(letter, digit), sign);
        // The sixteen flags' top bits, in the low 16 bits.
        let bits = _mm_movemask_epi8(flags) as u16;
        mask |= u64::from(bits) << (i * 16);
    }
    mask
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn alphabet_mask(block: &[u8; 64]) -> u64 {
    alphabet_mask_portable(block)
}

/// [`alphabet_mask`] without vector instructions. Classifying into bytes first and then
/// packing eight flags at a time with one multiplication lets the compiler vectorise it.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn alphabet_mask_portable(block: &[u8; 64]) -> u64 {
    let mut flags = [0u8; 64];
    for (flag, &c) in flags.iter_mut().zip(block) {
        let letter = (c | 0x20).wrapping_sub(b'a') < 26;
        let digit = c.wrapping_sub(b'0') < 10;
        let sign = (c == b'+') | (c == b'/') | (c == b'-') | (c == b'_');
        *flag = u8::from(letter | digit | sign);
    }
    let mut mask = 0u64;
    for (i, eight) in flags.chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(eight);
        // Flag k (0 or 1) of the eight lands in bit 56 + k; nothing carries into those bits.
        let packed = u64::from_le_bytes(word).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        mask |= packed << (i * 8);
    }
    mask
}

/// How many 64-byte blocks are classified at once, before their runs are looked at.
const BATCH: usize = 64;

/// `masks[i]` is the [`alphabet_mask`] of the `i`-th 64 bytes of `content` (zeros, outside the
/// alphabet, past its end). With AVX2 (most x86-64 CPUs since 2013, asked at run time), 32 bytes
/// at a time by two table lookups (`vpshufb`), a quarter of the SSE2 comparisons' instructions.
fn alphabet_masks(content: &[u8], masks: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (asked just above).
        #[allow(unsafe_code)]
        unsafe {
            alphabet_masks_avx2(content, masks);
        }
        return;
    }
    alphabet_masks_by_block(content, masks);
}

/// [`alphabet_masks`] one [`alphabet_mask`] at a time (SSE2, or portable code).
fn alphabet_masks_by_block(content: &[u8], masks: &mut [u64]) {
    let mut spare = [0u8; 64];
    for (mask, chunk) in masks.iter_mut().zip(content.chunks(64)) {
        *mask = alphabet_mask(block(chunk, &mut spare));
    }
}

/// `chunk` (at most 64 bytes) as a block: itself when whole, else copied into `spare` and
/// followed by zeros (outside the alphabet).
fn block<'b>(chunk: &'b [u8], spare: &'b mut [u8; 64]) -> &'b [u8; 64] {
    match <&[u8; 64]>::try_from(chunk) {
        Ok(whole) => whole,
        Err(_) => {
            spare.fill(0);
            spare[..chunk.len()].copy_from_slice(chunk);
            spare
        }
    }
}

/// The alphabet split by a byte's high nibble, one bit per part; a byte is in it when the bits
/// its low nibble and its high nibble select share one. High nibble 2: `+` `-` `/` (bit 0);
/// 3: digits (bit 1); 4 and 6: letters from low nibble 1 (bit 2); 5 and 7: letters up to low
/// nibble 10 (bit 3), and 5 also `_` (bit 4). Bytes of 0x80 and more select nothing.
const LOW_NIBBLE: [u8; 16] = {
    let mut table = [0u8; 16];
    let mut low = 0;
    while low < 16 {
        let mut bits = 0;
        if low == 0xb || low == 0xd || low == 0xf {
            bits |= 1;
        }
        if low <= 9 {
            bits |= 2;
        }
        if low >= 1 {
            bits |= 4;
        }
        if low <= 0xa {
            bits |= 8;
        }
        if low == 0xf {
            bits |= 16;
        }
        table[low] = bits;
        low += 1;
    }
    table
};
const HIGH_NIBBLE: [u8; 16] = [0, 0, 1, 2, 4, 8 | 16, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0];

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn alphabet_masks_avx2(content: &[u8], masks: &mut [u64]) {
    use std::arch::x86_64::{
        __m256i, _mm_loadu_si128, _mm256_and_si256, _mm256_broadcastsi128_si256, _mm256_cmpeq_epi8,
        _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8, _mm256_setzero_si256,
        _mm256_shuffle_epi8, _mm256_srli_epi16,
    };
    // SAFETY: each load reads 16 bytes of a 16-byte table.
    #[allow(unsafe_code)]
    let (low, high) = unsafe {
        (
            _mm256_broadcastsi128_si256(_mm_loadu_si128(LOW_NIBBLE.as_ptr().cast())),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(HIGH_NIBBLE.as_ptr().cast())),
        )
    };
    let nibble = _mm256_set1_epi8(0x0f);
    // Bit i set when byte i of the 32 is in the alphabet.
    let inside = |c: __m256i| {
        let by_low = _mm256_shuffle_epi8(low, _mm256_and_si256(c, nibble));
        let by_high = _mm256_shuffle_epi8(high, _mm256_and_si256(_mm256_srli_epi16(c, 4), nibble));
        let outside = _mm256_cmpeq_epi8(_mm256_and_si256(by_low, by_high), _mm256_setzero_si256());
        u64::from(!(_mm256_movemask_epi8(outside) as u32))
    };
    let mut spare = [0u8; 64];
    for (mask, chunk) in masks.iter_mut().zip(content.chunks(64)) {
        let block = block(chunk, &mut spare);
        // SAFETY: `block` holds 64 bytes: each load reads 32 of them.
        #[allow(unsafe_code)]
        let (first, second) = unsafe {
            (
                _mm256_loadu_si256(block.as_ptr().cast()),
                _mm256_loadu_si256(block.as_ptr().add(32).cast()),
            )
        };
        *mask = inside(first) | (inside(second) << 32);
    }
}

/// Whether `bits` has `min` (at most 64) consecutive set bits.
fn has_run(bits: u64, min: usize) -> bool {
    let (mut run, mut have) = (bits, 1);
    while have < min && run != 0 {
        let shift = (min - have).min(have);
        run &= run >> shift;
        have += shift;
    }
    run != 0
}

/// Calls `found(start, stop)` for every maximal run of base64 alphabet bytes at least `min`
/// (at most 64) long, in order. Works 64 bytes at a time ([`BATCH`] blocks classified, then
/// their runs found): a block with no such run and none crossing its edges costs a few word
/// operations.
fn long_runs(content: &[u8], min: usize, mut found: impl FnMut(usize, usize)) {
    // The start of a run that reached the end of the previous block.
    let mut open: Option<usize> = None;
    let mut masks = [0u64; BATCH];
    for (batch_index, batch) in content.chunks(BATCH * 64).enumerate() {
        let masks = &mut masks[..batch.len().div_ceil(64)];
        alphabet_masks(batch, masks);
        for (index, &mask) in masks.iter().enumerate() {
            let base = (batch_index * BATCH + index) * 64;
            block_runs(base, mask, min, &mut open, &mut found);
        }
    }
    if let Some(start) = open
        && content.len() - start >= min
    {
        found(start, content.len());
    }
}

/// The runs [`long_runs`] finds in the block at `base`, whose alphabet bits are `mask`: a run
/// `open` from earlier blocks ends here or goes on, and a run reaching the block's end is left
/// `open` for the next.
#[inline(always)]
fn block_runs(
    base: usize,
    mask: u64,
    min: usize,
    open: &mut Option<usize>,
    found: &mut impl FnMut(usize, usize),
) {
    let mut rest = mask;
    if let Some(start) = *open {
        let ones = mask.trailing_ones() as usize;
        if ones == 64 {
            return;
        }
        if base + ones - start >= min {
            found(start, base + ones);
        }
        *open = None;
        // Bit `ones` is clear: the run ended before it.
        rest = mask & (!0u64 << ones);
    }
    // A run reaching the block's end may go on: it is settled in the next block.
    let top = rest.leading_ones() as usize;
    if top > 0 {
        *open = Some(base + 64 - top);
        rest &= u64::MAX.checked_shr(top as u32).unwrap_or(0);
    }
    if !has_run(rest, min) {
        return;
    }
    while rest != 0 {
        let from = rest.trailing_zeros() as usize;
        let len = (rest >> from).trailing_ones() as usize;
        if len >= min {
            found(base + from, base + from + len);
        }
        // Below the top run, so from + len < 64.
        rest &= !0u64 << (from + len);
    }
}

fn base64_regions(content: &[u8], out: &mut Vec<Decoded>) {
    long_runs(content, MIN_BASE64, |start, stop| {
        let mut end = stop;
        while end < content.len() && content[end] == b'=' && end - stop < 2 {
            end += 1;
        }
        let run = &content[start..stop];
        if run.len() > MAX_REGION || !may_be_text(run) {
            return;
        }
        // Words and identifiers are letters only; base64 of text mixes cases and digits.
        if !run.iter().any(u8::is_ascii_digit) && !run.contains(&b'+') && !run.contains(&b'/') {
            return;
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
    });
}

/// False only when the decoding of `run` (base64 from its first byte) cannot pass [`is_text`],
/// read off every fourth character without decoding: the first character of each group of four
/// carries the top six bits of a decoded byte, so one outside `A-Z`/`a-f` (values 32 and up)
/// decodes to a byte of 0x80 or more, which `is_text` counts against its 5 %. Most runs that are
/// not base64 of text (paths, identifiers, hashes, binary data) fail here, before any decoding.
fn may_be_text(run: &[u8]) -> bool {
    let decoded = run.len() / 4 * 3 + (run.len() % 4).saturating_sub(1);
    // `is_text` wants at most 5 % of the decoded bytes outside printable ASCII.
    let allowed = decoded * 5 / 100;
    let mut high = 0;
    for &c in run.iter().step_by(4) {
        if !(c.is_ascii_uppercase() || (b'a'..=b'f').contains(&c)) {
            high += 1;
            if high > allowed {
                return false;
            }
        }
    }
    true
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
    // `from` passes the end when the content ends with a backslash (an escape cut short).
    while let Some(found) = content
        .get(from..)
        .and_then(|rest| memchr::memchr(b'\\', rest))
    {
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

/// Characters of an XML element name (no namespace prefix handling needed: `:` is allowed).
fn is_xml_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')
}

/// The line of `content` starting at `start`, without its line feed (and carriage return), and
/// where the next line starts.
fn line_at(content: &[u8], start: usize) -> (&[u8], usize) {
    let end = memchr::memchr(b'\n', &content[start..]).map_or(content.len(), |p| start + p);
    let line = &content[start..end];
    (
        line.strip_suffix(b"\r").unwrap_or(line),
        (end + 1).min(content.len()),
    )
}

/// Longest XML element name read.
const MAX_XML_NAME: usize = 128;

fn xml_element_regions(content: &[u8], out: &mut Vec<Decoded>) {
    // `<name>` ending a line, one value alone on the next line, `</name>` starting the one after.
    // Lines end with a line feed, or a carriage return and a line feed. Content without a
    // closing tag (most source files) has no such element and is not searched further.
    // Searchers made once (making one costs as much as searching a small file).
    static CLOSING: LazyLock<[memchr::memmem::Finder<'static>; 3]> =
        LazyLock::new(|| [b"</".as_slice(), b">\n", b">\r\n"].map(memchr::memmem::Finder::new));
    let [closing_tag, end, crlf_end] = &*CLOSING;
    if closing_tag.find(content).is_none() {
        return;
    }
    let ends = end.find_iter(content).map(|close| (close, close + 2));
    let crlf_ends = crlf_end.find_iter(content).map(|close| (close, close + 3));
    let crlf = memchr::memchr(b'\r', content).is_some();
    for (close, value_start) in ends.chain(crlf_ends.filter(|_| crlf)) {
        // A name is at most MAX_XML_NAME bytes: the tag's `<` is searched for that far back only.
        let floor = close.saturating_sub(MAX_XML_NAME + 1);
        let Some(open) = memchr::memrchr(b'<', &content[floor..close]).map(|p| floor + p) else {
            continue;
        };
        let name = &content[open + 1..close];
        if name.is_empty() || !name.iter().all(|&b| is_xml_name(b)) {
            continue;
        }
        let (value_line, next) = line_at(content, value_start);
        let value = value_line.trim_ascii();
        if value.len() < 8
            || value.len() > 1024
            || value.iter().any(|&b| b == b'<' || b.is_ascii_whitespace())
        {
            continue;
        }
        let (closing_line, _) = line_at(content, next);
        let closing = closing_line.trim_ascii_start();
        let Some(after) = closing.strip_prefix(b"</") else {
            continue;
        };
        if !after.starts_with(name) || after.get(name.len()) != Some(&b'>') {
            continue;
        }
        let end = next + (closing_line.len() - closing.len()) + 2 + name.len() + 1;
        let mut text = Vec::with_capacity(name.len() + value.len() + 4);
        text.extend_from_slice(name);
        text.extend_from_slice(b" = ");
        text.extend_from_slice(value);
        text.push(b'\n');
        out.push(Decoded {
            start: open,
            end,
            encoding: Encoding::XmlElement,
            text,
        });
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

    /// Maximal runs of alphabet bytes at least `min` long, byte by byte.
    fn runs_one_by_one(content: &[u8], min: usize) -> Vec<(usize, usize)> {
        let alphabet = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_');
        let mut runs = Vec::new();
        let mut at = 0;
        while at < content.len() {
            let start = at;
            while at < content.len() && alphabet(content[at]) {
                at += 1;
            }
            if at - start >= min {
                runs.push((start, at));
            }
            at += 1;
        }
        runs
    }

    #[test]
    fn long_runs_span_whole_blocks() {
        for lead in [0, 1, 23, 63, 64, 65] {
            for len in [23, 24, 63, 64, 65, 127, 128, 129, 200] {
                for tail in ["", "!", "!AAAA"] {
                    let content = format!("{}{}{tail}", "!".repeat(lead), "Q".repeat(len));
                    let mut runs = Vec::new();
                    long_runs(content.as_bytes(), 24, |start, stop| {
                        runs.push((start, stop))
                    });
                    assert_eq!(
                        runs,
                        runs_one_by_one(content.as_bytes(), 24),
                        "lead {lead}, len {len}, tail {tail:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_alphabet_mask_classifies_every_byte_value_as_the_portable_one_does() {
        // Every byte value at every position.
        for base in 0..=255u8 {
            let mut block = [0u8; 64];
            for (i, byte) in block.iter_mut().enumerate() {
                *byte = base.wrapping_add(i as u8);
            }
            assert_eq!(
                alphabet_mask(&block),
                alphabet_mask_portable(&block),
                "{block:?}"
            );
        }
        let mut block = [b'!'; 64];
        block[..8].copy_from_slice(b"aZ09+/-_");
        assert_eq!(alphabet_mask(&block), 0xff);
    }

    #[test]
    fn the_batched_masks_classify_every_byte_value_as_the_portable_one_does() {
        // Every byte value at every position, then a short last block padded with zeros.
        let content: Vec<u8> = (0..256 * 64 + 37).map(|i| (i % 251) as u8).collect();
        let expected: Vec<u64> = content
            .chunks(64)
            .map(|chunk| {
                let mut padded = [0u8; 64];
                padded[..chunk.len()].copy_from_slice(chunk);
                alphabet_mask_portable(&padded)
            })
            .collect();
        let mut masks = vec![0; expected.len()];
        alphabet_masks(&content, &mut masks);
        assert_eq!(masks, expected);
        let mut masks = vec![0; expected.len()];
        alphabet_masks_by_block(&content, &mut masks);
        assert_eq!(masks, expected, "block by block");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let mut masks = vec![0; expected.len()];
            // SAFETY: the CPU has AVX2 (asked just above).
            #[allow(unsafe_code)]
            unsafe {
                alphabet_masks_avx2(&content, &mut masks);
            }
            assert_eq!(masks, expected, "AVX2");
        }
    }

    #[test]
    fn long_runs_cross_batches() {
        let edge = BATCH * 64;
        for (lead, len) in [
            (edge - 24, 24),
            (edge - 10, 40),
            (edge - 1, 200),
            (edge, 24),
        ] {
            for tail in ["", "!"] {
                let content = format!("{}{}{tail}", "!".repeat(lead), "Q".repeat(len));
                let mut runs = Vec::new();
                long_runs(content.as_bytes(), 24, |start, stop| {
                    runs.push((start, stop))
                });
                assert_eq!(runs, [(lead, lead + len)], "lead {lead}, len {len}");
            }
        }
        let long = "Q".repeat(3 * edge + 5);
        let mut runs = Vec::new();
        long_runs(long.as_bytes(), 24, |start, stop| runs.push((start, stop)));
        assert_eq!(runs, [(0, long.len())]);
    }

    proptest::proptest! {
        /// Any bytes, dense in what the finders look for, and however they end: regions are
        /// found without a panic, each inside the content.
        #[test]
        fn any_content_is_searched_for_regions_without_a_panic(
            content in proptest::collection::vec(
                proptest::prop_oneof![
                    6 => proptest::sample::select(b"\\\"%<>/\n\r=&uU0aZ+-_ ".to_vec()),
                    1 => proptest::num::u8::ANY,
                ],
                0..300,
            ),
        ) {
            for region in regions(&content) {
                proptest::prop_assert!(region.start <= region.end && region.end <= content.len());
            }
        }

        /// Block by block finds the runs byte by byte finds, across block edges and at the end.
        #[test]
        fn long_runs_are_the_runs_found_byte_by_byte(
            content in proptest::collection::vec(
                proptest::prop_oneof![8 => proptest::sample::select(b"aZ09+/-_".to_vec()),
                    1 => proptest::num::u8::ANY],
                0..700,
            ),
            min in 1usize..=64,
        ) {
            let mut runs = Vec::new();
            long_runs(&content, min, |start, stop| runs.push((start, stop)));
            proptest::prop_assert_eq!(runs, runs_one_by_one(&content, min));
        }

        /// The shortcut never drops a run whose decoding is text: runs of base64 of text with a
        /// few bytes of any value, of random bytes, and of random base64 characters.
        #[test]
        fn may_be_text_never_rejects_text(
            text in proptest::collection::vec(
                proptest::prop_oneof![9 => 0x20u8..0x7f, 1 => proptest::num::u8::ANY],
                16..400,
            ),
            noise in proptest::collection::vec(proptest::sample::select(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_".to_vec(),
            ), 24..200),
        ) {
            for run in [base64_of(&text).trim_end_matches('=').as_bytes().to_vec(), noise] {
                let url_safe = run.contains(&b'-') || run.contains(&b'_');
                let decodes_to_text = BASE64_ENGINES[usize::from(url_safe)]
                    .decode(&run)
                    .is_ok_and(|t| is_text(&t));
                proptest::prop_assert!(!decodes_to_text || may_be_text(&run), "{:?}", run);
            }
        }
    }

    #[test]
    fn may_be_text_rejects_paths_and_identifiers() {
        assert!(may_be_text(
            base64_of(b"user=admin password=Zq8rT2mVx9Lk").as_bytes()
        ));
        assert!(!may_be_text(
            b"src/runtime/scheduler/multi_thread/worker.rs"
        ));
        assert!(!may_be_text(
            b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ));
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
    fn an_xml_value_on_a_line_of_its_own_reads_as_an_assignment() {
        let xml = "<config>\n  <apiToken>\n    Zq8rT2mVx9Lk3Np7\n  </apiToken>\r\n  <name>\n    two words\n  </name>\n  <a>\n    Zq8rT2mVx9Lk3Np7\n  </b>\n  <dbPassword>\r\n    Wq7ZfR2mXk9LpV4s\r\n  </dbPassword>\r\n</config>\n";
        let found = regions(xml.as_bytes());
        let texts: Vec<&[u8]> = found.iter().map(|d| d.text.as_slice()).collect();
        assert_eq!(
            texts,
            [
                &b"apiToken = Zq8rT2mVx9Lk3Np7\n"[..],
                b"dbPassword = Wq7ZfR2mXk9LpV4s\n"
            ]
        );
        assert!(found.iter().all(|d| d.encoding == Encoding::XmlElement));
        assert_eq!(
            &xml[found[0].start..found[0].end],
            "<apiToken>\n    Zq8rT2mVx9Lk3Np7\n  </apiToken>"
        );
        assert_eq!(
            &xml[found[1].start..found[1].end],
            "<dbPassword>\r\n    Wq7ZfR2mXk9LpV4s\r\n  </dbPassword>"
        );
    }

    #[test]
    fn content_ending_in_a_backslash_is_read_to_its_end() {
        // A file, or a window of a large one, may end in the middle of an escape.
        for content in [
            &b"\\"[..],
            b"abc\\",
            b"x = \"abc\\",
            b"\"\\",
            b"\"a\\n\" \\",
            b"\"-----BEGIN KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\",
        ] {
            regions(content);
        }
        let hidden = b"\"line one\\nline two with a password\" \\";
        assert_eq!(regions(hidden).len(), 1);
    }

    #[test]
    fn plain_strings_and_unfinished_literals_are_left_alone() {
        assert!(regions(br#"say("hello world, nothing escaped here")"#).is_empty());
        assert!(regions(b"path = \"C:\\\\dir\\\\file\" and an unfinished \"\\n").is_empty());
    }
}
