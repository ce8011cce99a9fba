//! Compares the pipeline with references computed by PIL/numpy
//! (`scripts/preprocess_reference.py`, outputs in `tests/fixtures/preprocess`).
//! Run with `-- --nocapture` to see the per-image differences.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use super::*;

// OpenAI CLIP's published constants, digit for digit (rounded to f32 exactly
// as numpy's float32() rounds them in the reference script).
#[allow(clippy::excessive_precision)]
const MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
#[allow(clippy::excessive_precision)]
const STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];
/// Exact paths: identical bytes give identical f32s; this only absorbs noise.
const EXACT: f32 = 1e-5;
/// One 8-bit level after normalisation, for the widest-spread channel.
const ONE_LEVEL: f32 = 1.0 / 255.0 / STD[1];

fn fixtures() -> PathBuf {
    // Canonical, as every path the server reads is (no `..`).
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/preprocess").canonicalize().unwrap()
}

/// `$IMGIDX_TESTDATA`, else the copy committed under `tests/fixtures/images`
/// (the same scikit-image samples as `../shared/testdata/images`).
pub(super) fn sample_images() -> PathBuf {
    if let Ok(dir) = std::env::var("IMGIDX_TESTDATA") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/images").canonicalize().unwrap()
}

fn preprocessor(size: u32) -> Preprocessor {
    Preprocessor::new(size, MEAN, STD, 100_000_000, 100 << 20)
}

/// A parsed `.npy` (only what the fixtures use: '|u1' and '<f4').
struct Npy {
    shape: Vec<usize>,
    u8: Vec<u8>,
    f32: Vec<f32>,
}

fn read_npy(path: &Path) -> Npy {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    let body = &bytes[10 + header_len..];
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape = shape_text.split(',').filter_map(|d| d.trim().parse().ok()).collect();
    assert!(header.contains("'fortran_order': False"));
    if header.contains("'|u1'") {
        Npy { shape, u8: body.to_vec(), f32: Vec::new() }
    } else {
        assert!(header.contains("'<f4'"), "{header}");
        let f32 = body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Npy { shape, u8: Vec::new(), f32 }
    }
}

/// HWC u8 reference -> CHW tensor, with the same f32 ops as torchvision.
fn normalise_reference(npy: &Npy) -> Vec<f32> {
    let (h, w) = (npy.shape[0], npy.shape[1]);
    let lut = normalise_lut(MEAN, STD);
    let mut out = vec![0f32; 3 * h * w];
    for c in 0..3 {
        for i in 0..h * w {
            out[c * h * w + i] = lut[c][usize::from(npy.u8[i * 3 + c])];
        }
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn mean_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
}

/// Every `<image>.s<S>.u8.npy` in the fixtures, as (image path, S, npy path).
fn reference_cases() -> Vec<(PathBuf, u32, PathBuf)> {
    let samples = sample_images();
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let npy = entry.unwrap().path();
        let name = npy.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".u8.npy") else { continue };
        let (image, size) = stem.rsplit_once(".s").unwrap();
        let size: u32 = size.parse().unwrap();
        let local = fixtures().join(image);
        let path = if local.is_file() { local } else { samples.join(image) };
        cases.push((path, size, npy));
    }
    cases.sort();
    assert!(cases.len() >= 30, "fixtures missing: run scripts/preprocess_reference.py");
    cases
}

/// Decoders that are not bit-identical to PIL's (libjpeg-turbo, libwebp).
fn lossy(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    (name.ends_with(".jpg") || name.starts_with("lossy")) && !name.ends_with(".pil.png")
}

#[test]
fn matches_pil_references() {
    let mut failures = Vec::new();
    for (image, size, npy) in reference_cases() {
        let got = preprocessor(size).load_path(&image).unwrap_or_else(|e| panic!("{}: {e}", image.display()));
        let want = normalise_reference(&read_npy(&npy));
        let (max, mean) = (max_abs_diff(&got.tensor, &want), mean_abs_diff(&got.tensor, &want));
        let name = image.file_name().unwrap().to_string_lossy().into_owned();
        println!("{name:32} S={size:3} max {max:.2e} ({:.2} levels) mean {mean:.2e}", max / ONE_LEVEL);
        // Decoder differences (see `jpeg_decoder_difference_is_small`) are a
        // few levels per pixel and mostly average out in the downscale.
        let ok = if lossy(&image) { max <= 6.0 * ONE_LEVEL && mean <= 0.5 * ONE_LEVEL } else { max <= EXACT };
        if !ok {
            failures.push(format!("{name} S={size}: max {max}, mean {mean}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// PIL's decoded pixels of each JPEG (saved losslessly with the same EXIF)
/// must reproduce the JPEG's reference exactly: the resize, crop, EXIF and
/// normalisation are exact; only the JPEG decoder differs.
#[test]
fn pil_decoded_jpeg_pixels_match_exactly() {
    for o in [3, 6, 8] {
        let png = fixtures().join(format!("exif{o}.jpg.pil.png"));
        let got = preprocessor(64).load_path(&png).unwrap();
        let want = normalise_reference(&read_npy(&fixtures().join(format!("exif{o}.jpg.s64.u8.npy"))));
        let max = max_abs_diff(&got.tensor, &want);
        println!("exif{o}.jpg.pil.png max {max:.2e}");
        assert!(max <= EXACT, "orientation {o}: {max}");
    }
}

#[test]
fn jpeg_decoder_difference_is_small() {
    let jpeg = std::fs::read(fixtures().join("exif6.jpg")).unwrap();
    let ours = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    let pil = image::open(fixtures().join("exif6.jpg.pil.png")).unwrap().to_rgb8();
    let diffs: Vec<u8> = ours.as_raw().iter().zip(pil.as_raw()).map(|(a, b)| a.abs_diff(*b)).collect();
    let max = diffs.iter().copied().max().unwrap_or(0);
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
    println!("zune-jpeg vs libjpeg-turbo pixels: max {max} levels, mean {mean:.3}");
    assert!(max <= 8 && mean < 1.0);
}

#[test]
fn full_tensor_references_match() {
    for (image, size) in [("chelsea.png", 224), ("chelsea.png", 64), ("rgba.png", 64)] {
        let local = fixtures().join(image);
        let path = if local.is_file() { local } else { sample_images().join(image) };
        let got = preprocessor(size).load_path(&path).unwrap();
        let want = read_npy(&fixtures().join(format!("{image}.s{size}.f32.npy")));
        assert_eq!(want.shape, vec![3, size as usize, size as usize]);
        let max = max_abs_diff(&got.tensor, &want.f32);
        println!("{image} S={size} f32 reference max {max:.2e}");
        assert!(max <= EXACT, "{image}: {max}");
    }
}

#[test]
fn reports_format_and_oriented_size() {
    let p = preprocessor(64);
    for (name, format, w, h) in [
        ("exif6.jpg", "jpeg", 71, 97),
        ("exif3.jpg", "jpeg", 97, 71),
        ("exif6.png", "png", 71, 97),
        ("lossless.webp", "webp", 97, 71),
        ("rgb.bmp", "bmp", 97, 71),
        ("multipage.tif", "tiff", 97, 71),
    ] {
        let got = p.load_path(&fixtures().join(name)).unwrap();
        assert_eq!((got.format, got.width, got.height), (format, w, h), "{name}");
        assert_eq!(got.tensor.len(), 3 * 64 * 64);
    }
    let gif = p.load_path(&sample_images().join("no_time_for_that_tiny.gif")).unwrap();
    assert_eq!((gif.format, gif.width, gif.height), ("gif", 14, 25));
}

#[test]
fn format_comes_from_content_not_extension() {
    let dir = tempfile::tempdir().unwrap();
    let disguised = dir.path().canonicalize().unwrap().join("photo.jpg");
    std::fs::copy(fixtures().join("photo.png"), &disguised).unwrap();
    let got = preprocessor(64).load_path(&disguised).unwrap();
    assert_eq!(got.format, "png");
}

#[test]
fn missing_file_is_not_found() {
    let dir = std::env::temp_dir().canonicalize().unwrap();
    let err = preprocessor(64).load_path(&dir.join("imgidx-definitely-not-here.png")).unwrap_err();
    assert_eq!(err.kind(), FailureKind::NotFound);
    assert_eq!(err.to_string(), "file not found");
    // Its directory missing too: still not found, saying so (a worker tries it again first).
    let err = preprocessor(64).load_path(Path::new("/definitely/not/here.png")).unwrap_err();
    assert_eq!(err.kind(), FailureKind::NotFound);
    assert!(err.to_string().contains("directory is missing"), "{err}");
}

#[test]
fn text_file_is_not_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().canonicalize().unwrap().join("notes.png");
    std::fs::write(&path, "just some text, not pixels\n").unwrap();
    let err = preprocessor(64).load_path(&path).unwrap_err();
    assert_eq!(err.kind(), FailureKind::NotAnImage);
    assert_eq!(err.to_string(), "not an image (unrecognised format)");
}

#[test]
fn truncated_image_is_unreadable() {
    let bytes = std::fs::read(fixtures().join("photo.png")).unwrap();
    let err = preprocessor(64).load_bytes(&bytes[..bytes.len() / 2]).unwrap_err();
    assert_eq!(err.kind(), FailureKind::Unreadable, "{err}");
}

#[test]
fn pixel_limit_is_checked_from_the_header() {
    // A PNG whose header claims 100000 x 100000 but has no pixel data: the
    // limit must trip before any decoding (decoding would fail differently).
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    for kind in [b"IDAT", b"IEND"] {
        png.extend_from_slice(&0u32.to_be_bytes());
        png.extend_from_slice(kind);
        png.extend_from_slice(&crc32(kind).to_be_bytes());
    }
    let err = preprocessor(64).load_bytes(&png).unwrap_err();
    assert_eq!(err.kind(), FailureKind::TooLarge, "{err}");
    assert_eq!(err.to_string(), "image has 10000000000 pixels, more than the limit of 100000000");

    let small_limit = Preprocessor::new(64, MEAN, STD, 1000, 100 << 20);
    let err = small_limit.load_path(&fixtures().join("photo.png")).unwrap_err();
    assert_eq!(err.to_string(), "image has 6887 pixels, more than the limit of 1000");
}

#[test]
fn file_size_limit_is_checked_before_reading() {
    let p = Preprocessor::new(64, MEAN, STD, 100_000_000, 1000);
    let err = p.load_path(&fixtures().join("photo.png")).unwrap_err();
    assert_eq!(err.kind(), FailureKind::TooLarge);
    assert!(err.to_string().starts_with("file is "), "{err}");
    assert!(err.to_string().ends_with("more than the limit of 1 kB"), "{err}");
    assert_eq!(p.load_bytes(&[0u8; 1001]).unwrap_err().kind(), FailureKind::TooLarge);
}

#[test]
fn float64_tiff_is_reported_not_panicked() {
    // Pillow cannot open this float64 planar TIFF either; we either decode it
    // or report it as unreadable.
    match preprocessor(64).load_path(&sample_images().join("multipage_rgb.tif")) {
        Ok(got) => {
            println!("multipage_rgb.tif decoded: {}x{}", got.width, got.height);
            assert_eq!(got.tensor.len(), 3 * 64 * 64);
        }
        Err(err) => {
            println!("multipage_rgb.tif: {err}");
            assert_eq!(err.kind(), FailureKind::Unreadable, "{err}");
        }
    }
}

#[test]
fn crop_window_follows_torchvision() {
    let w = clip_window(451, 300, 224);
    assert_eq!((w.out_w, w.out_h, w.left, w.top), (336, 224, 56, 0));
    // (101 - 64) / 2 = 18.5 rounds half to even -> 18.
    let w = clip_window(64, 101, 64);
    assert_eq!((w.out_w, w.out_h, w.left, w.top), (64, 101, 0, 18));
    // (97*64/71) = 87.43 -> 87; (87-64)/2 = 11.5 -> 12.
    let w = clip_window(97, 71, 64);
    assert_eq!((w.out_w, w.out_h, w.left, w.top), (87, 64, 12, 0));
}

#[test]
fn human_sizes() {
    assert_eq!(human_bytes(300_000_000), "300 MB");
    assert_eq!(human_bytes(1_500_000), "1.5 MB");
    assert_eq!(human_bytes(17), "17 bytes");
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn a_fifo_or_device_is_refused_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().canonicalize().unwrap().join("pipe.png");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for path in [fifo.as_path(), Path::new("/dev/zero")] {
        let err = preprocessor(64).load_path(path).unwrap_err();
        assert_eq!(err.kind(), FailureKind::NotAnImage, "{path:?}: {err}");
        assert!(err.to_string().starts_with("not a regular file"), "{err}");
    }
}

#[test]
fn decoding_waits_for_its_share_of_the_budget_and_gives_it_back() {
    let budget = crate::embed::DecodeBudget::new(64 << 20);
    let p = preprocessor(64).with_budget(budget.clone());
    let all = budget.acquire_blocking(u64::MAX).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let out = p.load_path(&fixtures().join("photo.png")).map(|_| ());
        tx.send(()).unwrap();
        out.and_then(|()| p.load_bytes(b"not an image").map(|_| ()))
    });
    assert!(rx.recv_timeout(std::time::Duration::from_millis(200)).is_err(), "decoded without budget");
    drop(all);
    rx.recv_timeout(std::time::Duration::from_secs(10)).expect("decodes once the budget is free");
    assert_eq!(worker.join().unwrap().unwrap_err().kind(), FailureKind::NotAnImage);
    assert_eq!(budget.available_bytes(), budget.total_bytes(), "every share given back");
}

// ------------------------------------------------------------- camera RAW

fn raw_fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/raw").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const RAW_FIXTURES: [(&str, &str); 8] = [
    ("sample.dng", "dng"),
    ("sample.cr2", "cr2"),
    ("sample.cr3", "cr3"),
    ("sample.nef", "nef"),
    ("sample.arw", "arw"),
    ("sample.raf", "raf"),
    ("sample.orf", "orf"),
    ("sample.rw2", "rw2"),
];

/// `jpeg` with an EXIF block (APP1) saying `orientation`, as a camera JPEG has.
pub(super) fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0\x01\0".to_vec();
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&u32::from(orientation).to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&u16::try_from(app1.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn raw_files_are_read_through_their_largest_embedded_preview() {
    let p = preprocessor(64);
    // The fixtures embed preview.jpg (320x240) and a smaller thumbnail: the pixels must be
    // exactly the preview's, decoded by the JPEG path (held to PIL's by the tests above).
    let reference = p.load_bytes(&raw_fixture("preview.jpg")).unwrap();
    for (file, format) in RAW_FIXTURES {
        let got = p.load_bytes(&raw_fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!((got.format, got.width, got.height), (format, 320, 240), "{file}");
        assert!(got.tensor == reference.tensor, "{file}: not the preview's pixels");
    }
}

#[test]
fn a_raw_files_orientation_turns_its_preview() {
    let p = preprocessor(64);
    let reference = p.load_bytes(&with_exif_orientation(&raw_fixture("preview.jpg"), 6)).unwrap();
    let got = p.load_bytes(&raw_fixture("sample_rot90.dng")).unwrap();
    assert_eq!((got.width, got.height), (240, 320), "turned 90 degrees");
    assert!(got.tensor == reference.tensor);
}

#[test]
fn a_raw_preview_smaller_than_the_model_input_is_refused() {
    let err = preprocessor(300).load_bytes(&raw_fixture("sample.nef")).unwrap_err();
    assert!(matches!(&err, DecodeError::Unreadable(m) if m.contains("320x240, smaller than 300 px")), "{err}");
    let cut = &raw_fixture("sample.cr3")[..2000];
    assert!(preprocessor(64).load_bytes(cut).is_err(), "a truncated file fails cleanly");
}

#[test]
fn raw_containers_are_recognised_from_their_first_bytes() {
    for (file, format) in RAW_FIXTURES {
        let head = &raw_fixture(file)[..SNIFF_BYTES];
        // TIFF-based RAW files read as TIFF from their head; both are taken in.
        let expected = if ["dng", "nef", "arw"].contains(&format) { "tiff" } else { format };
        assert_eq!(image_format(head), Some(expected), "{file}");
    }
}
