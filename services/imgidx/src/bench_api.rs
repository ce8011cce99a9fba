//! `imgidx bench api`: what `POST /api/v1/index/add-images` costs a client, against a
//! running server. Rounds of `--paths` new files (hard links to one image, so the
//! workers' cost stays small), each round's answer time, then, once the server has
//! indexed them all, the same paths submitted again (all indexed and unchanged: the
//! stat and index lookups alone), per request and in all.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::json;

use crate::bench_search::percentile;
use crate::client::{Api, ServerArgs};

const ADD_IMAGES: [&str; 4] = ["api", "v1", "index", "add-images"];
const STATUS: [&str; 4] = ["api", "v1", "index", "status"];
/// Longest wait for the server to index every round.
const MAX_INDEX_WAIT: Duration = Duration::from_secs(3600);

pub struct ApiBenchArgs {
    pub server: ServerArgs,
    /// Where the linked files go (a folder the server may read).
    pub dir: PathBuf,
    /// The image every file links to.
    pub image: PathBuf,
    pub paths: usize,
    pub rounds: usize,
    pub report: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct ApiBenchReport {
    pub paths_per_request: usize,
    pub rounds: usize,
    pub new_p50_ms: f64,
    pub new_p99_ms: f64,
    pub resubmit_p50_ms: f64,
    pub resubmit_p99_ms: f64,
    /// Every path of every round submitted again, one request after another.
    pub resubmit_all_paths: usize,
    pub resubmit_all_ms: f64,
    /// Seconds the server took to index the rounds (not the API's cost; for context).
    pub indexing_seconds: f64,
}

pub async fn run(args: ApiBenchArgs) -> anyhow::Result<ApiBenchReport> {
    anyhow::ensure!(args.paths > 0 && args.rounds > 0, "--paths and --rounds must be positive");
    let api = Api::new(&args.server)?;
    let rounds = make_rounds(&args.dir, &args.image, args.paths, args.rounds)?;
    let mut new = Vec::with_capacity(rounds.len());
    for (i, paths) in rounds.iter().enumerate() {
        let (took, answer) = submit(&api, paths).await?;
        if answer["new_images_count"].as_u64() != Some(paths.len() as u64) {
            bail!("round {i}: expected {} new images, the server answered {answer}", paths.len());
        }
        eprintln!("bench api: round {i}: {} new paths in {:.1} ms", paths.len(), took.as_secs_f64() * 1e3);
        new.push(took);
    }
    let started = Instant::now();
    wait_idle(&api).await?;
    let indexing_seconds = started.elapsed().as_secs_f64();
    let mut again = Vec::with_capacity(rounds.len());
    let all = Instant::now();
    for (i, paths) in rounds.iter().enumerate() {
        let (took, answer) = submit(&api, paths).await?;
        if answer["new_images_count"].as_u64() != Some(0) {
            bail!("round {i} again: expected nothing new, the server answered {answer}");
        }
        again.push(took);
    }
    let resubmit_all_ms = all.elapsed().as_secs_f64() * 1e3;
    let report = ApiBenchReport {
        paths_per_request: args.paths,
        rounds: args.rounds,
        new_p50_ms: percentile(&mut new, 0.5),
        new_p99_ms: percentile(&mut new, 0.99),
        resubmit_p50_ms: percentile(&mut again, 0.5),
        resubmit_p99_ms: percentile(&mut again, 0.99),
        resubmit_all_paths: args.paths * args.rounds,
        resubmit_all_ms,
        indexing_seconds,
    };
    println!(
        "add-images of {} new paths: p50 {:.1} ms, p99 {:.1} ms | resubmit of {} indexed: p50 {:.1} ms, p99 {:.1} ms | \
         all {} again: {:.0} ms (indexing took {:.1} s)",
        report.paths_per_request,
        report.new_p50_ms,
        report.new_p99_ms,
        report.paths_per_request,
        report.resubmit_p50_ms,
        report.resubmit_p99_ms,
        report.resubmit_all_paths,
        report.resubmit_all_ms,
        report.indexing_seconds
    );
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

/// `rounds` fresh folders of `paths` hard links to `image` each (made once: a folder
/// already full is reused, so a second run measures resubmits only if it was indexed).
fn make_rounds(dir: &Path, image: &Path, paths: usize, rounds: usize) -> anyhow::Result<Vec<Vec<String>>> {
    let image = image.canonicalize().with_context(|| format!("--image {}", image.display()))?;
    let ext = image.extension().and_then(|e| e.to_str()).unwrap_or("jpg").to_owned();
    let run = dir.join(format!("run-{}", uuid::Uuid::new_v4().simple()));
    let mut out = Vec::with_capacity(rounds);
    for r in 0..rounds {
        let folder = run.join(format!("round{r}"));
        std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
        let folder = folder.canonicalize()?;
        let mut round = Vec::with_capacity(paths);
        for i in 0..paths {
            let file = folder.join(format!("{i}.{ext}"));
            std::fs::hard_link(&image, &file)
                .or_else(|_| std::fs::copy(&image, &file).map(|_| ()))
                .with_context(|| format!("linking {}", file.display()))?;
            round.push(file.display().to_string());
        }
        out.push(round);
    }
    eprintln!("bench api: {} files in {}", paths * rounds, run.display());
    Ok(out)
}

async fn submit(api: &Api, paths: &[String]) -> anyhow::Result<(Duration, serde_json::Value)> {
    let body = json!({ "image_paths": paths });
    let started = Instant::now();
    let answer = api.post_json(&ADD_IMAGES, &body).await?;
    Ok((started.elapsed(), answer))
}

async fn wait_idle(api: &Api) -> anyhow::Result<()> {
    let deadline = Instant::now() + MAX_INDEX_WAIT;
    loop {
        let status = api.get(&STATUS).await?;
        if status["active_jobs"].as_u64() == Some(0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server still had active jobs after {MAX_INDEX_WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
