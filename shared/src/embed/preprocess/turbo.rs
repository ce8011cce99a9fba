//! JPEG through libjpeg-turbo's TurboJPEG API, loaded at run time like libheif (Debian:
//! `libturbojpeg0`; the build needs no C library and no headers): the `fast` preprocess
//! mode decodes straight to the smallest DCT scale whose short side is still at least the
//! model's input, so a 12 MP photo costs little more than its thumbnail.
//!
//! Only the scales 1/2, 1/4 and 1/8 (and 1) are used: libjpeg-turbo has SIMD inverse DCTs
//! for those alone, and its plain-C 3/8, 5/8, 6/8, 7/8 ones measured slower than decoding
//! at the next power of two up and resizing more pixels.
//!
//! The raster comes back as stored, in the file's own orientation; the caller applies
//! the EXIF orientation (read here from the same segments the exact path's decoder reads).
//!
//! `unsafe` is the C calls, each checked, and the decompressor handle freed by a guard
//! on every path.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uchar, c_ulong, c_void, CStr};
use std::sync::OnceLock;

use image::metadata::Orientation;

use super::resample::Raster;
use super::DecodeError;
use crate::embed::decode_budget::{BudgetShare, DecodeBudget};

/// The library's soname on Debian (libjpeg-turbo 2.1 in Debian 12) and most distributions.
const LIBRARY: &str = "libturbojpeg.so.0";

/// `TJPF_RGB`: packed 8-bit RGB (greyscale JPEGs come out replicated).
const TJPF_RGB: c_int = 0;
/// `TJFLAG_LIMITSCANS` (2.1): refuses progressive files with absurdly many scans, a
/// known way to make a small file take minutes. Older versions ignore the bit.
const TJFLAG_LIMITSCANS: c_int = 32768;
/// A progressive file is buffered whole as DCT coefficients: at most 3 full-size
/// components of 2-byte coefficients per pixel (4:4:4; less when subsampled).
const PROGRESSIVE_BYTES_PER_PIXEL: u64 = 6;

/// A JPEG decoded at a reduced scale, as stored (orientation not applied).
pub(crate) struct Scaled {
    pub raster: Raster,
    /// Size of the full image, as stored.
    pub width: usize,
    pub height: usize,
    /// The DCT scale the raster was decoded at: `raster.width = ceil(width * num / denom)`.
    pub num: usize,
    pub denom: usize,
    /// From the file's EXIF block, upright when there is none or it cannot be read.
    pub orientation: Orientation,
    /// The raster's share of the decode budget.
    pub share: Option<BudgetShare>,
}

/// Whether libturbojpeg loads here; why not otherwise.
pub(crate) fn available() -> Result<(), String> {
    library().map(|_| ())
}

/// Decodes `bytes` at the smallest scale whose short side is still at least `min_side`
/// (full size when the image is smaller), refusing it over `max_pixels` (full size) from
/// the header, before any pixel is decoded, and waiting for the scaled raster's share of
/// `budget` first.
pub(crate) fn decode(bytes: &[u8], max_pixels: u64, budget: Option<&DecodeBudget>, min_side: u32) -> Result<Scaled, DecodeError> {
    let lib = library().map_err(|e| DecodeError::Unreadable(format!("libturbojpeg is not installed here (Debian: apt-get install libturbojpeg0): {e}")))?;
    let len = c_ulong::try_from(bytes.len()).map_err(|_| DecodeError::TooLarge("JPEG too large for libturbojpeg".into()))?;
    let handle = Handle::new(lib)?;
    let (width, height) = handle.header(bytes, len)?;
    let pixels = (width as u64) * (height as u64);
    if pixels == 0 {
        return Err(DecodeError::Unreadable("image has no pixels (zero width or height)".into()));
    }
    if pixels > max_pixels {
        return Err(DecodeError::TooLarge(format!("image has {pixels} pixels, more than the limit of {max_pixels}")));
    }
    let factor = pick_factor(&lib.factors, width.min(height), min_side as usize);
    let (sw, sh) = (factor.scaled(width), factor.scaled(height));
    let markers = Markers::read(bytes);
    let share = budget
        .map(|b| b.acquire_blocking(weight(sw, sh, pixels, markers.progressive)))
        .transpose()
        .map_err(|e| DecodeError::Unreadable(e.to_string()))?;
    let data = handle.decompress(bytes, len, sw, sh)?;
    Ok(Scaled {
        raster: Raster { width: sw, height: sh, channels: 3, data },
        width,
        height,
        num: factor.num,
        denom: factor.denom,
        orientation: markers.orientation(),
        share,
    })
}

/// Bytes held while decoding: the scaled raster, plus a progressive file's coefficients.
fn weight(sw: usize, sh: usize, pixels: u64, progressive: bool) -> u64 {
    let raster = (sw as u64) * (sh as u64) * 3;
    raster + if progressive { pixels.saturating_mul(PROGRESSIVE_BYTES_PER_PIXEL) } else { 0 }
}

// ------------------------------------------------------------- scale choice

/// A DCT scaling factor the library offers, at most 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Factor {
    num: usize,
    denom: usize,
}

impl Factor {
    const ONE: Factor = Factor { num: 1, denom: 1 };

    /// `TJSCALED`: ceil(dim * num / denom), the size libjpeg-turbo produces.
    fn scaled(self, dim: usize) -> usize {
        (dim * self.num).div_ceil(self.denom)
    }

    /// Orders factors without floating point: a/b < c/d <=> a*d < c*b.
    fn smaller_than(self, other: Factor) -> bool {
        self.num * other.denom < other.num * self.denom
    }
}

/// The smallest factor whose scaled `short` side is still at least `min_side`; 1 when
/// none is (the image is smaller than the model's input, or the list is empty).
fn pick_factor(factors: &[Factor], short: usize, min_side: usize) -> Factor {
    factors
        .iter()
        .copied()
        .filter(|f| f.scaled(short) >= min_side)
        .fold(Factor::ONE, |best, f| if f.smaller_than(best) { f } else { best })
}

// ------------------------------------------------------------- JPEG segments

/// What the segments before the first scan say that the caller needs.
#[derive(Debug, Default)]
struct Markers<'a> {
    /// The last `Exif` APP1 block's TIFF data, as the exact path's decoder (zune-jpeg) keeps it.
    exif: Option<&'a [u8]>,
    /// A progressive frame (SOF2/6/10/14): decoded through a full-size coefficient buffer.
    progressive: bool,
}

impl<'a> Markers<'a> {
    /// Walks the segments from SOI to SOS; a malformed header just ends the walk (the
    /// decoder itself judges the file).
    fn read(bytes: &'a [u8]) -> Self {
        let mut found = Markers::default();
        let mut pos = 2;
        while bytes.get(pos) == Some(&0xFF) {
            while bytes.get(pos) == Some(&0xFF) {
                pos += 1; // fill bytes
            }
            let Some(&marker) = bytes.get(pos) else { break };
            pos += 1;
            match marker {
                0x01 | 0xD0..=0xD8 => continue, // no length field
                0xD9 | 0xDA => break,           // EOI, SOS: the header is over
                _ => {}
            }
            let Some(&[hi, lo]) = bytes.get(pos..pos + 2) else { break };
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            let Some(body) = bytes.get(pos + 2..pos + len.max(2)) else { break };
            match marker {
                0xE1 => {
                    if let Some(tiff) = body.strip_prefix(b"Exif\0\0") {
                        found.exif = Some(tiff);
                    }
                }
                0xC2 | 0xC6 | 0xCA | 0xCE => found.progressive = true,
                _ => {}
            }
            pos += len.max(2);
        }
        found
    }

    /// The same reading of EXIF as the exact path (`ImageDecoder::orientation`): a broken
    /// or missing block counts as upright.
    fn orientation(&self) -> Orientation {
        self.exif.and_then(Orientation::from_exif_chunk).unwrap_or(Orientation::NoTransforms)
    }
}

// ------------------------------------------------------------- the library

#[repr(C)]
#[derive(Clone, Copy)]
struct TjScalingFactor {
    num: c_int,
    denom: c_int,
}

type TjHandle = *mut c_void;

/// The functions imgidx calls (TurboJPEG 2.x API, unchanged since 1.4), looked up once.
struct TurboJpeg {
    _library: libloading::Library,
    init_decompress: unsafe extern "C" fn() -> TjHandle,
    decompress_header3: unsafe extern "C" fn(TjHandle, *const c_uchar, c_ulong, *mut c_int, *mut c_int, *mut c_int, *mut c_int) -> c_int,
    decompress2: unsafe extern "C" fn(TjHandle, *const c_uchar, c_ulong, *mut c_uchar, c_int, c_int, c_int, c_int, c_int) -> c_int,
    destroy: unsafe extern "C" fn(TjHandle) -> c_int,
    error_str2: unsafe extern "C" fn(TjHandle) -> *mut c_char,
    /// The scales used, from `tjGetScalingFactors`.
    factors: Vec<Factor>,
}

fn library() -> Result<&'static TurboJpeg, String> {
    static LOADED: OnceLock<Result<TurboJpeg, String>> = OnceLock::new();
    LOADED.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<TurboJpeg, String> {
    // SAFETY: loading runs libturbojpeg's initialisers, which have no preconditions; each
    // symbol is given the signature of turbojpeg.h (2.1, as Debian 12 ships it).
    unsafe {
        let library = libloading::Library::new(LIBRARY).map_err(|e| describe(&e))?;
        macro_rules! sym {
            ($name:literal) => {
                *library.get($name).map_err(|e| format!("{LIBRARY}: {}", describe(&e)))?
            };
        }
        let get_factors: unsafe extern "C" fn(*mut c_int) -> *mut TjScalingFactor = sym!("tjGetScalingFactors");
        let factors = scaling_factors(get_factors)?;
        Ok(TurboJpeg {
            init_decompress: sym!("tjInitDecompress"),
            decompress_header3: sym!("tjDecompressHeader3"),
            decompress2: sym!("tjDecompress2"),
            destroy: sym!("tjDestroy"),
            error_str2: sym!("tjGetErrorStr2"),
            factors,
            _library: library,
        })
    }
}

/// libloading's message with the loader's reason ("dlopen failed: ... cannot open shared
/// object file ...").
fn describe(e: &libloading::Error) -> String {
    match std::error::Error::source(e) {
        Some(reason) => format!("{e}: {reason}"),
        None => e.to_string(),
    }
}

/// Copies the library's static list of factors, keeping 1/1, 1/2, 1/4, 1/8 (see above).
///
/// # Safety
/// `get` must be `tjGetScalingFactors`.
unsafe fn scaling_factors(get: unsafe extern "C" fn(*mut c_int) -> *mut TjScalingFactor) -> Result<Vec<Factor>, String> {
    let mut count: c_int = 0;
    let list = get(&mut count);
    let count = usize::try_from(count).unwrap_or(0);
    if list.is_null() || count == 0 {
        return Err(format!("{LIBRARY}: tjGetScalingFactors returned no scaling factors"));
    }
    // SAFETY: the library returns a static array of `count` factors.
    let list = std::slice::from_raw_parts(list, count);
    let factors = list
        .iter()
        .filter_map(|f| Some(Factor { num: usize::try_from(f.num).ok()?, denom: usize::try_from(f.denom).ok()? }))
        .filter(|f| f.num == 1 && f.denom.is_power_of_two() && f.denom <= 8)
        .collect();
    Ok(factors)
}

/// A decompressor instance, destroyed on every path.
struct Handle {
    raw: TjHandle,
    lib: &'static TurboJpeg,
}

impl Handle {
    fn new(lib: &'static TurboJpeg) -> Result<Self, DecodeError> {
        // SAFETY: no preconditions; null on failure, checked.
        let raw = unsafe { (lib.init_decompress)() };
        if raw.is_null() {
            return Err(DecodeError::Unreadable("libturbojpeg could not allocate a decompressor".into()));
        }
        Ok(Handle { raw, lib })
    }

    /// (width, height) from the header.
    fn header(&self, bytes: &[u8], len: c_ulong) -> Result<(usize, usize), DecodeError> {
        let (mut w, mut h, mut subsamp, mut colorspace): (c_int, c_int, c_int, c_int) = (0, 0, 0, 0);
        // SAFETY: `bytes` is `len` readable bytes; the outputs are valid ints.
        let rc = unsafe { (self.lib.decompress_header3)(self.raw, bytes.as_ptr(), len, &mut w, &mut h, &mut subsamp, &mut colorspace) };
        if rc != 0 {
            return Err(DecodeError::Unreadable(format!("corrupt JPEG header: {}", self.error())));
        }
        match (usize::try_from(w), usize::try_from(h)) {
            (Ok(w), Ok(h)) => Ok((w, h)),
            _ => Err(DecodeError::Unreadable(format!("corrupt JPEG header: size {w}x{h}"))),
        }
    }

    /// Decodes to packed RGB of `sw` x `sh`, the scaled size of one of the library's factors.
    fn decompress(&self, bytes: &[u8], len: c_ulong, sw: usize, sh: usize) -> Result<Vec<u8>, DecodeError> {
        let pitch = sw * 3;
        let (Ok(w), Ok(h), Ok(p)) = (c_int::try_from(sw), c_int::try_from(sh), c_int::try_from(pitch)) else {
            return Err(DecodeError::TooLarge(format!("scaled JPEG {sw}x{sh} is too large for libturbojpeg")));
        };
        let mut data = vec![0u8; pitch * sh];
        // SAFETY: `data` holds `pitch * sh` bytes, what an `sw` x `sh` RGB image with that
        // pitch needs; `bytes` is `len` readable bytes.
        let rc = unsafe { (self.lib.decompress2)(self.raw, bytes.as_ptr(), len, data.as_mut_ptr(), w, p, h, TJPF_RGB, TJFLAG_LIMITSCANS) };
        if rc != 0 {
            // Warnings (a truncated file, stray bytes) land here too: the image may be partly
            // grey, so it is not used.
            return Err(DecodeError::Unreadable(format!("corrupt or truncated JPEG: {}", self.error())));
        }
        Ok(data)
    }

    /// The handle's last error message.
    fn error(&self) -> String {
        // SAFETY: returns a NUL-terminated string owned by the handle (or static), valid
        // until the next call on it; copied at once.
        let message = unsafe { (self.lib.error_str2)(self.raw) };
        if message.is_null() {
            return "unknown libturbojpeg error".into();
        }
        unsafe { CStr::from_ptr(message) }.to_string_lossy().trim().to_owned()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: `raw` came from tjInitDecompress and is destroyed once, here.
        unsafe { (self.lib.destroy)(self.raw) };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn eighths() -> Vec<Factor> {
        (1..=8).map(|k| Factor { num: k, denom: 8 }).collect()
    }

    #[test]
    fn the_smallest_scale_that_keeps_the_short_side() {
        // 4000x3000 at 224: 3000/8 = 375 >= 224.
        assert_eq!(pick_factor(&eighths(), 3000, 224), Factor { num: 1, denom: 8 });
        // 480 short side: 2/8 -> 120, 3/8 -> 180, 4/8 -> 240.
        assert_eq!(pick_factor(&eighths(), 480, 224), Factor { num: 4, denom: 8 });
        // ceil: 449 * 4/8 = 224.5 -> 225 >= 224; 447 * 4 / 8 = 223.5 -> 224.
        assert_eq!(pick_factor(&eighths(), 447, 224), Factor { num: 4, denom: 8 });
        assert_eq!(pick_factor(&eighths(), 446, 224), Factor { num: 5, denom: 8 });
        // Smaller than the input: full size.
        assert_eq!(pick_factor(&eighths(), 100, 224), Factor::ONE);
        assert_eq!(pick_factor(&[], 3000, 224), Factor::ONE);
    }

    #[test]
    fn segments_give_exif_and_progressive() {
        let mut jpeg = b"\xFF\xD8".to_vec();
        let mut app1 = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0".to_vec();
        jpeg.extend_from_slice(&[0xFF, 0xE1]);
        jpeg.extend_from_slice(&u16::try_from(app1.len() + 2).unwrap().to_be_bytes());
        jpeg.append(&mut app1);
        jpeg.extend_from_slice(&[0xFF, 0xC2, 0x00, 0x04, 0x08, 0x00, 0xFF, 0xDA, 0x00, 0x02]);
        let m = Markers::read(&jpeg);
        assert!(m.progressive);
        assert_eq!(m.orientation(), Orientation::Rotate90);
        // Cut anywhere: no panic, just less found.
        for n in 0..jpeg.len() {
            let _ = Markers::read(&jpeg[..n]).orientation();
        }
    }
}
