//! Reading a CLIP BPE merges file: OpenAI's gzip `bpe_simple_vocab_16e6.txt.gz` or a
//! plain-text one such as Hugging Face's `merges.txt`. Both start with one header line
//! (`#version: 0.2` or similar) that is skipped, then one `left right` merge per line.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use super::TokenizerError;

/// Merges CLIP uses: `merges[1:49152-256-2+1]` in `simple_tokenizer.py`, so that
/// 256 byte symbols, 256 end-of-word byte symbols, the merges and 2 special tokens
/// make CLIP's 49408-token vocabulary. Further lines are never read.
pub(super) const CLIP_MERGES: usize = 49152 - 256 - 2;

/// Bound on the bytes read (after decompression) to find those merges; OpenAI's file
/// needs about 0.4 MB, so only a corrupt or hostile file gets near it.
const MAX_READ_BYTES: u64 = 16 << 20;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The first [`CLIP_MERGES`] merges of the file, in rank order.
pub(super) fn read(path: &Path) -> Result<Vec<(String, String)>, TokenizerError> {
    let file = File::open(path).map_err(|source| TokenizerError::Read { path: path.to_path_buf(), source })?;
    let mut buffered = BufReader::new(file);
    let is_gzip = buffered
        .fill_buf()
        .map_err(|source| TokenizerError::Read { path: path.to_path_buf(), source })?
        .starts_with(&GZIP_MAGIC);
    if is_gzip {
        let reader = BufReader::new(MultiGzDecoder::new(buffered).take(MAX_READ_BYTES));
        parse(reader, path, |source| TokenizerError::Decompress { path: path.to_path_buf(), source })
    } else {
        parse(buffered.take(MAX_READ_BYTES), path, |source| TokenizerError::Read { path: path.to_path_buf(), source })
    }
}

fn parse(
    mut reader: impl BufRead,
    path: &Path,
    io_error: impl Fn(std::io::Error) -> TokenizerError,
) -> Result<Vec<(String, String)>, TokenizerError> {
    let mut merges = Vec::with_capacity(CLIP_MERGES);
    let mut line = Vec::new();
    let mut total: u64 = 0;
    // Line 0 is the header; lines 1..=CLIP_MERGES are the merges.
    for number in 0..=CLIP_MERGES {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(&io_error)?;
        total += n as u64;
        if n == 0 {
            if total >= MAX_READ_BYTES {
                return Err(TokenizerError::TooLarge { path: path.to_path_buf(), limit: MAX_READ_BYTES });
            }
            return Err(TokenizerError::TooFewMerges {
                path: path.to_path_buf(),
                found: merges.len(),
                needed: CLIP_MERGES,
            });
        }
        if number == 0 {
            continue;
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| TokenizerError::NotUtf8 { path: path.to_path_buf(), line: number + 1 })?;
        // Python's `merge.split()`: any whitespace separates, a trailing CR included.
        let mut parts = text.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(left), Some(right), None) => merges.push((left.to_owned(), right.to_owned())),
            _ => {
                return Err(TokenizerError::BadMerge {
                    path: path.to_path_buf(),
                    line: number + 1,
                    content: text.trim_end().chars().take(80).collect(),
                })
            }
        }
    }
    Ok(merges)
}
