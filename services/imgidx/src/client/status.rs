//! `imgidx status [JOB_ID]` and `imgidx stats`.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::Value;

use super::args::{StatsArgs, StatusArgs};
use super::failures::{failed_items, failures_table};
use super::http::Api;
use super::output::{fields, or_dash, parse, print_json, table};
use super::types::{IndexStats, JobStatus, OverallStatus};

const STATS: [&str; 4] = ["api", "v1", "index", "stats"];

pub async fn status(args: StatusArgs) -> Result<ExitCode> {
    let api = Api::new(&args.server)?;
    if let (true, Some(job_id)) = (args.failed, &args.job_id) {
        return list_failed(&api, job_id, args.server.json).await;
    }
    let body = match &args.job_id {
        Some(id) => api.get(&["api", "v1", "index", "status", id]).await?,
        None => api.get(&["api", "v1", "index", "status"]).await?,
    };
    if args.server.json {
        print_json(&body);
    } else if args.job_id.is_some() {
        print!("{}", job_text(&parse(&body, "job status")?));
    } else {
        print!("{}", overall_text(&parse(&body, "status")?));
    }
    Ok(ExitCode::SUCCESS)
}

/// `status JOB --failed`: every failed image of the job, with its reason.
async fn list_failed(api: &Api, job_id: &str, json: bool) -> Result<ExitCode> {
    let items = failed_items(api, job_id, None).await?;
    if json {
        print_json(&serde_json::json!({ "job_id": job_id, "items": items }));
    } else if items.is_empty() {
        println!("No failed images in job {job_id}.");
    } else {
        print!("{}", failures_table(&items));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn stats(args: StatsArgs) -> Result<ExitCode> {
    let api = Api::new(&args.server)?;
    let body: Value = match &args.collection {
        Some(c) => api.get_with_query(&STATS, &[("collection", c)]).await?,
        None => api.get(&STATS).await?,
    };
    if args.server.json {
        print_json(&body);
    } else {
        print!("{}", stats_text(&parse(&body, "index statistics")?));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn job_text(j: &JobStatus) -> String {
    let p = &j.progress;
    fields(&[
        ("Job", j.job_id.clone()),
        ("Status", j.status.clone()),
        ("Priority", or_dash(j.priority.as_deref())),
        (
            "Progress",
            format!(
                "{} of {} indexed, {} failed ({:.1}%)",
                p.processed_images, p.total_images, p.failed_images, p.percent_complete
            ),
        ),
        ("Created", or_dash(j.created_at.as_deref())),
        ("Started", or_dash(j.started_at.as_deref())),
        ("Completed", or_dash(j.completed_at.as_deref())),
        ("Error", or_dash(j.error_message.as_deref())),
        ("Failures", or_dash(Some(by_reason(&j.failures_by_reason).as_str()))),
        ("Rate", j.throughput_images_per_sec.map_or_else(|| "-".into(), |t| format!("{t:.1} images/s"))),
        ("ETA", or_dash(j.estimated_completion.as_deref())),
        ("Workers", or_dash(Some(workers_text(&j.workers).as_str()))),
    ])
}

/// `w1 (active, 120 done), w2 (idle, 80 done)`.
fn workers_text(workers: &[super::types::JobWorker]) -> String {
    workers
        .iter()
        .map(|w| format!("{} ({}, {} done)", w.worker_id, w.status, w.images_processed + w.images_failed))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `2 not_found, 1 unreadable`: most common first.
pub fn by_reason(counts: &std::collections::BTreeMap<String, u64>) -> String {
    let mut counts: Vec<(&String, &u64)> = counts.iter().collect();
    counts.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    counts.iter().map(|(r, n)| format!("{n} {r}")).collect::<Vec<_>>().join(", ")
}

pub fn stats_text(s: &IndexStats) -> String {
    let mut rows = Vec::new();
    if let Some(c) = &s.collection {
        rows.push(("Collection", c.clone()));
    }
    rows.extend([
        ("Model", format!("{} ({} dimensions)", s.model_name, s.embedding_dim)),
        ("Indexed images", s.total_images.to_string()),
        ("Failed images", s.num_failed.to_string()),
        ("Index size", format!("{:.1} MB", s.index_size_mb)),
        ("Last updated", or_dash(s.last_updated.as_deref())),
    ]);
    fields(&rows)
}

fn overall_text(s: &OverallStatus) -> String {
    let mut out = format!(
        "{} images indexed ({} failed), {} active jobs; model {}\n",
        s.total_indexed_images, s.index_stats.num_failed, s.active_jobs, s.index_stats.model_name
    );
    if !s.active_job_details.is_empty() {
        let rows: Vec<Vec<String>> = s
            .active_job_details
            .iter()
            .map(|j| {
                vec![
                    j.job_id.clone(),
                    j.status.clone(),
                    j.images.to_string(),
                    format!("{:.1}%", j.percent_complete),
                    or_dash(j.created_at.as_deref()),
                ]
            })
            .collect();
        out.push_str("\nActive jobs\n");
        out.push_str(&table(&["JOB", "STATUS", "IMAGES", "DONE", "CREATED"], &rows));
    }
    if !s.recent_jobs.is_empty() {
        let rows: Vec<Vec<String>> = s
            .recent_jobs
            .iter()
            .map(|j| {
                vec![
                    j.job_id.clone(),
                    j.status.clone(),
                    j.images.to_string(),
                    or_dash(j.created_at.as_deref()),
                    or_dash(j.completed_at.as_deref()),
                ]
            })
            .collect();
        out.push_str("\nRecent jobs\n");
        out.push_str(&table(&["JOB", "STATUS", "IMAGES", "CREATED", "COMPLETED"], &rows));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn job_and_stats_text_show_the_figures() {
        let j: JobStatus = serde_json::from_value(serde_json::json!({
            "job_id": "idx_1", "status": "completed", "priority": "high",
            "progress": {"total_images": 18, "processed_images": 17, "failed_images": 1, "percent_complete": 100.0},
            "created_at": "2025-01-01T00:00:00Z", "started_at": null, "completed_at": "2025-01-01T00:00:05Z",
            "error_message": null
        }))
        .unwrap();
        let text = job_text(&j);
        assert!(text.contains("Status     completed\n"), "{text}");
        assert!(text.contains("Progress   17 of 18 indexed, 1 failed (100.0%)\n"), "{text}");
        assert!(text.contains("Started    -\n"), "{text}");
        assert!(text.contains("Failures   -\n"), "{text}");
        let j = JobStatus {
            failures_by_reason: [("unreadable".to_string(), 1), ("not_found".to_string(), 4)].into_iter().collect(),
            ..j
        };
        assert!(job_text(&j).contains("Failures   4 not_found, 1 unreadable\n"), "{}", job_text(&j));
        assert!(job_text(&j).contains("Rate       -\n"), "an older server says nothing of its pace");
        let j: JobStatus = serde_json::from_value(serde_json::json!({
            "job_id": "idx_2", "status": "running", "throughput_images_per_sec": 12.345,
            "estimated_completion": "2025-01-01T00:01:00Z",
            "workers": [{"worker_id": "gpu1.worker-7", "status": "active", "images_processed": 90, "images_failed": 2}]
        }))
        .unwrap();
        let text = job_text(&j);
        assert!(text.contains("Rate       12.3 images/s\nETA        2025-01-01T00:01:00Z\n"), "{text}");
        assert!(text.contains("Workers    gpu1.worker-7 (active, 92 done)\n"), "{text}");

        let s: IndexStats = serde_json::from_value(serde_json::json!({
            "model_name": "tiny-clip", "embedding_dim": 64, "total_images": 17, "num_failed": 1,
            "last_updated": null, "index_size_mb": 0.04
        }))
        .unwrap();
        let text = stats_text(&s);
        assert!(text.contains("Model           tiny-clip (64 dimensions)\n"), "{text}");
        assert!(text.contains("Index size      0.0 MB\n"), "{text}");
        let text = stats_text(&IndexStats { collection: Some("cats".into()), ..s });
        assert!(text.starts_with("Collection      cats\nModel           tiny-clip"), "{text}");
    }
}
