//! HEIC/HEIF and AVIF through libheif, loaded at run time like ONNX Runtime: a build
//! needs no C library, and a machine without libheif (Debian: `libheif1`, 1.15 on
//! Debian 12, with its HEVC and AV1 decoders built in) indexes everything else and
//! fails these images alone with a message that names the package.
//!
//! libheif applies the rotation and mirroring the file records (its default), so the
//! EXIF orientation a HEIC also carries must not be applied again. Output is always
//! 8-bit interleaved RGB (10-bit files are scaled down, alpha is dropped as Pillow's
//! `convert("RGB")` drops it).
//!
//! One of the few modules with `unsafe` code (with `turbo.rs` and `embed/cuda_libs.rs`):
//! the C calls, each checked, and every object libheif hands out freed by a guard on
//! every path.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use super::resample::{Filter, Raster};
use super::decode::Decoded;
use super::DecodeError;
use crate::embed::decode_budget::DecodeBudget;

/// The library's soname on Debian and most distributions.
const LIBRARY: &str = "libheif.so.1";

/// Whether the first bytes are an ISO BMFF file of a HEIF brand; the format name then.
pub(crate) fn brand(head: &[u8]) -> Option<&'static str> {
    if head.get(4..8)? != b"ftyp" {
        return None;
    }
    match head.get(8..12)? {
        b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" => Some("heic"),
        b"avif" | b"avis" => Some("avif"),
        b"mif1" | b"msf1" => Some("heif"),
        _ => None,
    }
}

/// Decodes a HEIF file's primary image, refusing it over `max_pixels` before any pixel
/// is decoded and waiting for its share of `budget` first.
pub(crate) fn decode(bytes: &[u8], format: &'static str, max_pixels: u64, budget: Option<&DecodeBudget>) -> Result<Decoded, DecodeError> {
    let lib = library().map_err(|e| {
        DecodeError::Unreadable(format!("{format} images need libheif, which is not installed here (Debian: apt-get install libheif1): {e}"))
    })?;
    let ctx = Context(unsafe { (lib.context_alloc)() }, lib);
    if ctx.0.is_null() {
        return Err(DecodeError::Unreadable("libheif could not allocate a context".into()));
    }
    // SAFETY: `bytes` outlives `ctx` (both end with this call); libheif reads it only.
    check(unsafe { (lib.read_from_memory)(ctx.0, bytes.as_ptr().cast(), bytes.len(), std::ptr::null()) })?;
    let mut handle = Handle(std::ptr::null_mut(), lib);
    check(unsafe { (lib.primary_image_handle)(ctx.0, &mut handle.0) })?;
    let (w, h) = unsafe { ((lib.handle_width)(handle.0), (lib.handle_height)(handle.0)) };
    let pixels = u64::try_from(w).unwrap_or(0) * u64::try_from(h).unwrap_or(0);
    if pixels == 0 {
        return Err(DecodeError::Unreadable("image has no pixels (zero width or height)".into()));
    }
    if pixels > max_pixels {
        return Err(DecodeError::TooLarge(format!("image has {pixels} pixels, more than the limit of {max_pixels}")));
    }
    // libheif's own planes plus the copy made here.
    let share = budget
        .map(|b| b.acquire_blocking(pixels.saturating_mul(3 * 2)))
        .transpose()
        .map_err(|e| DecodeError::Unreadable(e.to_string()))?;
    let mut image = Image(std::ptr::null_mut(), lib);
    // Null options: libheif's defaults, which apply the file's rotation and mirroring.
    check(unsafe { (lib.decode_image)(handle.0, &mut image.0, COLORSPACE_RGB, CHROMA_INTERLEAVED_RGB, std::ptr::null()) })?;
    let mut stride: c_int = 0;
    let (width, height, plane) = unsafe {
        (
            (lib.image_width)(image.0, CHANNEL_INTERLEAVED),
            (lib.image_height)(image.0, CHANNEL_INTERLEAVED),
            (lib.plane_readonly)(image.0, CHANNEL_INTERLEAVED, &mut stride),
        )
    };
    let (Ok(width), Ok(height), Ok(stride)) = (usize::try_from(width), usize::try_from(height), usize::try_from(stride)) else {
        return Err(DecodeError::Unreadable("libheif returned no image".into()));
    };
    if plane.is_null() || width == 0 || height == 0 || stride < width * 3 {
        return Err(DecodeError::Unreadable("libheif returned no interleaved RGB plane".into()));
    }
    // SAFETY: libheif's plane holds `height` rows of `stride` bytes (the last one at least
    // `width * 3`), alive until `image` is released below.
    let rows = unsafe { std::slice::from_raw_parts(plane, stride * (height - 1) + width * 3) };
    let mut data = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        data.extend_from_slice(&rows[y * stride..y * stride + width * 3]);
    }
    drop(image);
    Ok(Decoded { raster: Raster { width, height, channels: 3, data }, filter: Filter::Bicubic, format, share })
}

const COLORSPACE_RGB: c_int = 1;
const CHROMA_INTERLEAVED_RGB: c_int = 10;
const CHANNEL_INTERLEAVED: c_int = 10;

#[repr(C)]
struct HeifError {
    code: c_int,
    subcode: c_int,
    message: *const c_char,
}

type Opaque = c_void;

/// The functions imgidx calls, from the library loaded once per process (the dynamic
/// loader keeps one copy whatever we do; this only remembers the lookup).
struct Libheif {
    _library: libloading::Library,
    context_alloc: unsafe extern "C" fn() -> *mut Opaque,
    context_free: unsafe extern "C" fn(*mut Opaque),
    read_from_memory: unsafe extern "C" fn(*mut Opaque, *const c_void, usize, *const c_void) -> HeifError,
    primary_image_handle: unsafe extern "C" fn(*mut Opaque, *mut *mut Opaque) -> HeifError,
    handle_release: unsafe extern "C" fn(*const Opaque),
    handle_width: unsafe extern "C" fn(*const Opaque) -> c_int,
    handle_height: unsafe extern "C" fn(*const Opaque) -> c_int,
    decode_image: unsafe extern "C" fn(*const Opaque, *mut *mut Opaque, c_int, c_int, *const c_void) -> HeifError,
    image_width: unsafe extern "C" fn(*const Opaque, c_int) -> c_int,
    image_height: unsafe extern "C" fn(*const Opaque, c_int) -> c_int,
    plane_readonly: unsafe extern "C" fn(*const Opaque, c_int, *mut c_int) -> *const u8,
    image_release: unsafe extern "C" fn(*const Opaque),
}

fn library() -> Result<&'static Libheif, String> {
    static LOADED: OnceLock<Result<Libheif, String>> = OnceLock::new();
    LOADED.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Libheif, String> {
    // SAFETY: loading runs libheif's initialisers, which have no preconditions; each
    // symbol is given the signature of libheif's C API (heif.h, stable since 1.0).
    unsafe {
        let library = libloading::Library::new(LIBRARY).map_err(|e| e.to_string())?;
        macro_rules! sym {
            ($name:literal) => {
                *library.get($name).map_err(|e| format!("{LIBRARY}: {e}"))?
            };
        }
        // heif_init registers the decoder plugins; libheif before 1.13 has none to register.
        if let Ok(init) = library.get::<unsafe extern "C" fn(*mut c_void) -> HeifError>("heif_init") {
            check(init(std::ptr::null_mut())).map_err(|e| e.to_string())?;
        }
        Ok(Libheif {
            context_alloc: sym!("heif_context_alloc"),
            context_free: sym!("heif_context_free"),
            read_from_memory: sym!("heif_context_read_from_memory_without_copy"),
            primary_image_handle: sym!("heif_context_get_primary_image_handle"),
            handle_release: sym!("heif_image_handle_release"),
            handle_width: sym!("heif_image_handle_get_width"),
            handle_height: sym!("heif_image_handle_get_height"),
            decode_image: sym!("heif_decode_image"),
            image_width: sym!("heif_image_get_width"),
            image_height: sym!("heif_image_get_height"),
            plane_readonly: sym!("heif_image_get_plane_readonly"),
            image_release: sym!("heif_image_release"),
            _library: library,
        })
    }
}

fn check(e: HeifError) -> Result<(), DecodeError> {
    if e.code == 0 {
        return Ok(());
    }
    // SAFETY: libheif's error messages are static NUL-terminated strings.
    let message = match e.message.is_null() {
        true => String::new(),
        false => unsafe { CStr::from_ptr(e.message) }.to_string_lossy().into_owned(),
    };
    Err(DecodeError::Unreadable(format!("corrupt or unsupported image (libheif {}.{}): {message}", e.code, e.subcode)))
}

/// Owners of what libheif allocated: freed on every path.
struct Context(*mut Opaque, &'static Libheif);
struct Handle(*mut Opaque, &'static Libheif);
struct Image(*mut Opaque, &'static Libheif);

impl Drop for Context {
    fn drop(&mut self) {
        if !self.0.is_null() {
            unsafe { (self.1.context_free)(self.0) }
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.0.is_null() {
            unsafe { (self.1.handle_release)(self.0) }
        }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        if !self.0.is_null() {
            unsafe { (self.1.image_release)(self.0) }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/heif");
        std::fs::read(dir.join(name)).unwrap()
    }

    /// libheif is a run-time library: without it these tests say so and pass, unless the
    /// test command promised it (`IMGIDX_REQUIRE_SERVICES`, as `tests/run.sh` sets).
    fn have_libheif() -> bool {
        match library() {
            Ok(_) => true,
            Err(e) if std::env::var_os("IMGIDX_REQUIRE_SERVICES").is_some() => panic!("libheif is required here: {e}"),
            Err(e) => {
                eprintln!("skipped: libheif is not installed ({e}); apt-get install libheif1");
                false
            }
        }
    }

    /// (mean, max) absolute difference from the reference PNG, after the same checks.
    fn difference(got: &Decoded, reference: &str) -> (f64, u8) {
        let png = image::load_from_memory(&fixture(reference)).unwrap().to_rgb8();
        assert_eq!((got.raster.width, got.raster.height, got.raster.channels), (png.width() as usize, png.height() as usize, 3));
        let diffs: Vec<u8> = got.raster.data.iter().zip(png.as_raw()).map(|(a, b)| a.abs_diff(*b)).collect();
        (diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64, diffs.iter().copied().max().unwrap_or(0))
    }

    #[test]
    fn heif_brands_are_recognised_from_the_first_bytes() {
        assert_eq!(brand(&fixture("sample.heic")), Some("heic"));
        assert_eq!(brand(&fixture("sample.avif")), Some("avif"));
        assert_eq!(brand(&fixture("sample.png")), None);
        assert_eq!(brand(b"\0\0\0\x18ftypisom\0\0\0\0"), None, "an MP4 is no image");
        assert_eq!(crate::embed::preprocess::image_format(&fixture("sample.heic")[..16]), Some("heic"));
    }

    #[test]
    fn heic_and_avif_decode_to_the_reference_pixels() {
        if !have_libheif() {
            return;
        }
        for (file, reference, mean_limit) in [("sample.heic", "sample.png", 2.0), ("sample.avif", "sample.png", 4.0)] {
            let got = decode(&fixture(file), brand(&fixture(file)).unwrap(), 1 << 24, None).unwrap();
            let (mean, max) = difference(&got, reference);
            assert!(mean < mean_limit && max < 40, "{file}: mean {mean:.2}, max {max}");
        }
    }

    #[test]
    fn the_recorded_rotation_is_applied_once() {
        if !have_libheif() {
            return;
        }
        // Stored unrotated, with a rotation box and EXIF orientation 6: shown turned once.
        let got = decode(&fixture("sample_rot90.heic"), "heic", 1 << 24, None).unwrap();
        let (mean, max) = difference(&got, "sample_rot90.png");
        assert!(mean < 2.0 && max < 40, "mean {mean:.2}, max {max}");
    }

    #[test]
    fn oversized_and_broken_files_fail_alone() {
        if !have_libheif() {
            return;
        }
        let err = decode(&fixture("sample.heic"), "heic", 100, None).err().unwrap();
        assert!(matches!(err, DecodeError::TooLarge(_)), "{err:?}");
        let mut cut = fixture("sample.heic");
        cut.truncate(cut.len() / 2);
        let err = decode(&cut, "heic", 1 << 24, None).err().unwrap();
        assert!(matches!(err, DecodeError::Unreadable(_)), "{err:?}");
    }
}
