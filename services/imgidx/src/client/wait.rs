//! `index --wait`: follow every job live until it has finished (polling where live
//! updates are not to be had), with one progress bar over all of them.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Result};
use futures::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde_json::Value;

use std::sync::{Mutex, PoisonError};

use super::http::Api;
use super::live::{self, Followed, LiveMessage};
use super::output::parse;
use super::types::JobStatus;

const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Status requests in flight at once.
const POLL_CONCURRENCY: usize = 8;
/// Rounds in a row that may fail (server restarting, network blip) before giving up.
const MAX_FAILED_ROUNDS: u32 = 20;

/// The last status of a job: verbatim, and typed.
pub struct Final {
    pub body: Value,
    pub status: JobStatus,
}

/// Poll `job_ids` until each is completed or failed; `expected` (images queued)
/// sizes the bar until the first answers arrive.
pub async fn wait_jobs(api: &Api, job_ids: &[String], expected: u64) -> Result<Vec<Final>> {
    let bar = progress_bar(expected);
    follow_live(api, job_ids, &bar).await;
    // Finished jobs answer at once; a job whose live stream was lost is polled to its end.
    let result = poll_until_done(api, job_ids, &bar).await;
    bar.finish_and_clear();
    result
}

/// Follows the jobs' live streams (a few at a time) until each ended or was lost.
async fn follow_live(api: &Api, job_ids: &[String], bar: &ProgressBar) {
    let seen: Mutex<Vec<Option<(u64, u64)>>> = Mutex::new(vec![None; job_ids.len()]);
    let follows = stream::iter(job_ids.iter().enumerate()).map(|(i, job_id)| {
        let seen = &seen;
        async move {
            let on = |m: &LiveMessage, _: &str| {
                let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                seen[i] = Some((m.completed + m.failed, m.total_images));
                let (done, total) = seen.iter().flatten().fold((0, 0), |(d, t), (dd, tt)| (d + dd, t + tt));
                if seen.iter().all(Option::is_some) {
                    bar.set_length(total);
                }
                bar.set_position(done);
            };
            if let Ok(Followed::Lost(why)) = live::follow(api, job_id, on).await {
                tracing::debug!(job_id, why, "no live updates; polling");
            }
        }
    });
    follows.buffer_unordered(POLL_CONCURRENCY).collect::<Vec<()>>().await;
}

async fn poll_until_done(api: &Api, job_ids: &[String], bar: &ProgressBar) -> Result<Vec<Final>> {
    let mut latest: Vec<Option<Final>> = job_ids.iter().map(|_| None).collect();
    let mut failed_rounds = 0;
    loop {
        let pending: Vec<usize> =
            (0..job_ids.len()).filter(|&i| latest[i].as_ref().is_none_or(|f| !f.status.is_finished())).collect();
        if pending.is_empty() {
            break;
        }
        let answers: Vec<(usize, Result<Value>)> = stream::iter(pending)
            .map(|i| async move { (i, api.get(&["api", "v1", "index", "status", &job_ids[i]]).await) })
            .buffer_unordered(POLL_CONCURRENCY)
            .collect()
            .await;
        let mut round_error = None;
        for (i, answer) in answers {
            match answer.and_then(|body| Ok(Final { status: parse(&body, "job status")?, body })) {
                Ok(f) => latest[i] = Some(f),
                Err(e) => round_error = Some(e),
            }
        }
        match round_error {
            Some(e) if failed_rounds >= MAX_FAILED_ROUNDS => bail!("lost track of the jobs: {e}"),
            Some(_) => failed_rounds += 1,
            None => failed_rounds = 0,
        }
        let known = latest.iter().flatten();
        let (done, total) = known.fold((0, 0), |(d, t), f| {
            let p = &f.status.progress;
            (d + p.processed_images + p.failed_images, t + p.total_images)
        });
        if latest.iter().all(Option::is_some) {
            bar.set_length(total);
        }
        bar.set_position(done);
        if latest.iter().flatten().filter(|f| f.status.is_finished()).count() < job_ids.len() {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
    Ok(latest.into_iter().flatten().collect())
}

/// On stderr, and only on a terminal: redirected output stays clean.
fn progress_bar(len: u64) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template("indexing {wide_bar} {pos}/{len} images  {rate}  ETA {eta}") {
        bar.set_style(style.with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.1} img/s", s.per_sec());
        }));
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
