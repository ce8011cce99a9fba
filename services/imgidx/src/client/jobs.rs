//! `imgidx jobs`: the newest jobs, filtered by state and priority; `imgidx cancel JOB`:
//! stop a queued or running job (its images not processed yet are not embedded).

use std::process::ExitCode;

use anyhow::Result;
use serde::Deserialize;
use serde_json::json;

use super::args::{CancelArgs, JobsArgs};
use super::http::Api;
use super::output::{or_dash, parse, print_json, table};
use super::status::job_text;
use super::types::JobStatus;

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct JobList {
    jobs: Vec<JobStatus>,
    total: u64,
}

pub async fn jobs(args: JobsArgs) -> Result<ExitCode> {
    let api = Api::new(&args.server)?;
    let limit = args.limit.to_string();
    let mut query = vec![("limit", limit.as_str())];
    if let Some(s) = args.status {
        query.push(("status", s.as_str()));
    }
    if let Some(p) = args.priority {
        query.push(("priority", p.as_str()));
    }
    let body = api.get_with_query(&["api", "v1", "index", "jobs"], &query).await?;
    if args.server.json {
        print_json(&body);
    } else {
        print!("{}", jobs_text(&parse(&body, "job list")?));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(args: CancelArgs) -> Result<ExitCode> {
    let api = Api::new(&args.server)?;
    let body = api.post_json(&["api", "v1", "index", "jobs", &args.job_id, "cancel"], &json!({})).await?;
    if args.server.json {
        print_json(&body);
    } else {
        let job: JobStatus = parse(&body, "cancel answer")?;
        let message = body["message"].as_str().unwrap_or("Cancelled");
        print!("{message}\n{}", job_text(&job));
    }
    Ok(ExitCode::SUCCESS)
}

fn jobs_text(list: &JobList) -> String {
    if list.jobs.is_empty() {
        return "No jobs.\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .jobs
        .iter()
        .map(|j| {
            let p = &j.progress;
            vec![
                j.job_id.clone(),
                j.status.clone(),
                or_dash(j.priority.as_deref()),
                format!("{}/{}", p.processed_images, p.total_images),
                p.failed_images.to_string(),
                or_dash(j.created_at.as_deref()),
            ]
        })
        .collect();
    let mut out = table(&["JOB", "STATUS", "PRIORITY", "INDEXED", "FAILED", "CREATED"], &rows);
    if list.total > list.jobs.len() as u64 {
        out.push_str(&format!("({} of {} jobs; --limit shows more)\n", list.jobs.len(), list.total));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_list_says_when_there_are_more() {
        let list: JobList = serde_json::from_value(json!({"total": 3, "jobs": [{"job_id": "idx_b", "status": "cancelled",
            "priority": "high", "created_at": "2026-12-02T01:00:00Z",
            "progress": {"total_images": 4, "processed_images": 1, "failed_images": 0, "percent_complete": 25.0}}]}))
        .unwrap();
        let text = jobs_text(&list);
        assert!(text.starts_with("JOB    STATUS     PRIORITY  INDEXED  FAILED  CREATED\n"), "{text}");
        assert!(text.contains("idx_b  cancelled  high      1/4      0       2026-12-02T01:00:00Z\n"), "{text}");
        assert!(text.ends_with("(1 of 3 jobs; --limit shows more)\n"), "{text}");
        assert_eq!(jobs_text(&JobList::default()), "No jobs.\n");
    }
}
