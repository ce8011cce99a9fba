//! The worker stage rates `imgidx watch` prints: from the server's `/metrics` (where
//! `imgidx serve` carries its workers' stage timings), what each stage did since the
//! last look, as operations per second and mean time per operation. A stage whose
//! mean time is highest per image is the one that limits throughput.

use std::collections::BTreeMap;

/// The stages in pipeline order (`imgidx_worker::Stage`); others follow by name.
const ORDER: [&str; 6] = ["read", "decode", "wait_for_batch", "inference", "upsert", "publish_ack"];
const SUM: &str = "imgidx_worker_stage_seconds_sum{";
const COUNT: &str = "imgidx_worker_stage_seconds_count{";

/// Per stage: (seconds, operations) so far.
pub type Sample = BTreeMap<String, (f64, f64)>;

/// The stage totals in Prometheus text; empty when the server has no workers' timings.
pub fn parse(text: &str) -> Sample {
    let mut out = Sample::new();
    for line in text.lines() {
        let (which, rest) = if let Some(rest) = line.strip_prefix(SUM) {
            (0, rest)
        } else if let Some(rest) = line.strip_prefix(COUNT) {
            (1, rest)
        } else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else { continue };
        let Some(stage) = labels.split(',').find_map(|l| l.strip_prefix("stage=\"")?.strip_suffix('"')) else { continue };
        let Ok(value) = value.trim().parse::<f64>() else { continue };
        let entry = out.entry(stage.to_string()).or_insert((0.0, 0.0));
        if which == 0 {
            entry.0 = value;
        } else {
            entry.1 = value;
        }
    }
    out
}

/// `stages    read 118/s 1.2 ms · decode 118/s 8.1 ms · …` for the stages that did
/// something between the two samples, `secs` apart; None when none did.
pub fn line(before: &Sample, now: &Sample, secs: f64) -> Option<String> {
    let mut names: Vec<&String> = now.keys().collect();
    names.sort_by_key(|n| (ORDER.iter().position(|o| o == n).unwrap_or(ORDER.len()), n.as_str()));
    let parts: Vec<String> = names
        .into_iter()
        .filter_map(|name| {
            let (sum, count) = now[name];
            let (sum0, count0) = before.get(name).copied().unwrap_or((0.0, 0.0));
            let (ops, busy) = (count - count0, sum - sum0);
            (ops > 0.0).then(|| format!("{name} {:.0}/s {}", ops / secs.max(0.001), millis(busy / ops)))
        })
        .collect();
    (!parts.is_empty()).then(|| format!("stages    {}", parts.join(" · ")))
}

fn millis(secs: f64) -> String {
    let ms = secs * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_two_samples_in_pipeline_order() {
        let text = |read: (f64, f64), infer: (f64, f64)| {
            format!(
                "# TYPE imgidx_worker_stage_seconds histogram\n\
                 imgidx_worker_stage_seconds_sum{{stage=\"inference\"}} {}\n\
                 imgidx_worker_stage_seconds_count{{stage=\"inference\"}} {}\n\
                 imgidx_worker_stage_seconds_bucket{{stage=\"read\",le=\"0.01\"}} 3\n\
                 imgidx_worker_stage_seconds_sum{{stage=\"read\"}} {}\n\
                 imgidx_worker_stage_seconds_count{{stage=\"read\"}} {}\n\
                 imgidx_worker_stage_seconds_sum{{stage=\"upsert\"}} 1.0\n\
                 imgidx_worker_stage_seconds_count{{stage=\"upsert\"}} 4\n# EOF\n",
                infer.0, infer.1, read.0, read.1
            )
        };
        let a = parse(&text((0.1, 10.0), (1.0, 2.0)));
        assert_eq!(a["read"], (0.1, 10.0));
        let b = parse(&text((0.3, 110.0), (3.0, 6.0)));
        assert_eq!(line(&a, &b, 2.0).unwrap(), "stages    read 50/s 2.0 ms · inference 2/s 500 ms");
        assert_eq!(line(&b, &b, 2.0), None, "nothing happened");
        assert!(parse("imgidx_http_requests_total 3\n").is_empty());
    }
}
