//! Bounded decoding: content sniffing, size checks before any pixel is
//! decoded, EXIF orientation, and the mapping from the decoded image to the
//! 8-bit layout and resampling filter Pillow would use for the same file.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};

use super::resample::{Filter, Raster};
use super::DecodeError;
use crate::embed::decode_budget::{BudgetShare, DecodeBudget};

/// Largest decoded sample: RGBA with 16 bits per channel.
const MAX_BYTES_PER_PIXEL: u64 = 8;
/// Decoder working memory beyond the output buffer (tables, line buffers).
const DECODER_SLACK_BYTES: u64 = 64 << 20;

/// A decoded image ready for resizing, plus what the caller reports.
pub(crate) struct Decoded {
    pub raster: Raster,
    pub filter: Filter,
    pub format: &'static str,
    /// This image's share of the decode budget, held while the full-size raster lives.
    pub share: Option<BudgetShare>,
}

/// The container formats imgidx accepts, detected from magic bytes.
pub(crate) fn sniff(bytes: &[u8]) -> Result<(ImageFormat, &'static str), DecodeError> {
    let format = image::guess_format(bytes)
        .map_err(|_| DecodeError::NotAnImage("not an image (unrecognised format)".into()))?;
    let name = match format {
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Png => "png",
        ImageFormat::Gif => "gif",
        ImageFormat::WebP => "webp",
        ImageFormat::Tiff => "tiff",
        ImageFormat::Bmp => "bmp",
        other => {
            let ext = other.extensions_str().first().copied().unwrap_or("unknown");
            return Err(DecodeError::NotAnImage(format!("not an image (unsupported format: {ext})")));
        }
    };
    Ok((format, name))
}

/// Decodes `bytes`, refusing images over `max_pixels` from the header alone, and waiting
/// for the image's share of `budget` before any pixel is decoded. A camera RAW file is
/// read through its largest embedded JPEG preview, which must be at least `min_side`
/// pixels on its short side (the model's input size).
pub(crate) fn decode(
    bytes: &[u8],
    max_pixels: u64,
    budget: Option<&DecodeBudget>,
    min_side: u32,
) -> Result<Decoded, DecodeError> {
    if let Some(name) = super::heif::brand(bytes) {
        return super::heif::decode(bytes, name, max_pixels, budget);
    }
    if let Some(name) = super::raw::sniff(bytes) {
        let preview = super::raw::largest_preview(bytes, name, min_side)
            .map_err(|e| DecodeError::Unreadable(format!("{name} file: {e}")))?;
        tracing::trace!(format = name, width = preview.width, height = preview.height, "raw file read through its preview");
        // The container's orientation applies to its preview, which usually has no EXIF.
        let orientation = preview.orientation.and_then(|o| u8::try_from(o).ok()).and_then(Orientation::from_exif);
        let decoded = decode_as(preview.jpeg, ImageFormat::Jpeg, max_pixels, budget, orientation)?;
        return Ok(Decoded { format: name, ..decoded });
    }
    let (format, name) = sniff(bytes)?;
    let decoded = decode_as(bytes, format, max_pixels, budget, None)?;
    Ok(Decoded { format: name, ..decoded })
}

/// Decodes `bytes` as `format`; `orientation`, when given, replaces the file's own.
fn decode_as(
    bytes: &[u8],
    format: ImageFormat,
    max_pixels: u64,
    budget: Option<&DecodeBudget>,
    orientation: Option<Orientation>,
) -> Result<Decoded, DecodeError> {
    let max_alloc = max_pixels.saturating_mul(MAX_BYTES_PER_PIXEL).saturating_add(DECODER_SLACK_BYTES);
    let mut limits = Limits::default();
    // Caps what a header that lies about its size can make the decoder allocate.
    limits.max_alloc = Some(max_alloc);

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;

    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(DecodeError::TooLarge(format!(
            "image has {pixels} pixels, more than the limit of {max_pixels}"
        )));
    }
    if pixels == 0 {
        return Err(DecodeError::Unreadable("image has no pixels (zero width or height)".into()));
    }
    if decoder.total_bytes() > max_alloc {
        return Err(DecodeError::TooLarge(format!(
            "image needs {} bytes to decode, more than the limit of {max_alloc}",
            decoder.total_bytes()
        )));
    }

    // Weighed from the header: the decoded buffer plus the 8-bit raster converted from it,
    // which exist together for a moment (the conversion copies unless the buffer is
    // already 8-bit, so this is an upper bound).
    let share = budget
        .map(|b| b.acquire_blocking(decoder.total_bytes().saturating_mul(2)))
        .transpose()
        .map_err(|e| DecodeError::Unreadable(e.to_string()))?;

    // A broken EXIF block should not cost the image: treat it as upright.
    let orientation = orientation.unwrap_or_else(|| decoder.orientation().unwrap_or(Orientation::NoTransforms));
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    image.apply_orientation(orientation);

    let layout = pil_layout(format, bytes, &image);
    let raster = to_raster(image, layout.keep_alpha);
    Ok(Decoded { raster, filter: layout.filter, format: "", share })
}

fn decode_error(err: ImageError) -> DecodeError {
    match err {
        ImageError::Limits(e) => DecodeError::TooLarge(format!("image exceeds decoding limits: {e}")),
        ImageError::IoError(e) => DecodeError::Unreadable(format!("truncated or unreadable image data: {e}")),
        ImageError::Unsupported(e) => DecodeError::Unreadable(format!("unsupported image variant: {e}")),
        other => DecodeError::Unreadable(format!("corrupt image: {other}")),
    }
}

// ------------------------------------------------------------- PIL modes

/// How Pillow would hold this file, reduced to what changes the output:
/// whether alpha takes part in resizing (premultiplied) and which filter
/// Image.resize applies.
struct Layout {
    keep_alpha: bool,
    filter: Filter,
}

/// Pillow opens palette and 1-bit files as "P"/"1" (resized with NEAREST)
/// and keeps tRNS transparency out of the pixel data (mode "L"/"RGB"), while
/// the image crate expands both into plain pixels; the container header tells
/// them apart.
fn pil_layout(format: ImageFormat, bytes: &[u8], image: &DynamicImage) -> Layout {
    let has_alpha = image.color().has_alpha();
    let (nearest, alpha_channel) = match format {
        ImageFormat::Png => png_kind(bytes),
        ImageFormat::Gif => (true, false),
        ImageFormat::Bmp => (bmp_bits_per_pixel(bytes).is_some_and(|b| b <= 8), has_alpha),
        // WebP, TIFF: alpha in the decoded image is a real channel.
        // JPEG never has alpha.
        _ => (false, has_alpha),
    };
    let keep_alpha = alpha_channel && has_alpha && !nearest;
    let filter = match (nearest, keep_alpha) {
        (true, _) => Filter::Nearest,
        (false, true) => Filter::BicubicPremultiplied,
        (false, false) => Filter::Bicubic,
    };
    Layout { keep_alpha, filter }
}

/// From IHDR: (palette or 1-bit greyscale, has a real alpha channel).
fn png_kind(bytes: &[u8]) -> (bool, bool) {
    // Signature (8) + chunk length (4) + "IHDR" (4) + width, height (8).
    let (Some(&depth), Some(&colour)) = (bytes.get(24), bytes.get(25)) else {
        return (false, false);
    };
    let nearest = colour == 3 || (colour == 0 && depth == 1);
    let alpha = colour == 4 || colour == 6;
    (nearest, alpha)
}

/// Bits per pixel from the BMP info header (BITMAPCOREHEADER or later).
fn bmp_bits_per_pixel(bytes: &[u8]) -> Option<u16> {
    let header_size = u32::from_le_bytes(bytes.get(14..18)?.try_into().ok()?);
    let offset = if header_size == 12 { 24 } else { 28 };
    Some(u16::from_le_bytes(bytes.get(offset..offset + 2)?.try_into().ok()?))
}

// ------------------------------------------------------------- 8-bit layout

/// Converts to 8-bit samples with 1-4 channels. 16-bit samples keep their
/// high byte (v >> 8), as Pillow does for 16-bit RGB/RGBA/LA PNGs (Pillow
/// clips 16-bit greyscale at 255 instead; imgidx deliberately does not).
/// Alpha is dropped unless it takes part in resizing.
fn to_raster(image: DynamicImage, keep_alpha: bool) -> Raster {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let (channels, data) = match image {
        DynamicImage::ImageLuma8(b) => (1, b.into_raw()),
        DynamicImage::ImageLumaA8(b) => drop_alpha(2, b.into_raw(), keep_alpha),
        DynamicImage::ImageRgb8(b) => (3, b.into_raw()),
        DynamicImage::ImageRgba8(b) => drop_alpha(4, b.into_raw(), keep_alpha),
        DynamicImage::ImageLuma16(b) => (1, high_bytes(b.as_raw())),
        DynamicImage::ImageLumaA16(b) => drop_alpha(2, high_bytes(b.as_raw()), keep_alpha),
        DynamicImage::ImageRgb16(b) => (3, high_bytes(b.as_raw())),
        DynamicImage::ImageRgba16(b) => drop_alpha(4, high_bytes(b.as_raw()), keep_alpha),
        // Float images (TIFF): Pillow cannot open them; use image's clamped
        // conversion to 8 bits.
        other if other.color().has_alpha() => drop_alpha(4, other.to_rgba8().into_raw(), keep_alpha),
        other => (3, other.to_rgb8().into_raw()),
    };
    Raster { width, height, channels, data }
}

fn high_bytes(samples: &[u16]) -> Vec<u8> {
    samples.iter().map(|v| (v >> 8) as u8).collect()
}

fn drop_alpha(channels: usize, data: Vec<u8>, keep: bool) -> (usize, Vec<u8>) {
    if keep {
        return (channels, data);
    }
    let colour = channels - 1;
    let stripped = data.chunks_exact(channels).flat_map(|px| px[..colour].iter().copied()).collect();
    (colour, stripped)
}
