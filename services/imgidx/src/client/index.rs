//! `imgidx index PATH...`: expand, submit in chunks, and optionally wait.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, Result};
use serde_json::{json, Value};

use super::args::IndexArgs;
use super::failures::FailureSummary;
use super::http::Api;
use super::output::{fields, or_dash, parse, print_json, table};
use super::paths::expand;
use super::types::AddImagesResponse;
use super::wait::{wait_jobs, Final};
use super::{EXIT_JOB_CANCELLED, EXIT_JOB_FAILED};

/// Jobs listed one per row in the table; a large submission makes many.
const MAX_JOB_ROWS: usize = 20;

/// What the submission requests achieved, summed over them. `images` is the sum of
/// the other three: each distinct path was queued, found indexed and unchanged, or
/// found queued by another active job.
#[derive(Debug, Default, PartialEq)]
pub struct Submitted {
    pub requests: u64,
    pub images: u64,
    pub queued: u64,
    pub already_indexed: u64,
    pub already_queued: u64,
}

impl Submitted {
    pub fn from_responses(responses: &[AddImagesResponse]) -> Submitted {
        let mut s = Submitted { requests: responses.len() as u64, ..Submitted::default() };
        for r in responses {
            s.images += r.images_count;
            s.queued += r.new_images_count;
            s.already_queued += r.already_queued_count;
            s.already_indexed += r.already_indexed_count.saturating_sub(r.already_queued_count);
        }
        s
    }

    fn json(&self) -> Value {
        json!({
            "requests": self.requests,
            "images": self.images,
            "queued": self.queued,
            "already_indexed": self.already_indexed,
            "already_queued": self.already_queued,
        })
    }
}

pub async fn index(args: IndexArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let expansion = expand(&args.paths, args.recursive)?;
    for w in &expansion.warnings {
        eprintln!("warning: {w}");
    }
    let api = Api::new(&args.server)?;
    if expansion.paths.is_empty() {
        let hint = if args.recursive { "" } else { " (--recursive descends into subdirectories)" };
        eprintln!("nothing to index: no image files found{hint}");
    }

    let chunk = usize::try_from(args.chunk).unwrap_or(usize::MAX);
    let mut raw = Vec::new();
    let mut typed: Vec<AddImagesResponse> = Vec::new();
    for paths in expansion.paths.chunks(chunk) {
        let mut body = json!({ "image_paths": paths, "priority": args.submit.priority.as_str() });
        // Left out when unset, so a server from before collections takes the request.
        if let Some(c) = &args.submit.collection {
            body["collection"] = json!(c);
        }
        match api.post_json(&["api", "v1", "index", "add-images"], &body).await {
            Ok(answer) => {
                typed.push(parse(&answer, "add-images answer")?);
                raw.push(answer);
            }
            Err(e) if typed.is_empty() => return Err(e),
            Err(e) => return Err(partial_failure(e, &typed, expansion.paths.len())),
        }
    }
    conclude(&api, &typed, raw, args.submit.wait, started, args.server.json).await
}

/// After the requests (`typed`, and as answered: `raw`): what they queued, then with
/// `wait` the wait for their jobs, and the summary.
pub(super) async fn conclude(
    api: &Api,
    typed: &[AddImagesResponse],
    raw: Vec<Value>,
    wait: bool,
    started: Instant,
    json: bool,
) -> Result<ExitCode> {
    let submitted = Submitted::from_responses(typed);
    if !json {
        // Before waiting: the job ids are worth having even if the wait is interrupted.
        print!("{}", submitted_text(&submitted, typed));
    }
    let finals = if wait {
        let jobs: Vec<String> = typed.iter().filter(|r| r.has_job()).map(|r| r.job_id.clone()).collect();
        Some(wait_jobs(api, &jobs, submitted.queued).await?)
    } else {
        None
    };
    finish(api, &submitted, raw, finals, started, json).await
}

/// Prints what was submitted (JSON) and, after a wait, the result with why images
/// failed; the exit status says whether a job failed.
pub(super) async fn finish(
    api: &Api,
    submitted: &Submitted,
    raw: Vec<Value>,
    finals: Option<Vec<Final>>,
    started: Instant,
    json: bool,
) -> Result<ExitCode> {
    let failures = match &finals {
        Some(finals) => FailureSummary::of(api, finals).await,
        None => FailureSummary::default(),
    };
    let elapsed = started.elapsed().as_secs_f64();
    let outcome = finals.as_deref().map_or("completed", |f| totals(f).status);

    if json {
        let mut out = json!({ "submitted": submitted.json(), "jobs": raw });
        if let Some(finals) = &finals {
            out["result"] = result_json(submitted, finals, &failures, elapsed);
        }
        print_json(&out);
    } else if let Some(finals) = &finals {
        print!("{}", result_text(submitted, finals, &failures, elapsed));
    }
    Ok(match outcome {
        "failed" => ExitCode::from(EXIT_JOB_FAILED),
        "cancelled" => ExitCode::from(EXIT_JOB_CANCELLED),
        _ => ExitCode::SUCCESS,
    })
}

/// Jobs already created stay on the server: say which, so nothing is lost track of.
fn partial_failure(e: anyhow::Error, done: &[AddImagesResponse], total: usize) -> anyhow::Error {
    let sent: u64 = done.iter().map(|r| r.images_count).sum();
    let jobs: Vec<&str> = done.iter().filter(|r| r.has_job()).map(|r| r.job_id.as_str()).collect();
    anyhow!("{e}; {sent} of {total} paths had been submitted before, as jobs: {}", or_dash(Some(&jobs.join(" "))))
}

struct Totals {
    indexed: u64,
    failed: u64,
    status: &'static str,
}

fn totals(finals: &[Final]) -> Totals {
    let indexed = finals.iter().map(|f| f.status.progress.processed_images).sum();
    let failed = finals.iter().map(|f| f.status.progress.failed_images).sum();
    let ended = |s: &str| finals.iter().any(|f| f.status.status == s);
    let status = if ended("failed") {
        "failed"
    } else if ended("cancelled") {
        "cancelled"
    } else {
        "completed"
    };
    Totals { indexed, failed, status }
}

fn result_json(s: &Submitted, finals: &[Final], failures: &FailureSummary, elapsed: f64) -> Value {
    let t = totals(finals);
    json!({
        "failures": failures.json(),
        "status": t.status,
        "indexed": t.indexed,
        "already_indexed": s.already_indexed,
        "already_queued": s.already_queued,
        "failed": t.failed,
        "elapsed_seconds": (elapsed * 1000.0).round() / 1000.0,
        "jobs": finals.iter().map(|f| f.body.clone()).collect::<Vec<_>>(),
    })
}

fn submitted_text(s: &Submitted, responses: &[AddImagesResponse]) -> String {
    let mut out = format!(
        "Submitted {} images in {} request{}: {} queued, {} already indexed, {} already queued by other jobs.\n",
        s.images,
        s.requests,
        if s.requests == 1 { "" } else { "s" },
        s.queued,
        s.already_indexed,
        s.already_queued
    );
    let jobs: Vec<&AddImagesResponse> = responses.iter().filter(|r| r.has_job()).collect();
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .take(MAX_JOB_ROWS)
        .map(|r| vec![r.job_id.clone(), r.status.clone(), r.images_count.to_string(), r.new_images_count.to_string()])
        .collect();
    if !rows.is_empty() {
        out.push_str(&table(&["JOB", "STATUS", "IMAGES", "QUEUED"], &rows));
    }
    if jobs.len() > MAX_JOB_ROWS {
        out.push_str(&format!("... and {} more jobs (--json lists them all)\n", jobs.len() - MAX_JOB_ROWS));
    }
    out
}

/// The collections the jobs went into, as the server reports them (None from a server
/// before collections).
fn collections_of(finals: &[Final]) -> Option<String> {
    let mut names: Vec<&str> = finals.iter().filter_map(|f| f.status.collection.as_deref()).collect();
    names.sort_unstable();
    names.dedup();
    (!names.is_empty()).then(|| names.join(", "))
}

fn result_text(s: &Submitted, finals: &[Final], failures: &FailureSummary, elapsed: f64) -> String {
    let t = totals(finals);
    let mut out = String::from("\n");
    let mut rows = Vec::new();
    if let Some(c) = collections_of(finals) {
        rows.push(("Collection", c));
    }
    rows.extend([("Result", t.status.to_string()), ("Indexed", t.indexed.to_string())]);
    // Only when some were: a copy, rename or move of an indexed image takes its vector.
    let reused: u64 = finals.iter().filter_map(|f| f.status.progress.from_cache).sum();
    if reused > 0 {
        rows.push(("Of those reused", format!("{reused} (same bytes as an indexed image: not embedded again)")));
    }
    rows.extend([
        ("Already indexed", s.already_indexed.to_string()),
        ("Failed", t.failed.to_string()),
        ("Elapsed", format!("{elapsed:.1} s")),
    ]);
    out.push_str(&fields(&rows));
    for f in finals.iter().filter(|f| f.status.status == "failed") {
        out.push_str(&format!("job {} failed: {}\n", f.status.job_id, or_dash(f.status.error_message.as_deref())));
    }
    out.push_str(&failures.text(t.failed));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn answer(v: Value) -> AddImagesResponse {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn submitted_partitions_every_image() {
        let a = answer(json!({"job_id": "idx_a", "status": "queued", "images_count": 10, "new_images_count": 6,
            "already_indexed_count": 4, "already_queued_count": 1, "message": ""}));
        let b = answer(json!({"job_id": "none", "status": "completed", "images_count": 3, "new_images_count": 0,
            "already_indexed_count": 3, "already_queued_count": 0, "message": ""}));
        let s = Submitted::from_responses(&[a.clone(), b.clone()]);
        assert_eq!(s, Submitted { requests: 2, images: 13, queued: 6, already_indexed: 6, already_queued: 1 });
        assert_eq!(s.images, s.queued + s.already_indexed + s.already_queued);
        assert!(a.has_job() && !b.has_job());
        let text = submitted_text(&s, &[a, b]);
        assert!(text.starts_with("Submitted 13 images in 2 requests: 6 queued, 6 already indexed, 1 already queued"));
        assert!(text.contains("idx_a  queued  10      6\n"), "{text}");
    }

    #[test]
    fn long_job_lists_are_cut_short() {
        let jobs: Vec<AddImagesResponse> = (0..25)
            .map(|i| answer(json!({"job_id": format!("idx_{i}"), "status": "queued", "images_count": 1, "new_images_count": 1})))
            .collect();
        let text = submitted_text(&Submitted::from_responses(&jobs), &jobs);
        assert_eq!(text.lines().count(), 1 + 1 + MAX_JOB_ROWS + 1, "{text}");
        assert!(text.ends_with("... and 5 more jobs (--json lists them all)\n"), "{text}");
    }

    #[test]
    fn a_failed_job_fails_the_result() {
        let job = |status: &str, processed: u64, failed: u64| {
            let body = json!({"job_id": format!("idx_{status}"), "status": status, "error_message": "broker gone",
                "progress": {"total_images": processed + failed, "processed_images": processed, "failed_images": failed}});
            Final { status: parse(&body, "job").unwrap(), body }
        };
        let s = Submitted::default();
        let none = FailureSummary::default();
        let ok = [job("completed", 5, 1)];
        assert_eq!(result_json(&s, &ok, &none, 1.0)["status"], "completed");
        let stopped = [job("completed", 5, 1), job("cancelled", 2, 0)];
        assert_eq!(result_json(&s, &stopped, &none, 1.0)["status"], "cancelled");
        let bad = [job("completed", 5, 1), job("failed", 2, 3)];
        let r = result_json(&s, &bad, &none, 1.0);
        assert_eq!((r["status"].as_str(), r["indexed"].as_u64(), r["failed"].as_u64()), (Some("failed"), Some(7), Some(4)));
        assert!(result_text(&s, &bad, &none, 1.0).contains("job idx_failed failed: broker gone\n"));
        assert!(!result_text(&s, &ok, &none, 1.0).contains("reused"), "nothing reused, nothing said");
    }

    #[test]
    fn reused_images_are_named_in_the_result() {
        let body = json!({"job_id": "idx_a", "status": "completed",
            "progress": {"total_images": 3, "processed_images": 3, "failed_images": 0, "from_cache": 2}});
        let done = [Final { status: parse(&body, "job").unwrap(), body }];
        let text = result_text(&Submitted::default(), &done, &FailureSummary::default(), 1.0);
        assert!(text.contains("Indexed          3\nOf those reused  2 (same bytes"), "{text}");
    }
}
