//! What `imgidx serve` reads for a client's `image_path` query: an indexed image is
//! searched with its stored vector (no file read); any other path only inside
//! `api.allowed_roots`, only a regular file, without blocking. Every refusal is one
//! answer, so a client cannot tell a missing file from a forbidden or unreadable one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::{copy_images, Serve};

async fn query(s: &Serve, body: Value) -> (u16, Value) {
    s.post_json("/api/v1/query", &body).await
}

async fn index(s: &Serve, paths: &[PathBuf]) {
    let (code, job) = s.post_json("/api/v1/index/add-images", &json!({ "image_paths": paths })).await;
    assert_eq!(code, 202, "{job}");
    let id = job["job_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, body) = s.get(&format!("/api/v1/index/status/{id}")).await;
        if body["status"] == "completed" {
            assert_eq!(body["progress"]["processed_images"], paths.len(), "{body}");
            return;
        }
        assert!(Instant::now() < deadline, "job not done: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mkfifo(path: &Path) {
    assert!(std::process::Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// The one answer for a path the server will not read.
fn refusal() -> (u16, Value) {
    let message = "image_path: no image this server may read at this path";
    (404, json!({ "error": "image_not_found", "message": message, "detail": message }))
}

#[tokio::test]
async fn image_path_reads_only_regular_files_inside_the_roots_and_refusals_look_alike() {
    let data = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let (root, outside) = (base.join("root"), base.join("outside"));
    std::fs::create_dir_all(root.join("indexed")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let images = copy_images(&root.join("indexed"), 1);
    let chelsea = root.join("indexed/chelsea.png");
    // Not indexed, inside the roots: read from the file.
    let twin = root.join("twin.png");
    std::fs::copy(&chelsea, &twin).unwrap();
    std::fs::copy(&chelsea, outside.join("secret.png")).unwrap();
    std::fs::write(root.join("notes.txt"), "not an image\n").unwrap();
    std::fs::create_dir(root.join("a_directory")).unwrap();
    let fifo = root.join("fifo.png");
    mkfifo(&fifo);
    let socket = root.join("socket.png");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.png"), root.join("escape.png")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", root.join("zero.png")).unwrap();

    let roots = root.display().to_string();
    let s = Serve::start(data.path(), &[("IMGIDX__API__ALLOWED_ROOTS", roots.as_str())]).await;
    index(&s, &images).await;

    // Eight queries naming a FIFO at once: each refused within a second, and a text
    // search meanwhile still answers (no permit of the query encoder is held by a read).
    let started = Instant::now();
    let fifo_queries = (0..8).map(|_| async {
        let t = Instant::now();
        let answer = query(&s, json!({ "image_path": fifo })).await;
        (answer, t.elapsed())
    });
    let text = async {
        let t = Instant::now();
        let answer = query(&s, json!({ "text": "a cat", "top_k": 3 })).await;
        (answer, t.elapsed())
    };
    let (fifo_answers, (text_answer, text_took)) = tokio::join!(futures::future::join_all(fifo_queries), text);
    for (answer, took) in &fifo_answers {
        assert_eq!(answer, &refusal(), "FIFO");
        assert!(*took < Duration::from_secs(1), "FIFO query took {took:?}");
    }
    assert_eq!(text_answer.0, 200, "{:?}", text_answer.1);
    assert!(text_took < Duration::from_secs(5), "text query took {text_took:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Missing, outside the roots, through a symlink out of them, a device, a directory,
    // a socket: the same status and the same bytes, at once.
    for path in [
        root.join("missing.png"),
        outside.join("secret.png"),
        root.join("escape.png"),
        root.join("zero.png"),
        PathBuf::from("/dev/zero"),
        PathBuf::from("/etc/shadow"),
        root.join("a_directory"),
        socket.clone(),
        fifo.clone(),
    ] {
        let t = Instant::now();
        let answer = query(&s, json!({ "image_path": path })).await;
        assert_eq!(answer, refusal(), "{path:?}");
        assert!(t.elapsed() < Duration::from_secs(1), "{path:?} took {:?}", t.elapsed());
        assert!(!answer.1.to_string().contains("secret"), "names no symlink target: {}", answer.1);
    }

    // Inside the roots the client may read: a text file is not an image, and an image
    // that is not indexed is read and finds its indexed twin.
    let (code, r) = query(&s, json!({ "image_path": root.join("notes.txt") })).await;
    assert_eq!((code, r["error"].as_str().unwrap()), (422, "not_an_image"), "{r}");
    let (code, r) = query(&s, json!({ "image_path": twin, "top_k": 1 })).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["results"][0]["image_path"], chelsea.display().to_string(), "{r}");
    assert!(r["results"][0]["score"].as_f64().unwrap() > 0.99, "{r}");

    // Indexing keeps its contract: a path outside the roots is 422 path_not_allowed,
    // naming only the path given.
    let escape = root.join("escape.png");
    let (code, r) = s.post_json("/api/v1/index/add-images", &json!({ "image_paths": [escape] })).await;
    assert_eq!((code, r["error"].as_str().unwrap()), (422, "path_not_allowed"), "{r}");
    assert!(!r.to_string().contains("secret"), "names no symlink target: {r}");
    s.stop().await;
}

#[tokio::test]
async fn an_indexed_image_is_searched_by_its_stored_vector_and_no_roots_means_no_reads() {
    let data = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let images = copy_images(&dir, 1);
    let s = Serve::start(data.path(), &[]).await;
    index(&s, &images).await;

    // Replace one indexed file with another picture: a query by its path still answers
    // with the image as indexed (itself first, score 1), so no file was read.
    let chelsea = dir.join("chelsea.png");
    let coffee = dir.join("coffee.png");
    std::fs::copy(&coffee, &chelsea).unwrap();
    let (code, r) = query(&s, json!({ "image_path": chelsea, "top_k": 2 })).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["query_type"], "image");
    assert_eq!(r["results"][0]["image_path"], chelsea.display().to_string(), "{r}");
    assert!((r["results"][0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-3, "{r}");
    // Deleted: the same.
    std::fs::remove_file(&chelsea).unwrap();
    let (code, r) = query(&s, json!({ "image_path": chelsea, "top_k": 1 })).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["results"][0]["image_path"], chelsea.display().to_string(), "{r}");

    // With no allowed roots, an image that is not indexed is never read, even a fine one.
    let unindexed = dir.join("not_indexed.png");
    std::fs::copy(&coffee, &unindexed).unwrap();
    assert_eq!(query(&s, json!({ "image_path": unindexed })).await, refusal());
    assert_eq!(query(&s, json!({ "image_path": dir.join("missing.png") })).await, refusal());
    // Uploads still work for any image.
    let (code, r) = s.post_upload("/api/v1/query", "any.png", std::fs::read(&coffee).unwrap(), &[("top_k", "1")]).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["results"][0]["image_path"], coffee.display().to_string(), "{r}");
    s.stop().await;
}
