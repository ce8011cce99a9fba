//! docker-compose.yml: interpolated as `docker compose` does with no variable
//! set, then every imgidx service's configuration loaded, its command checked
//! against the CLI, workers kept scalable, and dependencies waited on by health.

use serde_norway::{Mapping, Value};

use super::dockerfile::Dockerfile;
use super::env::{self, Var};
use super::repo::Repo;

const FILE: &str = "docker-compose.yml";

/// Compose's variable interpolation with an empty environment. Only forms with
/// a default are accepted, so the file works without a `.env` file.
pub fn interpolate(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let Some(inner) = after.strip_prefix('{') else {
            return Err(format!("bare `$` in {s:?}: write ${{NAME:-default}}, or $$ for a literal $"));
        };
        let mut depth = 1usize;
        let mut end = None;
        for (j, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(j);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(|| format!("unclosed `${{` in {s:?}"))?;
        let body = &inner[..end];
        let name_len = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(body.len());
        let (name, op) = body.split_at(name_len);
        match op.strip_prefix(":-").or_else(|| op.strip_prefix('-')) {
            Some(default) if !name.is_empty() => out.push_str(&interpolate(default)?),
            _ => return Err(format!("${{{body}}} in {s:?} has no default: write ${{{name}:-default}}")),
        }
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn interpolate_tree(value: &mut Value, path: &str, problems: &mut Vec<String>) {
    match value {
        Value::String(s) => match interpolate(s) {
            Ok(v) => *s = v,
            Err(e) => problems.push(format!("{FILE}: {path}: {e}")),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &format!("{path}[{i}]"), problems);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = k.as_str().unwrap_or("?");
                interpolate_tree(v, &format!("{path}.{key}"), problems);
            }
        }
        _ => {}
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A service's `environment`, in either of compose's two forms.
fn environment(name: &str, svc: &Mapping, problems: &mut Vec<String>) -> Vec<Var> {
    let origin = format!("{FILE}: services.{name}.environment");
    let mut vars = Vec::new();
    match svc.get("environment") {
        None => {}
        Some(Value::Mapping(map)) => {
            for (k, v) in map {
                let key = k.as_str().unwrap_or("?").to_string();
                match scalar(v) {
                    Some(value) => vars.push(Var::new(&origin, key, value)),
                    None => problems.push(format!("{origin}: {key} has no value (give every variable one)")),
                }
            }
        }
        Some(Value::Sequence(items)) => {
            for item in items {
                match item.as_str().and_then(|s| s.split_once('=')) {
                    Some((k, v)) => vars.push(Var::new(&origin, k, v)),
                    None => problems.push(format!("{origin}: {item:?} is not KEY=VALUE")),
                }
            }
        }
        Some(other) => problems.push(format!("{origin}: neither a mapping nor a list: {other:?}")),
    }
    vars
}

fn words(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().map(String::from).collect(),
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
        _ => Vec::new(),
    }
}

/// The Dockerfile stage an imgidx service runs, or None for other images.
fn imgidx_stage(svc: &Mapping) -> Option<String> {
    let build = svc.get("build")?.as_mapping()?;
    let dockerfile = build.get("dockerfile")?.as_str()?;
    (dockerfile == "deploy/Dockerfile").then(|| build.get("target").and_then(Value::as_str).unwrap_or("").to_string())
}

fn depends_on(svc: &Mapping) -> Vec<(String, Option<String>)> {
    match svc.get("depends_on") {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar).map(|n| (n, None)).collect(),
        Some(Value::Mapping(map)) => map
            .iter()
            .map(|(k, v)| {
                let condition = v.get("condition").and_then(Value::as_str).map(String::from);
                (k.as_str().unwrap_or("?").to_string(), condition)
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn has_healthcheck(svc: &Mapping) -> bool {
    let Some(hc) = svc.get("healthcheck") else { return false };
    hc.get("disable").and_then(Value::as_bool) != Some(true) && hc.get("test").is_some()
}

/// Checks compose `text` (the repository's file, or a variant of it).
pub fn check(text: &str, dockerfile: &Dockerfile, repo: &Repo, problems: &mut Vec<String>) {
    let mut doc: Value = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => return problems.push(format!("{FILE}: not YAML: {e}")),
    };
    if let Err(e) = doc.apply_merge() {
        return problems.push(format!("{FILE}: bad `<<` merge: {e}"));
    }
    interpolate_tree(&mut doc, "", problems);
    let Some(services) = doc.get("services").and_then(Value::as_mapping) else {
        return problems.push(format!("{FILE}: no services"));
    };
    let named_volumes: Vec<String> = doc
        .get("volumes")
        .and_then(Value::as_mapping)
        .map(|m| m.keys().filter_map(|k| k.as_str().map(String::from)).collect())
        .unwrap_or_default();

    let mut roles = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap_or("?");
        let Some(svc) = svc.as_mapping() else {
            problems.push(format!("{FILE}: services.{name} is not a mapping"));
            continue;
        };
        let at = format!("{FILE}: services.{name}");
        let vars = environment(name, svc, problems);

        for (target, condition) in depends_on(svc) {
            match services.get(target.as_str()).and_then(Value::as_mapping) {
                None => problems.push(format!("{at}: depends_on {target}, which is no service")),
                // A one-shot (the bucket maker): done when it exited 0, so it must not restart.
                Some(dep) if condition.as_deref() == Some("service_completed_successfully") => {
                    if dep.get("restart").and_then(Value::as_str).is_some_and(|r| r != "no" && r != "on-failure") {
                        problems.push(format!("{at}: depends_on {target} to complete, but {target} restarts"));
                    }
                }
                Some(dep) if !has_healthcheck(dep) => {
                    problems.push(format!("{at}: depends_on {target}, which has no healthcheck"))
                }
                Some(_) if condition.as_deref() != Some("service_healthy") => {
                    problems.push(format!("{at}: depends_on {target} should wait for `condition: service_healthy`"))
                }
                Some(_) => {}
            }
        }
        for volume in svc.get("volumes").and_then(Value::as_sequence).into_iter().flatten() {
            let Some(source) = volume.as_str().and_then(|v| v.split(':').next()) else { continue };
            let is_path = source.starts_with(['.', '/', '~']);
            if !is_path && !named_volumes.iter().any(|v| v == source) {
                problems.push(format!("{at}: volume {source} is not declared under top-level `volumes`"));
            }
        }

        let Some(stage) = imgidx_stage(svc) else {
            // Not an imgidx image: its variables must still not look like ours.
            env::check(&vars, problems);
            continue;
        };
        if svc.get("entrypoint").is_some() {
            problems.push(format!("{at}: overrides the image's `imgidx` entrypoint"));
        }
        match dockerfile.stage(&stage) {
            None => problems.push(format!("{at}: build target {stage:?} is no stage of deploy/Dockerfile")),
            Some(s) => {
                // What the container sees: the image's ENV, then the service's.
                let mut all = s.env.clone();
                all.extend(vars.iter().cloned());
                if let Some(settings) = env::check(&all, problems) {
                    let (batch, prefetch) = (settings.worker.batch_size, usize::from(settings.broker.prefetch));
                    if words(svc.get("command")).first().map(String::as_str) == Some("worker") && prefetch < 2 * batch {
                        problems.push(format!(
                            "{at}: broker.prefetch {prefetch} is under twice worker.batch_size {batch} \
                             (docs/configuration.md)"
                        ));
                    }
                }
            }
        }
        let command = words(svc.get("command"));
        let Some(role) = command.first() else {
            problems.push(format!("{at}: no command; say which role (api, worker, aggregator, serve)"));
            continue;
        };
        if !repo.subcommands.contains(role) {
            problems.push(format!("{at}: command {role:?} is not an imgidx subcommand {:?}", repo.subcommands));
        }
        if role == "worker" {
            // `--scale worker=N` needs replicas that differ in nothing fixed.
            for key in ["container_name", "ports", "hostname"] {
                if svc.contains_key(key) {
                    problems.push(format!("{at}: a worker must not set `{key}`: it could not be scaled"));
                }
            }
            if vars.iter().any(|v| v.name == "IMGIDX__WORKER__NAME") {
                problems.push(format!("{at}: IMGIDX__WORKER__NAME would give every replica one name"));
            }
        }
        roles.push(role.clone());
    }
    for role in ["api", "worker", "aggregator"] {
        if !roles.iter().any(|r| r == role) {
            problems.push(format!("{FILE}: no service runs `imgidx {role}`"));
        }
    }
}
