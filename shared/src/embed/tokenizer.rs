//! CLIP's BPE tokenizer: text to the `context_length` row of token ids the text
//! encoder takes, exactly as OpenAI CLIP's `simple_tokenizer.py` and
//! `clip.tokenize(texts, context_length=77, truncate=True)` produce it.
//!
//! The steps, each as in Python:
//! 1. Cleanup: `whitespace_clean(basic_clean(text)).lower()`, where `basic_clean` is
//!    `ftfy.fix_text`, then `html.unescape` twice, then `strip` (see `clean.rs`).
//! 2. Words: the pattern
//!    `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//!    (`regex` module, IGNORECASE), found left to right.
//! 3. Each word's UTF-8 bytes become GPT-2's byte symbols, the last one with `</w>`, and
//!    are merged by rank (`bpe.rs`); the two special strings map to their own ids.
//! 4. The row is `[sot] + ids + [eot]` (sot 49406, eot 49407); if longer than the
//!    context it keeps its first `context_length` ids with the last set to eot; then
//!    zeros pad it.
//!
//! # What `ftfy.fix_text` does that this does not
//!
//! ftfy 6.3.1 with its defaults runs, per line and until nothing changes: HTML
//! unescaping (`unescape_html="auto"`: off from the first line holding a `<` on),
//! `fix_encoding`, `fix_c1_controls`, `fix_latin_ligatures`, `fix_character_width`,
//! `uncurl_quotes`, `fix_line_breaks`, `fix_surrogates`, `remove_terminal_escapes`,
//! `remove_control_chars` and NFC. All of them are implemented here, in that order,
//! except:
//! - `fix_encoding`, the mojibake repair: text that ftfy's heuristics (`is_bad`) judge to
//!   be UTF-8 misread as a single-byte encoding is re-decoded by ftfy (with
//!   `restore_byte_a0`, `replace_lossy_sequences`, `decode_inconsistent_utf8`) and is
//!   left as it is here, so it tokenizes differently: `"cafÃ©"` (Python: `"café"`),
//!   `"l’Ã©tÃ©"`, `"Â£5"`, and also a lone `Â` or `Ã` before a space (`"x Ã x"`,
//!   Python: `"x à x"`, read as a mangled no-break space). Ordinary accented text
//!   (`"SÃO PAULO"`, `"IRMÃ E"`) is not touched by ftfy either. The other outcome of
//!   `fix_encoding`, C1 controls read as Windows-1252, is what `fix_c1_controls` does
//!   here too.
//! - `fix_surrogates`: a Rust `str` cannot hold surrogates, so there is nothing to fix.
//!
//! The reference generator (`scripts/tokenizer_reference.py`) refuses fixture texts that
//! only the mojibake repair would change, so the fixtures pin everything else exactly.
//!
//! # Unicode versions
//!
//! The reference is Python 3.11 (Unicode 14.0 for NFC, `str.lower`, `str.strip`) with
//! the `regex` module 2026.11.15 (Unicode 17 for `\p{L}`, `\p{N}`, `\s`). Here the `regex`
//! crate (regex-syntax 0.8, Unicode 16.0) runs the word pattern, and the standard
//! library (`to_lowercase`, `is_whitespace`) and `unicode-normalization` do the rest
//! with their own, newer tables. The test `unicode_tables_match_python` runs every code
//! point through both and requires them to agree on every character Unicode 14
//! assigns. They differ only on characters added since: about 17,500 in the word
//! classes (mostly the newest CJK ideograph extensions and scripts of Unicode 17, which
//! the `regex` crate does not know yet and so groups like punctuation) and 55 capitals
//! that Python 3.11 does not lowercase, none of which ordinary text contains yet.
//! Python's IGNORECASE keeps U+0345 (combining ypogegrammeni, which case-folds to a
//! letter) out of every class of the pattern, so Python drops it; the pattern here
//! excludes it explicitly to do the same.
//!
//! # Bounds
//!
//! [`ClipTokenizer::tokens`] and [`ClipTokenizer::tokenize`] look at the first
//! [`MAX_TEXT_BYTES`] of a text only (cut at a character boundary): a row holds at most
//! 75 words' pieces, a few hundred characters of prose, so the cut changes nothing for
//! real queries while keeping the cost of pathological input (deeply nested entities
//! such as `&amp;amp;amp;...`) bounded. They also stop splitting words once the row is
//! full. BPE runs in O(n log n) per word, and a bounded cache keeps recent words.

mod bpe;
mod clean;
mod html;
mod merges;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use regex::Regex;

use super::manifest::ModelManifest;
use bpe::{Bpe, END_OF_TEXT, START_OF_TEXT};
use clean::Cleaner;

/// Bytes of a text [`ClipTokenizer::tokens`] considers; see the module doc.
pub const MAX_TEXT_BYTES: usize = 8 << 10;

/// The word pattern of `simple_tokenizer.py`. Python applies IGNORECASE to all of it;
/// that matters only for the literals (`'S`, and `'ſ` as `'s`) and for U+0345, so the
/// classes are written without it and U+0345 is excluded by hand (see the module doc).
const WORD_PATTERN: &str =
    r"(?i:<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d)|\p{L}+|\p{N}|[^\s\p{L}\p{N}\x{345}]+";

/// Words of up to this many bytes are cached; longer ones are rare and cheap enough.
const CACHE_MAX_WORD_BYTES: usize = 64;
/// Cached words; the cache is emptied when full (simple, bounded, and hot words return).
const CACHE_MAX_WORDS: usize = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("model {model:?} in {} has no tokenizer (no \"tokenizer\" merges file in its manifest.json)", dir.display())]
    NoTokenizer { model: String, dir: PathBuf },
    #[error("cannot read tokenizer merges file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("tokenizer merges file {} is not valid gzip: {source}", path.display())]
    Decompress { path: PathBuf, source: std::io::Error },
    #[error("tokenizer merges file {}: line {line} is not UTF-8", path.display())]
    NotUtf8 { path: PathBuf, line: usize },
    #[error("tokenizer merges file {}: line {line} is not a merge of two symbols: {content:?}", path.display())]
    BadMerge { path: PathBuf, line: usize, content: String },
    #[error("tokenizer merges file {} has {found} merges; CLIP's vocabulary needs {needed}", path.display())]
    TooFewMerges { path: PathBuf, found: usize, needed: usize },
    #[error("tokenizer merges file {}: CLIP's merges are not within its first {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    /// A built-in pattern failed to compile: a bug, reported rather than panicking.
    #[error("tokenizer pattern does not compile: {0}")]
    Pattern(#[from] regex::Error),
}

impl TokenizerError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoTokenizer { .. } => "tokenizer_missing",
            Self::Read { .. } => "tokenizer_unreadable",
            Self::Decompress { .. } => "tokenizer_bad_gzip",
            Self::NotUtf8 { .. } => "tokenizer_not_utf8",
            Self::BadMerge { .. } => "tokenizer_bad_merge",
            Self::TooFewMerges { .. } => "tokenizer_too_few_merges",
            Self::TooLarge { .. } => "tokenizer_too_large",
            Self::Pattern(_) => "tokenizer_internal",
        }
    }
}

/// Token ids of words already seen, by their bytes.
type WordCache = HashMap<Box<[u8]>, Box<[u32]>>;

/// OpenAI CLIP's tokenizer. `Send + Sync`: share one per process.
pub struct ClipTokenizer {
    bpe: Bpe,
    cleaner: Cleaner,
    words: Regex,
    cache: Mutex<WordCache>,
    source: PathBuf,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer").field("source", &self.source).field("vocab_size", &self.bpe.vocab_size).finish()
    }
}

impl ClipTokenizer {
    /// Loads a merges file: OpenAI's gzip `bpe_simple_vocab_16e6.txt.gz` or plain text
    /// (Hugging Face's `merges.txt`), recognised by content. Only the first
    /// 48894 merges are used, as in CLIP; fewer is an error.
    pub fn load(merges_file: &Path) -> Result<Self, TokenizerError> {
        let merges = merges::read(merges_file)?;
        Ok(Self {
            bpe: Bpe::new(&merges),
            cleaner: Cleaner::new()?,
            words: Regex::new(WORD_PATTERN)?,
            cache: Mutex::new(HashMap::new()),
            source: merges_file.to_path_buf(),
        })
    }

    /// The tokenizer named by the manifest's `tokenizer` field.
    pub fn for_model(model_dir: &Path, manifest: &ModelManifest) -> Result<Self, TokenizerError> {
        let path = manifest.tokenizer_path(model_dir).ok_or_else(|| TokenizerError::NoTokenizer {
            model: manifest.name.clone(),
            dir: model_dir.to_path_buf(),
        })?;
        Self::load(&path)
    }

    /// Id of `<|startoftext|>` (49406 for CLIP).
    pub fn sot(&self) -> u32 {
        self.bpe.sot
    }

    /// Id of `<|endoftext|>` (49407 for CLIP).
    pub fn eot(&self) -> u32 {
        self.bpe.eot
    }

    /// 49408 for CLIP.
    pub fn vocab_size(&self) -> usize {
        self.bpe.vocab_size
    }

    /// BPE ids of the whole text, without start/end tokens (`SimpleTokenizer.encode`).
    /// Unbounded: the cost grows with the text; [`Self::tokens`] is the bounded form.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_up_to(text, usize::MAX)
    }

    /// `[sot] + ids + [eot]`, truncated to `context_length` with eot kept last, not
    /// padded: the real tokens of the encoder's row (its attention mask's ones).
    /// Only the first [`MAX_TEXT_BYTES`] of `text` are read.
    pub fn tokens(&self, text: &str, context_length: usize) -> Vec<i64> {
        let (sot, eot) = (i64::from(self.bpe.sot), i64::from(self.bpe.eot));
        match context_length {
            0 => Vec::new(),
            // Python: `tokens[:1]` then `tokens[-1] = eot`.
            1 => vec![eot],
            _ => {
                let text = cut_at_char_boundary(text, MAX_TEXT_BYTES);
                let mut row = Vec::with_capacity(context_length);
                row.push(sot);
                row.extend(self.encode_up_to(text, context_length - 2).into_iter().map(i64::from));
                row.push(eot);
                row
            }
        }
    }

    /// The exact row the text encoder receives: [`Self::tokens`] zero-padded to
    /// `context_length` (`clip.tokenize(text, context_length, truncate=True)[0]`).
    pub fn tokenize(&self, text: &str, context_length: usize) -> Vec<i64> {
        let mut row = self.tokens(text, context_length);
        row.resize(context_length, 0);
        row
    }

    /// At most `limit` ids: a truncated row depends on nothing after them.
    fn encode_up_to(&self, text: &str, limit: usize) -> Vec<u32> {
        let clean = self.cleaner.clean(text);
        let mut ids = Vec::new();
        for word in self.words.find_iter(&clean) {
            if ids.len() >= limit {
                break;
            }
            match word.as_str() {
                START_OF_TEXT => ids.push(self.bpe.sot),
                END_OF_TEXT => ids.push(self.bpe.eot),
                other => self.word_ids(other.as_bytes(), &mut ids),
            }
        }
        ids.truncate(limit);
        ids
    }

    fn word_ids(&self, word: &[u8], out: &mut Vec<u32>) {
        let cacheable = word.len() <= CACHE_MAX_WORD_BYTES;
        if cacheable {
            // A poisoned lock only means no caching; results never depend on the cache.
            if let Some(ids) = self.cache.lock().ok().and_then(|cache| cache.get(word).cloned()) {
                out.extend_from_slice(&ids);
                return;
            }
        }
        let start = out.len();
        self.bpe.word(word, out);
        if cacheable {
            if let Ok(mut cache) = self.cache.lock() {
                if cache.len() >= CACHE_MAX_WORDS {
                    cache.clear();
                }
                cache.insert(word.into(), out[start..].into());
            }
        }
    }

    #[cfg(test)]
    fn cached_words(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }
}

fn cut_at_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests;
