//! Environment variables from deployment files, checked by the real
//! configuration loader: an unknown key or a value it cannot take is a problem.

use std::collections::HashMap;

use imgidx_shared::config::{Settings, ENV_PREFIX, ENV_SEPARATOR};

/// Variables named like configuration but read elsewhere (clap's `--config`).
const NOT_CONFIG_KEYS: &[&str] = &["IMGIDX_CONFIG"];

/// One variable as a deployment file sets it; `origin` names the file and place.
#[derive(Clone, Debug)]
pub struct Var {
    pub origin: String,
    pub name: String,
    pub value: String,
}

impl Var {
    pub fn new(origin: impl Into<String>, name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { origin: origin.into(), name: name.into(), value: value.into() }
    }
}

fn config_prefix() -> String {
    format!("{ENV_PREFIX}{ENV_SEPARATOR}")
}

/// Whether `name` is read by the configuration loader (`IMGIDX__...`).
pub fn is_config(name: &str) -> bool {
    name.starts_with(&config_prefix())
}

/// Checks `vars` as one process environment (later entries win): each
/// configuration variable must load alone, and all of them together; a name
/// that starts with IMGIDX but misses the `IMGIDX__` prefix is silently ignored
/// by the loader, so it is a problem too. Returns the settings when all loaded.
pub fn check(vars: &[Var], problems: &mut Vec<String>) -> Option<Settings> {
    let before = problems.len();
    let mut merged: HashMap<String, (String, String)> = HashMap::new();
    for var in vars {
        if is_config(&var.name) {
            let alone = HashMap::from([(var.name.clone(), var.value.clone())]);
            if let Err(e) = Settings::load_from(None, Some(alone)) {
                problems.push(format!("{}: {}={:?} does not load: {e}", var.origin, var.name, var.value));
            }
            merged.insert(var.name.clone(), (var.value.clone(), var.origin.clone()));
        } else if var.name.starts_with(ENV_PREFIX) && !NOT_CONFIG_KEYS.contains(&var.name.as_str()) {
            problems.push(format!(
                "{}: {} looks like configuration but lacks the `{}` prefix, so imgidx ignores it",
                var.origin,
                var.name,
                config_prefix()
            ));
        }
    }
    if problems.len() > before {
        return None;
    }
    let origins: Vec<String> = {
        let mut o: Vec<String> = merged.values().map(|(_, origin)| origin.clone()).collect();
        o.sort();
        o.dedup();
        o
    };
    let env: HashMap<String, String> = merged.into_iter().map(|(k, (v, _))| (k, v)).collect();
    match Settings::load_from(None, Some(env)) {
        Ok(settings) => Some(settings),
        Err(e) => {
            problems.push(format!("{}: these variables together do not load: {e}", origins.join(", ")));
            None
        }
    }
}
