//! The OpenAPI document against a live `imgidx serve`: every operation it lists is
//! called, every answer (status, content type, body) must be one the document declares
//! and validate against its schema, and no operation is left uncalled, so the document
//! and the server cannot drift apart. `/docs` serves Swagger UI from the binary. Then
//! schemathesis (PyPI) fuzzes every operation from the document.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

use crate::server::{copy_images, repo_root, Serve};

/// The document, and which operations the test has checked an answer of.
struct Spec {
    doc: Value,
    checked: BTreeSet<(String, String)>,
}

impl Spec {
    /// The schema of `(method, template, status, content type)`, panicking if undeclared.
    fn declared(&self, method: &str, template: &str, status: u16, content_type: &str) -> Option<Value> {
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "{method} {template} is not in the document");
        let response = &op["responses"][status.to_string()];
        assert!(response.is_object(), "{method} {template} answered {status}, which the document does not declare");
        if status == 101 {
            return None;
        }
        let media = content_type.split(';').next().unwrap().trim();
        let content = &response["content"][media];
        assert!(content.is_object(), "{method} {template} {status}: content type {media} not declared: {response}");
        Some(content["schema"].clone())
    }

    /// Checks one answer and records the operation as covered.
    fn check(&mut self, method: &str, template: &str, status: u16, content_type: &str, body: &Value) {
        if let Some(schema) = self.declared(method, template, status, content_type) {
            self.validate(&schema, body, &format!("{method} {template} {status}"));
        }
        self.checked.insert((method.to_string(), template.to_string()));
    }

    fn validate(&self, schema: &Value, body: &Value, what: &str) {
        // Component references, re-rooted so a plain JSON Schema validator resolves them.
        let defs = self.doc["components"]["schemas"].clone();
        let text = serde_json::to_string(&json!({ "$defs": defs, "allOf": [schema] })).unwrap();
        let root: Value = serde_json::from_str(&text.replace("#/components/schemas/", "#/$defs/")).unwrap();
        let validator = jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("{what}: schema does not compile: {e}"));
        let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{what}: the answer breaks the schema: {errors:?}\n{body:#}");
    }

    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                out.insert((method.clone(), path.clone()));
            }
        }
        out
    }
}

/// A request and its answer, checked against the document.
async fn call(spec: &mut Spec, s: &Serve, method: &str, template: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", s.url);
    let http = reqwest::Client::new();
    let request = match (method, body) {
        ("get", _) => http.get(url),
        ("delete", _) => http.delete(url),
        (_, Some(body)) => http.post(url).json(&body),
        (_, None) => http.post(url),
    };
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let text = r.text().await.unwrap();
    let body: Value = if content_type.starts_with("application/json") {
        serde_json::from_str(&text).unwrap()
    } else {
        Value::String(text)
    };
    spec.check(method, template, status, &content_type, &body);
    (status, body)
}

async fn wait_finished(spec: &mut Spec, s: &Serve, job_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (code, body) = call(spec, s, "get", "/api/v1/index/status/{job_id}", &format!("/api/v1/index/status/{job_id}"), None).await;
        assert_eq!(code, 200, "{body}");
        if !["queued", "running"].contains(&body["status"].as_str().unwrap()) {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "job {job_id} did not finish: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_operation_answers_as_the_document_says() {
    let data = tempfile::tempdir().unwrap();
    let imgs = tempfile::tempdir().unwrap();
    let images = copy_images(imgs.path(), 1);
    let root = imgs.path().canonicalize().unwrap();
    let roots = root.display().to_string();
    let results = data.path().join("results");
    let results_dir = results.display().to_string();
    let models = repo_root().join("tests/fixtures/models").display().to_string();
    let s = Serve::start(
        data.path(),
        &[
            ("IMGIDX__API__ALLOWED_ROOTS", roots.as_str()),
            ("IMGIDX__API__RESULTS_DIR", results_dir.as_str()),
            ("IMGIDX__MODEL__MODELS_DIR", models.as_str()),
        ],
    )
    .await;

    let (code, doc) = s.get("/openapi.json").await;
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc, serde_json::to_value(imgidx_api::openapi_document()).unwrap(), "served as built");
    let mut spec = Spec { doc, checked: BTreeSet::new() };
    let every_code: Vec<String> = serde_json::from_value(spec.doc["components"]["schemas"]["Error"]["properties"]["error"]["enum"].clone()).unwrap();
    assert!(every_code.contains(&"job_not_found".to_string()), "{every_code:?}");

    // Indexing, and the job as it goes and once it is done.
    let paths: Vec<String> = images.iter().map(|p| p.display().to_string()).chain([root.join("gone.jpg").display().to_string()]).collect();
    let (code, job) = call(&mut spec, &s, "post", "/api/v1/index/add-images", "/api/v1/index/add-images", Some(json!({ "image_paths": paths }))).await;
    assert_eq!(code, 202, "{job}");
    let job_id = job["job_id"].as_str().unwrap().to_string();
    let done = wait_finished(&mut spec, &s, &job_id).await;
    assert_eq!(done["progress"]["failed_images"], 1, "{done}");
    let (code, _) = call(&mut spec, &s, "post", "/api/v1/index/notify", "/api/v1/index/notify", Some(json!({ "image_paths": paths[..2] }))).await;
    assert_eq!(code, 200, "indexed and unchanged");
    let items = format!("/api/v1/index/status/{job_id}/items");
    let (code, page) = call(&mut spec, &s, "get", "/api/v1/index/status/{job_id}/items", &format!("{items}?state=failed"), None).await;
    assert_eq!((code, page["items"][0]["reason"].as_str()), (200, Some("not_found")), "{page}");
    call(&mut spec, &s, "get", "/api/v1/index/status/{job_id}/items", &format!("{items}?limit=0"), None).await;
    call(&mut spec, &s, "get", "/api/v1/index/jobs", "/api/v1/index/jobs?status=completed&limit=5", None).await;
    let (code, _) = call(&mut spec, &s, "get", "/api/v1/index/jobs", "/api/v1/index/jobs?status=done", None).await;
    assert_eq!(code, 422);
    call(&mut spec, &s, "get", "/api/v1/index/status", "/api/v1/index/status", None).await;
    call(&mut spec, &s, "get", "/api/v1/index/stats", "/api/v1/index/stats", None).await;
    call(&mut spec, &s, "get", "/health", "/health", None).await;
    call(&mut spec, &s, "get", "/metrics", "/metrics", None).await;
    let (code, _) = call(&mut spec, &s, "post", "/api/v1/index/status/{job_id}/retry", &format!("/api/v1/index/status/{job_id}/retry"), Some(json!({}))).await;
    assert_eq!(code, 202, "the missing image is queued again");
    let (code, _) = call(&mut spec, &s, "post", "/api/v1/index/jobs/{job_id}/cancel", &format!("/api/v1/index/jobs/{job_id}/cancel"), Some(json!({}))).await;
    assert_eq!(code, 409);
    let (code, hooks) = call(&mut spec, &s, "get", "/api/v1/index/jobs/{job_id}/webhooks", &format!("/api/v1/index/jobs/{job_id}/webhooks"), None).await;
    assert_eq!((code, hooks["deliveries"].as_array().map(Vec::len)), (200, Some(0)), "no webhooks configured: {hooks}");
    let (code, off) = call(&mut spec, &s, "post", "/api/v1/index/notify", "/api/v1/index/notify", Some(json!({ "image_paths": paths[..1], "webhook_url": "https://hooks.example/" }))).await;
    assert_eq!((code, off["error"].as_str()), (422, Some("validation_error")), "webhooks are off here: {off}");

    // Directory triggers: a new job, the same job while it runs, and refusals.
    let (code, scan) = call(&mut spec, &s, "post", "/api/v1/index/trigger", "/api/v1/index/trigger", Some(json!({ "image_dir": root, "force_reindex": true }))).await;
    assert_eq!(code, 202, "{scan}");
    for dir in [root.join("nope"), PathBuf::from("relative")] {
        let (code, _) = call(&mut spec, &s, "post", "/api/v1/index/trigger", "/api/v1/index/trigger", Some(json!({ "image_dir": dir }))).await;
        assert_eq!(code, 422);
    }
    let scan_done = wait_finished(&mut spec, &s, scan["job_id"].as_str().unwrap()).await;
    assert!(scan_done["scan"]["done"].as_bool().unwrap(), "{scan_done}");
    // Seed 003's names for the same.
    let (code, again) = call(&mut spec, &s, "post", "/api/v1/ingest/scan", "/api/v1/ingest/scan", Some(json!({ "directory_path": root }))).await;
    assert!(code == 202 || code == 200, "{again}");
    let (code, _) = call(&mut spec, &s, "post", "/api/v1/ingest/scan", "/api/v1/ingest/scan", Some(json!({ "directory_path": "relative" }))).await;
    assert_eq!(code, 422);
    wait_finished(&mut spec, &s, again["job_id"].as_str().unwrap()).await;
    let status = format!("/api/v1/ingest/status/{job_id}");
    let (code, report) = call(&mut spec, &s, "get", "/api/v1/ingest/status/{job_id}", &status, None).await;
    assert_eq!((code, report["result"]["total_failed"].as_u64()), (200, Some(1)), "{report}");

    // Search: by text, by indexed path, by upload (multipart), with refusals.
    let (code, r) = call(&mut spec, &s, "post", "/api/v1/query", "/api/v1/query", Some(json!({ "text": "a cat", "top_k": 3 }))).await;
    assert_eq!((code, r["results"].as_array().map(Vec::len)), (200, Some(3)), "{r}");
    call(&mut spec, &s, "post", "/api/v1/query", "/api/v1/query", Some(json!({ "image_path": images[0], "copy_results": true }))).await;
    let (code, _) = call(&mut spec, &s, "post", "/api/v1/query", "/api/v1/query", Some(json!({ "image_path": "/etc/passwd" }))).await;
    assert_eq!(code, 404);
    let (code, _) = call(&mut spec, &s, "post", "/api/v1/query", "/api/v1/query", Some(json!({ "text": "x", "top_k": 0 }))).await;
    assert_eq!(code, 422);
    let (code, r) = call(&mut spec, &s, "post", "/api/v1/query", "/api/v1/query", Some(json!({ "text": "a cat", "relevance": "auto" }))).await;
    assert_eq!(code, 200, "{r}");
    upload(&mut spec, &s, &images[0]).await;
    let query_batch = "/api/v1/query/batch";
    let searches = json!({ "searches": [{ "text": "a cat", "top_k": 2 }, { "image_path": images[0], "relevance": "auto" }] });
    let (code, r) = call(&mut spec, &s, "post", query_batch, query_batch, Some(searches)).await;
    assert_eq!((code, r["responses"].as_array().map(Vec::len)), (200, Some(2)), "{r}");
    let passwd = json!({ "searches": [{ "image_path": "/etc/passwd" }] });
    let (code, _) = call(&mut spec, &s, "post", query_batch, query_batch, Some(passwd)).await;
    assert_eq!(code, 404);
    let (code, _) = call(&mut spec, &s, "post", query_batch, query_batch, Some(json!({ "searches": [] }))).await;
    assert_eq!(code, 422);

    // Collections: made, listed, filled, selected and deleted, with refusals.
    let col = "/api/v1/collections";
    let (code, made) = call(&mut spec, &s, "post", col, col, Some(json!({ "collection_name": "cats", "distance": "Dot" }))).await;
    assert_eq!(code, 201, "{made}");
    let (code, _) = call(&mut spec, &s, "post", col, col, Some(json!({ "collection_name": "cats" }))).await;
    assert_eq!(code, 409);
    let (code, _) = call(&mut spec, &s, "post", col, col, Some(json!({ "collection_name": "Bad Name" }))).await;
    assert_eq!(code, 422);
    let (code, _) = call(&mut spec, &s, "post", "/api/v1/index/add-images", "/api/v1/index/add-images", Some(json!({ "image_paths": paths[..1], "collection": "nope" }))).await;
    assert_eq!(code, 404);
    let (code, list) = call(&mut spec, &s, "get", col, col, None).await;
    assert_eq!((code, list["collections"].as_array().map(Vec::len)), (200, Some(2)), "{list}");
    let select = "/api/v1/collections/select";
    let (code, _) = call(&mut spec, &s, "post", select, select, Some(json!({ "collection_name": "cats" }))).await;
    assert_eq!(code, 200);
    let (code, _) = call(&mut spec, &s, "post", select, select, Some(json!({ "collection_name": "nope" }))).await;
    assert_eq!(code, 404);
    call(&mut spec, &s, "get", "/api/v1/index/stats", "/api/v1/index/stats?collection=cats", None).await;
    let (code, _) = call(&mut spec, &s, "get", "/api/v1/index/stats", "/api/v1/index/stats?collection=nope", None).await;
    assert_eq!(code, 404);
    let one = "/api/v1/collections/{collection_name}";
    let (code, _) = call(&mut spec, &s, "delete", one, "/api/v1/collections/cats", None).await;
    assert_eq!(code, 409, "selected");
    call(&mut spec, &s, "post", select, select, Some(json!({ "collection_name": "images" }))).await;
    let (code, _) = call(&mut spec, &s, "delete", one, "/api/v1/collections/cats", None).await;
    assert_eq!(code, 200);
    let (code, _) = call(&mut spec, &s, "delete", one, "/api/v1/collections/cats", None).await;
    assert_eq!(code, 404);
    let clear = "/api/v1/collections/cache/clear";
    let (code, _) = call(&mut spec, &s, "post", clear, clear, Some(json!({}))).await;
    assert_eq!(code, 200);
    let (code, _) = call(&mut spec, &s, "post", clear, &format!("{clear}?collection_name=nope"), Some(json!({}))).await;
    assert_eq!(code, 404);

    // Unknown jobs, malformed bodies, a missing Content-Type.
    for (method, template) in [
        ("get", "/api/v1/index/status/{job_id}"),
        ("get", "/api/v1/index/status/{job_id}/items"),
        ("get", "/api/v1/index/status/{job_id}/events"),
        ("post", "/api/v1/index/status/{job_id}/retry"),
        ("post", "/api/v1/index/jobs/{job_id}/cancel"),
        ("get", "/api/v1/index/jobs/{job_id}/webhooks"),
        ("get", "/api/v1/ingest/status/{job_id}"),
    ] {
        let path = template.replace("{job_id}", "no-such-job");
        let body = (method == "post").then(|| json!({}));
        let (code, _) = call(&mut spec, &s, method, template, &path, body).await;
        assert_eq!(code, 404, "{method} {path}");
    }
    let (code, _) = call(&mut spec, &s, "post", "/api/v1/index/add-images", "/api/v1/index/add-images", None).await;
    assert_eq!(code, 415);
    let r = reqwest::Client::new().post(format!("{}/api/v1/index/add-images", s.url)).header("content-type", "application/json").body("{nope").send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    spec.check("post", "/api/v1/index/add-images", status, "application/json", &body);
    assert_eq!(status, 400);
    let (code, _) = call(&mut spec, &s, "post", "/api/v1/index/add-images", "/api/v1/index/add-images", Some(json!({ "image_paths": ["/etc/passwd"] }))).await;
    assert_eq!(code, 422);

    ingest_upload(&mut spec, &s, &images[0]).await;
    batch(&mut spec, &s, &images[0]).await;
    duplicates(&mut spec, &s, &images[1]).await;
    switch(&mut spec, &s).await;
    live(&mut spec, &s, &job_id).await;

    let missing: Vec<_> = spec.operations().difference(&spec.checked).cloned().collect();
    assert!(missing.is_empty(), "operations the test never called: {missing:?}");

    // Swagger UI, from the binary itself: no CDN.
    let page = reqwest::get(format!("{}/docs/", s.url)).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui") && !html.contains("https://"), "{html}");
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-initializer.js"] {
        let r = reqwest::get(format!("{}/docs/{asset}", s.url)).await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        let text = r.text().await.unwrap();
        if asset == "swagger-initializer.js" {
            assert!(text.contains("/openapi.json"), "{text}");
        }
    }
    s.stop().await;
}

async fn upload(spec: &mut Spec, s: &Serve, image: &Path) {
    let bytes = std::fs::read(image).unwrap();
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(bytes).file_name("probe.png"))
        .text("top_k", "2");
    let r = reqwest::Client::new().post(format!("{}/api/v1/query", s.url)).multipart(form).send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    spec.check("post", "/api/v1/query", status, "application/json", &body);
}

/// Seed 003's upload: stored and queued, and a form without files.
async fn ingest_upload(spec: &mut Spec, s: &Serve, image: &Path) {
    let template = "/api/v1/ingest/upload";
    for (form, expected) in [
        (reqwest::multipart::Form::new().part("files", reqwest::multipart::Part::bytes(std::fs::read(image).unwrap()).file_name("u.png")), 202),
        (reqwest::multipart::Form::new().text("priority", "high"), 422),
    ] {
        let r = reqwest::Client::new().post(format!("{}{template}", s.url)).multipart(form).send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, expected, "{body}");
        spec.check("post", template, status, "application/json", &body);
    }
}

/// Seed 004's batch: created, followed to its end, listed; and its error shape.
async fn batch(spec: &mut Spec, s: &Serve, image: &Path) {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(std::fs::read(image).unwrap());
    let (code, created) =
        call(spec, s, "post", "/api/v1/batch", "/api/v1/batch", Some(json!({ "images": [{ "base64": encoded, "name": "b.png" }] }))).await;
    assert_eq!(code, 201, "{created}");
    let one = format!("/api/v1/batch/{}", created["job_id"].as_str().unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (code, body) = call(spec, s, "get", "/api/v1/batch/{job_id}", &one, None).await;
        assert_eq!(code, 200, "{body}");
        if body["status"] == "completed" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = call(spec, s, "get", "/api/v1/batch", "/api/v1/batch", None).await;
    assert_eq!(code, 200);
    let template = "/api/v1/batch/{job_id}/ws";
    let (mut socket, response) = tokio_tungstenite::connect_async(format!("{}{one}/ws", s.url.replacen("http", "ws", 1))).await.unwrap();
    spec.declared("get", template, response.status().as_u16(), "");
    let schema = spec.doc["components"]["schemas"]["BatchMessage"].clone();
    let first = socket.next().await.unwrap().unwrap();
    spec.validate(&schema, &serde_json::from_str(first.to_text().unwrap()).unwrap(), "a batch WebSocket message");
    let (code, _) = call(spec, s, "get", template, &format!("{one}/ws"), None).await;
    assert_eq!(code, 400, "not an upgrade request");
    let (code, _) = call(spec, s, "post", "/api/v1/batch", "/api/v1/batch", Some(json!({ "images": [] }))).await;
    assert_eq!(code, 400);
    let (code, _) = call(spec, s, "get", "/api/v1/batch/{job_id}", "/api/v1/batch/no-such-job", None).await;
    assert_eq!(code, 404);
}

/// Duplicates: an analysis followed to its report, an archive planned, a selection
/// archived, shown and restored; and the refusals.
async fn duplicates(spec: &mut Spec, s: &Serve, image: &Path) {
    let find = "/api/v1/duplicates/find-similar";
    let (code, started) = call(spec, s, "post", find, find, Some(json!({ "threshold": 0.9 }))).await;
    assert_eq!(code, 202, "{started}");
    let (code, _) = call(spec, s, "post", find, find, Some(json!({ "threshold": 0 }))).await;
    assert_eq!(code, 422);
    let task_id = started["task_id"].as_str().unwrap();
    let template = "/api/v1/duplicates/report/{task_id}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, report) = call(spec, s, "get", template, &format!("/api/v1/duplicates/report/{task_id}"), None).await;
        assert_eq!(code, 200, "{report}");
        if report["status"] == "completed" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = call(spec, s, "get", template, "/api/v1/duplicates/report/dup_nope", None).await;
    assert_eq!(code, 404);
    let exact = "/api/v1/duplicates/archive-exact";
    let (code, plan) = call(spec, s, "post", exact, exact, Some(json!({ "task_id": task_id }))).await;
    assert_eq!((code, plan["dry_run"].as_bool()), (200, Some(true)), "{plan}");
    let (code, _) = call(spec, s, "post", exact, exact, Some(json!({ "task_id": "dup_nope" }))).await;
    assert_eq!(code, 404);
    let select = "/api/v1/curation/archive-selection";
    let (code, picked) = call(spec, s, "post", select, select, Some(json!({ "paths": [image], "archive_name": "picked" }))).await;
    assert_eq!((code, picked["moved"].as_u64()), (200, Some(1)), "{picked}");
    let (code, _) = call(spec, s, "post", select, select, Some(json!({ "paths": [], "archive_name": "picked" }))).await;
    assert_eq!(code, 422);
    let archive_id = picked["archive_id"].as_str().unwrap();
    let shown = "/api/v1/duplicates/archives/{archive_id}";
    let (code, _) = call(spec, s, "get", shown, &format!("/api/v1/duplicates/archives/{archive_id}"), None).await;
    assert_eq!(code, 200);
    let (code, _) = call(spec, s, "get", shown, "/api/v1/duplicates/archives/arc_nope", None).await;
    assert_eq!(code, 404);
    let restore = "/api/v1/duplicates/restore";
    let (code, back) = call(spec, s, "post", restore, restore, Some(json!({ "archive_id": archive_id }))).await;
    assert_eq!((code, back["restored"].as_u64()), (200, Some(1)), "{back}");
    let (code, _) = call(spec, s, "post", restore, restore, Some(json!({ "archive_id": archive_id }))).await;
    assert_eq!(code, 409);
    assert!(image.is_file());
}

/// A model switch of an empty collection, to the end, and the previous generation dropped.
async fn switch(spec: &mut Spec, s: &Serve) {
    let collections = "/api/v1/collections";
    let (code, _) = call(spec, s, "post", collections, collections, Some(json!({ "collection_name": "switchy" }))).await;
    assert_eq!(code, 201);
    let reembed = "/api/v1/collections/{collection_name}/reembed";
    let path = "/api/v1/collections/switchy/reembed";
    let (code, _) = call(spec, s, "post", reembed, path, Some(json!({ "model": "nope" }))).await;
    assert_eq!(code, 422);
    let (code, started) = call(spec, s, "post", reembed, path, Some(json!({ "model": "tiny-clip-b" }))).await;
    assert_eq!(code, 202, "{started}");
    wait_finished(spec, s, started["job_id"].as_str().unwrap()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, list) = call(spec, s, "get", collections, collections, None).await;
        let switchy = list["collections"].as_array().unwrap().iter().find(|c| c["name"] == "switchy").cloned().unwrap();
        if switchy["model"] == "tiny-clip-b" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{switchy}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let previous = "/api/v1/collections/{collection_name}/previous";
    let (code, _) = call(spec, s, "delete", previous, "/api/v1/collections/switchy/previous", None).await;
    assert_eq!(code, 200);
    let (code, _) = call(spec, s, "delete", previous, "/api/v1/collections/switchy/previous", None).await;
    assert_eq!(code, 404);
}

/// The live endpoints of a finished job: its state, then the end.
async fn live(spec: &mut Spec, s: &Serve, job_id: &str) {
    let template = "/api/v1/index/status/{job_id}/events";
    let r = reqwest::get(format!("{}/api/v1/index/status/{job_id}/events", s.url)).await.unwrap();
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    let schema = spec.declared("get", template, r.status().as_u16(), &content_type).unwrap();
    let text = r.text().await.unwrap();
    let events: Vec<Value> =
        text.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| serde_json::from_str(d.trim()).unwrap()).collect();
    assert_eq!(events.last().unwrap()["type"], "job_complete", "{text}");
    for event in &events {
        spec.validate(&schema, event, "an event");
    }
    spec.checked.insert(("get".into(), template.into()));

    let template = "/api/v1/index/status/{job_id}/ws";
    let ws_url = format!("{}/api/v1/index/status/{job_id}/ws", s.url.replacen("http", "ws", 1));
    let (mut socket, response) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    spec.declared("get", template, response.status().as_u16(), "");
    let schema = spec.doc["components"]["schemas"]["LiveMessage"].clone();
    let first = socket.next().await.unwrap().unwrap();
    spec.validate(&schema, &serde_json::from_str(first.to_text().unwrap()).unwrap(), "a WebSocket message");
    let (code, _) = call(spec, s, "get", template, &format!("/api/v1/index/status/{job_id}/ws"), None).await;
    assert_eq!(code, 400, "not an upgrade request");
    let (code, _) = call(spec, s, "get", template, "/api/v1/index/status/no-such-job/ws", None).await;
    assert_eq!(code, 400, "the upgrade is checked first");
}

/// schemathesis (PyPI; `tests/run.sh` installs it) against the live document: every
/// operation with generated parameters and bodies, bounded in examples and time. No 5xx,
/// and every answer's status, content type and body as the document declares.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_undeclared_answer() {
    let Some(schemathesis) = schemathesis() else { return };
    let data = tempfile::tempdir().unwrap();
    let imgs = tempfile::tempdir().unwrap();
    copy_images(imgs.path(), 1);
    let roots = imgs.path().canonicalize().unwrap().display().to_string();
    let s = Serve::start(data.path(), &[("IMGIDX__API__ALLOWED_ROOTS", roots.as_str())]).await;
    let report = data.path().join("schemathesis");
    let run = tokio::process::Command::new(&schemathesis)
        .arg("run")
        .arg(format!("{}/openapi.json", s.url))
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
        .args(["--phases", "examples,coverage,fuzzing"])
        // Bounded by examples (a --max-time would make fuzzing repeat until it is spent).
        .args(["--max-examples", "50", "--seed", "1", "--workers", "2"])
        .args(["--request-timeout", "20", "--suppress-health-check", "all", "--no-color"])
        // Live streams never end on their own: they are checked by the test above.
        .args(["--exclude-path-regex", "/(ws|events)$"])
        .arg("--report-dir")
        .arg(&report)
        .current_dir(data.path())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), run).await.expect("schemathesis ran for 10 minutes").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log_text()
    );
    assert!(!s.log_text().contains("panicked"), "{}", s.log_text());
    s.stop().await;
}

/// The schemathesis command, from `IMGIDX_SCHEMATHESIS` or the repository's `.venv`;
/// without it the test is skipped, unless the test command set up everything.
fn schemathesis() -> Option<PathBuf> {
    let path = std::env::var_os("IMGIDX_SCHEMATHESIS").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv/bin/schemathesis"));
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("IMGIDX_REQUIRE_SERVICES").is_none(),
        "schemathesis not found at {} (tests/run.sh installs it)",
        path.display()
    );
    eprintln!("skipped: schemathesis not found at {} (tests/run.sh installs it)", path.display());
    None
}
