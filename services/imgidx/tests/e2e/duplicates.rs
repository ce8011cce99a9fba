//! Duplicates and curation against a real `imgidx serve`: exact groups (the same bytes
//! under three paths) and near groups (a resized, re-encoded copy) from a background
//! analysis; archive-exact's dry run changes nothing, its real run moves exactly the
//! extra copies into `_duplicates/` (out of the index, and out of later scans), and a
//! restore undoes it; a selection is archived and restored likewise; and the CLI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::serve::wait_done;
use crate::server::{fixture_images, imgidx, Serve};

/// The default threshold. With the tiny test model a half-size JPEG copy of chelsea.png
/// scores 0.99995 against it, while the closest two distinct sample images score 0.69.
const THRESHOLD: f64 = 0.95;

async fn index(s: &Serve, paths: &[PathBuf]) {
    let (code, job) = s.post_json("/api/v1/index/add-images", &json!({ "image_paths": paths })).await;
    assert_eq!(code, 202, "{job}");
    let done = wait_done(s, job["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!((done["status"].as_str(), done["progress"]["failed_images"].as_u64()), (Some("completed"), Some(0)), "{done}");
}

async fn points(s: &Serve) -> u64 {
    let (code, stats) = s.get("/api/v1/index/stats").await;
    assert_eq!(code, 200, "{stats}");
    stats["total_images"].as_u64().or_else(|| stats["num_images"].as_u64()).unwrap_or_else(|| panic!("{stats}"))
}

async fn analyse(s: &Serve, threshold: f64) -> Value {
    let (code, started) = s.post_json("/api/v1/duplicates/find-similar", &json!({ "threshold": threshold })).await;
    assert_eq!(code, 202, "{started}");
    let task_id = started["task_id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, report) = s.get(&format!("/api/v1/duplicates/report/{task_id}")).await;
        assert_eq!(code, 200, "{report}");
        if report["status"] != "running" {
            assert_eq!(report["status"], "completed", "{report}");
            return report;
        }
        assert!(tokio::time::Instant::now() < deadline, "analysis not done: {report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn paths_of(group: &Value) -> Vec<String> {
    group["images"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap().to_owned()).collect()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test]
async fn exact_and_near_duplicates_are_found_archived_and_restored() {
    let data = tempfile::tempdir().unwrap();
    let root_dir = tempfile::tempdir().unwrap();
    let root = root_dir.path().canonicalize().unwrap();
    let roots = s(&root);
    let server = Serve::start(data.path(), &[("IMGIDX__API__ALLOWED_ROOTS", roots.as_str())]).await;

    // Distinct images, one of them three times (same bytes), and a half-size JPEG of another.
    let photos = root.join("photos");
    std::fs::create_dir_all(photos.join("2024")).unwrap();
    std::fs::create_dir_all(root.join("backup")).unwrap();
    let mut distinct = Vec::new();
    for name in ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "brick.png"] {
        let to = photos.join(name);
        std::fs::copy(fixture_images().join(name), &to).unwrap();
        distinct.push(to);
    }
    let copies = [photos.join("2024/astronaut (copy).png"), root.join("backup/astronaut.png")];
    for c in &copies {
        std::fs::copy(&distinct[0], c).unwrap();
    }
    let small = photos.join("chelsea-small.jpg");
    let cat = image::open(&distinct[1]).unwrap();
    cat.resize(cat.width() / 2, cat.height() / 2, image::imageops::FilterType::Triangle).to_rgb8().save(&small).unwrap();
    let all: Vec<PathBuf> = distinct.iter().chain(&copies).chain([&small]).cloned().collect();
    index(&server, &all).await;
    assert_eq!(points(&server).await, 8);

    let report = analyse(&server, THRESHOLD).await;
    let found = &report["report"];
    assert_eq!((found["images_scanned"].as_u64(), report["progress"]["percent"].as_f64()), (Some(8), Some(100.0)), "{report}");
    let exact = found["exact_groups"].as_array().unwrap();
    assert_eq!(exact.len(), 1, "{report}");
    // Kept first: the shortest path.
    assert_eq!(paths_of(&exact[0]), [s(&root.join("backup/astronaut.png")), s(&photos.join("astronaut.png")), s(&copies[0])]);
    let near = found["near_groups"].as_array().unwrap();
    assert_eq!(near.len(), 1, "only the resized copy looks like another image: {report}");
    assert_eq!(paths_of(&near[0]), [s(&small), s(&distinct[1])]);
    assert!(near[0]["max_similarity"].as_f64().unwrap() >= THRESHOLD, "{report}");

    // A dry run says what would move and changes nothing.
    let task_id = report["task_id"].as_str().unwrap();
    let (code, plan) = server.post_json("/api/v1/duplicates/archive-exact", &json!({ "task_id": task_id })).await;
    assert_eq!(code, 200, "{plan}");
    assert_eq!((plan["dry_run"].as_bool(), plan["planned"].as_u64(), plan.get("archive_id")), (Some(true), Some(2), None), "{plan}");
    let planned: Vec<(&str, &str)> =
        plan["entries"].as_array().unwrap().iter().map(|e| (e["from"].as_str().unwrap(), e["to"].as_str().unwrap())).collect();
    let (first_to, second_to) = (root.join("_duplicates/photos/astronaut.png"), root.join("_duplicates/photos/2024/astronaut (copy).png"));
    let mut want = vec![(s(&photos.join("astronaut.png")), s(&first_to)), (s(&copies[0]), s(&second_to))];
    want.sort();
    let mut got: Vec<(String, String)> = planned.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    got.sort();
    assert_eq!(got, want);
    assert!(photos.join("astronaut.png").exists() && copies[0].exists() && !root.join("_duplicates").exists());
    assert_eq!(points(&server).await, 8);

    // The real run moves exactly the extras, out of the index.
    let (code, done) = server.post_json("/api/v1/duplicates/archive-exact", &json!({ "task_id": task_id, "dry_run": false })).await;
    assert_eq!(code, 200, "{done}");
    assert_eq!((done["moved"].as_u64(), done["failed"].as_u64()), (Some(2), Some(0)), "{done}");
    let archive_id = done["archive_id"].as_str().unwrap().to_owned();
    assert!(!photos.join("astronaut.png").exists() && !copies[0].exists() && copies[1].exists());
    assert!(first_to.is_file() && second_to.is_file());
    assert_eq!(points(&server).await, 6);
    let (code, hits) = server.post_json("/api/v1/query", &json!({ "image_path": copies[1], "top_k": 8 })).await;
    assert_eq!(code, 200, "{hits}");
    let hit_paths: Vec<&str> = hits["results"].as_array().unwrap().iter().map(|h| h["image_path"].as_str().unwrap()).collect();
    assert!(!hit_paths.iter().any(|p| p.contains("_duplicates") || *p == s(&copies[0])), "{hits}");
    // A scan of the root does not index what was archived.
    let (code, scan) = server.post_json("/api/v1/index/trigger", &json!({ "image_dir": root })).await;
    assert_eq!(code, 202, "{scan}");
    wait_done(&server, scan["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(points(&server).await, 6);
    let (code, shown) = server.get(&format!("/api/v1/duplicates/archives/{archive_id}")).await;
    assert_eq!((code, shown["moved"].as_u64()), (200, Some(2)), "{shown}");

    // Restore puts files and points back, once.
    let (code, restored) = server.post_json("/api/v1/duplicates/restore", &json!({ "archive_id": archive_id })).await;
    assert_eq!((code, restored["restored"].as_u64()), (200, Some(2)), "{restored}");
    assert!(photos.join("astronaut.png").is_file() && copies[0].is_file() && !first_to.exists() && !second_to.exists());
    assert_eq!(points(&server).await, 8);
    let (code, again) = server.post_json("/api/v1/duplicates/restore", &json!({ "archive_id": archive_id })).await;
    assert_eq!((code, again["error"].as_str()), (409, Some("archive_restored")), "{again}");

    // A selection, by path and by point id, into _archive/<name>.
    let (code, hits) = server.post_json("/api/v1/query", &json!({ "image_path": distinct[2], "top_k": 1 })).await;
    assert_eq!(code, 200, "{hits}");
    let coffee_id = hits["results"][0]["id"].as_str().or_else(|| hits["results"][0]["point_id"].as_str()).unwrap().to_owned();
    let body = json!({ "paths": [distinct[3], root.join("nowhere.jpg")], "point_ids": [coffee_id], "archive_name": "trip-2024" });
    let (code, picked) = server.post_json("/api/v1/curation/archive-selection", &body).await;
    assert_eq!(code, 200, "{picked}");
    assert_eq!((picked["moved"].as_u64(), picked["not_indexed"].as_array().map(Vec::len)), (Some(2), Some(1)), "{picked}");
    assert!(root.join("_archive/trip-2024/photos/rocket.jpg").is_file() && root.join("_archive/trip-2024/photos/coffee.png").is_file());
    assert!(!distinct[2].exists() && !distinct[3].exists());
    assert_eq!(points(&server).await, 6);
    let (code, back) = server.post_json("/api/v1/duplicates/restore", &json!({ "archive_id": picked["archive_id"] })).await;
    assert_eq!((code, back["restored"].as_u64()), (200, Some(2)), "{back}");
    assert!(distinct[2].is_file() && distinct[3].is_file());
    assert_eq!(points(&server).await, 8);

    // Clear errors.
    let (code, e) = server.get("/api/v1/duplicates/report/dup_nope").await;
    assert_eq!((code, e["error"].as_str()), (404, Some("task_not_found")), "{e}");
    let (code, e) = server.post_json("/api/v1/duplicates/find-similar", &json!({ "threshold": 1.5 })).await;
    assert_eq!((code, e["error"].as_str()), (422, Some("validation_error")), "{e}");
    let (code, e) = server.post_json("/api/v1/duplicates/restore", &json!({ "archive_id": "arc_nope" })).await;
    assert_eq!((code, e["error"].as_str()), (404, Some("archive_not_found")), "{e}");
    let (code, e) = server.post_json("/api/v1/curation/archive-selection", &json!({ "paths": ["/etc/passwd"], "archive_name": "x" })).await;
    assert_eq!((code, e["error"].as_str()), (422, Some("path_not_allowed")), "{e}");
    let (code, e) = server.post_json("/api/v1/curation/archive-selection", &json!({ "paths": [distinct[0]], "archive_name": "../up" })).await;
    assert_eq!((code, e["error"].as_str()), (422, Some("validation_error")), "{e}");

    // The CLI: the report, then a dry run of the archive.
    let run = imgidx(&["duplicates", "--server", &server.url, "--threshold", &THRESHOLD.to_string(), "--archive", "--dry-run"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("1 exact groups, 1 near groups") && run.stdout.contains("Dry run: 2 images would move"), "{run:#?}");
    assert!(photos.join("astronaut.png").is_file() && copies[0].is_file());
    server.stop().await;
}
