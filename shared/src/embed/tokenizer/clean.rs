//! CLIP's text cleanup: `whitespace_clean(basic_clean(text)).lower()` from OpenAI's
//! `simple_tokenizer.py`, where `basic_clean` is `ftfy.fix_text` (the subset listed in
//! the parent module's doc), `html.unescape` twice, and `strip`.

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use super::html::{c1_as_windows_1252, py_unescape, FtfyEntities};

/// ftfy's `max_decode_length`: segments longer than this many characters are cut.
const FTFY_MAX_SEGMENT_CHARS: usize = 1_000_000;

pub(super) struct Cleaner {
    entities: FtfyEntities,
    /// ftfy's `ANSI_RE`; `\d` is Unicode digits in Python `re` and in `regex` alike.
    terminal_escape: Regex,
}

impl Cleaner {
    pub(super) fn new() -> Result<Self, regex::Error> {
        Ok(Self { entities: FtfyEntities::new(), terminal_escape: Regex::new(r"\x1b\[(?:\d|;)*[a-zA-Z]")? })
    }

    /// The string `SimpleTokenizer.encode` splits into words.
    pub(super) fn clean(&self, text: &str) -> String {
        let fixed = self.fix_text(text);
        let unescaped = py_unescape(&py_unescape(&fixed));
        // `str.strip()` and `regex`'s `\s` differ only on U+001C..U+001F, which
        // `remove_control_chars` and `html.unescape` never let through.
        let words: Vec<&str> = unescaped.split(char::is_whitespace).filter(|w| !w.is_empty()).collect();
        words.join(" ").to_lowercase()
    }

    /// `ftfy.fix_text` with its default configuration, minus mojibake repair: the text is
    /// fixed line by line, and HTML unescaping ("auto") stops for good at the first line
    /// that contains a `<`.
    fn fix_text(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut unescape = true;
        let mut rest = text;
        while !rest.is_empty() {
            let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
            let end = rest[..line_end].char_indices().nth(FTFY_MAX_SEGMENT_CHARS).map_or(line_end, |(cut, _)| cut);
            let segment = &rest[..end];
            if segment.contains('<') {
                unescape = false;
            }
            out.push_str(&self.fix_segment(segment, unescape));
            rest = &rest[end..];
        }
        out
    }

    /// ftfy's `fix_and_explain`: the fixers in ftfy's order, repeated until nothing changes.
    fn fix_segment(&self, segment: &str, unescape: bool) -> String {
        let mut text = segment.to_owned();
        loop {
            let original = text.clone();
            if unescape {
                text = self.entities.unescape(&text);
            }
            // (ftfy's fix_encoding, the mojibake repair, would run here.)
            text = text.chars().map(|c| c1_as_windows_1252(c).unwrap_or(c)).collect();
            text = fix_latin_ligatures(&text);
            text = fix_character_width(&text);
            text = uncurl_quotes(&text);
            text = fix_line_breaks(&text);
            text = self.terminal_escape.replace_all(&text, "").into_owned();
            text.retain(|c| !is_removed_control(c));
            text = text.nfc().collect();
            if text == original {
                return text;
            }
        }
    }
}

/// ftfy's `LIGATURES`: Latin typographic ligatures and legacy digraphs, split.
fn fix_latin_ligatures(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        out.push_str(match c {
            '\u{132}' => "IJ",
            '\u{133}' => "ij",
            '\u{149}' => "\u{2bc}n",
            '\u{1f1}' => "DZ",
            '\u{1f2}' => "Dz",
            '\u{1f3}' => "dz",
            '\u{1c4}' => "D\u{17d}",
            '\u{1c5}' => "D\u{17e}",
            '\u{1c6}' => "d\u{17e}",
            '\u{1c7}' => "LJ",
            '\u{1c8}' => "Lj",
            '\u{1c9}' => "lj",
            '\u{1ca}' => "NJ",
            '\u{1cb}' => "Nj",
            '\u{1cc}' => "nj",
            '\u{fb00}' => "ff",
            '\u{fb01}' => "fi",
            '\u{fb02}' => "fl",
            '\u{fb03}' => "ffi",
            '\u{fb04}' => "ffl",
            '\u{fb05}' => "\u{17f}t",
            '\u{fb06}' => "st",
            _ => {
                out.push(c);
                continue;
            }
        });
    }
    out
}

/// ftfy's `WIDTH_MAP`: U+3000 to a space, U+FF01..U+FFEF to their NFKC forms.
fn fix_character_width(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match u32::from(c) {
            0x3000 => out.push(' '),
            0xff01..=0xffef => out.extend(std::iter::once(c).nfkc()),
            _ => out.push(c),
        }
    }
    out
}

/// ftfy's `uncurl_quotes`: U+02BC and U+2018..U+201B to `'`, U+201C..U+201F to `"`.
fn uncurl_quotes(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
            '\u{201c}'..='\u{201f}' => '"',
            _ => c,
        })
        .collect()
}

/// ftfy's `fix_line_breaks`: CRLF, CR, LS, PS and NEL all become LF.
fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n").replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

/// ftfy's `CONTROL_CHARS`: C0 controls other than tab, LF, FF and CR; DEL; deprecated
/// format characters; the byte-order mark; interlinear annotation characters.
fn is_removed_control(c: char) -> bool {
    matches!(u32::from(c), 0x00..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f | 0x206a..=0x206f | 0xfeff | 0xfff9..=0xfffc)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn tokenizer_clean_cases() {
        let cleaner = Cleaner::new().unwrap();
        for (input, want) in [
            ("  A  Photo\tOF\n a CAT ", "a photo of a cat"),
            ("\u{201c}hi\u{201d} it\u{2019}s", "\"hi\" it's"),
            ("\u{fb01}sh \u{149}", "fish 'n"),
            ("\u{ff26}\u{ff35}\u{ff2c}\u{ff2c}\u{3000}\u{ff57}", "full w"),
            ("a\x1b[1;31mb\x07c", "abc"),
            ("c1 \u{93}q\u{94} \u{85}", "c1 \"q\" \u{2026}"),
            ("e\u{301}", "\u{e9}"),
            ("&amp;amp;amp;x", "&x"),
            ("<&amp;amp;amp;x", "<&amp;x"),
            ("&amp;amp;amp;x\n<", "&x <"),
            ("<\n&amp;amp;amp;x", "< &amp;x"),
        ] {
            assert_eq!(cleaner.clean(input), want, "{input:?}");
        }
    }
}
