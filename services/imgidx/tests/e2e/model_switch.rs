//! A model switch against a real `imgidx serve`: a collection re-embedded with another
//! model (of another vector size) while searches run in a loop beside it. No search fails
//! or comes back empty; once the switch completes every search is answered from the new
//! model; the previous generation stays until it is deleted, and the binding survives a
//! restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::serve::wait_done;
use crate::server::{copy_images, repo_root, Serve};

const WAIT: Duration = Duration::from_secs(120);

fn error_code(r: &(u16, Value)) -> (u16, &str) {
    (r.0, r.1["error"].as_str().unwrap_or_default())
}

async fn collection(s: &Serve, name: &str) -> Value {
    let (code, list) = s.get("/api/v1/collections").await;
    assert_eq!(code, 200, "{list}");
    list["collections"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap()
}

/// What one search answered: status, number of results, and the model it reports.
type Answer = (u16, usize, String);

async fn search(http: &reqwest::Client, url: &str, text: &str) -> Answer {
    let r = http.post(format!("{url}/api/v1/query")).json(&json!({ "text": text, "top_k": 3 })).send().await.unwrap();
    let code = r.status().as_u16();
    let r: Value = r.json().await.unwrap_or_default();
    let results = r["results"].as_array().map_or(0, Vec::len);
    (code, results, r["index_stats"]["model"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn a_model_switch_keeps_searches_answered_and_moves_them_to_the_new_model() {
    let data = tempfile::tempdir().unwrap();
    let photos = data.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let images = copy_images(&photos, 3);
    // tiny-clip (the server's own, 64-dim) and tiny-clip-b (32-dim) side by side.
    let models = repo_root().join("tests/fixtures/models");
    let env = [("IMGIDX__MODEL__MODELS_DIR", models.to_str().unwrap())];
    let s = Serve::start(data.path(), &env).await;
    let paths: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
    let (code, job) = s.post_json("/api/v1/index/add-images", &json!({ "image_paths": paths })).await;
    assert_eq!(code, 202, "{job}");
    assert_eq!(wait_done(&s, job["job_id"].as_str().unwrap(), WAIT).await["status"], "completed");

    let refused = s.post_json("/api/v1/collections/images/reembed", &json!({ "model": "tiny-clip" })).await;
    assert_eq!(error_code(&refused), (422, "validation_error"), "the model it holds already: {refused:?}");
    let refused = s.post_json("/api/v1/collections/images/reembed", &json!({ "model": "nope" })).await;
    assert_eq!(error_code(&refused), (422, "validation_error"), "a model not installed: {refused:?}");
    let refused = s.post_json("/api/v1/collections/nope/reembed", &json!({ "model": "tiny-clip-b" })).await;
    assert_eq!(error_code(&refused), (404, "collection_not_found"));

    // Searches in a loop while the switch runs.
    let stop = Arc::new(AtomicBool::new(false));
    let searcher = {
        let (url, stop) = (s.url.clone(), stop.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut answers: Vec<Answer> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                answers.push(search(&http, &url, "a photo of a cat").await);
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, started) = s.post_json("/api/v1/collections/images/reembed", &json!({ "model": "tiny-clip-b" })).await;
    assert_eq!(code, 202, "{started}");
    assert_eq!((started["model"].as_str(), started["current_model"].as_str()), (Some("tiny-clip-b"), Some("tiny-clip")));
    let again = s.post_json("/api/v1/collections/images/reembed", &json!({ "model": "tiny-clip-b" })).await;
    // One switch at a time (unless this one finished already).
    assert!(again.0 == 409 || again.0 == 422, "{again:?}");

    let job_id = started["job_id"].as_str().unwrap();
    let done = wait_done(&s, job_id, WAIT).await;
    let processed = done["progress"]["processed_images"].as_u64();
    assert_eq!((done["status"].as_str(), processed), (Some("completed"), Some(images.len() as u64)), "{done}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while collection(&s, "images").await["model"] != "tiny-clip-b" {
        assert!(tokio::time::Instant::now() < deadline, "the switch did not complete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let answers = searcher.await.unwrap();

    assert!(answers.len() > 5, "the loop searched: {}", answers.len());
    for (i, answer) in answers.iter().enumerate() {
        assert!(answer.0 == 200 && answer.1 == 3, "search {i} during the switch: {answer:?}");
    }
    let models: Vec<&str> = answers.iter().map(|a| a.2.as_str()).collect();
    assert_eq!(models.first(), Some(&"tiny-clip"), "answered from the old model first");
    assert_eq!(models.last(), Some(&"tiny-clip-b"), "and from the new one after");
    let first_new = models.iter().position(|m| *m == "tiny-clip-b").unwrap();
    assert!(models[first_new..].iter().all(|m| *m == "tiny-clip-b"), "never back to the old model: {models:?}");

    // After: the collection holds the new model's vectors, and its points say so.
    let after = collection(&s, "images").await;
    assert_eq!((after["vector_size"].as_u64(), after["points"].as_u64()), (Some(32), Some(images.len() as u64)), "{after}");
    assert_eq!((after["has_previous"].as_bool(), after.get("switching")), (Some(true), None), "{after}");
    let (code, r) = s.post_json("/api/v1/query", &json!({ "text": "a cat", "top_k": 50 })).await;
    assert_eq!(code, 200, "{r}");
    let hits = r["results"].as_array().unwrap();
    assert_eq!(hits.len(), images.len());
    assert!(hits.iter().all(|h| h["payload"]["model"] == "tiny-clip-b"), "{r}");
    // Images indexed now go into the new generation, with the new model.
    let (code, _) = s.post_json("/api/v1/index/add-images", &json!({ "image_paths": [paths[0]] })).await;
    assert_eq!(code, 200, "indexed already, with the new model");

    let (code, gone) = s.delete("/api/v1/collections/images/previous").await;
    assert_eq!(code, 200, "{gone}");
    assert_eq!(error_code(&s.delete("/api/v1/collections/images/previous").await), (404, "previous_not_found"));
    assert!(!data.path().join("vectors").exists(), "the previous generation's index is gone from disk");
    s.stop().await;

    // The binding is the catalog's: a restart keeps searching with tiny-clip-b.
    let s = Serve::start(data.path(), &env).await;
    let answer = search(&reqwest::Client::new(), &s.url, "a photo").await;
    assert_eq!(answer, (200, 3, "tiny-clip-b".to_owned()));
    s.stop().await;
}
