//! `imgidx retry JOB`: queue the failed images of a finished job again, as a new job
//! (the server leaves out images indexed since or queued by another job).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use super::args::RetryArgs;
use super::http::Api;
use super::index::{finish, Submitted};
use super::output::parse;
use super::types::AddImagesResponse;
use super::wait::wait_jobs;

pub async fn retry(args: RetryArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let api = Api::new(&args.server)?;
    let raw = api.post_json(&["api", "v1", "index", "status", &args.job_id, "retry"], &json!({})).await?;
    let answer: AddImagesResponse = parse(&raw, "retry answer")?;
    let submitted = Submitted::from_responses(std::slice::from_ref(&answer));
    if !args.server.json {
        print!("{}", retry_text(&args.job_id, &answer));
    }
    let finals = if args.wait && answer.has_job() {
        Some(wait_jobs(&api, std::slice::from_ref(&answer.job_id), submitted.queued).await?)
    } else {
        None
    };
    finish(&api, &submitted, vec![raw], finals, started, args.server.json).await
}

/// The new job's id on a line of its own, first, so scripts can take it.
fn retry_text(old: &str, answer: &AddImagesResponse) -> String {
    if !answer.has_job() {
        return format!("Nothing to retry: {}\n", answer.message);
    }
    let mut out = format!(
        "{}\nQueued {} of the {} failed images of job {old} again",
        answer.job_id, answer.new_images_count, answer.images_count
    );
    let indexed_since = answer.already_indexed_count.saturating_sub(answer.already_queued_count);
    let mut skipped = Vec::new();
    if indexed_since > 0 {
        skipped.push(format!("{indexed_since} indexed since"));
    }
    if answer.already_queued_count > 0 {
        skipped.push(format!("{} already queued by another job", answer.already_queued_count));
    }
    if !skipped.is_empty() {
        out.push_str(&format!(" ({})", skipped.join(", ")));
    }
    out.push_str(".\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_new_job_id_comes_first() {
        let a: AddImagesResponse = serde_json::from_value(json!({"job_id": "idx_b", "status": "queued",
            "images_count": 4, "new_images_count": 2, "already_indexed_count": 2, "already_queued_count": 1}))
        .unwrap();
        assert_eq!(
            retry_text("idx_a", &a),
            "idx_b\nQueued 2 of the 4 failed images of job idx_a again (1 indexed since, 1 already queued by another job).\n"
        );
        let none: AddImagesResponse =
            serde_json::from_value(json!({"job_id": "none", "message": "No failed images in job idx_a: nothing to retry"}))
                .unwrap();
        assert_eq!(retry_text("idx_a", &none), "Nothing to retry: No failed images in job idx_a: nothing to retry\n");
    }
}
