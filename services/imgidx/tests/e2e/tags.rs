//! Tags against a real `imgidx serve`: each image gets the vocabulary's nearest labels in
//! its payload, and a query can require tags (the store filters, not the API).

use std::time::Duration;

use serde_json::{json, Value};

use crate::serve::wait_done;
use crate::server::{copy_images, Serve};

async fn search(s: &Serve, body: Value) -> Vec<Value> {
    let (code, r) = s.post_json("/api/v1/query", &body).await;
    assert_eq!(code, 200, "{r}");
    r["results"].as_array().unwrap().clone()
}

fn tags(hit: &Value) -> Vec<String> {
    hit["payload"]["tags"].as_array().map(|t| t.iter().map(|t| t.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

#[tokio::test]
async fn images_are_tagged_and_queries_filter_by_tag() {
    let data = tempfile::tempdir().unwrap();
    // The tiny fixture model's scores mean nothing: take every image's 3 nearest labels.
    let s = Serve::start(data.path(), &[("IMGIDX__TAGS__MIN_SCORE", "-1"), ("IMGIDX__TAGS__MAX", "3")]).await;
    let imgs = tempfile::tempdir().unwrap();
    let images = copy_images(imgs.path(), 1);
    let paths: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
    let (code, job) = s.post_json("/api/v1/index/add-images", &json!({ "image_paths": paths })).await;
    assert_eq!(code, 202, "{job}");
    let done = wait_done(&s, job["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");

    let all = search(&s, json!({ "text": "a photo", "top_k": 50 })).await;
    assert_eq!(all.len(), images.len());
    assert!(all.iter().all(|h| tags(h).len() == 3), "{all:?}");
    let tag = tags(&all[0])[0].clone();
    let with_tag = search(&s, json!({ "text": "a photo", "top_k": 50, "tags": [tag] })).await;
    let expected = all.iter().filter(|h| tags(h).contains(&tag)).count();
    assert!(!with_tag.is_empty() && with_tag.len() == expected, "{tag}: {with_tag:?}");
    assert!(with_tag.iter().all(|h| tags(h).contains(&tag)));
    assert!(search(&s, json!({ "text": "a photo", "tags": [tag, "no such label"] })).await.is_empty());

    let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    let (code, body) = s.post_json("/api/v1/query", &json!({ "text": "a photo", "tags": many })).await;
    assert_eq!((code, body["error"].as_str()), (422, Some("validation_error")), "{body}");
    s.stop().await;

    // With tags off, nothing is tagged.
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(data.path(), &[("IMGIDX__TAGS__ENABLED", "false")]).await;
    let (code, job) = s.post_json("/api/v1/index/add-images", &json!({ "image_paths": [paths[0]] })).await;
    assert_eq!(code, 202, "{job}");
    wait_done(&s, job["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    let hits = search(&s, json!({ "text": "a photo" })).await;
    assert!(hits.len() == 1 && hits[0]["payload"].get("tags").is_none(), "{hits:?}");
    s.stop().await;
}
