//! deploy/Dockerfile: parsed into stages (ARG defaults, ENV, instructions), its
//! `ENV IMGIDX__...` loaded as configuration, and its runtime stages, build
//! context and ONNX Runtime pin checked against the repository.

use std::collections::HashMap;

use super::env::{self, Var};
use super::repo::Repo;

const FILE: &str = "deploy/Dockerfile";
/// The runtime stages `--target` picks.
pub const RUNTIME_STAGES: &[&str] = &["cpu", "cuda"];

pub struct Stage {
    pub name: String,
    pub env: Vec<Var>,
    /// (KEYWORD, arguments), continuation lines joined.
    pub instructions: Vec<(String, String)>,
}

pub struct Dockerfile {
    pub global_args: HashMap<String, String>,
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// Logical lines: comments dropped, `\` continuations joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && !current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let logical = std::mem::take(&mut current);
        if let Some((keyword, rest)) = logical.trim().split_once(char::is_whitespace) {
            out.push((keyword.to_ascii_uppercase(), rest.trim().to_string()));
        }
    }
    out
}

/// Splits on whitespace outside double quotes, dropping the quotes.
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            '\\' => cur.extend(chars.next()),
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Replaces `${NAME}` and `$NAME` with values from `vars`.
fn substitute(s: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(inner) => {
                let end = inner.find('}').ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
                (&inner[..end], &inner[end + 1..])
            }
            None => {
                let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        let value = vars.get(name).ok_or_else(|| format!("{s:?} uses ${name}, which no ARG or ENV defines"))?;
        out.push_str(value);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

pub fn parse(text: &str, problems: &mut Vec<String>) -> Dockerfile {
    let mut df = Dockerfile { global_args: HashMap::new(), stages: Vec::new() };
    // Per stage: ARG values and ENV values, both usable in later ENV lines.
    let mut scope: HashMap<String, String> = HashMap::new();
    for (keyword, rest) in instructions(text) {
        match keyword.as_str() {
            "ARG" => {
                let (name, value) = match rest.split_once('=') {
                    Some((n, v)) => (n.trim().to_string(), Some(v.trim().trim_matches('"').to_string())),
                    None => (rest.trim().to_string(), None),
                };
                if df.stages.is_empty() {
                    df.global_args.insert(name, value.unwrap_or_default());
                } else if let Some(v) = value.or_else(|| df.global_args.get(&name).cloned()) {
                    scope.insert(name, v);
                }
            }
            "FROM" => {
                let words: Vec<&str> = rest.split_whitespace().filter(|w| !w.starts_with("--")).collect();
                let base = words.first().copied().unwrap_or("");
                let name = match words.as_slice() {
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                    _ => format!("#{}", df.stages.len()),
                };
                // A stage built on an earlier one inherits its environment.
                let env = df.stage(base).map(|s| s.env.clone()).unwrap_or_default();
                scope = env.iter().map(|v| (v.name.clone(), v.value.clone())).collect();
                df.stages.push(Stage { name, env, instructions: Vec::new() });
            }
            "ENV" => {
                let Some(stage) = df.stages.last_mut() else { continue };
                let toks = tokens(&rest);
                let pairs: Vec<(String, String)> = if toks.first().is_some_and(|t| t.contains('=')) {
                    toks.iter().filter_map(|t| t.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect()
                } else {
                    let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest.as_str(), ""));
                    vec![(k.to_string(), v.trim().to_string())]
                };
                for (name, raw) in pairs {
                    let origin = format!("{FILE}: stage {}: ENV", stage.name);
                    match substitute(&raw, &scope) {
                        Ok(value) => {
                            scope.insert(name.clone(), value.clone());
                            stage.env.push(Var::new(origin, name, value));
                        }
                        Err(e) => problems.push(format!("{origin} {name}: {e}")),
                    }
                }
            }
            _ => {}
        }
        if let Some(stage) = df.stages.last_mut() {
            stage.instructions.push((keyword, rest));
        }
    }
    df
}

fn env_value<'a>(stage: &'a Stage, name: &str) -> Option<&'a str> {
    stage.env.iter().rev().find(|v| v.name == name).map(|v| v.value.as_str())
}

fn instruction<'a>(stage: &'a Stage, keyword: &str) -> Option<&'a str> {
    stage.instructions.iter().rev().find(|(k, _)| k == keyword).map(|(_, r)| r.as_str())
}

/// Checks the parsed Dockerfile against the repository. `dockerignore` is the
/// text of `.dockerignore`, an allow-list (`*` then `!path` lines).
pub fn check(df: &Dockerfile, dockerignore: &str, repo: &Repo, problems: &mut Vec<String>) {
    match df.global_args.get("ORT_VERSION") {
        Some(v) if *v == repo.ort_version => {}
        other => problems
            .push(format!("{FILE}: ARG ORT_VERSION is {other:?}, scripts/setup-ort.sh pins {}", repo.ort_version)),
    }
    for stage in &df.stages {
        env::check(&stage.env, problems);
    }

    let Some(builder) = df.stage("builder") else {
        return problems.push(format!("{FILE}: no `builder` stage"));
    };
    let runs: Vec<&str> = builder.instructions.iter().filter(|(k, _)| k == "RUN").map(|(_, r)| r.as_str()).collect();
    if !runs.iter().any(|r| r.contains("cargo build --release --locked -p imgidx")) {
        problems.push(format!("{FILE}: builder never runs `cargo build --release --locked -p imgidx`"));
    }
    // The dependency layer needs every member's manifest and a stub crate root.
    for member in &repo.members {
        let copy = format!("{member}/Cargo.toml {member}/");
        if !builder.instructions.iter().any(|(k, r)| k == "COPY" && r == &copy) {
            problems.push(format!("{FILE}: builder lacks `COPY {copy}` for workspace member {member}"));
        }
        if !runs.iter().any(|r| r.contains(member.as_str())) {
            problems.push(format!("{FILE}: builder makes no stub crate root for workspace member {member}"));
        }
    }

    for name in RUNTIME_STAGES {
        let Some(stage) = df.stage(name) else {
            problems.push(format!("{FILE}: no `{name}` stage (--target {name})"));
            continue;
        };
        let at = format!("{FILE}: stage {name}");
        let entrypoint = instruction(stage, "ENTRYPOINT").and_then(|e| serde_json::from_str::<Vec<String>>(e).ok());
        if entrypoint.as_deref() != Some(&["imgidx".to_string()][..]) {
            problems.push(format!("{at}: ENTRYPOINT must be [\"imgidx\"] (the role is the command)"));
        }
        match instruction(stage, "USER") {
            Some(user) if !["root", "0"].contains(&user.split(':').next().unwrap_or("")) => {}
            other => problems.push(format!("{at}: runs as {other:?}, not as a non-root USER")),
        }
        if instruction(stage, "HEALTHCHECK").is_none_or(|h| h.trim().eq_ignore_ascii_case("NONE")) {
            problems.push(format!("{at}: no HEALTHCHECK"));
        }
        let dylib = format!("/libonnxruntime.so.{}", repo.ort_version);
        if !env_value(stage, "ORT_DYLIB_PATH").is_some_and(|p| p.ends_with(&dylib)) {
            problems.push(format!("{at}: ORT_DYLIB_PATH does not point at a libonnxruntime.so.{}", repo.ort_version));
        }
        let volumes = instruction(stage, "VOLUME").unwrap_or("");
        for key in ["IMGIDX__DATA_DIR", "IMGIDX__MODEL__DIR"] {
            match env_value(stage, key) {
                Some(path) if volumes_cover(volumes, path) => {}
                Some(path) => problems.push(format!("{at}: {key}={path} is under no VOLUME")),
                None => problems.push(format!("{at}: sets no {key}")),
            }
        }
    }

    for stage in &df.stages {
        for (keyword, rest) in &stage.instructions {
            if !(keyword == "COPY" || keyword == "ADD") || rest.contains("--from=") {
                continue;
            }
            let words: Vec<&str> = rest.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            for source in &words[..words.len().saturating_sub(1)] {
                let source = source.trim_end_matches('/');
                if !repo.root.join(source).exists() {
                    problems.push(format!("{FILE}: COPY source {source} does not exist"));
                }
                if !dockerignore_allows(dockerignore, source) {
                    problems.push(format!(".dockerignore: COPY source {source} is not allowed into the context"));
                }
            }
        }
    }
}

fn volumes_cover(volumes: &str, path: &str) -> bool {
    let list: Vec<String> = serde_json::from_str(volumes).unwrap_or_else(|_| tokens(volumes));
    list.iter().any(|v| path == v || path.starts_with(&format!("{}/", v.trim_end_matches('/'))))
}

/// Whether an allow-list .dockerignore (`*`, then `!path` lines) lets `source` in.
fn dockerignore_allows(dockerignore: &str, source: &str) -> bool {
    dockerignore.lines().filter_map(|l| l.trim().strip_prefix('!')).any(|allowed| {
        let allowed = allowed.trim_end_matches('/');
        source == allowed || source.starts_with(&format!("{allowed}/"))
    })
}
