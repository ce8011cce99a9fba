//! `imgidx batch --url U --file F …`: one seed 004 batch (`POST /api/v1/batch`): URLs the
//! server's workers fetch, and files from this machine sent as base64. With `--wait`, the
//! batch is followed to its end and each image's outcome printed in request order.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};

use super::args::BatchArgs;
use super::http::Api;
use super::output::{or_dash, print_json, table};
use super::wait::wait_jobs;
use super::{EXIT_JOB_CANCELLED, EXIT_JOB_FAILED};

pub async fn batch(args: BatchArgs) -> Result<ExitCode> {
    if args.urls.is_empty() && args.files.is_empty() {
        bail!("nothing to send: give --url or --file (or both)");
    }
    let mut images: Vec<Value> = args.urls.iter().map(|u| json!({ "url": u })).collect();
    for file in &args.files {
        let bytes = tokio::fs::read(file).await.with_context(|| format!("reading {}", file.display()))?;
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        images.push(json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes), "name": name }));
    }
    let mut body = json!({ "images": images, "priority": args.submit.priority.as_str() });
    if let Some(c) = &args.submit.collection {
        body["collection"] = json!(c);
    }
    let api = Api::new(&args.server)?;
    let created = api.post_json(&["api", "v1", "batch"], &body).await?;
    let job_id = created["job_id"].as_str().context("the server's answer names no job_id")?.to_string();
    if !args.submit.wait {
        if args.server.json {
            print_json(&created);
        } else {
            println!("Batch job {job_id} created with {} images", images.len());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.server.json {
        println!("Batch job {job_id} created with {} images", images.len());
    }
    wait_jobs(&api, std::slice::from_ref(&job_id), images.len() as u64).await?;
    let done = api.get(&["api", "v1", "batch", &job_id]).await?;
    if args.server.json {
        print_json(&done);
    } else {
        print!("{}", summary(&done));
    }
    Ok(match done["status"].as_str() {
        Some("failed") => ExitCode::from(EXIT_JOB_FAILED),
        Some("cancelled") => ExitCode::from(EXIT_JOB_CANCELLED),
        _ => ExitCode::SUCCESS,
    })
}

/// Each image in request order, then the totals.
fn summary(done: &Value) -> String {
    let rows: Vec<Vec<String>> = done["images"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|i| {
            vec![
                i["index"].to_string(),
                or_dash(i["original_filename"].as_str()),
                or_dash(i["status"].as_str()),
                or_dash(i["error"].as_str().or(i["processed_path"].as_str())),
            ]
        })
        .collect();
    let mut out = table(&["#", "NAME", "STATUS", "ERROR OR OBJECT"], &rows);
    out.push_str(&format!(
        "Batch {}: {} of {} images completed, {} failed\n",
        or_dash(done["status"].as_str()),
        done["completed"],
        done["total_images"],
        done["failed"]
    ));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_each_image_and_why_it_failed() {
        let done = json!({ "status": "completed", "completed": 1, "failed": 1, "total_images": 2, "images": [
            { "index": 0, "original_filename": "a.png", "status": "completed", "processed_path": "ab/abc" },
            { "index": 1, "original_filename": "b.png", "status": "failed", "error": "download_failed: status 404" },
        ]});
        let text = summary(&done);
        assert!(text.contains("a.png  completed  ab/abc"), "{text}");
        assert!(text.contains("b.png  failed     download_failed: status 404"), "{text}");
        assert!(text.ends_with("Batch completed: 1 of 2 images completed, 1 failed\n"), "{text}");
    }
}
