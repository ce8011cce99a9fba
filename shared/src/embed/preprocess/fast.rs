//! The `fast` preprocess mode: the same resize-to-S and centre crop as the exact path
//! (`clip_window`), traded for speed where it costs the embedding almost nothing.
//!
//! * JPEG is decoded by libjpeg-turbo at the smallest DCT scale (1/2, 1/4, 1/8) whose short
//!   side is still at least S (`turbo`), so most of the pixels are never produced. Without
//!   the library, or for a file it refuses (CMYK, broken or truncated data, which
//!   libjpeg-turbo reports as warnings), the exact decoder takes over: fast mode refuses no
//!   file that exact mode accepts.
//! * Every format is then resized with `fast_image_resize` (SIMD, Catmull-Rom, the same
//!   cubic as Pillow's BICUBIC, in 8-bit fixed point but not bit for bit Pillow's).
//!
//! The crop is computed on the full image as the exact path does and mapped onto the
//! decoded raster, so both modes show the model the same region.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::pixels::PixelType;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, ImageFormat, RgbImage};

use super::decode::{self, Decoded};
use super::resample::{Filter, Raster, Window};
use super::turbo::{self, Scaled};
use super::{clip_window, DecodeError, Preprocessed, Preprocessor};

/// Pillow's BICUBIC kernel (a = -0.5, support 2), widened when downscaling as Pillow does.
const CUBIC: ResizeAlg = ResizeAlg::Convolution(FilterType::CatmullRom);

/// `Preprocessor::load_bytes` in fast mode (the file size is already checked).
pub(crate) fn load_fast(pre: &Preprocessor, bytes: &[u8]) -> Result<Preprocessed, DecodeError> {
    load_with(pre, bytes, true)
}

/// As [`load_fast`]; `scaled_jpeg: false` decodes JPEG as the exact mode does, which only
/// tests and benchmarks want (to tell the scaled decode's share from the resizer's).
pub(crate) fn load_with(pre: &Preprocessor, bytes: &[u8], scaled_jpeg: bool) -> Result<Preprocessed, DecodeError> {
    let is_jpeg = matches!(decode::sniff(bytes), Ok((ImageFormat::Jpeg, _)));
    if is_jpeg && scaled_jpeg && turbo::available().is_ok() {
        match turbo::decode(bytes, pre.max_pixels, pre.budget.as_ref(), pre.image_size) {
            Ok(scaled) => return from_scaled(pre, scaled),
            Err(e @ DecodeError::TooLarge(_)) => return Err(e),
            // The exact decoder decides on what libjpeg-turbo refuses.
            Err(e) => tracing::debug!(error = %e, "libturbojpeg refused a JPEG; decoding it as the exact mode does"),
        }
    }
    let decoded = decode::decode(bytes, pre.max_pixels, pre.budget.as_ref(), pre.image_size)?;
    from_decoded(pre, decoded)
}

/// A JPEG decoded at scale `num/denom`, still as stored: crop and resize in the stored
/// orientation, then turn the S x S result (cheaper than turning the raster).
fn from_scaled(pre: &Preprocessor, scaled: Scaled) -> Result<Preprocessed, DecodeError> {
    let size = pre.image_size as usize;
    let Scaled { raster, width, height, num, denom, orientation, share } = scaled;
    let (w, h) = if swaps_axes(orientation) { (height, width) } else { (width, height) };
    let upright = window_rect(&clip_window(w, h, size), w, h);
    let stored = unorient(upright, orientation, w as f64, h as f64).scaled(num as f64 / denom as f64);
    let crop = resize(&raster, stored, size, CUBIC)?;
    // The scaled raster is gone: give its share of the budget back.
    drop((raster, share));
    let crop = orient(crop, orientation)?;
    Ok(Preprocessed { tensor: pre.to_tensor(&crop), width: w as u32, height: h as u32, format: "jpeg" })
}

/// A full-size raster from the exact decoder, already upright.
fn from_decoded(pre: &Preprocessor, decoded: Decoded) -> Result<Preprocessed, DecodeError> {
    let size = pre.image_size as usize;
    let Decoded { raster, filter, format, share } = decoded;
    let (w, h) = (raster.width, raster.height);
    // Palette and 1-bit images keep Pillow's NEAREST; alpha is premultiplied by the resizer.
    let alg = if filter == Filter::Nearest { ResizeAlg::Nearest } else { CUBIC };
    let crop = resize(&raster, window_rect(&clip_window(w, h, size), w, h), size, alg)?;
    drop((raster, share));
    Ok(Preprocessed { tensor: pre.to_tensor(&crop), width: w as u32, height: h as u32, format })
}

// ------------------------------------------------------------- geometry

/// A rectangle in continuous pixel coordinates (pixel i spans [i, i + 1)).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rect {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl Rect {
    fn scaled(self, s: f64) -> Rect {
        Rect { left: self.left * s, top: self.top * s, width: self.width * s, height: self.height * s }
    }
}

/// The part of a `w` x `h` image that `win` (resize to `out_w` x `out_h`, then crop) keeps.
fn window_rect(win: &Window, w: usize, h: usize) -> Rect {
    let (sx, sy) = (w as f64 / win.out_w as f64, h as f64 / win.out_h as f64);
    Rect { left: win.left as f64 * sx, top: win.top as f64 * sy, width: win.width as f64 * sx, height: win.height as f64 * sy }
}

fn swaps_axes(o: Orientation) -> bool {
    matches!(o, Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH)
}

/// `r`, a rectangle of the upright `w` x `h` image, in the coordinates of the image as
/// stored (before `o` is applied).
fn unorient(r: Rect, o: Orientation, w: f64, h: f64) -> Rect {
    let (right, bottom) = (r.left + r.width, r.top + r.height);
    let turned = Rect { width: r.height, height: r.width, ..r };
    match o {
        Orientation::NoTransforms => r,
        Orientation::FlipHorizontal => Rect { left: w - right, ..r },
        Orientation::FlipVertical => Rect { top: h - bottom, ..r },
        Orientation::Rotate180 => Rect { left: w - right, top: h - bottom, ..r },
        // Clockwise: stored (x, y) shows at (h_stored - y, x).
        Orientation::Rotate90 => Rect { left: r.top, top: w - right, ..turned },
        Orientation::Rotate270 => Rect { left: h - bottom, top: r.left, ..turned },
        // Transpose and transverse.
        Orientation::Rotate90FlipH => Rect { left: r.top, top: r.left, ..turned },
        Orientation::Rotate270FlipH => Rect { left: h - bottom, top: w - right, ..turned },
    }
}

/// Turns the crop upright with the exact path's own function.
fn orient(crop: Raster, o: Orientation) -> Result<Raster, DecodeError> {
    if o == Orientation::NoTransforms {
        return Ok(crop);
    }
    let (w, h) = (crop.width as u32, crop.height as u32);
    let rgb = RgbImage::from_raw(w, h, crop.data).ok_or_else(|| internal("crop is not packed RGB"))?;
    let mut image = DynamicImage::ImageRgb8(rgb);
    image.apply_orientation(o);
    let (width, height) = (image.width() as usize, image.height() as usize);
    Ok(Raster { width, height, channels: 3, data: image.into_rgb8().into_raw() })
}

// ------------------------------------------------------------- resizing

/// The `crop` of `src` resized to `size` x `size`, same channels. Filter taps may reach
/// outside `crop` (as resizing the whole image and cropping afterwards would).
fn resize(src: &Raster, crop: Rect, size: usize, alg: ResizeAlg) -> Result<Raster, DecodeError> {
    let pixel_type = match src.channels {
        1 => PixelType::U8,
        2 => PixelType::U8x2,
        3 => PixelType::U8x3,
        4 => PixelType::U8x4,
        n => return Err(internal(&format!("{n} channels"))),
    };
    let (w, h, s) = (dim(src.width)?, dim(src.height)?, dim(size)?);
    let image = ImageRef::new(w, h, &src.data, pixel_type).map_err(|e| internal(&e.to_string()))?;
    let mut out = Image::new(s, s, pixel_type);
    let crop = clamp(crop, f64::from(w), f64::from(h));
    let options = ResizeOptions::new().resize_alg(alg).crop(crop.left, crop.top, crop.width, crop.height);
    Resizer::new().resize(&image, &mut out, &options).map_err(|e| internal(&e.to_string()))?;
    Ok(Raster { width: size, height: size, channels: src.channels, data: out.into_vec() })
}

/// Keeps float rounding from pushing the crop past the raster (which the resizer refuses).
fn clamp(r: Rect, w: f64, h: f64) -> Rect {
    let (left, top) = (r.left.clamp(0.0, w), r.top.clamp(0.0, h));
    Rect { left, top, width: r.width.min(w - left), height: r.height.min(h - top) }
}

fn dim(n: usize) -> Result<u32, DecodeError> {
    u32::try_from(n).map_err(|_| DecodeError::TooLarge(format!("image side of {n} pixels is too large")))
}

fn internal(what: &str) -> DecodeError {
    DecodeError::Unreadable(format!("fast preprocessing failed: {what}"))
}
