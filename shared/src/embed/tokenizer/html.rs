//! HTML character references, decoded exactly as Python's `html.unescape` and
//! ftfy's `unescape_html` do (CLIP's cleanup runs both), over the HTML5 entity
//! table (`htmlize::ENTITIES`, the same 2231 WHATWG names as `html.entities.html5`).

use std::collections::HashMap;

/// Python's `html._invalid_charrefs`: numeric references the HTML5 spec remaps
/// (0x80..=0x9F as Windows-1252, the undefined five kept as C1 controls).
const REMAPPED_CHARREFS: [(u32, char); 34] = [
    (0x00, '\u{fffd}'),
    (0x0d, '\r'),
    (0x80, '\u{20ac}'),
    (0x81, '\u{81}'),
    (0x82, '\u{201a}'),
    (0x83, '\u{0192}'),
    (0x84, '\u{201e}'),
    (0x85, '\u{2026}'),
    (0x86, '\u{2020}'),
    (0x87, '\u{2021}'),
    (0x88, '\u{02c6}'),
    (0x89, '\u{2030}'),
    (0x8a, '\u{0160}'),
    (0x8b, '\u{2039}'),
    (0x8c, '\u{0152}'),
    (0x8d, '\u{8d}'),
    (0x8e, '\u{017d}'),
    (0x8f, '\u{8f}'),
    (0x90, '\u{90}'),
    (0x91, '\u{2018}'),
    (0x92, '\u{2019}'),
    (0x93, '\u{201c}'),
    (0x94, '\u{201d}'),
    (0x95, '\u{2022}'),
    (0x96, '\u{2013}'),
    (0x97, '\u{2014}'),
    (0x98, '\u{02dc}'),
    (0x99, '\u{2122}'),
    (0x9a, '\u{0161}'),
    (0x9b, '\u{203a}'),
    (0x9c, '\u{0153}'),
    (0x9d, '\u{9d}'),
    (0x9e, '\u{017e}'),
    (0x9f, '\u{0178}'),
];

/// Windows-1252 reading of a C1 control (U+0080..=U+009F), as ftfy's
/// `fix_c1_controls` ("sloppy" codec: the five undefined bytes stay as they are).
pub(super) fn c1_as_windows_1252(c: char) -> Option<char> {
    let cp = u32::from(c);
    if !(0x80..=0x9f).contains(&cp) {
        return None;
    }
    REMAPPED_CHARREFS.iter().find(|(n, _)| *n == cp).map(|(_, c)| *c)
}

/// Python's `html._invalid_codepoints`: numeric references that decode to nothing.
fn is_dropped_codepoint(cp: u32) -> bool {
    matches!(cp, 0x01..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f..=0x9f | 0xfdd0..=0xfdef)
        || (cp & 0xfffe == 0xfffe && cp <= 0x10ffff)
}

fn numeric_charref(num: u32) -> Option<char> {
    if let Some((_, c)) = REMAPPED_CHARREFS.iter().find(|(n, _)| *n == num) {
        return Some(*c);
    }
    if (0xd800..=0xdfff).contains(&num) || num > 0x10ffff {
        return Some('\u{fffd}');
    }
    if is_dropped_codepoint(num) {
        return None;
    }
    char::from_u32(num)
}

/// The HTML5 expansion of `name` (without the `&`, with its `;` if any).
fn html5(name: &str) -> Option<&'static str> {
    let mut key = Vec::with_capacity(name.len() + 1);
    key.push(b'&');
    key.extend_from_slice(name.as_bytes());
    htmlize::ENTITIES.get(key.as_slice()).and_then(|v| std::str::from_utf8(v).ok())
}

/// Parses `digits` in `radix`, saturating above U+10FFFF (Python's int is unbounded;
/// every value past the Unicode range decodes to U+FFFD alike).
fn parse_saturating(digits: &str, radix: u32) -> u32 {
    digits
        .chars()
        .filter_map(|d| d.to_digit(radix))
        .fold(0u32, |acc, d| acc.saturating_mul(radix).saturating_add(d).min(0x11_0000))
}

/// Python's `html.unescape(s)`: the regex
/// `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`, each match replaced by
/// `_replace_charref` (numeric remapping, longest legacy-name prefix for unknown names).
pub(super) fn py_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match charref_at(after, &mut out) {
            Some(consumed) => rest = &after[consumed..],
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Decodes the reference starting right after an `&`, appending its expansion to `out`;
/// returns the bytes consumed, or `None` where the regex does not match here.
fn charref_at(after: &str, out: &mut String) -> Option<usize> {
    let bytes = after.as_bytes();
    if bytes.first() == Some(&b'#') {
        let (radix, start) = match bytes.get(1) {
            Some(b'x' | b'X') => (16, 2),
            _ => (10, 1),
        };
        let digits = after[start..]
            .bytes()
            .take_while(|b| if radix == 16 { b.is_ascii_hexdigit() } else { b.is_ascii_digit() })
            .count();
        if digits == 0 {
            // `#` is outside the name class, so no other alternative matches either.
            return None;
        }
        let end = start + digits;
        let consumed = end + usize::from(bytes.get(end) == Some(&b';'));
        if let Some(c) = numeric_charref(parse_saturating(&after[start..end], radix)) {
            out.push(c);
        }
        return Some(consumed);
    }
    let name_len: usize = after
        .chars()
        .take_while(|c| !matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';'))
        .take(32)
        .map(char::len_utf8)
        .sum();
    if name_len == 0 {
        return None;
    }
    let consumed = name_len + usize::from(after.as_bytes().get(name_len) == Some(&b';'));
    let name = &after[..consumed];
    if let Some(expansion) = html5(name) {
        out.push_str(expansion);
        return Some(consumed);
    }
    // Longest prefix of at least two characters that is a (legacy, semicolon-less) name.
    let boundaries: Vec<usize> = name.char_indices().map(|(i, _)| i).skip(2).collect();
    for &cut in boundaries.iter().rev() {
        if let Some(expansion) = html5(&name[..cut]) {
            out.push_str(expansion);
            out.push_str(&name[cut..]);
            return Some(consumed);
        }
    }
    out.push('&');
    out.push_str(name);
    Some(consumed)
}

/// ftfy's entity table (`ftfy.chardata.HTML_ENTITIES`): every HTML5 name with its
/// semicolon, plus the upper-cased form of each all-lowercase name that HTML5 itself
/// does not decode (`&EACUTE;` -> `É`), mapped to the upper-cased expansion.
pub(super) struct FtfyEntities {
    upper: HashMap<String, String>,
}

impl FtfyEntities {
    pub(super) fn new() -> Self {
        let mut upper = HashMap::new();
        for (key, value) in htmlize::ENTITIES.entries() {
            let (Ok(key), Ok(value)) = (std::str::from_utf8(key), std::str::from_utf8(value)) else { continue };
            if !key.ends_with(';') || key != key.to_lowercase() {
                continue;
            }
            let key_upper = key.to_uppercase();
            if py_unescape(&key_upper) == key_upper {
                upper.insert(key_upper, value.to_uppercase());
            }
        }
        Self { upper }
    }

    /// ftfy's `unescape_html`: each match of `&#?[0-9A-Za-z]{1,24};` is replaced if it
    /// is in the table, or if it is numeric and `html.unescape` consumes it whole.
    pub(super) fn unescape(&self, s: &str) -> String {
        if !s.contains('&') {
            return s.to_owned();
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(amp) = rest.find('&') {
            out.push_str(&rest[..amp]);
            let candidate = &rest[amp..];
            match Self::reference_len(candidate) {
                Some(len) => {
                    out.push_str(&self.replace(&candidate[..len]));
                    rest = &candidate[len..];
                }
                None => {
                    out.push('&');
                    rest = &candidate[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Length of the `&#?[0-9A-Za-z]{1,24};` match at the start of `s`, if any.
    fn reference_len(s: &str) -> Option<usize> {
        let bytes = s.as_bytes();
        let start = if bytes.get(1) == Some(&b'#') { 2 } else { 1 };
        let run = bytes[start..].iter().take_while(|b| b.is_ascii_alphanumeric()).count();
        ((1..=24).contains(&run) && bytes.get(start + run) == Some(&b';')).then_some(start + run + 1)
    }

    fn replace(&self, reference: &str) -> String {
        let name = &reference[1..];
        if let Some(expansion) = html5(name).filter(|_| name.ends_with(';')) {
            return expansion.to_owned();
        }
        if let Some(expansion) = self.upper.get(reference) {
            return expansion.clone();
        }
        if reference.starts_with("&#") {
            let decoded = py_unescape(reference);
            // Only a reference decoded whole counts (`&#12a;` is left alone).
            if !decoded.contains(';') {
                return decoded;
            }
        }
        reference.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_py_unescape_cases() {
        for (input, want) in [
            ("&amp; &lt; &gt; &quot; &#39;", "& < > \" '"),
            ("&amp;amp;", "&amp;"),
            ("fish &amp chips", "fish & chips"),
            ("&notit; &copy2024", "\u{ac}it; \u{a9}2024"),
            ("&#65 &#x42; &#X43", "A B C"),
            ("&#0; &#128; &#x81; &#1; &#xD800; &#99999999999999999999;", "\u{fffd} \u{20ac} \u{81}  \u{fffd} \u{fffd}"),
            ("&#; &#x; & &; &unknown; a&b", "&#; &#x; & &; &unknown; a&b"),
            ("&#xFFFE; &#x10FFFF; &#xFDD0;", "  "),
        ] {
            assert_eq!(py_unescape(input), want, "{input:?}");
        }
    }

    #[test]
    fn tokenizer_ftfy_unescape_cases() {
        let e = FtfyEntities::new();
        for (input, want) in [
            ("&EACUTE; &eacute; &AMP; &SZLIG;", "\u{c9} \u{e9} & SS"),
            ("&amp chips", "&amp chips"),
            ("&#65; &#12a; &#abc;", "A &#12a; &#abc;"),
            ("&abcdefghijklmnopqrstuvwxyz; &amp;", "&abcdefghijklmnopqrstuvwxyz; &"),
        ] {
            assert_eq!(e.unescape(input), want, "{input:?}");
        }
        assert_eq!(e.upper.len(), 1376, "ftfy 6.3.1 adds 1376 upper-case names");
    }
}
