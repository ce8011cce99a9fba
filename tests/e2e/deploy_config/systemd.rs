//! deploy/systemd: the units' `Environment=` settings and the example
//! environment file loaded as configuration (with systemd's specifiers
//! expanded), each unit's `ExecStart=` checked against the CLI, and the
//! restart, stop and hardening settings every unit must keep.

use super::env::{self, Var};
use super::repo::Repo;

pub const DIR: &str = "deploy/systemd";
pub const ENV_FILE: &str = "imgidx.env.example";
const INSTALLED_ENV_FILE: &str = "/etc/imgidx/imgidx.env";
const BINARY: &str = "/usr/local/bin/imgidx";
/// Every role has its unit; the worker's is a template (several per node).
pub const UNITS: &[(&str, &str)] = &[
    ("imgidx-api.service", "api"),
    ("imgidx-worker@.service", "worker"),
    ("imgidx-aggregator.service", "aggregator"),
    ("imgidx-serve.service", "serve"),
];

/// The example environment file: uncommented variables, and commented-out
/// `#KEY=VALUE` alternatives.
pub struct EnvFile {
    pub active: Vec<Var>,
    pub alternatives: Vec<Var>,
}

fn is_var_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

pub fn parse_env_file(text: &str, problems: &mut Vec<String>) -> EnvFile {
    let mut file = EnvFile { active: Vec::new(), alternatives: Vec::new() };
    for (i, line) in text.lines().enumerate() {
        let origin = format!("{DIR}/{ENV_FILE}:{}", i + 1);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (commented, body) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, line),
        };
        let Some((name, value)) = body.split_once('=').filter(|(n, _)| is_var_name(n)) else {
            if !commented {
                problems.push(format!("{origin}: not KEY=VALUE: {line:?}"));
            }
            continue;
        };
        // Commented prose that happens to hold `=` is not a variable unless it looks like one of ours.
        if commented && !name.starts_with("IMGIDX") {
            continue;
        }
        if value.contains(" #") {
            problems.push(format!("{origin}: {name}: systemd keeps `#...` after a value as part of it"));
        }
        let var = Var::new(origin, name, value);
        if commented {
            file.alternatives.push(var);
        } else {
            file.active.push(var);
        }
    }
    file
}

/// Checks the example environment file alone: its variables load together, and
/// each commented alternative loads on top of them.
pub fn check_env_file(file: &EnvFile, repo: &Repo, problems: &mut Vec<String>) {
    env::check(&file.active, problems);
    for alt in &file.alternatives {
        let mut vars = file.active.clone();
        vars.push(alt.clone());
        env::check(&vars, problems);
    }
    if let Some(v) = file.active.iter().find(|v| v.name == "IMGIDX__WORKER__NAME") {
        problems.push(format!("{}: IMGIDX__WORKER__NAME here overrides every worker instance's own name", v.origin));
    }
    let dylib = format!("/libonnxruntime.so.{}", repo.ort_version);
    let paths: Vec<&Var> = file
        .active
        .iter()
        .filter(|v| v.name == "ORT_DYLIB_PATH" || v.name == "IMGIDX__MODEL__ORT_DYLIB_PATH")
        .collect();
    if paths.is_empty() || !paths.iter().all(|v| v.value.ends_with(&dylib)) {
        problems.push(format!("{DIR}/{ENV_FILE}: ORT_DYLIB_PATH must name a libonnxruntime.so.{}", repo.ort_version));
    }
}

/// `(section, key, value)` of a unit file, continuation lines joined.
fn settings(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if pending.is_empty() && (t.is_empty() || t.starts_with('#') || t.starts_with(';')) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let logical = std::mem::take(&mut pending);
        if let Some(name) = logical.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((k, v)) = logical.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// systemd's specifier expansion for an instance `1` on host `node1`; an
/// unknown specifier (such as `%2f` from a URL) makes systemd refuse the line.
fn expand_specifiers(s: &str, unit: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('i' | 'I') => out.push('1'),
            Some('H' | 'l') => out.push_str("node1"),
            Some('n' | 'N' | 'p' | 'P') => out.push_str(unit.trim_end_matches(".service")),
            Some(other) => {
                return Err(format!(
                    "unknown specifier %{other} (write %% for a literal %, or move it to the env file)"
                ))
            }
            None => return Err("a lone % at the end (write %%)".into()),
        }
    }
    Ok(out)
}

/// Assignments of one `Environment=` line: `A=1 "B=two words"`.
fn assignments(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in value.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (_, c) => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn seconds(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit.trim() {
        "" | "s" | "sec" => Some(n),
        "m" | "min" => Some(n * 60),
        _ => None,
    }
}

/// Checks one unit (`name`, `text`) with the environment file it reads.
pub fn check_unit(name: &str, text: &str, file: &EnvFile, repo: &Repo, problems: &mut Vec<String>) {
    let at = format!("{DIR}/{name}");
    let all = settings(text);
    let service: Vec<(&str, &str)> =
        all.iter().filter(|(s, _, _)| s == "Service").map(|(_, k, v)| (k.as_str(), v.as_str())).collect();
    let get = |key: &str| service.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let get_all = |key: &str| service.iter().filter(|(k, _)| *k == key).map(|(_, v)| *v).collect::<Vec<_>>();

    // The environment the process sees: Environment=, then the file (which wins).
    let mut vars = Vec::new();
    for line in get_all("Environment") {
        for assignment in assignments(line) {
            let Some((key, value)) = assignment.split_once('=') else {
                problems.push(format!("{at}: Environment={line}: {assignment:?} is not KEY=VALUE"));
                continue;
            };
            match expand_specifiers(value, name) {
                Ok(value) => vars.push(Var::new(format!("{at}: Environment="), key, value)),
                Err(e) => problems.push(format!("{at}: Environment={assignment}: {e}")),
            }
        }
    }
    if get("EnvironmentFile") != Some(INSTALLED_ENV_FILE) {
        problems.push(format!("{at}: EnvironmentFile= must be {INSTALLED_ENV_FILE}"));
    }
    vars.extend(file.active.iter().cloned());
    env::check(&vars, problems);

    let role = UNITS.iter().find(|(unit, _)| *unit == name).map(|(_, role)| *role);
    let exec: Vec<&str> = get("ExecStart").unwrap_or("").split_whitespace().collect();
    match exec.as_slice() {
        [binary, sub, ..] if *binary == BINARY => {
            if !repo.subcommands.iter().any(|s| s == sub) {
                problems.push(format!("{at}: ExecStart runs `imgidx {sub}`, which is no subcommand"));
            }
            if role.is_some_and(|r| r != *sub) {
                problems.push(format!("{at}: ExecStart runs `imgidx {sub}`, not the unit's role {role:?}"));
            }
        }
        _ => problems.push(format!("{at}: ExecStart must be `{BINARY} <role> ...`")),
    }
    let names_instances = get_all("Environment")
        .iter()
        .flat_map(|line| assignments(line))
        .any(|a| a.starts_with("IMGIDX__WORKER__NAME=") && a.contains("%i"));
    if role == Some("worker") && !names_instances {
        problems.push(format!("{at}: the template must name each instance: Environment=IMGIDX__WORKER__NAME=...%i..."));
    }

    let expect =
        [("Restart", "on-failure"), ("KillSignal", "SIGTERM"), ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict")];
    for (key, want) in expect {
        if get(key) != Some(want) {
            problems.push(format!("{at}: {key}= must be {want}, is {:?}", get(key)));
        }
    }
    match get("User") {
        Some(user) if user != "root" && user != "0" => {}
        other => problems.push(format!("{at}: User= must be an unprivileged user, is {other:?}")),
    }
    match get("TimeoutStopSec").and_then(seconds) {
        Some(s) if s >= 30 => {}
        _ => problems.push(format!("{at}: TimeoutStopSec= must leave at least 30s to drain")),
    }
    let data_dir = file.active.iter().rev().find(|v| v.name == "IMGIDX__DATA_DIR").map(|v| v.value.as_str());
    let writable: Vec<&str> = get_all("ReadWritePaths").iter().flat_map(|l| l.split_whitespace()).collect();
    if !data_dir.is_some_and(|d| writable.iter().any(|w| w.trim_start_matches('-') == d)) {
        problems.push(format!("{at}: ReadWritePaths= must include the data dir {data_dir:?} (ProtectSystem=strict)"));
    }
}
