//! CLIP's byte-level BPE: the vocabulary built from the merges exactly as
//! `SimpleTokenizer.__init__` builds it, and `SimpleTokenizer.bpe` on one word.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

pub(super) const START_OF_TEXT: &str = "<|startoftext|>";
pub(super) const END_OF_TEXT: &str = "<|endoftext|>";
const END_OF_WORD: &str = "</w>";

/// A queued pair: (rank, left position, right position, left id, right id), so the
/// min-heap yields the lowest rank first and, within it, the leftmost occurrence.
type Pair = Reverse<(u32, usize, usize, u32, u32)>;

/// GPT-2's `bytes_to_unicode`, in its dict order: printable Latin-1 bytes map to
/// themselves, the other 68 bytes to U+0100.. in byte order. Returns (byte, char) pairs.
pub(super) fn bytes_to_unicode() -> Vec<(u8, char)> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
    let mut pairs: Vec<(u8, char)> = (0..=255u8).filter(|b| printable(*b)).map(|b| (b, char::from(b))).collect();
    for (next, b) in (256u32..).zip((0..=255u8).filter(|b| !printable(*b))) {
        // 256 + at most 68: always a valid scalar value.
        pairs.push((b, char::from_u32(next).unwrap_or(char::REPLACEMENT_CHARACTER)));
    }
    pairs
}

/// Vocabulary and merge table with symbols as vocabulary ids: two symbols are the same
/// string exactly when they have the same id, so merging on ids is merging on strings.
pub(super) struct Bpe {
    /// Id of each byte as a word-inner symbol, and with `</w>` as a word's last symbol.
    byte_ids: [u32; 256],
    byte_end_ids: [u32; 256],
    /// (left, right) -> (rank, merged symbol). A pair listed twice keeps its last rank,
    /// as Python's `dict(zip(merges, range(...)))` does.
    merges: HashMap<(u32, u32), (u32, u32)>,
    pub(super) sot: u32,
    pub(super) eot: u32,
    pub(super) vocab_size: usize,
}

impl Bpe {
    pub(super) fn new(merges: &[(String, String)]) -> Self {
        let bytes = bytes_to_unicode();
        let mut vocab: Vec<String> = bytes.iter().map(|(_, c)| c.to_string()).collect();
        vocab.extend(bytes.iter().map(|(_, c)| format!("{c}{END_OF_WORD}")));
        vocab.extend(merges.iter().map(|(l, r)| format!("{l}{r}")));
        vocab.push(START_OF_TEXT.to_owned());
        vocab.push(END_OF_TEXT.to_owned());
        // `dict(zip(vocab, range(len(vocab))))`: a repeated string keeps its last id.
        let mut encoder: HashMap<&str, u32> = HashMap::with_capacity(vocab.len());
        for (id, token) in vocab.iter().enumerate() {
            encoder.insert(token.as_str(), id as u32);
        }
        let mut byte_ids = [0u32; 256];
        let mut byte_end_ids = [0u32; 256];
        for (b, c) in &bytes {
            byte_ids[usize::from(*b)] = encoder.get(c.to_string().as_str()).copied().unwrap_or(0);
            byte_end_ids[usize::from(*b)] = encoder.get(format!("{c}{END_OF_WORD}").as_str()).copied().unwrap_or(0);
        }
        let mut table = HashMap::with_capacity(merges.len());
        for (rank, (left, right)) in merges.iter().enumerate() {
            // A merge whose halves are not symbols can never apply (Python never meets it).
            let (Some(&l), Some(&r), Some(&merged)) = (
                encoder.get(left.as_str()),
                encoder.get(right.as_str()),
                encoder.get(format!("{left}{right}").as_str()),
            ) else {
                continue;
            };
            table.insert((l, r), (rank as u32, merged));
        }
        let sot = encoder.get(START_OF_TEXT).copied().unwrap_or(0);
        let eot = encoder.get(END_OF_TEXT).copied().unwrap_or(0);
        Self { byte_ids, byte_end_ids, merges: table, sot, eot, vocab_size: vocab.len() }
    }

    /// `SimpleTokenizer.bpe` on one word's UTF-8 bytes, appending the symbol ids to `out`.
    ///
    /// Python repeatedly takes the lowest-ranked adjacent pair and merges all its
    /// occurrences left to right, which is quadratic in the word length. This does the
    /// same merges in the same order with a heap: all live occurrences of the lowest rank
    /// are merged left to right as one batch, and only then are the pairs they formed
    /// queued, so even a malformed merge list (a formed pair ranked lower) behaves alike.
    pub(super) fn word(&self, bytes: &[u8], out: &mut Vec<u32>) {
        let Some((&last, init)) = bytes.split_last() else { return };
        let mut ids: Vec<u32> = init.iter().map(|b| self.byte_ids[usize::from(*b)]).collect();
        ids.push(self.byte_end_ids[usize::from(last)]);
        let n = ids.len();
        if n == 1 {
            out.push(ids[0]);
            return;
        }
        const NONE: usize = usize::MAX;
        let mut next: Vec<usize> = (1..=n).map(|i| if i == n { NONE } else { i }).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| if i == 0 { NONE } else { i - 1 }).collect();
        let mut alive = vec![true; n];
        let mut heap: BinaryHeap<Pair> = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<Pair>, ids: &[u32], left: usize, right: usize| {
            if let Some(&(rank, _)) = self.merges.get(&(ids[left], ids[right])) {
                heap.push(Reverse((rank, left, right, ids[left], ids[right])));
            }
        };
        for i in 0..n - 1 {
            push(&mut heap, &ids, i, i + 1);
        }
        let mut batch = Vec::new();
        let mut merged_at = Vec::new();
        while let Some(Reverse(first)) = heap.pop() {
            batch.clear();
            batch.push(first);
            while let Some(Reverse(entry)) = heap.peek() {
                if entry.0 != first.0 {
                    break;
                }
                batch.push(*entry);
                heap.pop();
            }
            merged_at.clear();
            for &(_, left, right, left_id, right_id) in &batch {
                // Stale entries: a side was merged away or changed since it was queued.
                if !alive[left]
                    || !alive[right]
                    || next[left] != right
                    || ids[left] != left_id
                    || ids[right] != right_id
                {
                    continue;
                }
                let Some(&(_, merged)) = self.merges.get(&(left_id, right_id)) else { continue };
                ids[left] = merged;
                alive[right] = false;
                next[left] = next[right];
                if next[right] != NONE {
                    prev[next[right]] = left;
                }
                merged_at.push(left);
            }
            for &at in &merged_at {
                if !alive[at] {
                    continue;
                }
                if prev[at] != NONE {
                    push(&mut heap, &ids, prev[at], at);
                }
                if next[at] != NONE {
                    push(&mut heap, &ids, at, next[at]);
                }
            }
        }
        // Position 0 is never the right half of a merge, so it heads the word.
        let mut at = 0;
        while at != NONE {
            out.push(ids[at]);
            at = next[at];
        }
    }
}
