//! `imgidx collections list|create|delete|select|clear-cache|reembed|delete-previous`:
//! the server's named collections (`/api/v1/collections`) and their model switches.

use std::process::ExitCode;

use std::time::Duration;

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::args::CollectionsCommand;
use super::http::Api;
use super::output::{or_dash, parse, show, table};
use super::wait::wait_jobs;

const COLLECTIONS: [&str; 3] = ["api", "v1", "collections"];

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
struct Collection {
    name: String,
    model: String,
    vector_size: u64,
    distance: String,
    is_selected: bool,
    /// Absent when the server could not read the collection's index.
    points: Option<u64>,
    size_bytes: Option<u64>,
    /// The model switch under way.
    switching: Option<Switching>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
struct Switching {
    model: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct Reembedding {
    job_id: String,
    message: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct CollectionList {
    collections: Vec<Collection>,
    selected: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct Message {
    message: String,
}

pub async fn collections(cmd: CollectionsCommand) -> Result<ExitCode> {
    match cmd {
        CollectionsCommand::List { server } => {
            let answer = Api::new(&server)?.get(&COLLECTIONS).await?;
            show(&answer, server.json, |a| Ok(list_text(&parse(a, "collection list")?)))
        }
        CollectionsCommand::Create { name, vector_size, distance, model, server } => {
            // Only what was given: the server fills in its model's size and its default distance.
            let mut body = Map::new();
            body.insert("collection_name".into(), json!(name));
            if let Some(n) = vector_size {
                body.insert("vector_size".into(), json!(n));
            }
            if let Some(d) = distance {
                body.insert("distance".into(), json!(d.as_str()));
            }
            if let Some(m) = model {
                body.insert("model".into(), json!(m));
            }
            let answer = Api::new(&server)?.post_json(&COLLECTIONS, &Value::Object(body)).await?;
            show(&answer, server.json, |a| Ok(created_text(&parse(a, "new collection")?)))
        }
        CollectionsCommand::Delete { name, server } => {
            let answer = Api::new(&server)?.delete(&["api", "v1", "collections", &name]).await?;
            show(&answer, server.json, message_text)
        }
        CollectionsCommand::Select { name, server } => {
            let body = json!({ "collection_name": name });
            let answer = Api::new(&server)?.post_json(&["api", "v1", "collections", "select"], &body).await?;
            show(&answer, server.json, message_text)
        }
        CollectionsCommand::ClearCache { name, server } => {
            let body = match name {
                Some(name) => json!({ "collection_name": name }),
                None => json!({}),
            };
            let answer = Api::new(&server)?.post_json(&["api", "v1", "collections", "cache", "clear"], &body).await?;
            show(&answer, server.json, message_text)
        }
        CollectionsCommand::Reembed { name, model, wait, server } => {
            let api = Api::new(&server)?;
            let answer = api.post_json(&["api", "v1", "collections", &name, "reembed"], &json!({ "model": model })).await?;
            if !wait {
                return show(&answer, server.json, |a| {
                    let r: Reembedding = parse(a, "answer")?;
                    Ok(format!("{}\nJob {} (imgidx status {} to follow it)\n", r.message, r.job_id, r.job_id))
                });
            }
            let started: Reembedding = parse(&answer, "answer")?;
            wait_jobs(&api, std::slice::from_ref(&started.job_id), 0).await?;
            let now = switched(&api, &name).await?;
            if server.json {
                println!("{}", json!({ "collection_name": name, "model": now, "job_id": started.job_id }));
            } else if now == model {
                println!("Collection {name} now searches with model {model}");
            } else {
                println!("The switch of collection {name} was abandoned (job {}); it keeps model {now}", started.job_id);
            }
            Ok(if now == model { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        CollectionsCommand::DeletePrevious { name, server } => {
            let answer = Api::new(&server)?.delete(&["api", "v1", "collections", &name, "previous"]).await?;
            show(&answer, server.json, message_text)
        }
    }
}

/// Longest wait, once the switch's job has ended, for a server to settle the switch.
const SETTLE_WAIT: Duration = Duration::from_secs(30);

/// The collection's model once no switch is under way any more.
async fn switched(api: &Api, name: &str) -> Result<String> {
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    loop {
        let list: CollectionList = parse(&api.get(&COLLECTIONS).await?, "collection list")?;
        let Some(c) = list.collections.into_iter().find(|c| c.name == name) else {
            bail!("collection {name} is gone");
        };
        if c.switching.is_none() {
            return Ok(c.model);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("the switch of collection {name} to {} has not settled", c.switching.map(|s| s.model).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn message_text(answer: &Value) -> Result<String> {
    let m: Message = parse(answer, "answer")?;
    Ok(format!("{}\n", m.message))
}

fn list_text(l: &CollectionList) -> String {
    let rows: Vec<Vec<String>> = l
        .collections
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                or_dash(Some(&c.model)),
                c.vector_size.to_string(),
                or_dash(Some(&c.distance)),
                c.points.map_or_else(|| "-".into(), |p| p.to_string()),
                c.size_bytes.map_or_else(|| "-".into(), size_text),
                if c.is_selected || c.name == l.selected { "*".into() } else { String::new() },
                c.switching.as_ref().map_or_else(String::new, |s| format!("-> {}", s.model)),
            ]
        })
        .collect();
    table(&["NAME", "MODEL", "DIM", "DISTANCE", "POINTS", "SIZE", "SELECTED", "SWITCHING"], &rows)
}

fn created_text(c: &Collection) -> String {
    format!("Created collection {} (model {}, {} dimensions, {} distance)\n", c.name, c.model, c.vector_size, c.distance)
}

/// Bytes in binary units, one decimal from KiB on.
fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_list_marks_the_selected_collection_and_dashes_what_is_unknown() {
        let l: CollectionList = serde_json::from_value(json!({
            "collections": [
                {"name": "cats", "model": "tiny-clip", "vector_size": 64, "distance": "Dot", "is_selected": false,
                 "created_at": "2025-01-01T00:00:00Z", "switching": {"model": "tiny-clip-b"}},
                {"name": "images", "model": "tiny-clip", "vector_size": 64, "distance": "Cosine", "is_selected": true,
                 "created_at": "2025-01-01T00:00:00Z", "points": 17, "size_bytes": 1536}
            ],
            "selected": "images"
        }))
        .unwrap();
        assert_eq!(
            list_text(&l),
            "NAME    MODEL      DIM  DISTANCE  POINTS  SIZE     SELECTED  SWITCHING\n\
             cats    tiny-clip  64   Dot       -       -                  -> tiny-clip-b\n\
             images  tiny-clip  64   Cosine    17      1.5 KiB  *\n"
        );
    }

    #[test]
    fn sizes_in_binary_units() {
        assert_eq!(size_text(0), "0 B");
        assert_eq!(size_text(1023), "1023 B");
        assert_eq!(size_text(1024), "1.0 KiB");
        assert_eq!(size_text(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
