//! Collections over HTTP against a real `imgidx serve`: made, filled, searched, selected
//! and deleted apart from each other; bound to their model across a restart with another.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::serve::wait_done;
use crate::server::{copy_images, tiny_model_dir, Serve};

const WAIT: Duration = Duration::from_secs(120);

async fn add(s: &Serve, paths: &[PathBuf], collection: Option<&str>) -> (u16, Value) {
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let mut body = json!({ "image_paths": paths });
    if let Some(c) = collection {
        body["collection"] = json!(c);
    }
    s.post_json("/api/v1/index/add-images", &body).await
}

async fn indexed(s: &Serve, paths: &[PathBuf], collection: Option<&str>) -> Value {
    let (code, job) = add(s, paths, collection).await;
    assert_eq!(code, 202, "{job}");
    let done = wait_done(s, job["job_id"].as_str().unwrap(), WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    done
}

async fn total(s: &Serve, collection: &str) -> u64 {
    let (code, stats) = s.get(&format!("/api/v1/index/stats?collection={collection}")).await;
    assert_eq!(code, 200, "{stats}");
    assert_eq!(stats["collection"], collection);
    stats["total_images"].as_u64().unwrap()
}

fn names(list: &Value) -> Vec<(String, bool)> {
    list["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c["is_selected"].as_bool().unwrap()))
        .collect()
}

fn error_code(r: &(u16, Value)) -> (u16, &str) {
    (r.0, r.1["error"].as_str().unwrap_or_default())
}

/// The tiny fixture model under another name: the same vectors, another model as far as
/// collections are concerned.
fn renamed_model(dir: &Path, name: &str) -> PathBuf {
    let model = dir.join(name);
    std::fs::create_dir_all(&model).unwrap();
    for entry in std::fs::read_dir(tiny_model_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
    }
    let manifest = model.join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["name"] = json!(name);
    std::fs::write(&manifest, m.to_string()).unwrap();
    model
}

#[tokio::test]
async fn collections_are_kept_apart_selected_deleted_and_bound_to_their_model() {
    let data = tempfile::tempdir().unwrap();
    let imgs = tempfile::tempdir().unwrap();
    let images: Vec<PathBuf> = copy_images(imgs.path(), 1).into_iter().take(4).collect();
    let s = Serve::start(data.path(), &[]).await;

    let (code, list) = s.get("/api/v1/collections").await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(names(&list), [("images".to_owned(), true)]);
    assert_eq!(list["collections"][0]["model"], "tiny-clip");
    assert_eq!(list["collections"][0]["points"], 0);

    let (code, cats) = s.post_json("/api/v1/collections", &json!({ "collection_name": "cats" })).await;
    assert_eq!(code, 201, "{cats}");
    assert_eq!((cats["vector_size"].as_u64(), cats["distance"].as_str()), (Some(64), Some("Cosine")));
    let again = s.post_json("/api/v1/collections", &json!({ "collection_name": "cats" })).await;
    assert_eq!(error_code(&again), (409, "collection_exists"));
    for bad in [
        json!({ "collection_name": "Cats" }),
        json!({ "collection_name": "a__b" }),
        json!({ "collection_name": "select" }),
        json!({ "collection_name": "dogs", "vector_size": 768 }),
        json!({ "collection_name": "dogs", "distance": "Manhattan" }),
        json!({ "collection_name": "dogs", "model": "clip-vit-b32" }),
    ] {
        let r = s.post_json("/api/v1/collections", &bad).await;
        assert_eq!(error_code(&r), (422, "validation_error"), "{bad}: {r:?}");
    }
    let (code, euclid) =
        s.post_json("/api/v1/collections", &json!({ "collection_name": "far", "distance": "euclid" })).await;
    assert_eq!((code, euclid["distance"].as_str()), (201, Some("Euclid")), "{euclid}");

    // Indexed into one collection only; the same files are new to another.
    let done = indexed(&s, &images, Some("cats")).await;
    assert_eq!(done["collection"], "cats", "{done}");
    assert_eq!((total(&s, "cats").await, total(&s, "images").await), (4, 0));
    let (_, stats) = s.get("/api/v1/index/stats").await;
    assert_eq!(stats["collection"], "images", "the selected one when none is named");
    // Two collections' jobs at once: workers' batches mix them, and each point lands in its own.
    let (far_job, initial_job) = (add(&s, &images[..2], Some("far")).await, add(&s, &images[2..], None).await);
    for job in [far_job, initial_job] {
        assert_eq!(job.0, 202, "{job:?}");
        assert_eq!(wait_done(&s, job.1["job_id"].as_str().unwrap(), WAIT).await["status"], "completed");
    }
    assert_eq!((total(&s, "far").await, total(&s, "images").await, total(&s, "cats").await), (2, 2, 4));
    let (code, resubmit) = add(&s, &images, Some("cats")).await;
    assert_eq!((code, resubmit["already_indexed_count"].as_u64()), (200, Some(4)), "{resubmit}");

    let (code, r) = s.post_json("/api/v1/query", &json!({ "text": "a photo", "collection": "cats" })).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!((r["results"].as_array().unwrap().len(), r["index_stats"]["collection"].as_str()), (4, Some("cats")));
    let (_, r) = s.post_json("/api/v1/query", &json!({ "text": "a photo" })).await;
    assert_eq!((r["results"].as_array().unwrap().len(), r["index_stats"]["collection"].as_str()), (2, Some("images")));
    // An indexed image searches with its stored vector: itself first, at cosine 1 in any distance.
    for c in ["cats", "far"] {
        let (code, r) = s.post_json("/api/v1/query", &json!({ "image_path": images[0], "collection": c })).await;
        assert_eq!(code, 200, "{r}");
        assert_eq!(r["results"][0]["image_path"], images[0].display().to_string(), "{c}: {r}");
        assert!((r["results"][0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-3, "{c}: {r}");
    }
    let (code, form) = s.post_upload("/api/v1/query", "q.jpg", std::fs::read(&images[1]).unwrap(), &[("collection", "cats")]).await;
    assert_eq!((code, form["index_stats"]["collection"].as_str()), (200, Some("cats")), "{form}");

    let missing = add(&s, &images, Some("nope")).await;
    assert_eq!(error_code(&missing), (404, "collection_not_found"));
    let missing = s.post_json("/api/v1/query", &json!({ "text": "x", "collection": "nope" })).await;
    assert_eq!(error_code(&missing), (404, "collection_not_found"));

    // The selected collection answers requests that name none.
    let (code, _) = s.post_json("/api/v1/collections/select", &json!({ "collection_name": "cats" })).await;
    assert_eq!(code, 200);
    let (_, r) = s.post_json("/api/v1/query", &json!({ "text": "a photo" })).await;
    assert_eq!(r["index_stats"]["collection"], "cats", "{r}");
    let (_, stats) = s.get("/api/v1/index/stats").await;
    assert_eq!((stats["collection"].as_str(), stats["total_images"].as_u64()), (Some("cats"), Some(4)));
    let nope = s.post_json("/api/v1/collections/select", &json!({ "collection_name": "nope" })).await;
    assert_eq!(error_code(&nope), (404, "collection_not_found"));

    assert_eq!(error_code(&s.delete("/api/v1/collections/cats").await), (409, "collection_in_use"));
    s.post_json("/api/v1/collections/select", &json!({ "collection_name": "far" })).await;
    let (code, gone) = s.delete("/api/v1/collections/cats").await;
    assert_eq!(code, 200, "{gone}");
    assert_eq!(error_code(&s.delete("/api/v1/collections/cats").await), (404, "collection_not_found"));
    let (_, list) = s.get("/api/v1/collections").await;
    assert_eq!(names(&list), [("far".to_owned(), true), ("images".to_owned(), false)]);
    assert!(!data.path().join("collections/cats__1").exists(), "its index is deleted from disk");
    // Made again under the same name, it starts empty.
    s.post_json("/api/v1/collections", &json!({ "collection_name": "cats" })).await;
    assert_eq!(total(&s, "cats").await, 0);
    s.stop().await;

    // Restarted with another model: the selection stays, and collections of the old model
    // are refused for indexing and search but still described.
    let model = renamed_model(data.path(), "tiny-clip-b");
    let s = Serve::start_with_model(data.path(), &model, &[]).await;
    let (_, list) = s.get("/api/v1/collections").await;
    assert_eq!(list["selected"], "far", "{list}");
    let refused = add(&s, &images, None).await;
    assert_eq!(error_code(&refused), (409, "collection_model_mismatch"), "{refused:?}");
    let refused = s.post_json("/api/v1/query", &json!({ "text": "a photo", "collection": "images" })).await;
    assert_eq!(error_code(&refused), (409, "collection_model_mismatch"));
    let (code, stats) = s.get("/api/v1/index/stats").await;
    assert_eq!((code, stats["model_name"].as_str(), stats["total_images"].as_u64()), (200, Some("tiny-clip"), Some(2)));
    let (code, b) = s.post_json("/api/v1/collections", &json!({ "collection_name": "b" })).await;
    assert_eq!((code, b["model"].as_str()), (201, Some("tiny-clip-b")), "{b}");
    indexed(&s, &images, Some("b")).await;
    assert_eq!(total(&s, "b").await, 4);
    s.stop().await;
}
