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
