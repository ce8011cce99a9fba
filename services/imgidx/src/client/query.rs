//! `imgidx search TEXT` and `imgidx similar IMAGE`: `POST /api/v1/query`, by text,
//! by an uploaded image (multipart) or by a path the server reads.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::args::{QueryOptions, SearchArgs, SimilarArgs};
use super::http::Api;
use super::output::{parse, print_json, table};
use super::types::QueryResponse;

const QUERY: [&str; 3] = ["api", "v1", "query"];
/// Largest image uploaded: the workers' own default limit on file size.
const MAX_UPLOAD_BYTES: u64 = 256 * 1024 * 1024;

pub async fn search(args: SearchArgs) -> Result<ExitCode> {
    if args.text.trim().is_empty() {
        bail!("the search text is empty");
    }
    let api = Api::new(&args.server)?;
    let mut body = Map::new();
    if args.minus.is_empty() {
        body.insert("text".into(), json!(args.text));
    } else {
        body.insert("queries".into(), combined(&args.text, &args.minus));
    }
    add_options(&mut body, &args.query);
    let answer = api.post_json(&QUERY, &Value::Object(body)).await?;
    show(&answer, args.server.json)
}

pub async fn similar(args: SimilarArgs) -> Result<ExitCode> {
    let api = Api::new(&args.server)?;
    let answer = if args.server_path {
        // The server reads the file itself: its path must be absolute there.
        let abs = std::path::absolute(&args.image).map_err(|e| anyhow!("{}: {e}", args.image.display()))?;
        let path = abs.to_str().ok_or_else(|| anyhow!("{}: path is not valid UTF-8", args.image.display()))?;
        let mut body = Map::new();
        body.insert("image_path".into(), json!(path));
        add_options(&mut body, &args.query);
        api.post_json(&QUERY, &Value::Object(body)).await?
    } else {
        let form = upload_form(&args.image, &args.query).await?;
        let (url, req) = api.request(Method::POST, &QUERY);
        api.send(&url, req.multipart(form)).await?
    };
    show(&answer, args.server.json)
}

/// The optional fields, left out when unset so the server's defaults apply.
/// Weight of each `--minus` text against the query's 1.
const MINUS_WEIGHT: f64 = -0.5;

/// A combined query: `text`, minus half of each of `minus`.
fn combined(text: &str, minus: &[String]) -> Value {
    let parts = std::iter::once(json!({ "text": text, "weight": 1.0 }))
        .chain(minus.iter().map(|m| json!({ "text": m, "weight": MINUS_WEIGHT })));
    Value::Array(parts.collect())
}

/// The options as query fields; `formats` and `tags` once per value.
fn option_fields(o: &QueryOptions) -> Vec<(String, Value)> {
    let mut fields = Vec::new();
    if let Some(k) = o.top_k {
        fields.push(("top_k".to_owned(), json!(k)));
    }
    if let Some(n) = o.offset {
        fields.push(("offset".to_owned(), json!(n)));
    }
    if let Some(p) = &o.path_prefix {
        fields.push(("path_prefix".to_owned(), json!(p)));
    }
    if let Some(s) = o.min_score {
        fields.push(("min_score".to_owned(), json!(s)));
    }
    if let Some(c) = &o.collection {
        fields.push(("collection".to_owned(), json!(c)));
    }
    if o.relevant {
        fields.push(("relevance".to_owned(), json!("auto")));
    }
    for (field, value) in &o.filters {
        // Checked to be pixels when it was parsed.
        let value = match value.parse::<u32>() {
            Ok(n) if field.starts_with("min_") => json!(n),
            _ => json!(value),
        };
        fields.push((field.clone(), value));
    }
    fields
}

fn add_options(body: &mut Map<String, Value>, o: &QueryOptions) {
    for (field, value) in option_fields(o) {
        if field == "formats" || field == "tags" {
            if let Value::Array(list) = body.entry(field).or_insert_with(|| json!([])) {
                list.push(value);
            }
        } else {
            body.insert(field, value);
        }
    }
}

async fn upload_form(image: &Path, o: &QueryOptions) -> Result<Form> {
    let shown = image.display();
    let meta = tokio::fs::metadata(image).await.map_err(|e| anyhow!("{shown}: {}", reason(&e)))?;
    if !meta.is_file() {
        bail!("{shown}: not a file");
    }
    if meta.len() > MAX_UPLOAD_BYTES {
        bail!("{shown}: {} bytes is more than the {MAX_UPLOAD_BYTES} bytes an upload may have", meta.len());
    }
    let bytes = tokio::fs::read(image).await.map_err(|e| anyhow!("{shown}: {}", reason(&e)))?;
    let name = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
    let part = Part::bytes(bytes).file_name(name.clone()).mime_str(mime_of(&name))?;
    let mut form = Form::new().part("image", part);
    for (field, value) in option_fields(o) {
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        form = form.text(field, text);
    }
    Ok(form)
}

fn mime_of(name: &str) -> &'static str {
    let ext = Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "tif" | "tiff" => "image/tiff",
        "bmp" => "image/bmp",
        _ => "application/octet-stream",
    }
}

fn reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn show(answer: &Value, as_json: bool) -> Result<ExitCode> {
    if as_json {
        print_json(answer);
    } else {
        print!("{}", results_text(&parse(answer, "query answer")?));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn results_text(r: &QueryResponse) -> String {
    let rows: Vec<Vec<String>> =
        r.results.iter().map(|h| vec![h.rank.to_string(), format!("{:.4}", h.score), h.image_path.clone()]).collect();
    let mut out = if rows.is_empty() { "No matching images.\n".to_string() } else { table(&["RANK", "SCORE", "PATH"], &rows) };
    let s = &r.index_stats;
    let collection = s.collection.as_deref().map(|c| format!(" in collection {c}")).unwrap_or_default();
    out.push_str(&format!(
        "\n{} results for {} query {:?} in {:.3} s ({} images indexed{collection}, model {})\n",
        r.results.len(),
        r.query_type,
        r.query,
        r.query_time_seconds,
        s.total_images,
        s.model
    ));
    if let Some(cutoff) = r.cutoff {
        out.push_str(&format!("Relevant: scoring at least {cutoff:.4}, this query's own cutoff\n"));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::types::QueryIndexStats;
    use super::*;

    #[test]
    fn unset_options_are_left_out() {
        let mut body = Map::new();
        add_options(&mut body, &QueryOptions::default());
        assert!(body.is_empty());
        let o = QueryOptions {
            top_k: Some(5),
            path_prefix: Some("/a".into()),
            min_score: Some(0.25),
            collection: Some("cats".into()),
            offset: Some(10),
            relevant: true,
            filters: vec![
                ("formats".into(), "png".into()),
                ("formats".into(), "jpeg".into()),
                ("min_width".into(), "800".into()),
                ("mtime_from".into(), "2024-01-01T00:00:00Z".into()),
            ],
        };
        add_options(&mut body, &o);
        assert_eq!(
            Value::Object(body),
            json!({"top_k": 5, "path_prefix": "/a", "min_score": 0.25, "collection": "cats", "relevance": "auto", "offset": 10,
                   "formats": ["png", "jpeg"], "min_width": 800, "mtime_from": "2024-01-01T00:00:00Z"})
        );
    }

    #[test]
    fn results_table_has_rank_score_to_4_places_and_path() {
        let r: QueryResponse = serde_json::from_value(json!({
            "query": "a cat", "query_type": "text",
            "results": [{"rank": 1, "score": 0.834567, "image_path": "/abs/a.jpg", "id": "u", "payload": {}}],
            "query_time_seconds": 0.0123, "index_stats": {"total_images": 42, "model": "tiny-clip"}
        }))
        .unwrap();
        let text = results_text(&r);
        assert!(text.starts_with("RANK  SCORE   PATH\n1     0.8346  /abs/a.jpg\n"), "{text}");
        assert!(text.contains("1 results for text query \"a cat\" in 0.012 s (42 images indexed, model tiny-clip)"), "{text}");
        let r = QueryResponse {
            index_stats: QueryIndexStats { collection: Some("cats".into()), ..r.index_stats },
            ..r
        };
        let text = results_text(&r);
        assert!(text.contains("(42 images indexed in collection cats, model tiny-clip)"), "{text}");
    }

    #[test]
    fn upload_mime_from_extension() {
        assert_eq!(mime_of("x.JPG"), "image/jpeg");
        assert_eq!(mime_of("x.tiff"), "image/tiff");
        assert_eq!(mime_of("x"), "application/octet-stream");
    }
}
