//! Facts the deployment files must agree with, read from the repository itself:
//! the CLI's subcommands, the pinned ONNX Runtime version, the workspace members.

use std::path::{Path, PathBuf};

pub struct Repo {
    pub root: PathBuf,
    /// `imgidx` subcommands, as clap names them (kebab-case of the `Command` variants).
    pub subcommands: Vec<String>,
    /// `ORT_VERSION` default of scripts/setup-ort.sh.
    pub ort_version: String,
    /// `[workspace] members` of the root Cargo.toml.
    pub members: Vec<String>,
}

impl Repo {
    pub fn load() -> Self {
        let root = imgidx_tests::repo_root();
        let subcommands = subcommands(&root.join("services/imgidx/src"));
        let ort_version = script_ort_version(&read(&root, "scripts/setup-ort.sh"))
            .expect("scripts/setup-ort.sh has no `ORT_VERSION=${ORT_VERSION:-X}` line");
        let members = workspace_members(&read(&root, "Cargo.toml"));
        assert!(!members.is_empty(), "no [workspace] members found in Cargo.toml");
        Self { root, subcommands, ort_version, members }
    }

    pub fn read(&self, rel: &str) -> String {
        read(&self.root, rel)
    }
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// The default in a script's `ORT_VERSION=${ORT_VERSION:-1.2.3}` line.
pub fn script_ort_version(script: &str) -> Option<String> {
    script.lines().find_map(|line| {
        let v = line.trim().strip_prefix("ORT_VERSION=${ORT_VERSION:-")?.strip_suffix('}')?;
        Some(v.to_string())
    })
}

/// Variants of `enum Command` in the CLI sources, kebab-cased as clap does.
fn subcommands(src: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(src)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", src.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let Some(start) = text.find("enum Command {") else { continue };
        let body = &text[start + "enum Command {".len()..];
        let mut depth = 1usize;
        for line in body.lines() {
            if depth == 1 {
                let t = line.trim();
                let ident: String = t.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
                if ident.starts_with(|c: char| c.is_ascii_uppercase()) {
                    found.push(kebab(&ident));
                }
            }
            depth += line.matches(['{', '(']).count();
            depth -= line.matches(['}', ')']).count().min(depth);
            if depth == 0 {
                break;
            }
        }
    }
    assert!(!found.is_empty(), "no `enum Command` variants found under {}", src.display());
    found
}

fn kebab(ident: &str) -> String {
    let mut out = String::new();
    for (i, c) in ident.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn workspace_members(manifest: &str) -> Vec<String> {
    let Some(start) = manifest.find("members = [") else { return Vec::new() };
    let list = &manifest[start + "members = [".len()..];
    let list = &list[..list.find(']').unwrap_or(list.len())];
    list.split(',').map(|m| m.trim().trim_matches('"').to_string()).filter(|m| !m.is_empty()).collect()
}
