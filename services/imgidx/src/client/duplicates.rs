//! `imgidx duplicates`: runs a duplicate analysis on the server, waits for its report
//! and prints its groups; `--archive` then moves the extra exact copies (`--dry-run`:
//! only lists them); `--restore ID` undoes an archive.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::json;

use super::args::DuplicatesArgs;
use super::http::Api;
use super::output::{parse, show, table};

/// Between two looks at a running analysis.
const POLL: Duration = Duration::from_millis(500);

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct Started {
    task_id: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct Report {
    status: String,
    collection: String,
    progress: Progress,
    error: Option<String>,
    report: Option<Groups>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct Progress {
    scanned: u64,
    total: u64,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct Groups {
    images_scanned: u64,
    exact_groups: Vec<ExactGroup>,
    near_groups: Vec<NearGroup>,
    truncated: bool,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct ExactGroup {
    sha256: String,
    images: Vec<Image>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct NearGroup {
    max_similarity: f32,
    images: Vec<Image>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct Image {
    path: String,
    similarity: Option<f32>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct Archive {
    archive_id: Option<String>,
    dry_run: bool,
    moved: usize,
    unindexed: usize,
    failed: usize,
    restored: usize,
    not_restored: usize,
    entries: Vec<Entry>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct Entry {
    from: String,
    to: Option<String>,
    state: String,
    error: Option<String>,
}

pub async fn duplicates(args: DuplicatesArgs) -> Result<ExitCode> {
    let api = Api::new(&args.server)?;
    if let Some(archive_id) = &args.restore {
        let answer = api.post_json(&["api", "v1", "duplicates", "restore"], &json!({ "archive_id": archive_id })).await?;
        return show(&answer, args.server.json, |a| Ok(archive_text(&parse(a, "restore")?)));
    }
    let mut body = json!({ "threshold": args.threshold });
    if let Some(c) = &args.collection {
        body["collection"] = json!(c);
    }
    let started: Started = parse(&api.post_json(&["api", "v1", "duplicates", "find-similar"], &body).await?, "analysis")?;
    let answer = loop {
        let answer = api.get(&["api", "v1", "duplicates", "report", &started.task_id]).await?;
        let report: Report = parse(&answer, "report")?;
        match report.status.as_str() {
            "completed" => break answer,
            "failed" => bail!("the duplicate analysis failed: {}", report.error.unwrap_or_default()),
            _ => {
                if !args.server.json {
                    eprintln!("analysing {}: {} of {} images", report.collection, report.progress.scanned, report.progress.total);
                }
                tokio::time::sleep(POLL).await;
            }
        }
    };
    if !args.archive {
        return show(&answer, args.server.json, |a| Ok(report_text(&parse(a, "report")?)));
    }
    if !args.server.json {
        print!("{}", report_text(&parse(&answer, "report")?));
    }
    let body = json!({ "task_id": started.task_id, "dry_run": args.dry_run });
    let archived = api.post_json(&["api", "v1", "duplicates", "archive-exact"], &body).await?;
    show(&archived, args.server.json, |a| Ok(archive_text(&parse(a, "archive")?)))
}

fn report_text(report: &Report) -> String {
    let Some(found) = &report.report else { return String::new() };
    let mut rows = Vec::new();
    for g in &found.exact_groups {
        for (i, image) in g.images.iter().enumerate() {
            let kind = if i == 0 { "exact (kept)" } else { "exact" };
            rows.push(vec![format!("{:.12}", g.sha256), kind.to_string(), "1.000".into(), image.path.clone()]);
        }
    }
    for (n, g) in found.near_groups.iter().enumerate() {
        for image in &g.images {
            let score = image.similarity.unwrap_or(g.max_similarity);
            rows.push(vec![format!("near-{}", n + 1), "near".into(), format!("{score:.3}"), image.path.clone()]);
        }
    }
    let mut text = format!(
        "{}: {} images, {} exact groups, {} near groups{}\n",
        report.collection,
        found.images_scanned,
        found.exact_groups.len(),
        found.near_groups.len(),
        if found.truncated { " (more than a report keeps: archive these and run again)" } else { "" }
    );
    if !rows.is_empty() {
        text.push_str(&table(&["GROUP", "KIND", "SIMILARITY", "PATH"], &rows));
    }
    text
}

fn archive_text(a: &Archive) -> String {
    let rows: Vec<Vec<String>> = a
        .entries
        .iter()
        .map(|e| vec![e.state.clone(), e.from.clone(), e.to.clone().unwrap_or_else(|| "-".into()), e.error.clone().unwrap_or_default()])
        .collect();
    let mut text = if rows.is_empty() { String::new() } else { table(&["STATE", "FROM", "TO", "ERROR"], &rows) };
    let summary = match (&a.archive_id, a.dry_run) {
        (_, true) => format!("Dry run: {} images would move; nothing changed.\n", a.entries.len()),
        (Some(id), false) if a.restored + a.not_restored > 0 => {
            format!("Archive {id} restored: {} back, {} could not be.\n", a.restored, a.not_restored)
        }
        (Some(id), false) => format!(
            "Archive {id}: {} moved, {} uploads taken out of the index, {} failed. Undo: imgidx duplicates --restore {id}\n",
            a.moved, a.unindexed, a.failed
        ),
        (None, false) => String::new(),
    };
    text.push_str(&summary);
    text
}
