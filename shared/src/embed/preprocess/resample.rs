//! Pillow's resampling, re-stated so results are byte-identical to
//! `Image.resize(size, Image.BICUBIC)` on 8-bit images (Pillow
//! `src/libImaging/Resample.c`) and to the NEAREST path Pillow forces for
//! palette and 1-bit images (`Geometry.c`, `ImagingScaleAffine`).
//!
//! Every output pixel depends only on its own coefficients, so the functions
//! here compute just the centre-crop window of the resized image; the values
//! are the same as resizing the whole image and cropping afterwards.

use std::ops::Range;

/// An 8-bit interleaved image with 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA) channels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Raster {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

impl Raster {
    fn row(&self, y: usize) -> &[u8] {
        let stride = self.width * self.channels;
        &self.data[y * stride..(y + 1) * stride]
    }
}

/// The output rectangle wanted from a resize to `out_w` x `out_h`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub out_w: usize,
    pub out_h: usize,
    pub left: usize,
    pub top: usize,
    pub width: usize,
    pub height: usize,
}

impl Window {
    fn cols(&self) -> Range<usize> {
        self.left..self.left + self.width
    }
    fn rows(&self) -> Range<usize> {
        self.top..self.top + self.height
    }
}

/// Resampling filter, as Pillow picks it from the image mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filter {
    Bicubic,
    /// Pillow resizes "LA"/"RGBA" via premultiplied "La"/"RGBa".
    BicubicPremultiplied,
    /// Pillow forces NEAREST for "P" and "1" images.
    Nearest,
}

/// Resizes `src` to `win.out_w` x `win.out_h` and returns the `win` crop.
pub(crate) fn resize_window(mut src: Raster, win: Window, filter: Filter) -> Raster {
    if win.out_w == src.width && win.out_h == src.height {
        // torchvision/Pillow return the image untouched: crop only.
        return crop(&src, win.rows(), win.cols());
    }
    match filter {
        Filter::Nearest => nearest(&src, win),
        Filter::Bicubic => bicubic(&src, win),
        Filter::BicubicPremultiplied => {
            premultiply(&mut src);
            let mut out = bicubic(&src, win);
            unpremultiply(&mut out);
            out
        }
    }
}

pub(crate) fn crop(src: &Raster, rows: Range<usize>, cols: Range<usize>) -> Raster {
    let c = src.channels;
    let mut data = Vec::with_capacity(rows.len() * cols.len() * c);
    for y in rows.clone() {
        data.extend_from_slice(&src.row(y)[cols.start * c..cols.end * c]);
    }
    Raster { width: cols.len(), height: rows.len(), channels: c, data }
}

// ------------------------------------------------------------------ bicubic

/// Fixed-point precision of 8-bit coefficients: 8 bits for the result, 2 for
/// overflow of filters with negative lobes (Pillow's PRECISION_BITS).
const PRECISION_BITS: u32 = 32 - 8 - 2;
const BICUBIC_SUPPORT: f64 = 2.0;

/// Pillow's `bicubic_filter`, a = -0.5; same operation order for identical f64s.
fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per-output-pixel taps: first input index and fixed-point weights.
struct Taps {
    ksize: usize,
    start: Vec<usize>,
    count: Vec<usize>,
    weights: Vec<i32>,
}

impl Taps {
    fn len(&self) -> usize {
        self.start.len()
    }

    fn of(&self, i: usize) -> (usize, &[i32]) {
        let base = i * self.ksize;
        (self.start[i], &self.weights[base..base + self.count[i]])
    }

    /// Input indices read by any output (Pillow's ybox_first..ybox_last).
    fn input_span(&self) -> Range<usize> {
        let first = self.start.iter().copied().min().unwrap_or(0);
        let last = self.start.iter().zip(&self.count).map(|(s, n)| s + n).max().unwrap_or(first);
        first..last
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the outputs in
/// `outputs`. Taps past a pixel's real support get weight 0, like Pillow.
fn precompute(in_size: usize, out_size: usize, outputs: Range<usize>) -> Taps {
    // Pillow computes `in1 - in0` in float, then divides in double.
    let scale = f64::from(in_size as f32) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let inv = 1.0 / filterscale;

    let mut start = Vec::with_capacity(outputs.len());
    let mut counts = Vec::with_capacity(outputs.len());
    let mut weights = vec![0i32; outputs.len() * ksize];
    let mut k = vec![0f64; ksize];
    for (i, xx) in outputs.enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let mut total = 0.0;
        for (x, slot) in k.iter_mut().enumerate().take(count) {
            let w = bicubic_filter(((x + xmin) as f64 - center + 0.5) * inv);
            *slot = w;
            total += w;
        }
        let row = &mut weights[i * ksize..i * ksize + count];
        for (dst, &w) in row.iter_mut().zip(&k[..count]) {
            let w = if total != 0.0 { w / total } else { w };
            *dst = to_fixed(w);
        }
        start.push(xmin);
        counts.push(count);
    }
    Taps { ksize, start, count: counts, weights }
}

/// `normalize_coeffs_8bpc`: round half away from zero into fixed point.
fn to_fixed(w: f64) -> i32 {
    let scaled = w * f64::from(1u32 << PRECISION_BITS);
    if w < 0.0 {
        (-0.5 + scaled) as i32
    } else {
        (0.5 + scaled) as i32
    }
}

/// Pillow's `clip8`: drop the fraction (arithmetic shift), clamp to a byte.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

const ROUNDING: i32 = 1 << (PRECISION_BITS - 1);

fn bicubic(src: &Raster, win: Window) -> Raster {
    let need_h = win.out_w != src.width;
    let need_v = win.out_h != src.height;
    let vtaps = need_v.then(|| precompute(src.height, win.out_h, win.rows()));
    // Rows of `src` the vertical pass reads (or the crop rows if it is skipped).
    let rows = vtaps.as_ref().map_or(win.rows(), Taps::input_span);

    let horizontal_out = if need_h {
        let htaps = precompute(src.width, win.out_w, win.cols());
        horizontal(src, rows.clone(), &htaps)
    } else {
        crop(src, rows.clone(), win.cols())
    };
    match vtaps {
        Some(taps) => vertical(&horizontal_out, rows.start, &taps),
        None => horizontal_out,
    }
}

/// Horizontal pass over `rows` of `src`, clipped to u8 like Pillow's
/// intermediate image.
fn horizontal(src: &Raster, rows: Range<usize>, taps: &Taps) -> Raster {
    let c = src.channels;
    let out_w = taps.len();
    let mut data = Vec::with_capacity(rows.len() * out_w * c);
    for y in rows.clone() {
        let line = src.row(y);
        for i in 0..out_w {
            let (xmin, k) = taps.of(i);
            let mut acc = [ROUNDING; 4];
            let pixels = line[xmin * c..(xmin + k.len()) * c].chunks_exact(c);
            for (px, &w) in pixels.zip(k) {
                for (a, &v) in acc.iter_mut().zip(px) {
                    *a += i32::from(v) * w;
                }
            }
            data.extend(acc[..c].iter().map(|&a| clip8(a)));
        }
    }
    Raster { width: out_w, height: rows.len(), channels: c, data }
}

/// Vertical pass; `src` row 0 is input row `first_row`.
fn vertical(src: &Raster, first_row: usize, taps: &Taps) -> Raster {
    let c = src.channels;
    let stride = src.width * c;
    let out_h = taps.len();
    let mut data = Vec::with_capacity(out_h * stride);
    let mut acc = vec![0i32; stride];
    for i in 0..out_h {
        let (ymin, k) = taps.of(i);
        acc.fill(ROUNDING);
        for (y, &w) in k.iter().enumerate() {
            for (a, &v) in acc.iter_mut().zip(src.row(ymin + y - first_row)) {
                *a += i32::from(v) * w;
            }
        }
        data.extend(acc.iter().map(|&a| clip8(a)));
    }
    Raster { width: src.width, height: out_h, channels: c, data }
}

// ------------------------------------------------------------------ nearest

/// `ImagingScaleAffine`: source coordinate accumulated in f64 from a half
/// step, truncated. The running sum matters for exactness, so it is kept.
fn nearest_indices(in_size: usize, out_size: usize) -> Vec<usize> {
    let step = f64::from(in_size as f32) / out_size as f64;
    let mut pos = step * 0.5;
    let mut table = Vec::with_capacity(out_size);
    for _ in 0..out_size {
        let idx = if pos < 0.0 { 0 } else { pos as usize };
        table.push(idx.min(in_size.saturating_sub(1)));
        pos += step;
    }
    table
}

fn nearest(src: &Raster, win: Window) -> Raster {
    let c = src.channels;
    let xs = nearest_indices(src.width, win.out_w);
    let ys = nearest_indices(src.height, win.out_h);
    let mut data = Vec::with_capacity(win.width * win.height * c);
    for &y in &ys[win.rows()] {
        let line = src.row(y);
        for &x in &xs[win.cols()] {
            data.extend_from_slice(&line[x * c..(x + 1) * c]);
        }
    }
    Raster { width: win.width, height: win.height, channels: c, data }
}

// ------------------------------------------------------------------ alpha

/// Pillow's MULDIV255: (a * b + 128) / 255 with its exact integer rounding.
fn muldiv255(a: u8, b: u8) -> u8 {
    let tmp = u32::from(a) * u32::from(b) + 128;
    (((tmp >> 8) + tmp) >> 8) as u8
}

/// RGBA -> RGBa / LA -> La (colour channels times alpha).
fn premultiply(img: &mut Raster) {
    let c = img.channels;
    for px in img.data.chunks_exact_mut(c) {
        let alpha = px[c - 1];
        for v in &mut px[..c - 1] {
            *v = muldiv255(*v, alpha);
        }
    }
}

/// RGBa -> RGBA / La -> LA; alpha 0 and 255 leave the colour as is.
fn unpremultiply(img: &mut Raster) {
    let c = img.channels;
    for px in img.data.chunks_exact_mut(c) {
        let alpha = u32::from(px[c - 1]);
        if alpha == 0 || alpha == 255 {
            continue;
        }
        for v in &mut px[..c - 1] {
            *v = (255 * u32::from(*v) / alpha).min(255) as u8;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (inp, out) in [(451, 64), (300, 64), (29, 64), (1000, 3)] {
            let taps = precompute(inp, out, 0..out);
            assert!(taps.input_span().end <= inp);
            for i in 0..out {
                let sum: i64 = taps.of(i).1.iter().map(|&w| i64::from(w)).sum();
                assert!((sum - (1 << PRECISION_BITS)).abs() <= taps.ksize as i64, "{inp}->{out} #{i}: {sum}");
            }
        }
    }

    #[test]
    fn muldiv255_matches_exact_rounding() {
        for a in 0..=255u32 {
            for b in 0..=255u32 {
                let exact = ((a * b) as f64 / 255.0).round() as u32;
                assert_eq!(u32::from(muldiv255(a as u8, b as u8)), exact);
            }
        }
    }

    #[test]
    fn window_equals_full_resize_then_crop() {
        let (w, h) = (37, 23);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let src = Raster { width: w, height: h, channels: 3, data };
        for filter in [Filter::Bicubic, Filter::Nearest] {
            let full = Window { out_w: 20, out_h: 12, left: 0, top: 0, width: 20, height: 12 };
            let part = Window { left: 4, top: 0, width: 12, height: 12, ..full };
            let whole = resize_window(src.clone(), full, filter);
            let windowed = resize_window(src.clone(), part, filter);
            assert_eq!(crop(&whole, 0..12, 4..16), windowed);
        }
    }
}
