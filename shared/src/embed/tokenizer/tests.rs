//! Checks against fixtures written by OpenAI CLIP's own Python tokenizer
//! (`scripts/tokenizer_reference.py`), plus load errors and bounds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::io::Read;

use serde::Deserialize;

use super::bpe::bytes_to_unicode;
use super::merges::CLIP_MERGES;
use super::*;
use crate::embed::manifest::tiny_clip_dir;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tokenizer").join(name)
}

fn vocab_gz() -> PathBuf {
    tiny_clip_dir().join("bpe_simple_vocab_16e6.txt.gz")
}

fn tiny_clip() -> ClipTokenizer {
    let dir = tiny_clip_dir();
    let manifest = ModelManifest::load(&dir).unwrap();
    ClipTokenizer::for_model(&dir, &manifest).unwrap()
}

/// `row` without its zero padding (a row always ends in eot before the padding).
fn unpadded(row: &[i64]) -> &[i64] {
    let len = row.iter().rposition(|id| *id != 0).map_or(0, |i| i + 1);
    &row[..len]
}

#[derive(Deserialize)]
struct Case {
    text: String,
    clean: String,
    ids: Vec<i64>,
}

#[test]
fn reference_rows_match_openai_clip() {
    let tok = tiny_clip();
    assert_eq!((tok.sot(), tok.eot(), tok.vocab_size()), (49406, 49407, 49408));
    let cases: Vec<Case> = serde_json::from_str(&std::fs::read_to_string(fixture("reference.json")).unwrap()).unwrap();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let clean = tok.cleaner.clean(&case.text);
        if clean != case.clean {
            failures.push(format!("{:?}: cleaned to {clean:?}, Python {:?}", case.text, case.clean));
        }
        let row = tok.tokenize(&case.text, 77);
        if row != case.ids {
            failures.push(format!("{:?}: row\n  {row:?}\nPython\n  {:?}", case.text, case.ids));
        }
        let real = unpadded(&case.ids);
        if tok.tokens(&case.text, 77) != real {
            failures.push(format!("{:?}: tokens() is not the unpadded row", case.text));
        }
        if real.len() < 77 {
            let encoded: Vec<i64> = tok.encode(&case.text).into_iter().map(i64::from).collect();
            if encoded != real[1..real.len() - 1] {
                failures.push(format!("{:?}: encode() {encoded:?} is not the row's middle", case.text));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[derive(Deserialize)]
struct CleanCase {
    text: String,
    clean: String,
}

#[test]
fn clean_fixture_matches_python() {
    let cleaner = Cleaner::new().unwrap();
    let cases: Vec<CleanCase> = serde_json::from_str(&std::fs::read_to_string(fixture("clean.json")).unwrap()).unwrap();
    assert!(cases.len() >= 15);
    for case in &cases {
        let got = cleaner.clean(&case.text);
        if got != case.clean {
            let at = got.chars().zip(case.clean.chars()).take_while(|(a, b)| a == b).count();
            let around = |s: &str| s.chars().skip(at.saturating_sub(30)).take(60).collect::<String>();
            panic!(
                "cleanup differs at char {at} of a {}-char text starting {:?}:\n  got    {:?}\n  Python {:?}",
                case.text.chars().count(),
                case.text.chars().take(40).collect::<String>(),
                around(&got),
                around(&case.clean)
            );
        }
    }
}

#[derive(Deserialize)]
struct UnicodeTables {
    classes: Vec<(u32, u32, String)>,
    space: Vec<(u32, u32)>,
    lower: Vec<(u32, String)>,
    unassigned: Vec<(u32, u32)>,
}

fn ranges(points: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &p in points {
        match out.last_mut() {
            Some(last) if last.1 + 1 == p => last.1 = p,
            _ => out.push((p, p)),
        }
    }
    out
}

fn bitmap(ranges: &[(u32, u32)]) -> Vec<bool> {
    let mut set = vec![false; 0x11_0000];
    for (first, last) in ranges {
        for cp in *first..=*last {
            set[cp as usize] = true;
        }
    }
    set
}

/// Every code point through the word pattern, `char::is_whitespace` and `to_lowercase`,
/// against Python. They may differ only where Python's Unicode 14 has nothing assigned:
/// characters added since, which the `regex` module (newer Unicode) and Rust's tables
/// (Unicode 16 for the `regex` crate, newer for the standard library) know differently.
#[test]
fn unicode_tables_match_python() {
    let tok = tiny_clip();
    let tables: UnicodeTables =
        serde_json::from_str(&std::fs::read_to_string(fixture("unicode.json")).unwrap()).unwrap();
    let letter = Regex::new(r"\A\p{L}\z").unwrap();
    let number = Regex::new(r"\A\p{N}\z").unwrap();
    let python_space = bitmap(&tables.space);
    let unassigned = bitmap(&tables.unassigned);
    let python_lower: HashMap<u32, &str> = tables.lower.iter().map(|(cp, s)| (*cp, s.as_str())).collect();

    let (mut class_diff, mut space_diff, mut lower_diff) = (Vec::new(), Vec::new(), Vec::new());
    let mut seen = 0usize;
    for (first, last, label) in &tables.classes {
        for cp in *first..=*last {
            let Some(c) = char::from_u32(cp) else { continue };
            seen += 1;
            let s = c.to_string();
            let ours = match tok.words.find(&s) {
                None => "-",
                Some(m) if m.as_str() != s => "partial",
                Some(_) if letter.is_match(&s) => "L",
                Some(_) if number.is_match(&s) => "N",
                Some(_) => "O",
            };
            if ours != label {
                class_diff.push(cp);
            }
            if c.is_whitespace() != python_space[cp as usize] {
                space_diff.push(cp);
            }
            if s.to_lowercase() != python_lower.get(&cp).copied().unwrap_or(&s) {
                lower_diff.push(cp);
            }
        }
    }
    assert_eq!(seen, 0x11_0000 - 0x800, "the class table covers every scalar value");
    assert!(space_diff.is_empty(), "whitespace differs at {:x?}", ranges(&space_diff));
    let assigned =
        |diff: &[u32]| ranges(&diff.iter().copied().filter(|cp| !unassigned[*cp as usize]).collect::<Vec<_>>());
    assert_eq!(assigned(&class_diff), [], "word classes differ from Python's on characters of Unicode 14");
    assert_eq!(assigned(&lower_diff), [], "lowercasing differs from Python's on characters of Unicode 14");
    // The version-only differences are real but few; a change in their number means a
    // dependency or toolchain moved to another Unicode version.
    eprintln!(
        "differences on characters added after Unicode 14: {} in word classes, {} in lowercasing",
        class_diff.len(),
        lower_diff.len()
    );
}

#[test]
fn contraction_literals_fold_case_like_python() {
    let tok = tiny_clip();
    let words = |s: &str| tok.words.find_iter(s).map(|m| m.as_str().to_owned()).collect::<Vec<_>>();
    // IGNORECASE: the long s folds to s, as in Python's `regex`.
    assert_eq!(words("cat'\u{17f} dog's"), ["cat", "'\u{17f}", "dog", "'s"]);
    assert_eq!(words("<|ENDOFTEXT|>"), ["<|ENDOFTEXT|>"]);
    assert_eq!(words("a\u{345}b"), ["a", "b"], "U+0345 belongs to no class");
}

#[test]
fn tokenizer_rows_for_small_context_lengths() {
    let tok = tiny_clip();
    let (sot, eot) = (49406, 49407);
    assert_eq!(tok.tokens("a photo of a cat", 0), Vec::<i64>::new());
    assert_eq!(tok.tokens("a photo of a cat", 1), [eot]);
    assert_eq!(tok.tokens("a photo of a cat", 2), [sot, eot]);
    assert_eq!(tok.tokens("a photo of a cat", 3), [sot, 320, eot]);
    assert_eq!(tok.tokenize("a photo of a cat", 10), [sot, 320, 1125, 539, 320, 2368, eot, 0, 0, 0]);
    assert_eq!(tok.tokenize("", 4), [sot, eot, 0, 0]);
    assert_eq!(tok.encode("a photo of a cat"), [320, 1125, 539, 320, 2368]);
}

#[test]
fn tokenizer_load_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("nope.txt.gz");
    let err = ClipTokenizer::load(&missing).unwrap_err();
    assert!(matches!(err, TokenizerError::Read { .. }), "{err:?}");
    assert_eq!(err.code(), "tokenizer_unreadable");
    assert!(err.to_string().contains("nope.txt.gz"), "{err}");

    let corrupt = dir.path().join("corrupt.gz");
    std::fs::write(&corrupt, [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x11]).unwrap();
    let err = ClipTokenizer::load(&corrupt).unwrap_err();
    assert!(matches!(err, TokenizerError::Decompress { .. }), "{err:?}");
    assert_eq!(err.code(), "tokenizer_bad_gzip");

    let truncated = dir.path().join("truncated.gz");
    let real = std::fs::read(vocab_gz()).unwrap();
    std::fs::write(&truncated, &real[..20_000]).unwrap();
    let err = ClipTokenizer::load(&truncated).unwrap_err();
    assert!(matches!(err, TokenizerError::Decompress { .. }), "{err:?}");

    let few = dir.path().join("few.txt");
    std::fs::write(&few, "#version: 0.2\ni n\nt h\n").unwrap();
    let err = ClipTokenizer::load(&few).unwrap_err();
    assert!(matches!(err, TokenizerError::TooFewMerges { found: 2, needed: 48894, .. }), "{err:?}");
    assert!(err.to_string().contains("has 2 merges"), "{err}");

    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "#version: 0.2\ni n\nt h e\n").unwrap();
    let err = ClipTokenizer::load(&bad).unwrap_err();
    assert!(matches!(err, TokenizerError::BadMerge { line: 3, .. }), "{err:?}");

    let binary = dir.path().join("binary.txt");
    std::fs::write(&binary, b"#version: 0.2\n\xff\xfe x\n").unwrap();
    let err = ClipTokenizer::load(&binary).unwrap_err();
    assert!(matches!(err, TokenizerError::NotUtf8 { line: 2, .. }), "{err:?}");

    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    let err = ClipTokenizer::load(&empty).unwrap_err();
    assert!(matches!(err, TokenizerError::TooFewMerges { found: 0, .. }), "{err:?}");
}

#[test]
fn tokenizer_for_model_without_tokenizer_names_the_model() {
    let dir = tiny_clip_dir();
    let mut manifest = ModelManifest::load(&dir).unwrap();
    assert_eq!(manifest.tokenizer.as_deref(), Some("bpe_simple_vocab_16e6.txt.gz"));
    manifest.tokenizer = None;
    let err = ClipTokenizer::for_model(&dir, &manifest).unwrap_err();
    assert_eq!(err.code(), "tokenizer_missing");
    assert!(err.to_string().contains("\"tiny-clip\"") && err.to_string().contains("no tokenizer"), "{err}");
}

fn decompressed_vocab() -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(vocab_gz()).unwrap()).read_to_string(&mut text).unwrap();
    text
}

#[test]
fn tokenizer_plain_and_hugging_face_merges_load_alike() {
    let gz = tiny_clip();
    let text = decompressed_vocab();
    let lines: Vec<&str> = text.split('\n').collect();
    let dir = tempfile::tempdir().unwrap();
    // Hugging Face's merges.txt: a `#version` header and exactly CLIP's merges.
    let hf = dir.path().join("merges.txt");
    std::fs::write(&hf, format!("#version: 0.2\n{}\n", lines[1..=CLIP_MERGES].join("\n"))).unwrap();
    // OpenAI's file decompressed, with Windows line ends.
    let crlf = dir.path().join("bpe_simple_vocab_16e6.txt");
    std::fs::write(&crlf, lines.join("\r\n")).unwrap();
    for path in [hf, crlf] {
        let plain = ClipTokenizer::load(&path).unwrap();
        assert_eq!(plain.vocab_size(), 49408);
        for text in ["a photo of a cat", "Straße café 猫の写真 😀", "antidisestablishmentarianism", "<|endoftext|>"]
        {
            assert_eq!(plain.tokenize(text, 77), gz.tokenize(text, 77), "{text:?} with {}", path.display());
        }
    }
}

/// `SimpleTokenizer.bpe` transcribed literally (strings, repeated min over all pairs).
fn python_bpe(token: &str, ranks: &HashMap<(String, String), usize>) -> Vec<String> {
    let chars: Vec<char> = token.chars().collect();
    let Some((last, init)) = chars.split_last() else { return Vec::new() };
    let mut word: Vec<String> = init.iter().map(|c| c.to_string()).collect();
    word.push(format!("{last}</w>"));
    if word.len() == 1 {
        return word;
    }
    loop {
        let best = word
            .windows(2)
            .filter_map(|w| ranks.get(&(w[0].clone(), w[1].clone())).map(|r| (*r, w[0].clone(), w[1].clone())))
            .min();
        let Some((_, first, second)) = best else { break };
        let mut merged = Vec::new();
        let mut i = 0;
        while i < word.len() {
            if word[i] == first && i + 1 < word.len() && word[i + 1] == second {
                merged.push(format!("{first}{second}"));
                i += 2;
            } else {
                merged.push(word[i].clone());
                i += 1;
            }
        }
        word = merged;
        if word.len() == 1 {
            break;
        }
    }
    word
}

/// Python's vocabulary and ranks for `merges`, to map the literal BPE's strings to ids.
fn python_tables(merges: &[(String, String)]) -> (HashMap<String, u32>, HashMap<(String, String), usize>) {
    let bytes = bytes_to_unicode();
    let mut vocab: Vec<String> = bytes.iter().map(|(_, c)| c.to_string()).collect();
    vocab.extend(bytes.iter().map(|(_, c)| format!("{c}</w>")));
    vocab.extend(merges.iter().map(|(l, r)| format!("{l}{r}")));
    let encoder = vocab.into_iter().enumerate().map(|(i, s)| (s, i as u32)).collect();
    let ranks = merges.iter().cloned().enumerate().map(|(i, m)| (m, i)).collect();
    (encoder, ranks)
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn byte_string(word: &[u8]) -> String {
    let table: HashMap<u8, char> = bytes_to_unicode().into_iter().collect();
    word.iter().map(|b| table[b]).collect()
}

fn assert_heap_bpe_is_python_bpe(merges: &[(String, String)], words: &[Vec<u8>]) {
    let bpe = Bpe::new(merges);
    let (encoder, ranks) = python_tables(merges);
    for word in words {
        let mut ours = Vec::new();
        bpe.word(word, &mut ours);
        let python: Vec<u32> = python_bpe(&byte_string(word), &ranks).iter().map(|s| encoder[s]).collect();
        assert_eq!(ours, python, "word {:?}", String::from_utf8_lossy(word));
    }
}

#[test]
fn tokenizer_heap_bpe_matches_python_bpe_on_clip_merges() {
    let merges = merges::read(&vocab_gz()).unwrap();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let alphabets: [&[u8]; 4] = [b"etaoinshrdlucmfwypvbgkjqxz", b"aeiou'", b"ab", "é猫ßü😀".as_bytes()];
    let mut words: Vec<Vec<u8>> = Vec::new();
    for _ in 0..3000 {
        let alphabet = alphabets[rng.below(alphabets.len())];
        let len = 1 + rng.below(40);
        words.push((0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect());
    }
    words.extend([b"aaaaaaaaaaaaaaaaaaaaaaa".to_vec(), b"abababababababababab".to_vec(), b"photographer".to_vec()]);
    assert_heap_bpe_is_python_bpe(&merges, &words);
}

/// A random merge list over `a`/`b`, shuffled so that merges may come before the
/// merges forming their halves, and pairs may repeat: nothing a trained list has, but
/// Python's loop gives such lists a definite meaning too.
fn random_merges(rng: &mut XorShift) -> Vec<(String, String)> {
    let mut inner = vec!["a".to_owned(), "b".to_owned()];
    let mut all = vec!["a".to_owned(), "b".to_owned(), "a</w>".to_owned(), "b</w>".to_owned()];
    let mut merges = Vec::new();
    for _ in 0..12 {
        let left = inner[rng.below(inner.len())].clone();
        let right = all[rng.below(all.len())].clone();
        let joined = format!("{left}{right}");
        if !right.ends_with("</w>") {
            inner.push(joined.clone());
        }
        all.push(joined);
        merges.push((left, right));
    }
    for i in (1..merges.len()).rev() {
        merges.swap(i, rng.below(i + 1));
    }
    merges
}

#[test]
fn tokenizer_heap_bpe_matches_python_bpe_on_odd_merge_lists() {
    let mut rng = XorShift(42);
    let words: Vec<Vec<u8>> = (0..500).map(|_| (0..1 + rng.below(24)).map(|_| b"ab"[rng.below(2)]).collect()).collect();
    // Overlapping occurrences of one pair.
    let overlapping = [("a", "a"), ("aa", "aa"), ("a", "a</w>"), ("aa", "a</w>")];
    assert_heap_bpe_is_python_bpe(&overlapping.map(|(l, r)| (l.to_owned(), r.to_owned())), &words);
    for _ in 0..40 {
        let merges = random_merges(&mut rng);
        assert_heap_bpe_is_python_bpe(&merges, &words);
    }
}

#[test]
fn tokenizer_word_cache_stays_bounded() {
    let tok = tiny_clip();
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    let word = |mut i: usize| {
        let mut w = String::new();
        for _ in 0..4 {
            w.push(char::from(letters[i % 26]));
            i /= 26;
        }
        w
    };
    let text: Vec<String> = (0..CACHE_MAX_WORDS + 500).map(word).collect();
    for chunk in text.chunks(1000) {
        tok.encode(&chunk.join(" "));
        assert!(tok.cached_words() <= CACHE_MAX_WORDS);
    }
    let before = tok.cached_words();
    tok.encode(&"q".repeat(CACHE_MAX_WORD_BYTES + 1));
    assert_eq!(tok.cached_words(), before, "long words are not cached");
    // Cached and uncached results agree.
    let fresh = tiny_clip();
    assert_eq!(tok.encode("abcd bcda zzzz"), fresh.encode("abcd bcda zzzz"));
}

#[test]
fn tokenizer_bounds_hold_on_hostile_input() {
    let tok = tiny_clip();
    // Deeply nested entities: each level costs ftfy one more pass over the line.
    let nested = format!("&{}", "amp;".repeat(250_000));
    let row = tok.tokenize(&nested, 77);
    assert_eq!(row.len(), 77);
    assert_eq!(row[0], 49406);
    // One enormous word: BPE is O(n log n), and the row stops at 77 ids.
    let word = "ab".repeat(100_000);
    let row = tok.tokens(&word, 77);
    assert_eq!(row.len(), 77);
    assert_eq!(row[76], 49407);
    assert!(!tok.encode(&word).is_empty());
    // Only the first MAX_TEXT_BYTES count; a cut inside a character is moved back.
    let padded = format!("{}cat", " ".repeat(MAX_TEXT_BYTES));
    assert_eq!(tok.tokens(&padded, 77), [49406, 49407]);
    let straddling = format!("{}é", "a".repeat(MAX_TEXT_BYTES - 1));
    assert_eq!(tok.tokens(&straddling, 77).len(), 77);
}

#[test]
fn tokenizer_is_shareable() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ClipTokenizer>();
}
