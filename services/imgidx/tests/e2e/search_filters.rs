//! Paging, payload filters and combined queries of `POST /api/v1/query` (and `imgidx
//! search --offset --filter --minus`) against a real `imgidx serve`: pages are disjoint
//! slices of one ranking, every filter keeps exactly the images that pass it, and a
//! combined query ranks as its weighted sum computed here by hand.

use serde_json::{json, Value};

use crate::serve::wait_done;
use crate::server::{copy_images, imgidx, Serve};

async fn query(s: &Serve, body: Value) -> Vec<Value> {
    let (code, r) = s.post_json("/api/v1/query", &body).await;
    assert_eq!(code, 200, "{body}: {r}");
    r["results"].as_array().unwrap().clone()
}

fn paths(hits: &[Value]) -> Vec<String> {
    hits.iter().map(|h| h["image_path"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_slices_of_one_ranking_and_filters_keep_what_passes() {
    let s = Serve::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let images = copy_images(dir.path(), 1);
    let n = images.len();
    assert!(n >= 9, "{n} sample images");
    let body = json!({ "image_paths": images.iter().map(|p| p.display().to_string()).collect::<Vec<_>>() });
    let (code, job) = s.post_json("/api/v1/index/add-images", &body).await;
    assert_eq!(code, 202, "{job}");
    wait_done(&s, job["job_id"].as_str().unwrap(), std::time::Duration::from_secs(120)).await;

    let all = query(&s, json!({ "text": "a photo", "top_k": 100 })).await;
    assert_eq!(all.len(), n);
    let mut paged = Vec::new();
    for page in 0..3 {
        let hits = query(&s, json!({ "text": "a photo", "top_k": 3, "offset": page * 3 })).await;
        let ranks: Vec<u64> = hits.iter().map(|h| h["rank"].as_u64().unwrap()).collect();
        assert_eq!(ranks, [page * 3 + 1, page * 3 + 2, page * 3 + 3], "ranks count on across pages");
        paged.extend(hits);
    }
    assert_eq!(paths(&paged), paths(&all[..9]), "pages of 3 are the ranking's first 9, once each");

    let passes = |hits: &[Value], f: &dyn Fn(&Value) -> bool| hits.iter().filter(|h| f(&h["payload"])).count();
    let png = query(&s, json!({ "text": "a photo", "top_k": 100, "formats": ["png"] })).await;
    assert_eq!(png.len(), passes(&all, &|p| p["format"] == "png"), "{png:?}");
    assert!(png.iter().all(|h| h["payload"]["format"] == "png"));
    let jpg = query(&s, json!({ "text": "a photo", "top_k": 2, "formats": ["JPG"] })).await;
    assert!(!jpg.is_empty() && jpg.iter().all(|h| h["payload"]["format"] == "jpeg"), "jpg is jpeg: {jpg:?}");
    let wide = query(&s, json!({ "text": "a photo", "top_k": 100, "min_width": 500, "min_height": 400 })).await;
    let big = |p: &Value| p["width"].as_u64().unwrap() >= 500 && p["height"].as_u64().unwrap() >= 400;
    assert_eq!(wide.len(), passes(&all, &big));
    assert!(wide.len() < n && wide.iter().all(|h| big(&h["payload"])), "{wide:?}");
    let later = query(&s, json!({ "text": "a photo", "indexed_from": "2999-01-01T00:00:00Z" })).await;
    assert!(later.is_empty(), "nothing is indexed in the future");
    let now = query(&s, json!({ "text": "a photo", "top_k": 100, "indexed_from": "2020-01-01T00:00:00Z", "mtime_to": "2999-01-01T00:00:00Z" })).await;
    assert_eq!(now.len(), n);
    let old = query(&s, json!({ "text": "a photo", "mtime_to": "2000-01-01T00:00:00Z" })).await;
    assert!(old.is_empty(), "the copies were made today");

    for (bad, field) in [
        (json!({ "text": "a photo", "offset": 10_001 }), "offset"),
        (json!({ "text": "a photo", "mtime_from": "yesterday" }), "mtime_from"),
        (json!({ "text": "a photo", "indexed_from": "2024-02-01T00:00:00Z", "indexed_to": "2024-01-01T00:00:00Z" }), "indexed_from"),
    ] {
        let (code, r) = s.post_json("/api/v1/query", &bad).await;
        assert_eq!((code, r["error"].as_str()), (422, Some("validation_error")), "{bad}: {r}");
        assert!(r["message"].as_str().unwrap().contains(field), "{r}");
    }

    // The CLI sends the same.
    let run = imgidx(&["search", "a photo", "-k", "2", "--offset", "2", "--filter", "format=png", "--filter", "min_width=100", "--json", "--server", &s.url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let out = run.json();
    let hits = out["results"].as_array().unwrap();
    assert_eq!(paths(hits), paths(&png[2..4]), "{out}");
    let run = imgidx(&["search", "a photo", "--filter", "colour=red", "--server", &s.url]).await;
    assert!(run.code != 0 && run.stderr.contains("unknown filter \"colour\""), "{run:#?}");
    s.stop().await;
}

/// Vectors computed here with the same fixture model, as the server should compute them.
struct Reference {
    text: imgidx_shared::embed::TextEncoder,
    tokenizer: imgidx_shared::embed::ClipTokenizer,
    vision: imgidx_shared::embed::VisionEncoder,
    preprocessor: imgidx_shared::embed::Preprocessor,
    context: usize,
}

impl Reference {
    fn load() -> Self {
        let dir = crate::server::tiny_model_dir();
        let settings = imgidx_shared::config::ModelSettings::default();
        let m = imgidx_shared::embed::ModelManifest::load(&dir).unwrap();
        Reference {
            text: imgidx_shared::embed::TextEncoder::load(&dir, &settings).unwrap(),
            tokenizer: imgidx_shared::embed::ClipTokenizer::for_model(&dir, &m).unwrap(),
            vision: imgidx_shared::embed::VisionEncoder::load(&dir, &settings).unwrap(),
            preprocessor: imgidx_shared::embed::Preprocessor::new(m.image_size, m.mean, m.std, 100_000_000, 1 << 30),
            context: m.context_length,
        }
    }

    fn text(&self, text: &str) -> Vec<f32> {
        self.text.embed(&[self.tokenizer.tokenize(text, self.context)]).unwrap().remove(0)
    }

    fn image(&self, path: &std::path::Path) -> Vec<f32> {
        let image = self.preprocessor.load_path(path).unwrap();
        self.vision.embed(&image.tensor, 1).unwrap().remove(0)
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_combined_query_ranks_by_the_weighted_sum_of_its_parts() {
    let s = Serve::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let images = copy_images(dir.path(), 1);
    let body = json!({ "image_paths": images.iter().map(|p| p.display().to_string()).collect::<Vec<_>>() });
    let (code, job) = s.post_json("/api/v1/index/add-images", &body).await;
    assert_eq!(code, 202, "{job}");
    wait_done(&s, job["job_id"].as_str().unwrap(), std::time::Duration::from_secs(120)).await;

    // By hand: "a dog" + 0.5 × the first image - 0.5 × "people", made unit length.
    let r = tokio::task::spawn_blocking(Reference::load).await.unwrap();
    let (dog, people, first) = (r.text("a dog"), r.text("people"), r.image(&images[0]));
    let sum: Vec<f32> = (0..dog.len()).map(|i| dog[i] + 0.5 * first[i] - 0.5 * people[i]).collect();
    let norm = dot(&sum, &sum).sqrt();
    let query: Vec<f32> = sum.iter().map(|x| x / norm).collect();
    let mut expected: Vec<(String, f32)> =
        images.iter().map(|p| (p.display().to_string(), dot(&query, &r.image(p)))).collect();
    expected.sort_by(|a, b| b.1.total_cmp(&a.1));

    let parts = json!([
        { "text": "a dog" },
        { "image_path": images[0], "weight": 0.5 },
        { "text": "people", "weight": -0.5 },
    ]);
    let (code, got) = s.post_json("/api/v1/query", &json!({ "queries": parts, "top_k": 100 })).await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["query_type"], "combined");
    let hits = got["results"].as_array().unwrap();
    assert_eq!(hits.len(), expected.len());
    for (hit, (path, score)) in hits.iter().zip(&expected) {
        let got_score = hit["score"].as_f64().unwrap() as f32;
        assert!((got_score - score).abs() < 1e-3, "{path}: {got_score} vs {score}");
    }
    assert_eq!(paths(hits)[..3], expected.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>()[..3], "the same best three");

    for bad in [
        json!({ "queries": [] }),
        json!({ "queries": [{ "text": "a dog", "weight": -1 }] }),
        json!({ "queries": [{ "text": "a dog" }], "text": "a cat" }),
        json!({ "queries": [{ "text": "a dog", "image_path": "/x.jpg" }] }),
        json!({ "queries": [{ "text": "a dog" }, { "text": "a dog", "weight": -1 }] }),
    ] {
        let (code, r) = s.post_json("/api/v1/query", &bad).await;
        assert_eq!((code, r["error"].as_str()), (422, Some("validation_error")), "{bad}: {r}");
    }

    // The CLI's --minus: the text, minus half of each.
    let run = imgidx(&["search", "a dog", "--minus", "people", "-k", "3", "--json", "--server", &s.url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let out = run.json();
    assert_eq!(out["query"], "\"a dog\" (1) - \"people\" (0.5)", "{out}");
    s.stop().await;
}

/// A fixture built for `relevance: "auto"`: chelsea.png and three resized copies of it
/// (the planted matches), among the other samples and each of their four quarters.
fn planted_and_background(dir: &std::path::Path) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
    let images = copy_images(dir, 1);
    let chelsea = images.iter().find(|p| p.ends_with("chelsea.png")).expect("chelsea.png among the samples").clone();
    let mut background = Vec::new();
    for p in images.iter().filter(|p| **p != chelsea) {
        let img = image::open(p).unwrap();
        let (w, h) = (img.width() / 2, img.height() / 2);
        let stem = p.file_stem().unwrap().to_str().unwrap();
        for (i, (x, y)) in [(0, 0), (w, 0), (0, h), (w, h)].into_iter().enumerate() {
            let quarter = dir.join(format!("{stem}_q{i}.png"));
            img.crop_imm(x, y, w, h).to_rgb8().save(&quarter).unwrap();
            background.push(quarter);
        }
        background.push(p.clone());
    }
    let cat = image::open(&chelsea).unwrap();
    let mut planted = vec![chelsea];
    for (i, (num, den, ext)) in [(1, 2, "jpg"), (3, 4, "png"), (1, 3, "jpg")].into_iter().enumerate() {
        let copy = dir.join(format!("cat_copy{i}.{ext}"));
        let resized = cat.resize(cat.width() * num / den, cat.height() * num / den, image::imageops::FilterType::Triangle);
        resized.to_rgb8().save(&copy).unwrap();
        planted.push(copy);
    }
    (planted, background)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relevance_auto_keeps_the_planted_copies_and_a_batch_answers_every_search() {
    let s = Serve::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let (planted, background) = planted_and_background(dir.path());
    let all: Vec<String> = planted.iter().chain(&background).map(|p| p.display().to_string()).collect();
    assert!(background.len() >= 40, "{} background images", background.len());
    let (code, job) = s.post_json("/api/v1/index/add-images", &json!({ "image_paths": all })).await;
    assert_eq!(code, 202, "{job}");
    wait_done(&s, job["job_id"].as_str().unwrap(), std::time::Duration::from_secs(180)).await;

    let cat = planted[0].display().to_string();
    let by_cat = json!({ "image_path": cat, "top_k": 100, "relevance": "auto" });
    let (code, auto) = s.post_json("/api/v1/query", &by_cat).await;
    assert_eq!(code, 200, "{auto}");
    let mut kept = paths(auto["results"].as_array().unwrap());
    kept.sort();
    let mut want: Vec<String> = planted.iter().map(|p| p.display().to_string()).collect();
    want.sort();
    assert_eq!(kept, want, "exactly the planted copies: {auto}");
    let cutoff = auto["cutoff"].as_f64().unwrap();
    assert_eq!(auto["background"]["sample_size"], all.len(), "a collection this small is sampled whole: {auto}");
    assert!(auto["background"]["median"].as_f64().unwrap() < cutoff, "{auto}");
    let (_, every) = s.post_json("/api/v1/query", &json!({ "image_path": cat, "top_k": 100 })).await;
    assert_eq!(every["results"].as_array().unwrap().len(), all.len(), "without relevance, every image");
    assert!(every.get("cutoff").is_none(), "{every}");
    // The cutoff adds to a stricter min_score, never loosens it.
    let (_, strict) = s.post_json("/api/v1/query", &json!({ "image_path": cat, "relevance": "auto", "min_score": 0.99999 })).await;
    assert!(strict["results"].as_array().unwrap().len() < planted.len(), "{strict}");
    let (code, bad) = s.post_json("/api/v1/query", &json!({ "text": "a cat", "relevance": "some" })).await;
    assert_eq!((code, bad["error"].as_str()), (422, Some("validation_error")), "{bad}");

    // A batch answers each search as /query does, in order.
    let singles = [
        json!({ "text": "a photo", "top_k": 3 }),
        by_cat.clone(),
        json!({ "text": "a photo", "top_k": 3, "offset": 3 }),
        json!({ "queries": [{ "text": "a photo" }, { "text": "a cat", "weight": -0.5 }], "top_k": 5 }),
        json!({ "text": "a photo", "top_k": 3 }),
    ];
    let (code, batch) = s.post_json("/api/v1/query/batch", &json!({ "searches": singles })).await;
    assert_eq!(code, 200, "{batch}");
    let responses = batch["responses"].as_array().unwrap();
    assert_eq!(responses.len(), singles.len());
    for (single, answered) in singles.iter().zip(responses) {
        let (_, alone) = s.post_json("/api/v1/query", single).await;
        let (a, b) = (answered["results"].as_array().unwrap(), alone["results"].as_array().unwrap());
        assert_eq!(paths(a), paths(b), "{single}");
        for (x, y) in a.iter().zip(b) {
            assert!((x["score"].as_f64().unwrap() - y["score"].as_f64().unwrap()).abs() < 1e-5, "{single}");
        }
    }
    assert_eq!(responses[1]["cutoff"], auto["cutoff"]);
    for (bad, code, error, needle) in [
        (json!({ "searches": [] }), 422, "validation_error", "searches"),
        (json!({ "searches": vec![json!({ "text": "a" }); 65] }), 422, "validation_error", "1 to 64"),
        (json!({ "searches": [{ "text": "a" }, { "text": "b", "copy_results": true }] }), 422, "validation_error", "searches[1]: copy_results"),
        (json!({ "searches": [{ "text": "a", "top_k": 0 }] }), 422, "validation_error", "searches[0]: top_k"),
        (json!({ "searches": [{ "text": "a" }, { "image_path": "/nowhere/x.jpg" }] }), 404, "image_not_found", "searches[1]: "),
        (json!({ "searches": [{ "text": "a", "collection": "nope" }] }), 404, "collection_not_found", "searches[0]: "),
    ] {
        let (got, r) = s.post_json("/api/v1/query/batch", &bad).await;
        assert_eq!((got, r["error"].as_str()), (code, Some(error)), "{r}");
        assert!(r["message"].as_str().unwrap().contains(needle), "{needle}: {r}");
    }

    // The CLI asks for the same with --relevant, and shows the cutoff.
    let run = imgidx(&["similar", &cat, "--server-path", "-k", "100", "--relevant", "--server", &s.url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("this query's own cutoff") && run.stdout.contains("4 results"), "{}", run.stdout);
    s.stop().await;
}
