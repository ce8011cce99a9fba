//! `imgidx trigger DIR`: have the server walk a directory of its own and index what is
//! new or changed (`--force`: everything; `--prune`: drop what is gone). The job id
//! comes first on a line of its own, so scripts can take it.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::json;

use super::args::TriggerArgs;
use super::http::Api;
use super::index::{finish, Submitted};
use super::output::parse;
use super::wait::wait_jobs;

#[derive(Deserialize, Debug)]
struct TriggerAnswer {
    job_id: String,
    status: String,
    image_dir: String,
    #[serde(default)]
    message: String,
}

pub async fn trigger(args: TriggerArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let api = Api::new(&args.server)?;
    let dir = absolute(&args.dir)?;
    let mut body = json!({
        "image_dir": dir,
        "recursive": !args.no_recursive,
        "force_reindex": args.force,
        "prune_missing": args.prune,
        "priority": args.submit.priority.as_str(),
        "webhook_url": args.webhook,
    });
    // Left out when unset, so a server from before collections takes the request.
    if let Some(c) = &args.submit.collection {
        body["collection"] = json!(c);
    }
    let raw = api.post_json(&["api", "v1", "index", "trigger"], &body).await?;
    let answer: TriggerAnswer = parse(&raw, "trigger answer")?;
    if !args.server.json {
        print!("{}", trigger_text(&answer));
    }
    let finals = if args.submit.wait { Some(wait_jobs(&api, std::slice::from_ref(&answer.job_id), 0).await?) } else { None };
    let images = finals.iter().flatten().map(|f| f.status.progress.total_images).sum();
    let submitted = Submitted { requests: 1, images, queued: images, ..Submitted::default() };
    finish(&api, &submitted, vec![raw], finals, started, args.server.json).await
}

/// The server resolves the path itself; a relative one only makes sense from here.
fn absolute(dir: &Path) -> Result<String> {
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().context("reading the current directory")?.join(dir)
    };
    dir.to_str().map(str::to_string).context("the directory's path is not valid UTF-8")
}

fn trigger_text(a: &TriggerAnswer) -> String {
    let what = if a.status == "running" { "already being indexed by this job" } else { "queued for indexing" };
    format!("{}\n{} {what} ({})\n", a.job_id, a.image_dir, a.message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_job_id_comes_first_and_a_running_job_is_named() {
        let a: TriggerAnswer = serde_json::from_value(json!({"job_id": "idx_a", "status": "queued",
            "image_dir": "/photos", "message": "Indexing job queued for processing"}))
        .unwrap();
        assert_eq!(trigger_text(&a), "idx_a\n/photos queued for indexing (Indexing job queued for processing)\n");
        let b = TriggerAnswer { status: "running".into(), message: "Job idx_a is indexing this directory already".into(), ..a };
        assert!(trigger_text(&b).starts_with("idx_a\n/photos already being indexed by this job"));
        assert!(absolute(Path::new("rel")).unwrap().ends_with("/rel"));
        assert_eq!(absolute(Path::new("/abs")).unwrap(), "/abs");
    }
}
