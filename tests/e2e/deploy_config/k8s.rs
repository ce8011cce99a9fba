//! deploy/k8s/: every manifest parses, the kustomization lists them all, each role has
//! a Deployment running a real `imgidx` subcommand whose configuration (ConfigMap +
//! Secret + its own env) loads, the API is probed on /health on the port it listens
//! on, workers ask for a GPU, and KEDA scales the worker Deployment on exactly the
//! task queues the code declares for the configured prefix.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_norway::Value;

use imgidx_shared::broker::QueueNames;
use imgidx_shared::messages::Priority;

use super::env::{self, Var};
use super::repo::Repo;

pub const DIR: &str = "deploy/k8s";
/// Roles that run as Deployments, and the subcommand each runs.
const ROLES: [(&str, &str); 3] = [("imgidx-api", "api"), ("imgidx-worker", "worker"), ("imgidx-aggregator", "aggregator")];

/// One manifest document, with where it came from.
struct Doc {
    origin: String,
    value: Value,
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(*key))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

fn kind(doc: &Doc) -> &str {
    str_at(&doc.value, &["kind"]).unwrap_or("")
}

fn name(doc: &Doc) -> &str {
    str_at(&doc.value, &["metadata", "name"]).unwrap_or("")
}

/// Every document of every file, in file order (`files`: name and text).
fn parse(files: &[(String, String)], problems: &mut Vec<String>) -> Vec<Doc> {
    let mut docs = Vec::new();
    for (file, text) in files {
        for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
            match Value::deserialize(de) {
                Ok(Value::Null) => {}
                Ok(value) => docs.push(Doc { origin: format!("{file} (document {})", i + 1), value }),
                Err(e) => problems.push(format!("{file}: not YAML: {e}")),
            }
        }
    }
    docs
}

/// A ConfigMap's `data` or a Secret's `stringData`, as variables.
fn env_source(doc: &Doc) -> Vec<Var> {
    let field = if kind(doc) == "Secret" { "stringData" } else { "data" };
    let Some(map) = get(&doc.value, &[field]).and_then(Value::as_mapping) else { return Vec::new() };
    map.iter()
        .filter_map(|(k, v)| Some(Var::new(doc.origin.clone(), k.as_str()?, v.as_str()?)))
        .collect()
}

pub fn check(files: &[(String, String)], repo: &Repo, problems: &mut Vec<String>) {
    let docs = parse(files, problems);
    check_kustomization(files, &docs, problems);
    let sources: BTreeMap<(String, String), Vec<Var>> = docs
        .iter()
        .filter(|d| matches!(kind(d), "ConfigMap" | "Secret"))
        .map(|d| ((kind(d).to_string(), name(d).to_string()), env_source(d)))
        .collect();
    let mut prefix = None;
    for (deployment, role) in ROLES {
        let Some(doc) = docs.iter().find(|d| kind(d) == "Deployment" && name(d) == deployment) else {
            problems.push(format!("{DIR}: no Deployment {deployment}"));
            continue;
        };
        let Some(container) = get(&doc.value, &["spec", "template", "spec", "containers"])
            .and_then(Value::as_sequence)
            .and_then(|c| c.first())
        else {
            problems.push(format!("{}: {deployment} has no container", doc.origin));
            continue;
        };
        let args: Vec<&str> = get(container, &["args"]).and_then(Value::as_sequence).map_or(Vec::new(), |a| {
            a.iter().filter_map(Value::as_str).collect()
        });
        match args.first() {
            Some(cmd) if *cmd == role && repo.subcommands.iter().any(|s| s == cmd) => {}
            other => problems.push(format!("{}: {deployment} must run `imgidx {role}` (args {other:?})", doc.origin)),
        }
        let vars = container_env(doc, container, &sources, problems);
        let Some(settings) = env::check(&vars, problems) else { continue };
        prefix.get_or_insert(settings.broker.queue_prefix.clone());
        match role {
            "api" => check_api(doc, container, &settings, problems),
            "worker" if get(container, &["resources", "limits", "nvidia.com/gpu"]).is_none() => {
                problems.push(format!("{}: {deployment} asks for no GPU (resources.limits nvidia.com/gpu)", doc.origin));
            }
            _ => {}
        }
    }
    check_keda(&docs, &sources, prefix.as_deref().unwrap_or("imgidx"), problems);
}

/// envFrom (ConfigMaps and Secrets, which must exist) then the container's own env.
fn container_env(
    doc: &Doc,
    container: &Value,
    sources: &BTreeMap<(String, String), Vec<Var>>,
    problems: &mut Vec<String>,
) -> Vec<Var> {
    let mut vars = Vec::new();
    for from in get(container, &["envFrom"]).and_then(Value::as_sequence).into_iter().flatten() {
        for (field, kind) in [("configMapRef", "ConfigMap"), ("secretRef", "Secret")] {
            if let Some(n) = str_at(from, &[field, "name"]) {
                match sources.get(&(kind.to_string(), n.to_string())) {
                    Some(v) => vars.extend(v.iter().cloned()),
                    None => problems.push(format!("{}: envFrom names {kind} {n:?}, which no manifest defines", doc.origin)),
                }
            }
        }
    }
    for e in get(container, &["env"]).and_then(Value::as_sequence).into_iter().flatten() {
        if let (Some(n), Some(v)) = (str_at(e, &["name"]), str_at(e, &["value"])) {
            vars.push(Var::new(doc.origin.clone(), n, v));
        }
    }
    vars
}

fn check_api(doc: &Doc, container: &Value, settings: &imgidx_shared::config::Settings, problems: &mut Vec<String>) {
    let listen_port = settings.api.listen.rsplit_once(':').and_then(|(_, p)| p.parse::<u64>().ok());
    let ports: Vec<u64> = get(container, &["ports"]).and_then(Value::as_sequence).map_or(Vec::new(), |p| {
        p.iter().filter_map(|p| get(p, &["containerPort"]).and_then(Value::as_u64)).collect()
    });
    if listen_port.is_none() || !ports.contains(&listen_port.unwrap_or(0)) {
        problems.push(format!("{}: the API listens on {} but exposes ports {ports:?}", doc.origin, settings.api.listen));
    }
    for probe in ["readinessProbe", "livenessProbe"] {
        if str_at(container, &[probe, "httpGet", "path"]) != Some("/health") {
            problems.push(format!("{}: the API's {probe} must GET /health", doc.origin));
        }
    }
}

fn check_kustomization(files: &[(String, String)], docs: &[Doc], problems: &mut Vec<String>) {
    let Some(k) = docs.iter().find(|d| kind(d) == "Kustomization") else {
        problems.push(format!("{DIR}: no kustomization.yaml"));
        return;
    };
    let listed: BTreeSet<&str> = get(&k.value, &["resources"])
        .and_then(Value::as_sequence)
        .map_or(BTreeSet::new(), |r| r.iter().filter_map(Value::as_str).collect());
    for (file, _) in files.iter().filter(|(f, _)| f != "kustomization.yaml") {
        if !listed.contains(file.as_str()) {
            problems.push(format!("{DIR}/kustomization.yaml does not list {file}"));
        }
    }
    for listed in listed {
        if !files.iter().any(|(f, _)| f == listed) {
            problems.push(format!("{DIR}/kustomization.yaml lists {listed}, which does not exist"));
        }
    }
}

fn check_keda(docs: &[Doc], sources: &BTreeMap<(String, String), Vec<Var>>, prefix: &str, problems: &mut Vec<String>) {
    let Some(scaled) = docs.iter().find(|d| kind(d) == "ScaledObject") else {
        problems.push(format!("{DIR}: no KEDA ScaledObject for the workers"));
        return;
    };
    if str_at(&scaled.value, &["spec", "scaleTargetRef", "name"]) != Some("imgidx-worker") {
        problems.push(format!("{}: the ScaledObject must scale the imgidx-worker Deployment", scaled.origin));
    }
    let names = QueueNames::new(prefix);
    let expected: BTreeSet<String> =
        ["high", "normal", "low"].iter().filter_map(|p| Priority::parse(p)).map(|p| names.task_queue(p)).collect();
    let mut queues = BTreeSet::new();
    for trigger in get(&scaled.value, &["spec", "triggers"]).and_then(Value::as_sequence).into_iter().flatten() {
        if str_at(trigger, &["type"]) == Some("rabbitmq") {
            queues.insert(str_at(trigger, &["metadata", "queueName"]).unwrap_or("").to_string());
        }
        let auth = str_at(trigger, &["authenticationRef", "name"]).unwrap_or("");
        let Some(ta) = docs.iter().find(|d| kind(d) == "TriggerAuthentication" && name(d) == auth) else {
            problems.push(format!("{}: trigger authentication {auth:?} is not defined", scaled.origin));
            continue;
        };
        for r in get(&ta.value, &["spec", "secretTargetRef"]).and_then(Value::as_sequence).into_iter().flatten() {
            let (secret, key) = (str_at(r, &["name"]).unwrap_or(""), str_at(r, &["key"]).unwrap_or(""));
            let found = sources.get(&("Secret".to_string(), secret.to_string())).is_some_and(|v| v.iter().any(|v| v.name == key));
            if !found {
                problems.push(format!("{}: secretTargetRef {secret}/{key} is not in any Secret", ta.origin));
            }
        }
    }
    if queues != expected {
        problems.push(format!("{}: KEDA watches queues {queues:?}; the code declares {expected:?} for prefix {prefix:?}", scaled.origin));
    }
}
