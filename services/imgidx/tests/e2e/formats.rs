//! HEIC, AVIF and camera RAW against a real `imgidx serve`: a directory walk finds them
//! by their first bytes, workers decode them (HEIC and AVIF through libheif, RAW through
//! its embedded preview; rotation applied), and they land next to the image they were
//! made from.

use std::time::Duration;

use serde_json::json;

use crate::serve::wait_done;
use crate::server::{repo_root, Serve};

/// Whether Debian's libheif1 is installed; the test says so and passes without it, unless
/// the test command promised it (`IMGIDX_REQUIRE_SERVICES`, as `tests/run.sh` sets).
fn have_libheif() -> bool {
    let found = ["/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
        .iter()
        .any(|dir| std::path::Path::new(dir).join("libheif.so.1").exists());
    assert!(found || std::env::var_os("IMGIDX_REQUIRE_SERVICES").is_none(), "libheif1 is required here");
    if !found {
        eprintln!("skipped: libheif1 is not installed (apt-get install libheif1)");
    }
    found
}

#[tokio::test]
async fn heic_and_avif_are_found_indexed_and_look_like_their_source() {
    if !have_libheif() {
        return;
    }
    let s = Serve::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    for name in ["sample.png", "sample.heic", "sample.avif", "sample_rot90.heic"] {
        // Named without extensions: the type comes from the bytes.
        let stem = name.replace('.', "_");
        std::fs::copy(repo_root().join("tests/fixtures/heif").join(name), root.join(stem)).unwrap();
    }
    let (code, scan) = s.post_json("/api/v1/index/trigger", &json!({ "image_dir": root })).await;
    assert_eq!(code, 202, "{scan}");
    let done = wait_done(&s, scan["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!((done["status"].as_str(), done["progress"]["processed_images"].as_u64()), (Some("completed"), Some(4)), "{done}");

    let (code, r) = s.post_json("/api/v1/query", &json!({ "image_path": root.join("sample_heic"), "top_k": 4 })).await;
    assert_eq!(code, 200, "{r}");
    let hits = r["results"].as_array().unwrap();
    let format_of = |name: &str| hits.iter().find(|h| h["image_path"].as_str().unwrap().ends_with(name)).map(|h| h["payload"]["format"].clone());
    assert_eq!((format_of("sample_heic"), format_of("sample_avif")), (Some(json!("heic")), Some(json!("avif"))), "{r}");
    let score_of = |name: &str| hits.iter().find(|h| h["image_path"].as_str().unwrap().ends_with(name)).unwrap()["score"].as_f64().unwrap();
    assert!(score_of("sample_png") > 0.99 && score_of("sample_avif") > 0.99, "the same picture: {r}");
    let rotated = hits.iter().find(|h| h["image_path"].as_str().unwrap().ends_with("sample_rot90_heic")).unwrap();
    assert_eq!((rotated["payload"]["width"].as_u64(), rotated["payload"]["height"].as_u64()), (Some(64), Some(96)), "turned once: {rotated}");
    s.stop().await;
}

#[tokio::test]
async fn raw_files_are_found_and_indexed_through_their_preview() {
    let s = Serve::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let raw = repo_root().join("tests/fixtures/raw");
    let files = ["preview.jpg", "sample.dng", "sample.cr2", "sample.cr3", "sample.nef", "sample.arw", "sample.raf", "sample.orf", "sample.rw2", "sample_rot90.dng"];
    for name in files {
        // Named without extensions: the type comes from the bytes.
        std::fs::copy(raw.join(name), root.join(name.replace('.', "_"))).unwrap();
    }
    let (code, scan) = s.post_json("/api/v1/index/trigger", &json!({ "image_dir": root })).await;
    assert_eq!(code, 202, "{scan}");
    let done = wait_done(&s, scan["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    let processed = done["progress"]["processed_images"].as_u64();
    assert_eq!((done["status"].as_str(), processed), (Some("completed"), Some(files.len() as u64)), "{done}");

    let (code, r) = s.post_json("/api/v1/query", &json!({ "image_path": root.join("preview_jpg"), "top_k": 20 })).await;
    assert_eq!(code, 200, "{r}");
    let hits = r["results"].as_array().unwrap();
    for name in files {
        let hit = hits.iter().find(|h| h["image_path"].as_str().unwrap().ends_with(&name.replace('.', "_"))).unwrap();
        let format = name.rsplit('.').next().unwrap().replace("jpg", "jpeg");
        assert_eq!(hit["payload"]["format"], json!(format), "{hit}");
        if name != "sample_rot90.dng" {
            // The very pixels of the preview they embed.
            assert!(hit["score"].as_f64().unwrap() > 0.9999, "{hit}");
            assert_eq!((hit["payload"]["width"].as_u64(), hit["payload"]["height"].as_u64()), (Some(320), Some(240)), "{hit}");
        } else {
            assert_eq!((hit["payload"]["width"].as_u64(), hit["payload"]["height"].as_u64()), (Some(240), Some(320)), "turned: {hit}");
        }
    }
    s.stop().await;
}
