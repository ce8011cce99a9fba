//! Image decoding and preprocessing exactly as OpenAI CLIP's `preprocess`:
//! torchvision `Resize(S, BICUBIC)` -> `CenterCrop(S)` -> `convert("RGB")` ->
//! `ToTensor` -> `Normalize`, applied to the PIL image, with the EXIF
//! orientation applied first. (`PreprocessMode::Fast` trades the exactness for speed:
//! see `fast`.)
//!
//! Exactness notes (see `scripts/preprocess_reference.py`, which computes the
//! references the tests compare against):
//! * Resizing re-implements Pillow's 8-bit fixed-point BICUBIC and, in the
//!   image's own mode as Pillow has it: RGBA/LA are resized premultiplied;
//!   palette and 1-bit images use NEAREST (Pillow forces it for "P"/"1").
//!   `convert("RGB")` happens after the crop, as in CLIP, so alpha is simply
//!   dropped then.
//! * 16-bit samples become 8-bit by keeping the high byte (Pillow does this
//!   for 16-bit RGB/RGBA/LA PNGs; for 16-bit greyscale Pillow clips at 255,
//!   which we deliberately do not copy).
//! * Pixels are exact for lossless formats. JPEG/lossy WebP go through Rust
//!   decoders, whose output differs from libjpeg-turbo/libwebp by a few levels.

mod decode;
mod fast;
#[cfg(test)]
mod fast_tests;
mod heif;
mod raw;
mod resample;
#[cfg(test)]
mod tests;
mod turbo;

use std::path::Path;
use std::time::Duration;

use crate::embed::decode_budget::DecodeBudget;
use crate::files::{self, FileContents, ReadLimits, ReadRefusal};
use crate::messages::FailureKind;

use resample::{resize_window, Raster, Window};

/// Bytes [`image_format`] needs from the start of a file to recognise every format.
pub const SNIFF_BYTES: usize = 16;

/// The format name (as [`Preprocessed::format`]) when the first bytes of a file are an
/// image format this decoder reads, from its magic bytes alone; None otherwise. RAW files
/// built on TIFF (DNG, NEF, ARW) read as "tiff" here: only the whole file tells them apart.
pub fn image_format(head: &[u8]) -> Option<&'static str> {
    heif::brand(head).or_else(|| raw::container(head)).or_else(|| decode::sniff(head).ok().map(|(_, name)| name))
}

/// How images become tensors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PreprocessMode {
    /// Bit for bit Pillow's pipeline, as CLIP was trained with.
    #[default]
    Exact,
    /// JPEG decoded at a reduced DCT scale (libjpeg-turbo) and SIMD resizing; the same
    /// crop, not the same bits (see `fast`).
    Fast,
}

/// Whether the fast mode's scaled JPEG decoder (libturbojpeg, loaded at run time) is
/// usable here; the reason when not (fast mode then decodes JPEG as exact mode does).
pub fn turbojpeg_available() -> Result<(), String> {
    turbo::available()
}

/// Decodes image files and turns them into normalised CLIP input tensors.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    image_size: u32,
    /// Per channel `(x / 255 - mean) / std` for every byte value.
    lut: [[f32; 256]; 3],
    max_pixels: u64,
    max_file_bytes: u64,
    /// Shared with everything else that decodes in this process; None: unbounded (CLI tools).
    budget: Option<DecodeBudget>,
    mode: PreprocessMode,
}

/// Longest a worker spends reading one file before reporting it unreadable.
const MAX_READ_TIME: Duration = Duration::from_secs(60);

/// A preprocessed image.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    /// `3 * S * S` values, CHW, normalised.
    pub tensor: Vec<f32>,
    /// Size of the decoded image after EXIF orientation.
    pub width: u32,
    pub height: u32,
    /// "jpeg" | "png" | "gif" | "webp" | "tiff" | "bmp" | "heic" | "heif" | "avif", or for
    /// camera RAW (read through the embedded preview) "dng" | "cr2" | "cr3" | "nef" | "arw" |
    /// "raf" | "orf" | "rw2" | "raw"
    pub format: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unreadable(String),
    #[error("{0}")]
    NotAnImage(String),
    #[error("{0}")]
    TooLarge(String),
}

impl DecodeError {
    pub fn kind(&self) -> FailureKind {
        match self {
            DecodeError::NotFound(_) => FailureKind::NotFound,
            DecodeError::Unreadable(_) => FailureKind::Unreadable,
            DecodeError::NotAnImage(_) => FailureKind::NotAnImage,
            DecodeError::TooLarge(_) => FailureKind::TooLarge,
        }
    }
}

impl Preprocessor {
    pub fn new(image_size: u32, mean: [f32; 3], std: [f32; 3], max_pixels: u64, max_file_bytes: u64) -> Self {
        Self { image_size, lut: normalise_lut(mean, std), max_pixels, max_file_bytes, budget: None, mode: PreprocessMode::Exact }
    }

    /// Decodes within `budget` (see `decode_budget`).
    pub fn with_budget(mut self, budget: DecodeBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Decodes and resizes as `mode` says (exact unless set).
    pub fn with_mode(mut self, mode: PreprocessMode) -> Self {
        self.mode = mode;
        self
    }

    /// Limits on reading one file: `max_file_bytes`, and `max_time`.
    pub fn read_limits(&self, max_time: Duration) -> ReadLimits {
        ReadLimits { max_bytes: self.max_file_bytes, max_time }
    }

    pub fn image_size(&self) -> u32 {
        self.image_size
    }

    /// Largest file (or object) it reads, in bytes.
    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_bytes
    }

    /// Reads and preprocesses the file at the canonical `path`. Blocking (CPU pool).
    pub fn load_path(&self, path: &Path) -> Result<Preprocessed, DecodeError> {
        let file = self.read_path(path)?;
        self.load_bytes(&file.bytes)
    }

    /// Reads the regular file at the canonical `path` as `files` allows (no FIFOs, devices,
    /// symlinks; bounded in bytes and time), with the `fstat` of what was read. Blocking.
    pub fn read_path(&self, path: &Path) -> Result<FileContents, DecodeError> {
        self.read_file(path).map_err(DecodeError::from)
    }

    /// As [`read_path`](Self::read_path), telling why a file was not read, so a caller
    /// can try again what [may pass later](ReadRefusal::is_transient).
    pub fn read_file(&self, path: &Path) -> Result<FileContents, ReadRefusal> {
        files::read_regular(path, &self.read_limits(MAX_READ_TIME))
    }

    pub fn load_bytes(&self, bytes: &[u8]) -> Result<Preprocessed, DecodeError> {
        let len = bytes.len() as u64;
        if len > self.max_file_bytes {
            return Err(file_too_large(len, self.max_file_bytes));
        }
        if self.mode == PreprocessMode::Fast {
            return fast::load_fast(self, bytes);
        }
        let decoded = decode::decode(bytes, self.max_pixels, self.budget.as_ref(), self.image_size)?;
        let (width, height) = (decoded.raster.width, decoded.raster.height);
        let window = clip_window(width, height, self.image_size as usize);
        let crop = resize_window(decoded.raster, window, decoded.filter);
        // The full-size raster is gone: give its share of the budget back.
        drop(decoded.share);
        Ok(Preprocessed {
            tensor: self.to_tensor(&crop),
            width: width as u32,
            height: height as u32,
            format: decoded.format,
        })
    }

    /// ToTensor + Normalize on the cropped image, converting to RGB as
    /// `convert("RGB")` does: grey replicated, alpha dropped.
    fn to_tensor(&self, crop: &Raster) -> Vec<f32> {
        let plane = crop.width * crop.height;
        let mut tensor = vec![0f32; 3 * plane];
        let rgb_source: [usize; 3] = match crop.channels {
            1 | 2 => [0, 0, 0],
            _ => [0, 1, 2],
        };
        for (c, (&src, lut)) in rgb_source.iter().zip(&self.lut).enumerate() {
            let out = &mut tensor[c * plane..(c + 1) * plane];
            for (dst, px) in out.iter_mut().zip(crop.data.chunks_exact(crop.channels)) {
                *dst = lut[usize::from(px[src])];
            }
        }
        tensor
    }
}

/// Same float32 operations, in the same order, as torchvision's
/// `ToTensor` (`x.float().div(255)`) and `Normalize` (`sub_(mean).div_(std)`).
fn normalise_lut(mean: [f32; 3], std: [f32; 3]) -> [[f32; 256]; 3] {
    let mut lut = [[0f32; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        for (v, slot) in table.iter_mut().enumerate() {
            *slot = (v as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    lut
}

/// torchvision `Resize(S)` output size (shorter side S, longer side
/// `int(S * long / short)`) and `CenterCrop(S)` offsets (Python `round`,
/// half to even).
fn clip_window(width: usize, height: usize, size: usize) -> Window {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    // S * long is exact in f64 for any realistic size; the division is then
    // correctly rounded, like Python's int / int.
    let new_long = ((size * long) as f64 / short as f64) as usize;
    let (out_w, out_h) = if width <= height { (size, new_long) } else { (new_long, size) };
    let left = round_half_even(out_w.saturating_sub(size) as f64 / 2.0);
    let top = round_half_even(out_h.saturating_sub(size) as f64 / 2.0);
    Window { out_w, out_h, left, top, width: size, height: size }
}

fn round_half_even(x: f64) -> usize {
    x.round_ties_even() as usize
}

fn file_too_large(len: u64, limit: u64) -> DecodeError {
    DecodeError::TooLarge(format!("file is {}, more than the limit of {}", human_bytes(len), human_bytes(limit)))
}

impl From<ReadRefusal> for DecodeError {
    fn from(refusal: ReadRefusal) -> Self {
        match refusal {
            ReadRefusal::NotFound => DecodeError::NotFound("file not found".into()),
            ReadRefusal::DirectoryMissing => DecodeError::NotFound(refusal.to_string()),
            ReadRefusal::TooLarge { len, limit } => file_too_large(len, limit),
            ReadRefusal::NotRegular(_) => DecodeError::NotAnImage(refusal.to_string()),
            ReadRefusal::Denied
            | ReadRefusal::Changed
            | ReadRefusal::TimedOut(_)
            | ReadRefusal::Unavailable(_)
            | ReadRefusal::Io(_) => DecodeError::Unreadable(refusal.to_string()),
        }
    }
}

/// "300 MB", "1.5 MB", "812 kB", "17 bytes" (decimal units).
fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "GB"), (1_000_000, "MB"), (1_000, "kB")];
    for (scale, unit) in UNITS {
        if n >= scale {
            let v = n as f64 / scale as f64;
            return if v >= 10.0 || n.is_multiple_of(scale) { format!("{v:.0} {unit}") } else { format!("{v:.1} {unit}") };
        }
    }
    format!("{n} bytes")
}
