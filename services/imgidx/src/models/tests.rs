//! `models fetch` / `models list` against a local stand-in for the Hugging Face hub:
//! an axum server on 127.0.0.1:0 that answers `/{repo}/resolve/{rev}/{file}` the way
//! the hub does (LFS files: a redirect to a "CDN" with the SHA-256 in `X-Linked-Etag`;
//! small files: the content with the git blob id in `ETag`), serving the tiny fixture
//! graphs under a test-only registry entry.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use imgidx_shared::embed::{GraphSpec, ModelManifest};

use super::checksum::hex;
use super::error::FetchError;
use super::hub::HttpOptions;
use super::install::{fetch, Checksums, FetchRequest, CHECKSUMS_FILE};
use super::list::{list, render};
use super::registry::{KnownModel, Registry, RemoteFile, CLIP_MEAN, CLIP_STD};

const VISION_REPO: &str = "test/tiny-vision";
const TEXT_REPO: &str = "test/tiny-text";
const REV: &str = "0123456789abcdef0123456789abcdef01234567";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models")
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn git_sha1(bytes: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex(&h.finalize())
}

/// The test model's files by their name in the model directory.
fn contents() -> HashMap<String, Vec<u8>> {
    let preprocessor = format!(
        r#"{{"crop_size": {{"height": 64, "width": 64}}, "size": {{"shortest_edge": 64}}, "image_mean": {CLIP_MEAN:?}, "image_std": {CLIP_STD:?}}}"#
    );
    HashMap::from([
        ("vision.onnx".into(), std::fs::read(fixtures().join("tiny-clip/vision.onnx")).unwrap()),
        ("text.onnx".into(), std::fs::read(fixtures().join("tiny-text-masked/text.onnx")).unwrap()),
        ("merges.txt".into(), b"#version: 0.2\ni n\nt h\nth e</w>\n".to_vec()),
        ("preprocessor_config.json".into(), preprocessor.into_bytes()),
    ])
}

/// tiny-clip's graphs (vision) and the masked text graph as a fetchable model. Only the
/// vision graph's SHA-256 is pinned, so both the pin and the hub's headers are exercised.
fn tiny_model() -> KnownModel {
    let files = contents();
    let file = |repo: &str, path: &str, dest: &str, pin: bool| RemoteFile {
        repo: repo.into(),
        revision: REV.into(),
        path: path.into(),
        dest: dest.into(),
        sha256: pin.then(|| sha256(&files[dest])),
        size: pin.then(|| files[dest].len() as u64),
    };
    let mut manifest = ModelManifest::load(&fixtures().join("tiny-clip")).unwrap();
    manifest.text = Some(GraphSpec {
        file: "text.onnx".into(),
        input: "input_ids".into(),
        output: "text_embeds".into(),
        mask_input: Some("attention_mask".into()),
    });
    manifest.tokenizer = Some("merges.txt".into());
    KnownModel {
        name: "tiny-clip".into(),
        description: "test model".into(),
        files: vec![
            file(VISION_REPO, "model.onnx", "vision.onnx", true),
            file(VISION_REPO, "preprocessor_config.json", "preprocessor_config.json", false),
            file(TEXT_REPO, "model.onnx", "text.onnx", false),
            file(TEXT_REPO, "merges.txt", "merges.txt", false),
        ],
        manifest,
        preprocessor_config: Some("preprocessor_config.json".into()),
    }
}

/// The built-in models plus the test one, so `list` has a known-but-not-installed entry.
fn registry_with(model: KnownModel) -> Registry {
    let mut models = Registry::builtin().models().to_vec();
    models.push(model);
    Registry::new(models)
}

/// What the stand-in hub announces for a file.
#[derive(Clone)]
enum Announce {
    Real,
    Wrong(String),
    Nothing,
}

struct Served {
    body: Vec<u8>,
    lfs: bool,
    announce: Announce,
}

type Files = Arc<HashMap<String, Served>>;

/// Starts the stand-in hub serving `model`'s files; `announce` overrides per dest.
async fn start_hub(model: &KnownModel, announce: &[(&str, Announce)]) -> String {
    let contents = contents();
    let files: HashMap<String, Served> = model
        .files
        .iter()
        .map(|f| {
            let how = announce.iter().find(|(d, _)| *d == f.dest).map_or(Announce::Real, |(_, a)| a.clone());
            let served = Served { body: contents[&f.dest].clone(), lfs: f.dest.ends_with(".onnx"), announce: how };
            (format!("{}/{}/{}", f.repo, f.revision, f.path), served)
        })
        .collect();
    let app = Router::new()
        .route("/cdn/{*key}", get(cdn))
        .route("/{owner}/{repo}/resolve/{rev}/{*path}", get(resolve))
        .with_state(Arc::new(files));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn resolve(
    State(files): State<Files>,
    UrlPath((owner, repo, rev, path)): UrlPath<(String, String, String, String)>,
) -> Response {
    let key = format!("{owner}/{repo}/{rev}/{path}");
    let Some(f) = files.get(&key) else { return StatusCode::NOT_FOUND.into_response() };
    let announced = match &f.announce {
        Announce::Real if f.lfs => Some(sha256(&f.body)),
        Announce::Real => Some(git_sha1(&f.body)),
        Announce::Wrong(hex) => Some(hex.clone()),
        Announce::Nothing => None,
    };
    if f.lfs {
        let mut resp =
            (StatusCode::FOUND, [(header::LOCATION, format!("/cdn/{key}")), (header::ETAG, "\"redirect\"".into())])
                .into_response();
        if let Some(sha) = announced {
            resp.headers_mut().insert("x-linked-etag", format!("\"{sha}\"").parse().unwrap());
            resp.headers_mut().insert("x-linked-size", f.body.len().into());
        }
        return resp;
    }
    let mut resp = f.body.clone().into_response();
    if let Some(sha1) = announced {
        resp.headers_mut().insert(header::ETAG, format!("\"{sha1}\"").parse().unwrap());
    }
    resp
}

/// The CDN's ETag is not the content's SHA-256 (as on the real hub's storage): a
/// client that took it for one would fail every LFS download here.
async fn cdn(State(files): State<Files>, UrlPath(key): UrlPath<String>) -> Response {
    match files.get(&key) {
        Some(f) => ([(header::ETAG, format!("\"{}\"", "f".repeat(64)))], f.body.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn request(hub: &str) -> FetchRequest {
    FetchRequest { name: "tiny-clip".into(), hub: hub.into(), from: None, force: false, quiet: true }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[tokio::test]
async fn fetch_from_hub_installs_a_loadable_model_and_list_shows_it() {
    let model = tiny_model();
    let registry = registry_with(model.clone());
    let hub = start_hub(&model, &[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let models_dir = tmp.path().join("models");

    let installed = fetch(&registry, &models_dir, &request(&hub), &HttpOptions::default()).await.unwrap();
    let dir = models_dir.join("tiny-clip");
    assert_eq!(installed.dir, dir);
    assert_eq!(entries(&models_dir), ["tiny-clip"], "no staging leftovers");
    let manifest = ModelManifest::load(&dir).unwrap();
    assert_eq!(manifest, model.manifest);
    assert_eq!(manifest.text.as_ref().unwrap().mask_input.as_deref(), Some("attention_mask"));
    let on_disk = std::fs::read(dir.join(ModelManifest::FILE)).unwrap();
    assert!(!String::from_utf8(on_disk).unwrap().contains("checksums"), "manifest.json holds only manifest fields");

    let sums: Checksums = serde_json::from_slice(&std::fs::read(dir.join(CHECKSUMS_FILE)).unwrap()).unwrap();
    assert_eq!(sums.model, "tiny-clip");
    assert_eq!(sums.source, hub);
    for (dest, body) in contents() {
        assert_eq!(std::fs::read(dir.join(&dest)).unwrap(), body, "{dest} content");
        let rec = &sums.files[&dest];
        assert_eq!((rec.sha256.as_str(), rec.bytes), (sha256(&body).as_str(), body.len() as u64), "{dest}");
        assert!(rec.from.starts_with(&hub) && rec.from.contains("/resolve/"), "{}", rec.from);
    }
    let verified = |dest: &str| sums.files[dest].verified.join("; ");
    assert!(verified("vision.onnx").contains("pinned") && verified("vision.onnx").contains("X-Linked-Etag"));
    assert!(verified("text.onnx").starts_with("sha256") && verified("text.onnx").contains("X-Linked-Etag"));
    assert!(verified("merges.txt").starts_with("git blob sha1") && verified("merges.txt").contains("ETag"));
    assert_eq!(sums.files[ModelManifest::FILE].sha256, sha256(&std::fs::read(dir.join("manifest.json")).unwrap()));

    // A stray directory and a staging leftover: one reported, the other ignored.
    std::fs::create_dir(models_dir.join("junk")).unwrap();
    std::fs::create_dir(models_dir.join(".fetch-tiny-clip-x")).unwrap();
    let listing = list(&models_dir, &registry, &dir).unwrap();
    assert_eq!(listing.installed.len(), 1);
    let m = &listing.installed[0];
    assert_eq!((m.name.as_str(), m.embedding_dim, m.image_size), ("tiny-clip", 64, 64));
    assert!(m.text_encoder && m.tokenizer && m.checksums && m.active);
    assert_eq!(m.bytes, installed.bytes);
    assert!(m.bytes > contents().values().map(|b| b.len() as u64).sum::<u64>(), "includes the metadata files");
    assert_eq!(listing.invalid.len(), 1);
    assert_eq!(listing.invalid[0].name, "junk");
    assert_eq!(listing.available.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["clip-vit-b-32"]);
    let table = render(&listing);
    assert!(table.contains("tiny-clip *") && table.contains("clip-vit-b-32") && table.contains("junk"), "{table}");
    let json: serde_json::Value = serde_json::to_value(&listing).unwrap();
    assert_eq!(json["installed"][0]["embedding_dim"], 64);

    // Installed already: refused without --force, replaced with it.
    let err = fetch(&registry, &models_dir, &request(&hub), &HttpOptions::default()).await.unwrap_err();
    assert!(matches!(err, FetchError::AlreadyInstalled { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    std::fs::write(dir.join("stale"), b"from the previous install").unwrap();
    let forced = FetchRequest { force: true, ..request(&hub) };
    fetch(&registry, &models_dir, &forced, &HttpOptions::default()).await.unwrap();
    assert!(!dir.join("stale").exists(), "the previous install was replaced whole");
    ModelManifest::load(&dir).unwrap();
    assert_eq!(entries(&models_dir), [".fetch-tiny-clip-x", "junk", "tiny-clip"], "no .old-* leftover");
}

async fn fetch_error(model: KnownModel, announce: &[(&str, Announce)]) -> (FetchError, PathBuf, tempfile::TempDir) {
    let hub = start_hub(&model, announce).await;
    let tmp = tempfile::tempdir().unwrap();
    let models_dir = tmp.path().join("models");
    let err = fetch(&registry_with(model), &models_dir, &request(&hub), &HttpOptions::default()).await.unwrap_err();
    (err, models_dir, tmp)
}

#[tokio::test]
async fn wrong_checksum_fails_naming_the_file_and_installs_nothing() {
    let real = sha256(&contents()["text.onnx"]);
    let wrong = "ab".repeat(32);
    let (err, models_dir, _tmp) = fetch_error(tiny_model(), &[("text.onnx", Announce::Wrong(wrong.clone()))]).await;
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Checksum { .. }), "{msg}");
    assert!(msg.contains("text.onnx") && msg.contains(&wrong) && msg.contains(&real), "{msg}");
    assert!(msg.contains("X-Linked-Etag"), "says who announced it: {msg}");
    assert!(entries(&models_dir).is_empty(), "nothing left behind: {:?}", entries(&models_dir));

    // A small file's git blob id.
    let wrong = "cd".repeat(20);
    let (err, models_dir, _tmp) = fetch_error(tiny_model(), &[("merges.txt", Announce::Wrong(wrong.clone()))]).await;
    let msg = err.to_string();
    assert!(msg.contains("merges.txt") && msg.contains("git blob sha1") && msg.contains(&wrong), "{msg}");
    assert!(msg.contains(&git_sha1(&contents()["merges.txt"])), "{msg}");
    assert!(entries(&models_dir).is_empty());

    // The registry's pin, even when the hub agrees with the content.
    let mut model = tiny_model();
    model.files[0].sha256 = Some("ef".repeat(32));
    let (err, models_dir, _tmp) = fetch_error(model, &[]).await;
    let msg = err.to_string();
    assert!(msg.contains("vision.onnx") && msg.contains("pinned") && msg.contains(&"ef".repeat(32)), "{msg}");
    assert!(entries(&models_dir).is_empty());
}

#[tokio::test]
async fn a_download_nothing_vouches_for_is_refused() {
    let (err, models_dir, _tmp) = fetch_error(tiny_model(), &[("merges.txt", Announce::Nothing)]).await;
    assert!(matches!(err, FetchError::NoChecksum { .. }), "{err}");
    assert!(err.to_string().contains("merges.txt"), "{err}");
    assert!(entries(&models_dir).is_empty());
    // A pinned file needs no announcement.
    let model = tiny_model();
    let hub = start_hub(&model, &[("vision.onnx", Announce::Nothing)]).await;
    let tmp = tempfile::tempdir().unwrap();
    let installed = fetch(&registry_with(model), tmp.path(), &request(&hub), &HttpOptions::default()).await.unwrap();
    let sums: Checksums = serde_json::from_slice(&std::fs::read(installed.dir.join(CHECKSUMS_FILE)).unwrap()).unwrap();
    assert_eq!(sums.files["vision.onnx"].verified.len(), 1);
    assert!(sums.files["vision.onnx"].verified[0].contains("pinned"));
}

#[tokio::test]
async fn http_errors_name_the_url() {
    let hub = start_hub(&tiny_model(), &[]).await;
    let mut model = tiny_model();
    model.files[3].path = "missing.txt".into();
    let tmp = tempfile::tempdir().unwrap();
    let models_dir = tmp.path().join("models");
    let err = fetch(&registry_with(model), &models_dir, &request(&hub), &HttpOptions::default()).await.unwrap_err();
    assert!(matches!(err, FetchError::Http { status: 404, .. }), "{err}");
    assert!(err.to_string().contains(&format!("{TEXT_REPO}/resolve/{REV}/missing.txt")), "{err}");
    assert!(entries(&models_dir).is_empty());
}

fn assert_offline_help(msg: &str, model: &KnownModel, hub: &str) {
    for f in &model.files {
        assert!(msg.contains(&f.url(hub)), "names {}: {msg}", f.url(hub));
        assert!(msg.contains(&format!("save as: {}", f.dest)), "{msg}");
    }
    assert!(msg.contains("imgidx models fetch tiny-clip --from DIR"), "{msg}");
}

#[tokio::test]
async fn unreachable_hub_fails_fast_with_manual_instructions() {
    let model = tiny_model();
    let registry = registry_with(model.clone());
    let tmp = tempfile::tempdir().unwrap();
    let models_dir = tmp.path().join("models");
    let hub = "http://127.0.0.1:1";
    let started = Instant::now();
    let err = fetch(&registry, &models_dir, &request(hub), &HttpOptions::default()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(matches!(err, FetchError::Unreachable { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("cannot reach http://127.0.0.1:1"), "{msg}");
    assert_offline_help(&msg, &model, hub);
    assert!(entries(&models_dir).is_empty(), "{:?}", entries(&models_dir));
}

#[tokio::test]
async fn silent_hub_times_out() {
    // Accepts connections (the kernel does) and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let model = tiny_model();
    let tmp = tempfile::tempdir().unwrap();
    let opts = HttpOptions { read_timeout: Duration::from_millis(500), ..HttpOptions::default() };
    let started = Instant::now();
    let err = fetch(&registry_with(model.clone()), tmp.path(), &request(&hub), &opts).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let msg = err.to_string();
    assert!(msg.contains("timed out"), "{msg}");
    assert_offline_help(&msg, &model, &hub);
    assert!(entries(tmp.path()).is_empty());
    held.abort();
}

#[tokio::test]
async fn from_dir_installs_local_files_with_the_same_checks() {
    let model = tiny_model();
    let registry = registry_with(model.clone());
    let tmp = tempfile::tempdir().unwrap();
    let models_dir = tmp.path().join("models");
    let local = tmp.path().join("downloads");
    std::fs::create_dir(&local).unwrap();
    for (dest, body) in contents() {
        std::fs::write(local.join(dest), body).unwrap();
    }
    // The hub is never contacted: this one would refuse every connection.
    let req = FetchRequest { from: Some(local.clone()), ..request("http://127.0.0.1:1") };
    let installed = fetch(&registry, &models_dir, &req, &HttpOptions::default()).await.unwrap();
    ModelManifest::load(&installed.dir).unwrap();
    let sums: Checksums = serde_json::from_slice(&std::fs::read(installed.dir.join(CHECKSUMS_FILE)).unwrap()).unwrap();
    assert_eq!(sums.source, local.display().to_string());
    assert!(sums.files["vision.onnx"].verified[0].contains("pinned"));
    assert!(sums.files["text.onnx"].verified.is_empty(), "nothing known to check it against");
    assert_eq!(sums.files["text.onnx"].sha256, sha256(&contents()["text.onnx"]));
    assert!(std::path::Path::new(&sums.files["text.onnx"].from).starts_with(&local));
    let listing = list(&models_dir, &registry, Path::new("/nonexistent")).unwrap();
    assert_eq!(listing.installed.len(), 1);
    assert!(!listing.installed[0].active);

    // A missing file names where to get it.
    std::fs::remove_dir_all(&installed.dir).unwrap();
    std::fs::remove_file(local.join("merges.txt")).unwrap();
    let err = fetch(&registry, &models_dir, &req, &HttpOptions::default()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::MissingLocal { .. }), "{msg}");
    assert!(msg.contains(&local.join("merges.txt").display().to_string()), "{msg}");
    assert!(msg.contains(&model.files[3].url("http://127.0.0.1:1")), "{msg}");
    assert!(entries(&models_dir).is_empty());

    // A pinned file with other content is refused.
    std::fs::write(local.join("merges.txt"), &contents()["merges.txt"]).unwrap();
    std::fs::write(local.join("vision.onnx"), b"not the graph").unwrap();
    let err = fetch(&registry, &models_dir, &req, &HttpOptions::default()).await.unwrap_err();
    assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("vision.onnx"), "{err}");
    assert!(entries(&models_dir).is_empty());
}

#[tokio::test]
async fn bad_requests_fail_before_touching_anything() {
    let registry = registry_with(tiny_model());
    let tmp = tempfile::tempdir().unwrap();
    let models_dir = tmp.path().join("models");
    let err = fetch(
        &registry,
        &models_dir,
        &FetchRequest { name: "nope".into(), ..request("http://h") },
        &HttpOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("clip-vit-b-32") && err.to_string().contains("tiny-clip"), "{err}");
    for hub in ["ftp://mirror", "not a url", "https://hub?x=1"] {
        let err = fetch(&registry, &models_dir, &request(hub), &HttpOptions::default()).await.unwrap_err();
        assert!(matches!(err, FetchError::BadHub { .. }), "{hub}: {err}");
    }
    assert!(!models_dir.exists());
    // The served preprocessor config must agree with the manifest.
    let mut model = tiny_model();
    model.manifest.image_size = 224;
    let (err, models_dir, _tmp) = fetch_error(model, &[]).await;
    assert!(matches!(err, FetchError::Preprocessor { .. }), "{err}");
    assert!(entries(&models_dir).is_empty());
}
