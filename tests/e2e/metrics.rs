//! Prometheus metrics on RabbitMQ and PostgreSQL: the API's `/metrics` (here, as in
//! `imgidx serve`, with every role's families) is valid OpenMetrics text whose counters
//! match the job's counts, with every worker stage timed; the worker and the aggregator
//! serve their own on `metrics_listen`.

use std::collections::BTreeMap;
use std::time::Duration;

use imgidx_shared::shutdown::Shutdown;
use imgidx_tests::{cluster_settings, sample_images, services, Cluster};

/// `name{labels}` → value, checking the text as a scraper would: every sample of a
/// declared family, well-formed lines, `# EOF` last.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let sample = regex::Regex::new(r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$"#).unwrap();
    let mut families = Vec::new();
    let mut out = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "OpenMetrics ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.push(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        let caps = sample.captures(line).unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let name = &caps[1];
        assert!(families.iter().any(|f| name.starts_with(f.as_str())), "{name} has no # TYPE");
        let key = line.rsplit_once(' ').unwrap().0.to_string();
        out.insert(key, caps[4].parse().unwrap());
    }
    out
}

async fn scrape(http: &reqwest::Client, url: &str) -> BTreeMap<String, f64> {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    parse(&response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_match_the_job() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut images = sample_images(dir.path());
    let n = images.len() as f64;
    images.push(dir.path().join("vanished.jpg"));
    let cluster = Cluster::start(cluster_settings(&svc, dir.path()), 1).await;
    let (code, body) = cluster.add_images(&images, "normal").await;
    assert_eq!(code, 202, "{body}");
    let done = cluster.wait_job(body["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!((done["progress"]["processed_images"].as_f64(), done["progress"]["failed_images"].as_f64()), (Some(n), Some(1.0)));

    let m = scrape(&cluster.http, &format!("{}/metrics", cluster.base_url)).await;
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in {m:#?}"));
    assert_eq!(get("imgidx_images_indexed_total"), n);
    assert_eq!(get(r#"imgidx_images_failed_total{reason="not_found"}"#), 1.0);
    assert_eq!(get("imgidx_events_applied_total"), n + 1.0);
    assert_eq!(get(r#"imgidx_jobs{status="completed"}"#), 1.0);
    assert_eq!(get(r#"imgidx_jobs{status="running"}"#), 0.0);
    assert_eq!(get(r#"imgidx_http_requests_total{route="/api/v1/index/add-images",method="POST",status="202"}"#), 1.0);
    assert!(get(r#"imgidx_http_requests_total{route="/api/v1/index/status/{job_id}",method="GET",status="200"}"#) >= 1.0);
    assert_eq!(get(r#"imgidx_queue_messages{queue="tasks.normal"}"#), 0.0);
    assert_eq!(get(r#"imgidx_queue_consumers{queue="tasks.normal"}"#), 1.0, "the one worker");
    // Every stage is timed: per image for read and decode (the missing file is never read
    // whole), per batch for the rest.
    assert_eq!(get(r#"imgidx_worker_stage_seconds_count{stage="decode"}"#), n);
    for stage in ["read", "wait_for_batch", "inference", "upsert", "publish_ack"] {
        assert!(get(&format!(r#"imgidx_worker_stage_seconds_count{{stage="{stage}"}}"#)) >= 1.0, "{stage}");
        assert!(get(&format!(r#"imgidx_worker_stage_seconds_sum{{stage="{stage}"}}"#)) > 0.0, "{stage}");
    }
    assert!(get("imgidx_worker_batch_fill_ratio_count") >= 1.0);
    assert!(get("imgidx_event_lag_seconds_count") >= n);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_aggregator_serve_their_own_metrics_when_asked() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cluster_settings(&svc, dir.path());
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let (worker_addr, aggregator_addr) = (free(), free());
    settings.worker.metrics_listen = Some(worker_addr.clone());
    settings.aggregator.metrics_listen = Some(aggregator_addr.clone());
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(imgidx_worker::run(settings.clone(), shutdown.clone()));
    let aggregator = tokio::spawn(imgidx_aggregator::run(settings, shutdown.clone()));
    let http = reqwest::Client::new();
    let ready = |addr: String| {
        let http = http.clone();
        async move {
            for _ in 0..200 {
                if let Ok(r) = http.get(format!("http://{addr}/metrics")).send().await {
                    return r.text().await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no metrics endpoint at {addr}");
        }
    };
    let w = ready(worker_addr).await;
    assert!(w.contains("# TYPE imgidx_worker_stage_seconds histogram"), "{w}");
    assert!(!w.contains("imgidx_events_applied"), "only the worker's own: {w}");
    let a = ready(aggregator_addr).await;
    assert!(a.contains("# TYPE imgidx_events_applied counter"), "{a}");
    parse(&a);
    shutdown.cancel();
    worker.await.unwrap().unwrap();
    aggregator.await.unwrap().unwrap();
}
