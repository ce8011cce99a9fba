//! `imgidx upload FILE...`: send image files from this machine to the server (seed 003's
//! `POST /api/v1/ingest/upload`), which keeps them in its object store and indexes them.
//! For a server that cannot read the client's disk; `imgidx index` sends paths instead.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use reqwest::multipart::{Form, Part};
use reqwest::Method;

use super::args::UploadArgs;
use super::http::Api;
use super::index::conclude;
use super::output::parse;
use super::paths::expand;
use super::types::AddImagesResponse;

const UPLOAD: [&str; 4] = ["api", "v1", "ingest", "upload"];

pub async fn upload(args: UploadArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let expansion = expand(&args.files, args.recursive)?;
    for w in &expansion.warnings {
        eprintln!("warning: {w}");
    }
    let api = Api::new(&args.server)?;
    if expansion.paths.is_empty() {
        eprintln!("nothing to upload: no image files found");
    }
    let chunk = usize::try_from(args.chunk).unwrap_or(usize::MAX);
    let (mut raw, mut typed) = (Vec::new(), Vec::<AddImagesResponse>::new());
    for files in expansion.paths.chunks(chunk) {
        let form = form(files, &args).await?;
        let (url, req) = api.request(Method::POST, &UPLOAD);
        match api.send(&url, req.multipart(form)).await {
            Ok(answer) => {
                typed.push(parse(&answer, "upload answer")?);
                raw.push(answer);
            }
            Err(e) if typed.is_empty() => return Err(e),
            Err(e) => {
                let sent: usize = typed.len() * chunk;
                return Err(anyhow!("{e}; the first {sent} of {} files had been uploaded before", expansion.paths.len()));
            }
        }
    }
    conclude(&api, &typed, raw, args.submit.wait, started, args.server.json).await
}

/// One request's form: the files (read one by one), and the options left out when unset
/// so the server's defaults apply.
async fn form(files: &[String], args: &UploadArgs) -> Result<Form> {
    let mut form = Form::new().text("priority", args.submit.priority.as_str().to_string());
    if let Some(c) = &args.submit.collection {
        form = form.text("collection", c.clone());
    }
    for file in files {
        let path = PathBuf::from(file);
        let bytes = tokio::fs::read(&path).await.with_context(|| format!("reading {file}"))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| file.clone());
        form = form.part("files", Part::bytes(bytes).file_name(name));
    }
    Ok(form)
}
