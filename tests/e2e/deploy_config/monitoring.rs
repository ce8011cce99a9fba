//! The monitoring files stay true to the code: every metric the Grafana dashboard
//! queries is one the code registers, and Prometheus scrapes each role on the port
//! docker-compose.yml makes it listen on.

use serde_norway::Value;

use super::repo::Repo;

pub const DASHBOARD: &str = "deploy/grafana/dashboards/imgidx.json";
pub const PROMETHEUS: &str = "deploy/prometheus/prometheus.yml";

/// Names the code registers (`registry.register("name", …)`, which prefixes `imgidx_`).
pub fn registered(repo: &Repo) -> Vec<String> {
    let call = regex::Regex::new(r#"register\(\s*"([a-z_]+)""#).unwrap();
    let mut names = Vec::new();
    let mut dirs = vec![repo.root.join("shared/src")];
    for entry in std::fs::read_dir(repo.root.join("services")).unwrap() {
        dirs.push(entry.unwrap().path().join("src"));
    }
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                names.extend(call.captures_iter(&text).map(|c| format!("imgidx_{}", &c[1])));
            }
        }
    }
    names
}

pub fn check_dashboard(text: &str, registered: &[String], problems: &mut Vec<String>) {
    let dashboard: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return problems.push(format!("{DASHBOARD}: not JSON: {e}")),
    };
    let metric = regex::Regex::new(r"imgidx_[a-z_]+").unwrap();
    let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
    if panels.is_empty() {
        problems.push(format!("{DASHBOARD}: no panels"));
    }
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("?");
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{DASHBOARD}: panel {title:?} queries nothing"));
        }
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or("");
            for name in metric.find_iter(expr).map(|m| m.as_str()) {
                let base = ["_total", "_sum", "_count", "_bucket"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
                if !registered.iter().any(|r| r == name || r == base) {
                    problems.push(format!("{DASHBOARD}: panel {title:?} queries {name}, which no code registers"));
                }
            }
        }
    }
}

/// Each scrape target `host:port` must be a compose service listening there: the API on
/// a published container port, a worker or the aggregator on its `METRICS_LISTEN`.
pub fn check_prometheus(text: &str, compose: &str, problems: &mut Vec<String>) {
    let (Ok(config), Ok(mut compose)) = (serde_norway::from_str::<Value>(text), serde_norway::from_str::<Value>(compose)) else {
        return problems.push(format!("{PROMETHEUS} or docker-compose.yml: not YAML"));
    };
    let _ = compose.apply_merge();
    let mut targets = Vec::new();
    for job in config["scrape_configs"].as_sequence().into_iter().flatten() {
        for t in job["static_configs"].as_sequence().into_iter().flatten() {
            for target in t["targets"].as_sequence().into_iter().flatten().filter_map(Value::as_str) {
                if let Some((host, port)) = target.rsplit_once(':') {
                    targets.push((host.to_string(), port.to_string()));
                }
            }
        }
        for sd in job["dns_sd_configs"].as_sequence().into_iter().flatten() {
            let port = sd["port"].as_u64().map(|p| p.to_string()).unwrap_or_default();
            for name in sd["names"].as_sequence().into_iter().flatten().filter_map(Value::as_str) {
                targets.push((name.to_string(), port.clone()));
            }
        }
    }
    if targets.is_empty() {
        problems.push(format!("{PROMETHEUS}: scrapes nothing"));
    }
    for (host, port) in targets {
        let service = &compose["services"][host.as_str()];
        if service.is_null() {
            problems.push(format!("{PROMETHEUS}: target {host} is no compose service"));
            continue;
        }
        let env = &service["environment"];
        let listens = ["IMGIDX__WORKER__METRICS_LISTEN", "IMGIDX__AGGREGATOR__METRICS_LISTEN"]
            .iter()
            .filter_map(|k| env[*k].as_str())
            .any(|v| v.ends_with(&format!(":{port}")));
        let published = service["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|p| p.ends_with(&format!(":{port}")));
        if !listens && !published {
            problems.push(format!("{PROMETHEUS}: {host}:{port}, but that service listens on no such port"));
        }
    }
}
