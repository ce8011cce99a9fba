//! The fast mode against the exact one on the same files: same geometry, orientation,
//! limits and failures; tensors close (the bars below). The scaled JPEG decoder is a
//! run-time library: without libturbojpeg the turbo-specific checks say so and pass (unless
//! `IMGIDX_REQUIRE_SERVICES` is set), and the rest runs on the exact-decoder fallback.
//! Run with `-- --nocapture` to see the per-image differences.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use super::fast::load_with;
use super::tests::{sample_images, with_exif_orientation};
use super::*;

#[allow(clippy::excessive_precision)]
const MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
#[allow(clippy::excessive_precision)]
const STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];
/// One 8-bit level after normalisation, for the widest-spread channel.
const ONE_LEVEL: f32 = 1.0 / 255.0 / STD[1];

/// JPEG through the scaled decoder: DCT-domain downscaling is a different low-pass than
/// Pillow's antialiased bicubic, so pixels move by up to about a level on average
/// (observed: at most 1.41 levels mean; r >= 0.9992, but 0.9976 for the star field of
/// hubble_deep_field.jpg at S=64, decoded at 1/8).
const JPEG_MEAN_LEVELS: f32 = 2.0;
const JPEG_MIN_R: f64 = 0.995;
/// Same decoder, SIMD resize only: within a level (observed: <= 0.54 level mean with
/// alpha, <= 0.25 without; r >= 0.9996).
const RESIZE_MEAN_LEVELS: f32 = 1.0;
const RESIZE_MIN_R: f64 = 0.999;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/preprocess").canonicalize().unwrap()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn exact(size: u32) -> Preprocessor {
    Preprocessor::new(size, MEAN, STD, 100_000_000, 100 << 20)
}

fn fast(size: u32) -> Preprocessor {
    exact(size).with_mode(PreprocessMode::Fast)
}

/// Without libturbojpeg the turbo-specific checks are skipped, saying why.
fn have_turbojpeg() -> bool {
    match turbojpeg_available() {
        Ok(()) => true,
        Err(e) if std::env::var_os("IMGIDX_REQUIRE_SERVICES").is_some() => panic!("libturbojpeg is required here: {e}"),
        Err(e) => {
            eprintln!("skipped: libturbojpeg is not installed ({e}); apt-get install libturbojpeg0");
            false
        }
    }
}

fn mean_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
}

/// Pearson correlation of the flattened tensors.
fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (f64::from(x) - ma, f64::from(y) - mb);
        ab += dx * dy;
        aa += dx * dx;
        bb += dy * dy;
    }
    if aa == 0.0 || bb == 0.0 {
        return if a == b { 1.0 } else { 0.0 };
    }
    ab / (aa * bb).sqrt()
}

/// Both modes on `bytes`: same size and format, tensors within the bars. (mean levels, r)
/// `scaled_jpeg: false` takes the exact decoder for JPEG too (the SIMD resize alone).
fn compare(name: &str, bytes: &[u8], size: u32, scaled_jpeg: bool, levels: f32, min_r: f64) -> (f32, f64) {
    let want = exact(size).load_bytes(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = load_with(&fast(size), bytes, scaled_jpeg).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!((got.format, got.width, got.height), (want.format, want.width, want.height), "{name}");
    assert_eq!(got.tensor.len(), 3 * (size * size) as usize);
    let (mad, r) = (mean_abs_diff(&got.tensor, &want.tensor), correlation(&got.tensor, &want.tensor));
    let jpeg = if scaled_jpeg { "scaled" } else { "full" };
    println!("{name:36} S={size:3} {jpeg:6}: mean abs diff {mad:.4} ({:.2} levels), r {r:.5}", mad / ONE_LEVEL);
    assert!(mad <= levels * ONE_LEVEL && r >= min_r, "{name} S={size} {jpeg}: mean {mad} ({:.2} levels), r {r}", mad / ONE_LEVEL);
    (mad / ONE_LEVEL, r)
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(ext))
        .collect();
    files.sort();
    files
}

fn sample_jpegs() -> Vec<PathBuf> {
    let mut files = files_with(&sample_images(), ".jpg");
    files.extend(files_with(&fixtures(), ".jpg"));
    assert!(files.len() >= 6, "sample JPEGs missing");
    files
}

fn encode_jpeg(image: &image::DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    image.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut out), 90)).unwrap();
    out
}

/// A 12 MP-class camera JPEG and a greyscale one, made from the samples.
fn synthetic_jpegs() -> Vec<(String, Vec<u8>)> {
    let astronaut = image::open(sample_images().join("astronaut.png")).unwrap();
    let big = astronaut.resize_exact(2400, 1800, image::imageops::FilterType::Triangle);
    let grey = image::open(sample_images().join("camera.png")).unwrap().into_luma8();
    vec![("astronaut 2400x1800".into(), encode_jpeg(&big)), ("camera grey".into(), encode_jpeg(&grey.into()))]
}

#[test]
fn jpeg_tensors_are_close_to_exact() {
    let mut cases: Vec<(String, Vec<u8>)> =
        sample_jpegs().iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), read(p))).collect();
    cases.extend(synthetic_jpegs());
    for (name, bytes) in &cases {
        for size in [224, 64] {
            compare(name, bytes, size, true, JPEG_MEAN_LEVELS, JPEG_MIN_R);
            compare(name, bytes, size, false, RESIZE_MEAN_LEVELS, RESIZE_MIN_R);
        }
    }
}

#[test]
fn other_formats_are_close_to_exact() {
    let mut files = files_with(&sample_images(), ".png");
    for ext in [".png", ".webp", ".bmp", ".tif", ".gif"] {
        files.extend(files_with(&fixtures(), ext));
    }
    files.push(sample_images().join("no_time_for_that_tiny.gif"));
    assert!(files.len() >= 20, "samples missing");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        compare(&name, &read(&path), 64, true, RESIZE_MEAN_LEVELS, RESIZE_MIN_R);
    }
    for name in ["chelsea.png", "astronaut.png"] {
        compare(name, &read(&sample_images().join(name)), 224, true, RESIZE_MEAN_LEVELS, RESIZE_MIN_R);
    }
}

#[test]
fn every_exif_orientation_matches_exact() {
    // rocket.jpg (640x427, no EXIF of its own) decodes at 1/4 for S=64 (107 rows: the last
    // one partly padding, which a flip moves to the other side) and full size for S=224.
    let rocket = read(&sample_images().join("rocket.jpg"));
    for size in [64, 224] {
        let upright = exact(size).load_bytes(&rocket).unwrap();
        for o in 1..=8u16 {
            let jpeg = with_exif_orientation(&rocket, o);
            compare(&format!("rocket.jpg orientation {o}"), &jpeg, size, true, JPEG_MEAN_LEVELS, JPEG_MIN_R);
            let got = fast(size).load_bytes(&jpeg).unwrap();
            let turned = o >= 5;
            assert_eq!((got.width, got.height), if turned { (427, 640) } else { (640, 427) }, "orientation {o}");
            if o != 1 {
                // The bar tells orientations apart: upright pixels do not pass for turned ones.
                let r = correlation(&got.tensor, &upright.tensor);
                assert!(r < JPEG_MIN_R, "orientation {o} looks upright (r {r})");
            }
        }
    }
}

#[test]
fn the_scaled_decoder_is_used_when_installed() {
    if !have_turbojpeg() {
        return;
    }
    // 1411x1411 for S=224: 1/4 (353 >= 224; 1/8 gives 177). Sizes are ceil(dim * scale).
    let retina = read(&sample_images().join("retina.jpg"));
    let scaled = turbo::decode(&retina, 100_000_000, None, 224).unwrap();
    assert_eq!((scaled.raster.width, scaled.raster.height, scaled.num, scaled.denom), (353, 353, 1, 4));
    assert_eq!((scaled.width, scaled.height, scaled.raster.channels), (1411, 1411, 3));
    // 1000x872: 872/4 = 218 < 224, so 1/2.
    let hubble = read(&sample_images().join("hubble_deep_field.jpg"));
    let scaled = turbo::decode(&hubble, 100_000_000, None, 224).unwrap();
    assert_eq!((scaled.raster.width, scaled.raster.height, scaled.num, scaled.denom), (500, 436, 1, 2));
    // Smaller than the model's input: full size.
    let small = read(&fixtures().join("exif6.jpg"));
    let scaled = turbo::decode(&small, 100_000_000, None, 224).unwrap();
    assert_eq!((scaled.raster.width, scaled.raster.height, scaled.num, scaled.denom), (97, 71, 1, 1));
    assert_eq!(scaled.orientation, image::metadata::Orientation::Rotate90);
}

#[test]
fn truncated_jpegs_fail_or_pass_as_in_exact_mode() {
    let rocket = read(&sample_images().join("rocket.jpg"));
    // Cut in the header: an error, not a panic, in both modes (two bytes are no JPEG yet).
    for n in [2, 3, 20, 200, 600] {
        let err = fast(224).load_bytes(&rocket[..n]).unwrap_err();
        let want = exact(224).load_bytes(&rocket[..n]).unwrap_err();
        assert_eq!(err.kind(), want.kind(), "cut at {n}: {err}");
        let kind = if n < 3 { FailureKind::NotAnImage } else { FailureKind::Unreadable };
        assert_eq!(err.kind(), kind, "cut at {n}: {err}");
    }
    // Cut in the scan: the exact decoder fills in the rest, libjpeg-turbo reports it; the
    // fast mode then takes the exact decoder's word, so both modes accept the same files.
    for n in [rocket.len() / 3, rocket.len() / 2, rocket.len() - 10] {
        let got = fast(224).load_bytes(&rocket[..n]).map(|p| (p.width, p.height)).map_err(|e| e.kind());
        let want = exact(224).load_bytes(&rocket[..n]).map(|p| (p.width, p.height)).map_err(|e| e.kind());
        assert_eq!(got, want, "cut at {n}");
        if have_turbojpeg() {
            let err = turbo::decode(&rocket[..n], 100_000_000, None, 224).err().unwrap();
            assert!(matches!(err, DecodeError::Unreadable(_)), "{err:?}");
            println!("libturbojpeg on a JPEG cut at {n}: {err}");
        }
    }
}

#[test]
fn the_pixel_limit_is_checked_from_the_header() {
    let rocket = read(&sample_images().join("rocket.jpg"));
    let limited = |mode| Preprocessor::new(224, MEAN, STD, 1000, 100 << 20).with_mode(mode);
    let err = limited(PreprocessMode::Fast).load_bytes(&rocket).unwrap_err();
    assert_eq!(err.kind(), FailureKind::TooLarge, "{err}");
    assert_eq!(err.to_string(), "image has 273280 pixels, more than the limit of 1000");
    assert_eq!(err.to_string(), limited(PreprocessMode::Exact).load_bytes(&rocket).unwrap_err().to_string());
    let png = Preprocessor::new(64, MEAN, STD, 1000, 100 << 20).with_mode(PreprocessMode::Fast);
    assert_eq!(png.load_path(&fixtures().join("photo.png")).unwrap_err().to_string(), "image has 6887 pixels, more than the limit of 1000");
    if have_turbojpeg() {
        let err = turbo::decode(&rocket, 1000, None, 224).err().unwrap();
        assert!(matches!(err, DecodeError::TooLarge(_)), "{err:?}");
    }
}

#[test]
fn file_size_limit_and_non_images_as_in_exact_mode() {
    let p = Preprocessor::new(64, MEAN, STD, 100_000_000, 1000).with_mode(PreprocessMode::Fast);
    assert_eq!(p.load_bytes(&[0u8; 1001]).unwrap_err().kind(), FailureKind::TooLarge);
    let err = fast(64).load_bytes(b"just some text, not pixels\n").unwrap_err();
    assert_eq!(err.kind(), FailureKind::NotAnImage);
    assert_eq!(err.to_string(), "not an image (unrecognised format)");
}

#[test]
fn every_share_of_the_budget_is_given_back() {
    let budget = crate::embed::DecodeBudget::new(64 << 20);
    let p = fast(224).with_budget(budget.clone());
    for name in ["retina.jpg", "chelsea.png"] {
        p.load_path(&sample_images().join(name)).unwrap();
    }
    let rocket = read(&sample_images().join("rocket.jpg"));
    let _ = p.load_bytes(&rocket[..rocket.len() / 2]); // through libturbojpeg's refusal
    assert!(p.load_bytes(&rocket[..200]).is_err());
    assert_eq!(budget.available_bytes(), budget.total_bytes(), "every share given back");
}

#[test]
fn modes_are_spelt_in_lowercase_and_exact_is_the_default() {
    assert_eq!(PreprocessMode::default(), PreprocessMode::Exact);
    assert_eq!(serde_json::from_str::<PreprocessMode>("\"fast\"").unwrap(), PreprocessMode::Fast);
    assert_eq!(serde_json::from_str::<PreprocessMode>("\"exact\"").unwrap(), PreprocessMode::Exact);
    assert_eq!(serde_json::to_string(&PreprocessMode::Fast).unwrap(), "\"fast\"");
    assert!(serde_json::from_str::<PreprocessMode>("\"Fast\"").is_err());
    // Exact mode is untouched by the fast one's existence.
    let bytes = read(&sample_images().join("rocket.jpg"));
    let default = exact(64).load_bytes(&bytes).unwrap();
    let explicit = exact(64).with_mode(PreprocessMode::Exact).load_bytes(&bytes).unwrap();
    assert!(default.tensor == explicit.tensor);
}
