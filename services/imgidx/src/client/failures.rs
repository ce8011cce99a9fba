//! A job's failed images: fetched page by page from the items endpoint, shown as a
//! table, and summed up by reason at the end of `index --wait` and `retry --wait`.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::{json, Value};

use super::http::Api;
use super::output::{or_dash, parse, table};
use super::status::by_reason;
use super::types::{JobItem, JobItemsPage};
use super::wait::Final;

/// Items asked for per request when listing them all (the server's maximum).
const PAGE_LIMIT: usize = 1000;
/// Failed paths named in a summary; `imgidx status JOB --failed` lists them all.
pub const EXAMPLES_SHOWN: usize = 5;

/// At most `max` failed items of `job_id` (all of them when `None`), following the
/// server's cursors.
pub async fn failed_items(api: &Api, job_id: &str, max: Option<usize>) -> Result<Vec<JobItem>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let want = max.map_or(PAGE_LIMIT, |m| m.saturating_sub(out.len()).clamp(1, PAGE_LIMIT));
        let limit = want.to_string();
        let mut query = vec![("state", "failed"), ("limit", limit.as_str())];
        if let Some(c) = &cursor {
            query.push(("cursor", c.as_str()));
        }
        let body = api.get_with_query(&["api", "v1", "index", "status", job_id, "items"], &query).await?;
        let page: JobItemsPage = parse(&body, "item list")?;
        out.extend(page.items);
        if let Some(m) = max.filter(|&m| out.len() >= m) {
            out.truncate(m);
            return Ok(out);
        }
        match page.next_cursor {
            Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
            _ => return Ok(out),
        }
    }
}

/// PATH, REASON, MESSAGE; the message last, so long ones are not padded.
pub fn failures_table(items: &[JobItem]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| vec![i.path.clone(), or_dash(i.reason.as_deref()), or_dash(i.message.as_deref())])
        .collect();
    table(&["PATH", "REASON", "MESSAGE"], &rows)
}

/// Why images failed across finished jobs: counts by reason, and a few examples.
#[derive(Debug, Default, PartialEq)]
pub struct FailureSummary {
    pub by_reason: BTreeMap<String, u64>,
    pub examples: Vec<JobItem>,
}

impl FailureSummary {
    /// Counts from the jobs' final status; examples fetched from the first jobs with
    /// failures, best effort: the jobs are done either way, so a server that cannot list
    /// items costs the examples, not the result.
    pub async fn of(api: &Api, finals: &[Final]) -> FailureSummary {
        let mut summary = FailureSummary::default();
        for f in finals {
            for (reason, n) in &f.status.failures_by_reason {
                *summary.by_reason.entry(reason.clone()).or_default() += n;
            }
        }
        for f in finals.iter().filter(|f| f.status.progress.failed_images > 0) {
            let room = EXAMPLES_SHOWN - summary.examples.len();
            if room == 0 {
                break;
            }
            match failed_items(api, &f.status.job_id, Some(room)).await {
                Ok(items) => summary.examples.extend(items),
                Err(e) => {
                    eprintln!("warning: could not list the failed images: {e}");
                    break;
                }
            }
        }
        summary
    }

    pub fn is_empty(&self) -> bool {
        self.by_reason.is_empty() && self.examples.is_empty()
    }

    pub fn json(&self) -> Value {
        json!({ "by_reason": self.by_reason, "examples": self.examples })
    }

    /// `Failures by reason: 2 not_found, 1 unreadable`, then the examples as a table.
    pub fn text(&self, failed: u64) -> String {
        if self.is_empty() {
            return String::new();
        }
        let mut out = format!("\nFailures by reason: {}\n", by_reason(&self.by_reason));
        if !self.examples.is_empty() {
            out.push_str(&failures_table(&self.examples));
        }
        if failed > self.examples.len() as u64 {
            out.push_str(&format!(
                "... and {} more (imgidx status JOB --failed lists them all)\n",
                failed - self.examples.len() as u64
            ));
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn failed(path: &str, reason: &str, message: &str) -> JobItem {
        JobItem {
            path: path.into(),
            state: "failed".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            attempts: 1,
            finished_at: None,
            from_cache: None,
        }
    }

    #[test]
    fn summary_names_reasons_most_common_first_then_examples() {
        let summary = FailureSummary {
            by_reason: [("not_an_image".to_string(), 1), ("not_found".to_string(), 2)].into_iter().collect(),
            examples: vec![failed("/a.jpg", "not_found", "no such file"), failed("/b.txt", "not_an_image", "text")],
        };
        let text = summary.text(3);
        assert_eq!(
            text,
            "\nFailures by reason: 2 not_found, 1 not_an_image\n\
             PATH    REASON        MESSAGE\n\
             /a.jpg  not_found     no such file\n\
             /b.txt  not_an_image  text\n\
             ... and 1 more (imgidx status JOB --failed lists them all)\n"
        );
        assert_eq!(summary.json()["by_reason"]["not_found"], 2);
        assert_eq!(summary.json()["examples"][1]["path"], "/b.txt");
        assert_eq!(FailureSummary::default().text(0), "");
    }
}
