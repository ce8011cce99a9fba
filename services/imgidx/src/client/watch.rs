//! `imgidx watch JOB`: a job's progress live, a line per update (with the rate since
//! watching began), one per failed image as it fails, and every few seconds the worker
//! stage rates where the server's `/metrics` has them (`imgidx serve`); `--json` prints
//! the server's messages verbatim, one per line. Without live updates it polls. Exit
//! status as `index --wait`: 0 completed, 3 failed, 4 cancelled.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::args::WatchArgs;
use super::http::Api;
use super::live::{follow, Followed, LiveMessage};
use super::output::parse;
use super::stages;
use super::types::JobStatus;
use super::{EXIT_JOB_CANCELLED, EXIT_JOB_FAILED};

const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often the stage rates are read and printed.
const STAGES_EVERY: Duration = Duration::from_secs(2);

pub async fn watch(args: WatchArgs) -> Result<ExitCode> {
    let api = Api::new(&args.server)?;
    // An unknown job is an error with the server's own message.
    let first: JobStatus = parse(&api.get(&["api", "v1", "index", "status", &args.job_id]).await?, "job status")?;
    let started = Instant::now();
    let mut rate = Rate::new(first.progress.processed_images + first.progress.failed_images, started);
    let json = args.server.json;
    let on = |m: &LiveMessage, raw: &str| {
        if json {
            println!("{raw}");
        } else if let Some(line) = text_line(m, &mut rate) {
            println!("{line}");
        }
    };
    let stages = (!json).then(|| tokio::spawn(print_stages(api.clone())));
    let followed = follow(&api, &args.job_id, on).await;
    let status = match followed {
        Ok(Followed::Ended(end)) => Ok(end.status),
        Ok(Followed::Lost(why)) => {
            eprintln!("live updates unavailable ({why}); polling every {} s", POLL_INTERVAL.as_secs());
            poll(&api, &args.job_id, json).await
        }
        Err(e) => Err(e),
    };
    if let Some(stages) = stages {
        stages.abort();
    }
    let status = status?;
    Ok(match status.as_str() {
        "failed" => ExitCode::from(EXIT_JOB_FAILED),
        "cancelled" => ExitCode::from(EXIT_JOB_CANCELLED),
        _ => ExitCode::SUCCESS,
    })
}

/// Every few seconds, what the workers' stages did meanwhile; ends quietly where the
/// server's `/metrics` has no stage timings (an `imgidx api` whose workers serve their own).
async fn print_stages(api: Api) {
    let mut last: Option<(stages::Sample, Instant)> = None;
    loop {
        let Ok(text) = api.get_text(&["metrics"]).await else { return };
        let sample = stages::parse(&text);
        if sample.is_empty() {
            return;
        }
        let now = Instant::now();
        if let Some((before, at)) = &last {
            if let Some(line) = stages::line(before, &sample, now.duration_since(*at).as_secs_f64()) {
                println!("{line}");
            }
        }
        last = Some((sample, now));
        tokio::time::sleep(STAGES_EVERY).await;
    }
}

async fn poll(api: &Api, job_id: &str, json: bool) -> Result<String> {
    let mut last = None;
    loop {
        let body = api.get(&["api", "v1", "index", "status", job_id]).await?;
        let job: JobStatus = parse(&body, "job status")?;
        let p = &job.progress;
        let now = (job.status.clone(), p.processed_images, p.failed_images, p.total_images);
        if last.as_ref() != Some(&now) {
            if json {
                println!("{body}");
            } else {
                println!("{:<9} {}/{} done, {} failed", job.status, p.processed_images + p.failed_images, p.total_images, p.failed_images);
            }
            last = Some(now);
        }
        if job.is_finished() {
            return Ok(job.status);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Images finished per second since watching began.
struct Rate {
    done_at_start: u64,
    started: Instant,
}

impl Rate {
    fn new(done_at_start: u64, started: Instant) -> Self {
        Self { done_at_start, started }
    }

    fn per_sec(&self, done: u64) -> f64 {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        done.saturating_sub(self.done_at_start) as f64 / secs
    }
}

fn text_line(m: &LiveMessage, rate: &mut Rate) -> Option<String> {
    match m.kind.as_str() {
        "image_complete" => {
            let image = m.image.as_ref()?;
            (image.status == "failed").then(|| {
                let reason = image.reason.as_deref().unwrap_or("failed");
                format!("failed    {}: {reason}: {}", image.path, image.error.as_deref().unwrap_or(""))
            })
        }
        _ => {
            let done = m.completed + m.failed;
            Some(format!(
                "{:<9} {done}/{} done ({:.1}%), {} failed, {:.1} img/s",
                m.status,
                m.total_images,
                m.progress,
                m.failed,
                rate.per_sec(done)
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::live::LiveImage;
    use super::*;

    #[test]
    fn progress_lines_and_failed_images_only() {
        let mut rate = Rate::new(0, Instant::now() - Duration::from_secs(2));
        let m = LiveMessage {
            kind: "progress".into(),
            status: "running".into(),
            progress: 50.0,
            completed: 3,
            failed: 1,
            total_images: 8,
            ..LiveMessage::default()
        };
        let line = text_line(&m, &mut rate).unwrap();
        assert!(line.starts_with("running   4/8 done (50.0%), 1 failed, 2.0 img/s"), "{line}");
        let ok = LiveMessage {
            kind: "image_complete".into(),
            image: Some(LiveImage { path: "/a.jpg".into(), status: "completed".into(), ..LiveImage::default() }),
            ..m.clone()
        };
        assert_eq!(text_line(&ok, &mut rate), None);
        let bad = LiveMessage {
            kind: "image_complete".into(),
            image: Some(LiveImage {
                path: "/b.jpg".into(),
                status: "failed".into(),
                reason: Some("not_found".into()),
                error: Some("file not found".into()),
            }),
            ..m
        };
        assert_eq!(text_line(&bad, &mut rate).unwrap(), "failed    /b.jpg: not_found: file not found");
    }
}
