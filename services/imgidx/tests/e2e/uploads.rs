//! Uploads (seed 003's `POST /api/v1/ingest/upload`) against a real `imgidx serve`: the
//! bytes go to the object store once, workers read them from there, and the images are
//! searchable under the names they were uploaded as; on the local store and on S3.

use std::path::Path;
use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::moto::Moto;
use crate::serve::wait_done;
use crate::server::{fixture_images, imgidx, Serve};

fn image(name: &str) -> Vec<u8> {
    std::fs::read(fixture_images().join(name)).unwrap()
}

fn form(files: &[(&str, Vec<u8>)]) -> Form {
    files.iter().fold(Form::new(), |form, (name, bytes)| {
        form.part("files", Part::bytes(bytes.clone()).file_name(name.to_string()))
    })
}

async fn upload(s: &Serve, form: Form) -> Value {
    let (code, body) = s.post_form("/api/v1/ingest/upload", form).await;
    assert_eq!(code, 202, "{body}");
    body
}

/// The paths a text search finds, with their payloads.
async fn search_all(s: &Serve) -> Vec<Value> {
    let (code, r) = s.post_json("/api/v1/query", &json!({ "text": "a photo", "top_k": 50 })).await;
    assert_eq!(code, 200, "{r}");
    r["results"].as_array().unwrap().clone()
}

fn object_files(dir: &Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] })
        .collect()
}

#[tokio::test]
async fn uploads_are_stored_once_indexed_under_their_names_and_searchable() {
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(data.path(), &[]).await;
    let (astronaut, coins) = (image("astronaut.png"), image("coins.png"));
    let body = upload(
        &s,
        form(&[
            ("holiday/beach.png", astronaut.clone()),
            ("coins.png", coins.clone()),
            ("copy of beach.png", astronaut.clone()),
            ("holiday/beach.png", astronaut.clone()),
        ]),
    )
    .await;
    // The same bytes under the same name are one image; under another name, another.
    assert_eq!((body["images_count"].as_u64(), body["new_images_count"].as_u64()), (Some(3), Some(3)), "{body}");
    let files = body["files"].as_array().unwrap();
    assert_eq!(files.len(), 4, "{body}");
    assert_eq!(files[0]["name"], "beach.png", "only the last path component is kept: {body}");
    assert_eq!(files[0]["object_key"], files[2]["object_key"], "{body}");
    assert_ne!(files[0]["object_key"], files[1]["object_key"], "{body}");
    let key = files[0]["object_key"].as_str().unwrap();
    assert_eq!(files[0]["path"], format!("object:{}/beach.png", &key[3..]), "{body}");
    assert_eq!(files[0]["size"].as_u64(), Some(astronaut.len() as u64));
    assert_eq!(object_files(&data.path().join("objects")), 2, "each content stored once");

    let done = wait_done(&s, body["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!((done["status"].as_str(), done["progress"]["processed_images"].as_u64()), (Some("completed"), Some(3)), "{done}");
    let hits = search_all(&s).await;
    let beach = hits.iter().find(|h| h["image_path"] == files[0]["path"]).unwrap_or_else(|| panic!("{hits:?}"));
    assert_eq!((beach["payload"]["file_name"].as_str(), beach["payload"]["object_key"].as_str()), (Some("beach.png"), Some(key)));
    assert_eq!(beach["payload"]["sha256"].as_str(), Some(&key[3..]));
    assert_eq!(hits.len(), 3, "{hits:?}");

    // The same upload again: stored already, indexed already.
    let (code, again) = s.post_form("/api/v1/ingest/upload", form(&[("coins.png", coins)])).await;
    assert_eq!((code, again["job_id"].as_str(), again["new_images_count"].as_u64()), (200, Some("none"), Some(0)), "{again}");

    // Bytes that are no image fail as an image does, with the job's other images indexed.
    let body = upload(&s, form(&[("notes.jpg", b"not an image".to_vec()), ("chelsea.png", image("chelsea.png"))])).await;
    let done = wait_done(&s, body["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!((done["progress"]["processed_images"].as_u64(), done["progress"]["failed_images"].as_u64()), (Some(1), Some(1)), "{done}");
    let (code, report) = s.get(&format!("/api/v1/ingest/status/{}", body["job_id"].as_str().unwrap())).await;
    assert_eq!(code, 200);
    assert_eq!(report["result"]["failed_files"][0]["error"], "not_an_image", "{report}");
    s.stop().await;
}

#[tokio::test]
async fn uploads_past_the_limits_or_malformed_are_refused_and_queue_nothing() {
    let data = tempfile::tempdir().unwrap();
    let env = [("IMGIDX__INGEST__MAX_IMAGE_BYTES", "150000"), ("IMGIDX__INGEST__MAX_FILES", "2")];
    let s = Serve::start(data.path(), &env).await;
    let coins = image("coins.png"); // 76 kB
    let (code, body) = s.post_form("/api/v1/ingest/upload", form(&[("big.png", image("astronaut.png"))])).await;
    assert_eq!((code, body["error"].as_str()), (413, Some("file_too_large")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("big.png"), "{body}");
    let three = form(&[("a.png", coins.clone()), ("b.png", coins.clone()), ("c.png", coins.clone())]);
    let (code, body) = s.post_form("/api/v1/ingest/upload", three).await;
    assert_eq!((code, body["error"].as_str()), (422, Some("validation_error")), "{body}");
    let (code, body) = s.post_form("/api/v1/ingest/upload", Form::new().text("collection", "images")).await;
    assert_eq!((code, body["error"].as_str()), (422, Some("validation_error")), "{body}");
    let (code, body) = s.post_form("/api/v1/ingest/upload", form(&[("a.png", coins.clone())]).text("colour", "red")).await;
    assert_eq!((code, body["error"].as_str()), (422, Some("validation_error")), "{body}");
    let (code, body) = s.post_form("/api/v1/ingest/upload", form(&[("a.png", coins.clone())]).text("collection", "nope")).await;
    assert_eq!((code, body["error"].as_str()), (404, Some("collection_not_found")), "{body}");
    let (code, body) = s.post_json("/api/v1/ingest/upload", &json!({ "files": [] })).await;
    assert_eq!((code, body["error"].as_str()), (415, Some("unsupported_media_type")), "{body}");
    let (code, jobs) = s.get("/api/v1/index/jobs").await;
    assert_eq!((code, jobs["total"].as_u64()), (200, Some(0)), "nothing queued: {jobs}");

    // Within the limits, with a priority and into a collection.
    let (code, made) = s.post_json("/api/v1/collections", &json!({ "collection_name": "uploads" })).await;
    assert_eq!(code, 201, "{made}");
    let two = form(&[("a.png", coins.clone()), ("b.png", coins)]).text("collection", "uploads").text("priority", "high");
    let body = upload(&s, two).await;
    let done = wait_done(&s, body["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!((done["status"].as_str(), done["collection"].as_str()), (Some("completed"), Some("uploads")), "{done}");
    s.stop().await;
}

#[tokio::test]
async fn uploads_go_through_an_s3_store_that_workers_read() {
    let bucket = "imgidx-test";
    let Some(moto) = Moto::start(bucket).await else { return };
    let data = tempfile::tempdir().unwrap();
    let env = moto.env(&format!("s3://{bucket}/run-1"));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Serve::start(data.path(), &env).await;
    let body = upload(&s, form(&[("camera.png", image("camera.png")), ("brick.png", image("brick.png"))])).await;
    let done = wait_done(&s, body["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!((done["status"].as_str(), done["progress"]["processed_images"].as_u64()), (Some("completed"), Some(2)), "{done}");
    let mut keys = moto.keys(bucket, "run-1/").await;
    keys.sort();
    let mut expected: Vec<String> =
        body["files"].as_array().unwrap().iter().map(|f| format!("run-1/{}", f["object_key"].as_str().unwrap())).collect();
    expected.sort();
    assert_eq!(keys, expected, "the objects are in the bucket, under the prefix");
    assert_eq!(object_files(&data.path().join("objects")), 0, "nothing on the local disk");
    assert_eq!(search_all(&s).await.len(), 2);
    let (code, health) = s.get("/health").await;
    assert_eq!((code, health["object_store_available"].as_bool()), (200, Some(true)), "{health}");
    s.stop().await;
}

#[tokio::test]
async fn an_object_store_that_does_not_answer_fails_the_upload_and_queues_nothing() {
    let data = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", crate::server::free_port());
    let env = [
        ("IMGIDX__OBJECTS__URL", "s3://gone/p"),
        ("IMGIDX__OBJECTS__ENDPOINT", endpoint.as_str()),
        ("IMGIDX__OBJECTS__ACCESS_KEY_ID", "k"),
        ("IMGIDX__OBJECTS__SECRET_ACCESS_KEY", "s"),
        ("IMGIDX__OBJECTS__ALLOW_HTTP", "true"),
    ];
    let s = Serve::start(data.path(), &env).await;
    let (code, body) = s.post_form("/api/v1/ingest/upload", form(&[("coins.png", image("coins.png"))])).await;
    assert_eq!((code, body["error"].as_str()), (503, Some("object_store_unavailable")), "{body}");
    let (code, jobs) = s.get("/api/v1/index/jobs").await;
    assert_eq!((code, jobs["total"].as_u64()), (200, Some(0)), "{jobs}");
    // Paths and searches do not need it: the server stays healthy, and says what is down.
    let (code, health) = s.get("/health").await;
    assert_eq!((code, health["object_store_available"].as_bool()), (200, Some(false)), "{health}");
    s.stop().await;
}

#[tokio::test]
async fn the_upload_command_sends_files_in_chunks_and_waits_for_their_jobs() {
    let s = Serve::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    for name in ["camera.png", "coins.png", "brick.png"] {
        std::fs::copy(fixture_images().join(name), dir.path().join(name)).unwrap();
    }
    let d = dir.path().display().to_string();
    let run = imgidx(&["upload", &d, "--chunk", "2", "--wait", "--json", "--server", &s.url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let out = run.json();
    assert_eq!((out["submitted"]["requests"].as_u64(), out["submitted"]["queued"].as_u64()), (Some(2), Some(3)), "{out}");
    assert_eq!((out["result"]["status"].as_str(), out["result"]["indexed"].as_u64()), (Some("completed"), Some(3)), "{out}");
    let names: Vec<&str> =
        out["jobs"].as_array().unwrap().iter().flat_map(|j| j["files"].as_array().unwrap()).map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["brick.png", "camera.png", "coins.png"], "{out}");

    let run = imgidx(&["upload", &d, "--server", &s.url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.starts_with("Submitted 3 images in 1 request: 0 queued, 3 already indexed"), "{run:#?}");
    let run = imgidx(&["upload", "/no/such/file.png", "--server", &s.url]).await;
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("/no/such/file.png"), "{run:#?}");
    s.stop().await;
}
