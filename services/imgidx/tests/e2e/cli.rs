//! The client commands against a real server: exact counts, JSON that matches the
//! server's own answers, readable tables, and clear errors with the documented
//! exit codes (0 done, 1 error, 3 a job failed).

use std::path::PathBuf;

use serde_json::Value;

use crate::server::{copy_images, fixture_images, free_port, imgidx, repo_root, Serve};

/// The sample TIFF holds 64-bit float samples no 8-bit pipeline decodes: it is always
/// reported failed. Among other images that counts in the summary but the job
/// completes; alone, the job fails (every image of it failed).
const UNDECODABLE: &str = "multipage_rgb.tif";

/// The fixture images every decoder reads, canonical and sorted.
fn decodable() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(fixture_images())
        .unwrap()
        .map(|e| e.unwrap().path().canonicalize().unwrap())
        .filter(|p| ["png", "jpg", "gif"].contains(&p.extension().and_then(|e| e.to_str()).unwrap_or("")))
        .collect();
    out.sort();
    assert!(out.len() >= 15, "sample images missing: {out:?}");
    out
}

fn s(p: &std::path::Path) -> String {
    p.to_str().unwrap().to_string()
}

/// `v` without one nested field (figures that may legitimately move between two reads).
fn without(mut v: Value, outer: &str, inner: &str) -> Value {
    if let Some(o) = v.get_mut(outer).and_then(Value::as_object_mut) {
        o.remove(inner);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_wait_then_status_and_stats_match_the_server() {
    let server = Serve::fresh().await;
    let url = server.url.as_str();
    let images = decodable();
    let n = images.len() as u64;
    let dir = s(&fixture_images());

    // The whole directory: every image file (the licence text is not one), exact counts.
    let run = imgidx(&["index", &dir, "--recursive", "--wait", "--json", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}\n{}", server.log_text());
    let out = run.json();
    let sub = &out["submitted"];
    assert_eq!((sub["requests"].as_u64(), sub["images"].as_u64()), (Some(1), Some(n + 1)), "{out}");
    assert_eq!((sub["queued"].as_u64(), sub["already_indexed"].as_u64()), (Some(n + 1), Some(0)), "{out}");
    let res = &out["result"];
    assert_eq!(res["status"], "completed", "{out}");
    assert_eq!((res["indexed"].as_u64(), res["failed"].as_u64()), (Some(n), Some(1)), "{out}");
    assert!(res["elapsed_seconds"].as_f64().unwrap() > 0.0, "{out}");
    let job_id = out["jobs"][0]["job_id"].as_str().unwrap().to_string();
    assert!(job_id.starts_with("idx_"), "{out}");

    // The job as the server reports it is the one the client summarised.
    let (code, job) = server.get(&format!("/api/v1/index/status/{job_id}")).await;
    assert_eq!(code, 200);
    assert_eq!(res["jobs"][0], job);
    assert_eq!(job["progress"]["processed_images"], n);

    // status JOB: verbatim as JSON, readable as a table.
    let run = imgidx(&["status", &job_id, "--json", "--server", url]).await;
    assert_eq!((run.code, run.json()), (0, job.clone()), "{run:#?}");
    let run = imgidx(&["status", &job_id, "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains(&format!("Job        {job_id}\n")), "{}", run.stdout);
    assert!(run.stdout.contains("Status     completed\n"), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("{n} of {} indexed, 1 failed (100.0%)", n + 1)), "{}", run.stdout);

    // status: active and recent jobs.
    let (_, overall) = server.get("/api/v1/index/status").await;
    let run = imgidx(&["status", "--json", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(without(run.json(), "index_stats", "index_size_mb"), without(overall.clone(), "index_stats", "index_size_mb"));
    assert_eq!(overall["recent_jobs"][0]["job_id"], job_id.as_str());
    let run = imgidx(&["status", "--server", url]).await;
    assert!(run.stdout.starts_with(&format!("{n} images indexed (1 failed), 0 active jobs; model tiny-clip\n")), "{run:#?}");
    assert!(run.stdout.contains("Recent jobs\nJOB "), "{}", run.stdout);
    assert!(run.stdout.contains(&job_id), "{}", run.stdout);

    // stats.
    let (_, stats) = server.get("/api/v1/index/stats").await;
    let run = imgidx(&["stats", "--json", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let mut got = run.json();
    assert_eq!((got["total_images"].as_u64(), got["num_failed"].as_u64()), (Some(n), Some(1)), "{got}");
    got.as_object_mut().unwrap().remove("index_size_mb");
    let mut want = stats.clone();
    want.as_object_mut().unwrap().remove("index_size_mb");
    assert_eq!(got, want);
    let run = imgidx(&["stats", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("Model           tiny-clip (64 dimensions)\n"), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("Indexed images  {n}\n")), "{}", run.stdout);
    assert!(run.stdout.contains("Failed images   1\n"), "{}", run.stdout);

    // Again, the decodable files by name: all already indexed, no job.
    let mut args: Vec<String> = ["index", "--json", "--server", url].map(String::from).to_vec();
    args.extend(images.iter().map(|p| s(p)));
    let run = imgidx(&args).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let out = run.json();
    assert_eq!(out["submitted"]["already_indexed"], n, "{out}");
    assert_eq!(out["submitted"]["queued"], 0, "{out}");
    assert_eq!(out["jobs"][0]["job_id"], "none", "{out}");
    args.remove(1);
    let run = imgidx(&args).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stdout, format!("Submitted {n} images in 1 request: 0 queued, {n} already indexed, 0 already queued by other jobs.\n"));

    // The directory again, in chunks of 5: only the TIFF is retried, alone in its job;
    // every image of that job failed, so the job failed: exit status 3.
    let run = imgidx(&["index", &dir, "--chunk", "5", "--wait", "--json", "--server", url]).await;
    assert_eq!(run.code, 3, "{run:#?}");
    let out = run.json();
    assert_eq!(out["submitted"]["requests"], (n + 1).div_ceil(5), "{out}");
    assert_eq!((out["submitted"]["already_indexed"].as_u64(), out["submitted"]["queued"].as_u64()), (Some(n), Some(1)));
    assert_eq!(out["result"]["status"], "failed", "{out}");
    assert_eq!((out["result"]["indexed"].as_u64(), out["result"]["failed"].as_u64()), (Some(0), Some(1)), "{out}");
    let retried: Vec<&Value> = out["jobs"].as_array().unwrap().iter().filter(|j| j["job_id"] != "none").collect();
    assert_eq!(retried.len(), 1, "{out}");
    assert_eq!(out["result"]["jobs"][0]["job_id"], retried[0]["job_id"], "{out}");

    // The table form of --wait ends with the summary and says why the job failed.
    let tif = s(&fixture_images().join(UNDECODABLE));
    let run = imgidx(&["index", &tif, "--wait", "--server", url]).await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(run.stdout.starts_with("Submitted 1 images in 1 request: 1 queued, 0 already indexed"), "{}", run.stdout);
    assert!(run.stdout.contains("Result           failed\nIndexed          0\n"), "{}", run.stdout);
    assert!(run.stdout.contains("Failed           1\n"), "{}", run.stdout);
    assert!(run.stdout.contains(" failed: the only image failed: unreadable"), "{}", run.stdout);

    // The server's own error message for an unknown job.
    let run = imgidx(&["status", "idx_nope", "--server", url]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.stderr, "error: job idx_nope not found (HTTP 404, job_not_found)\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_similar_rank_the_indexed_images() {
    let server = Serve::fresh().await;
    let url = server.url.as_str();
    // Copies in subdirectories: chelsea (a cat) alone under cats/, the rest under other/.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let mut indexed = Vec::new();
    for src in decodable() {
        let name = src.file_name().unwrap();
        let sub = if name == "chelsea.png" { "cats" } else { "other" };
        std::fs::create_dir_all(root.join(sub)).unwrap();
        std::fs::copy(&src, root.join(sub).join(name)).unwrap();
        indexed.push(s(&root.join(sub).join(name)));
    }

    // Without --recursive a directory of directories holds no images: nothing to do.
    let run = imgidx(&["index", &s(&root), "--json", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.json()["submitted"]["images"], 0, "{run:#?}");
    assert!(run.stderr.contains("nothing to index: no image files found (--recursive descends"), "{}", run.stderr);
    let run = imgidx(&["index", &s(&root), "--recursive", "--wait", "--json", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.json()["result"]["indexed"], indexed.len() as u64, "{run:#?}");

    // Text: ranked, scores falling, every hit an indexed image.
    let run = imgidx(&["search", "a photo of a cat", "-k", "3", "--json", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}\n{}", server.log_text());
    let out = run.json();
    assert_eq!((out["query"].as_str(), out["query_type"].as_str()), (Some("a photo of a cat"), Some("text")), "{out}");
    let hits = out["results"].as_array().unwrap();
    assert_eq!(hits.len(), 3, "{out}");
    for (i, h) in hits.iter().enumerate() {
        assert_eq!(h["rank"], i as u64 + 1, "{out}");
        assert!(indexed.contains(&h["image_path"].as_str().unwrap().to_string()), "{out}");
    }
    assert!(hits.windows(2).all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()), "{out}");
    assert_eq!(out["index_stats"]["total_images"], indexed.len() as u64, "{out}");

    // The table: rank, score to 4 places, path.
    let run = imgidx(&["search", "a photo of a cat", "-k", "3", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "RANK  SCORE   PATH", "{}", run.stdout);
    for (i, line) in lines[1..4].iter().enumerate() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.len(), 3, "{line}");
        assert_eq!(cols[0], (i + 1).to_string());
        assert!(cols[1].split_once('.').is_some_and(|(_, frac)| frac.len() == 4), "{line}");
        assert_eq!(cols[2], hits[i]["image_path"].as_str().unwrap());
    }

    // A path prefix keeps only the images under it.
    let cats = s(&root.join("cats"));
    let run = imgidx(&["search", "a cat", "-k", "10", "--path-prefix", &cats, "--json", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let out = run.json();
    let paths: Vec<&str> = out["results"].as_array().unwrap().iter().map(|h| h["image_path"].as_str().unwrap()).collect();
    assert_eq!(paths, [s(&root.join("cats/chelsea.png"))], "{out}");

    // Uploaded image: its nearest neighbour is itself.
    let chelsea = root.join("cats/chelsea.png");
    let run = imgidx(&["similar", &s(&chelsea), "-k", "2", "--json", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}\n{}", server.log_text());
    let out = run.json();
    assert_eq!((out["query"].as_str(), out["query_type"].as_str()), (Some("chelsea.png"), Some("upload")), "{out}");
    assert_eq!(out["results"][0]["image_path"], s(&chelsea), "{out}");
    assert!(out["results"][0]["score"].as_f64().unwrap() > 0.99, "{out}");
    assert_eq!(out["results"].as_array().unwrap().len(), 2, "{out}");

    // The same image as a path the server reads, with a score floor.
    let run = imgidx(&["similar", &s(&chelsea), "--server-path", "--min-score", "0.99", "--json", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let out = run.json();
    assert_eq!(out["query_type"], "image", "{out}");
    assert_eq!(out["results"][0]["image_path"], s(&chelsea), "{out}");
    assert!(out["results"].as_array().unwrap().iter().all(|h| h["score"].as_f64().unwrap() >= 0.99), "{out}");

    // A missing query image is the client's error; nothing is sent.
    let run = imgidx(&["similar", "/no/such/image.png", "--server", url]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.stderr, "error: /no/such/image.png: no such file\n");
}

#[tokio::test]
async fn a_missing_path_fails_before_anything_is_sent() {
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let good = s(&fixture_images().join("chelsea.png"));
    let run = imgidx(&["index", &good, "/no/such/dir/x.jpg", "--server", &unreachable]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.stderr, "error: /no/such/dir/x.jpg: no such file or directory\n");
    assert_eq!(run.stdout, "");
}

#[tokio::test]
async fn an_unreachable_server_is_one_clear_line_naming_it() {
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let chelsea = s(&fixture_images().join("chelsea.png"));
    for args in [
        vec!["stats"],
        vec!["status"],
        vec!["index", chelsea.as_str(), "--wait"],
        vec!["search", "a cat"],
        vec!["similar", chelsea.as_str()],
    ] {
        let mut all = args.clone();
        all.extend(["--server", unreachable.as_str()]);
        let run = imgidx(&all).await;
        assert_eq!(run.code, 1, "{args:?}: {run:#?}");
        let prefix = format!("error: cannot reach the imgidx server at {unreachable}: ");
        assert!(run.stderr.starts_with(&prefix), "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
    }

    // The URL comes from IMGIDX_SERVER when --server is not given.
    let out = tokio::process::Command::new(crate::server::bin())
        .arg("stats")
        .env("IMGIDX_SERVER", &unreachable)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&unreachable));

    let run = imgidx(&["stats", "--server", "localhost:8000"]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.starts_with("error: invalid server URL \"localhost:8000\""), "{}", run.stderr);
}

/// `imgidx trigger`: the server walks the directory; `--wait` ends with the summary, a
/// second walk with `--prune` drops what was deleted, and the job id leads the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_wait_indexes_a_directory_and_prune_drops_what_is_gone() {
    let server = Serve::fresh().await;
    let url = server.url.as_str();
    let library = tempfile::tempdir().unwrap();
    let root = library.path().canonicalize().unwrap();
    let images = decodable();
    for (i, src) in images.iter().enumerate() {
        let sub = root.join(format!("album{}", i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::copy(src, sub.join(src.file_name().unwrap())).unwrap();
    }
    std::fs::write(root.join("README.txt"), "not an image").unwrap();
    let n = images.len() as u64;

    let run = imgidx(&["trigger", &s(&root), "--wait", "--json", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}\n{}", server.log_text());
    let out = run.json();
    assert_eq!(out["result"]["status"], "completed", "{out}");
    assert_eq!((out["result"]["indexed"].as_u64(), out["result"]["failed"].as_u64()), (Some(n), Some(0)), "{out}");
    let job = &out["result"]["jobs"][0];
    assert_eq!((job["scan"]["files_seen"].as_u64(), job["scan"]["not_images"].as_u64()), (Some(n + 1), Some(1)), "{out}");

    let gone = root.join("album0").join(images[0].file_name().unwrap());
    std::fs::remove_file(&gone).unwrap();
    let run = imgidx(&["trigger", &s(&root), "--prune", "--wait", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let job_id = run.stdout.lines().next().unwrap().to_string();
    assert!(job_id.starts_with("idx_"), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("{} queued for indexing", s(&root))), "{}", run.stdout);
    let (_, status) = server.get(&format!("/api/v1/index/status/{job_id}")).await;
    assert_eq!((status["removed"].as_u64(), status["progress"]["total_images"].as_u64()), (Some(1), Some(0)), "{status}");
    let (_, stats) = server.get("/api/v1/index/stats").await;
    assert_eq!(stats["total_images"], n - 1, "{stats}");

    // serve's one registry: the API's /metrics carries every role's families.
    let (code, metrics) = server.get("/metrics").await;
    let text = metrics.as_str().unwrap_or_default();
    assert_eq!(code, 200, "{text}");
    assert!(text.contains(&format!("imgidx_images_indexed_total {n}\n")), "{text}");
    assert!(text.contains("imgidx_worker_stage_seconds_count{stage=\"decode\"}"), "{text}");
    let triggers = r#"imgidx_http_requests_total{route="/api/v1/index/trigger",method="POST",status="202"} 2"#;
    assert!(text.contains(triggers), "{text}");

    let run = imgidx(&["trigger", "/no/such/dir", "--server", url]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("does not exist (HTTP 422, not_a_directory)"), "{}", run.stderr);
}

/// `imgidx watch JOB`: the server's live messages to the end (`--json`, one per line),
/// or readable lines, with `index --wait`'s exit status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_a_job_to_its_end_with_the_exit_status_of_its_outcome() {
    let server = Serve::fresh().await;
    let url = server.url.as_str();
    let images = decodable();
    let n = images.len() as u64;
    let mut args: Vec<String> = ["index", "--json", "--server", url].map(String::from).to_vec();
    args.extend(images.iter().map(|p| s(p)));
    let run = imgidx(&args).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let job_id = run.json()["jobs"][0]["job_id"].as_str().unwrap().to_string();

    let run = imgidx(&["watch", &job_id, "--json", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let messages: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = messages.last().unwrap();
    assert_eq!((last["type"].as_str(), last["completed"].as_u64()), (Some("job_complete"), Some(n)), "{}", run.stdout);
    assert!(messages.iter().all(|m| m["job_id"] == job_id.as_str()), "{}", run.stdout);
    let images_seen = messages.iter().filter(|m| m["type"] == "image_complete").count() as u64;
    assert!(images_seen <= n, "at most one image_complete per image: {}", run.stdout);

    let tif = s(&fixture_images().join(UNDECODABLE));
    let run = imgidx(&["index", &tif, "--json", "--server", url]).await;
    let job_id = run.json()["jobs"][0]["job_id"].as_str().unwrap().to_string();
    let run = imgidx(&["watch", &job_id, "--server", url]).await;
    assert_eq!(run.code, 3, "a failed job: {run:#?}");
    assert!(run.stdout.lines().last().unwrap().starts_with("failed    1/1 done (100.0%), 1 failed"), "{}", run.stdout);

    let run = imgidx(&["watch", "idx_nope", "--server", url]).await;
    assert_eq!((run.code, run.stderr.as_str()), (1, "error: job idx_nope not found (HTTP 404, job_not_found)\n"));
}

/// `imgidx collections …` and `--collection`: a second collection is filled and searched
/// on its own, the selected one cannot be deleted, and a bad name is the server's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_are_made_filled_searched_and_deleted() {
    let server = Serve::fresh().await;
    let url = server.url.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let images: Vec<String> = copy_images(tmp.path(), 1).iter().map(|p| s(p)).collect();
    let n = images.len() as u64;
    let on_server = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--server".to_string(), url.to_string()]);
        all
    };

    let run = imgidx(&on_server(&["collections", "create", "cats"])).await;
    assert_eq!(run.code, 0, "{run:#?}\n{}", server.log_text());
    assert_eq!(run.stdout, "Created collection cats (model tiny-clip, 64 dimensions, Cosine distance)\n");
    let run = imgidx(&on_server(&["collections", "list", "--json"])).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let out = run.json();
    let collections = out["collections"].as_array().unwrap();
    let mut listed: Vec<(&str, bool)> =
        collections.iter().map(|c| (c["name"].as_str().unwrap(), c["is_selected"] == true)).collect();
    listed.sort_unstable();
    assert_eq!((listed, out["selected"].as_str()), (vec![("cats", false), ("images", true)], Some("images")), "{out}");
    let run = imgidx(&on_server(&["collections", "list"])).await;
    assert!(run.stdout.lines().any(|l| l.starts_with("images ") && l.ends_with(" *")), "{}", run.stdout);

    // Into cats: the summary names it, its figures are its own, and images stays empty.
    let mut args = on_server(&["index", "--collection", "cats", "--wait"]);
    args.extend(images.iter().cloned());
    let run = imgidx(&args).await;
    assert_eq!(run.code, 0, "{run:#?}\n{}", server.log_text());
    let summary = format!("\nCollection       cats\nResult           completed\nIndexed          {n}\n");
    assert!(run.stdout.contains(&summary), "{}", run.stdout);
    let run = imgidx(&on_server(&["stats", "--collection", "cats", "--json"])).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let stats = run.json();
    assert_eq!((stats["total_images"].as_u64(), stats["collection"].as_str()), (Some(n), Some("cats")), "{stats}");
    let (_, stats) = server.get("/api/v1/index/stats").await;
    assert_eq!((stats["total_images"].as_u64(), stats["collection"].as_str()), (Some(0), Some("images")), "{stats}");

    let run = imgidx(&on_server(&["search", "--collection", "cats", "a photo", "--json"])).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let out = run.json();
    assert!(!out["results"].as_array().unwrap().is_empty(), "{out}");
    assert_eq!(out["index_stats"]["collection"], "cats", "{out}");
    // Both forms of similar: an upload (a multipart field) and a path on the server.
    for extra in [&[][..], &["--server-path"][..]] {
        let mut args = on_server(&["similar", &images[0], "--collection", "cats", "-k", "1", "--json"]);
        args.extend(extra.iter().map(|a| a.to_string()));
        let run = imgidx(&args).await;
        assert_eq!(run.code, 0, "{extra:?}: {run:#?}");
        let out = run.json();
        let got = (out["results"][0]["image_path"].as_str(), out["index_stats"]["collection"].as_str());
        assert_eq!(got, (Some(images[0].as_str()), Some("cats")), "{extra:?}: {out}");
    }

    let run = imgidx(&on_server(&["collections", "clear-cache", "cats"])).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.starts_with("Cache of collection cats cleared"), "{}", run.stdout);

    // The selected collection cannot be deleted; once another is selected, it can.
    let run = imgidx(&on_server(&["collections", "select", "cats"])).await;
    assert_eq!((run.code, run.stdout.as_str()), (0, "Collection cats selected\n"), "{run:#?}");
    let run = imgidx(&on_server(&["collections", "delete", "cats"])).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.starts_with("error: collection cats is the selected collection"), "{}", run.stderr);
    assert!(run.stderr.ends_with("(HTTP 409, collection_in_use)\n"), "{}", run.stderr);
    let run = imgidx(&on_server(&["collections", "select", "images"])).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let run = imgidx(&on_server(&["collections", "delete", "cats"])).await;
    assert_eq!((run.code, run.stdout.as_str()), (0, "Collection cats deleted\n"), "{run:#?}");

    let run = imgidx(&on_server(&["collections", "create", "Bad"])).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.starts_with("error: collection names are 1 to 64 characters"), "{}", run.stderr);
    assert!(run.stderr.ends_with(": \"Bad\" is not one (HTTP 422, validation_error)\n"), "{}", run.stderr);
}

/// `imgidx collections reembed --wait` returns once searches use the new model (here one
/// of another vector size, from `model.models_dir`); `delete-previous` drops the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_is_switched_to_another_model_and_its_previous_generation_dropped() {
    let data = tempfile::tempdir().unwrap();
    let models = repo_root().join("tests/fixtures/models");
    let server = Serve::start(data.path(), &[("IMGIDX__MODEL__MODELS_DIR", models.to_str().unwrap())]).await;
    let url = server.url.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let images: Vec<String> = copy_images(tmp.path(), 1).iter().map(|p| s(p)).collect();
    let mut args = vec!["index".to_string(), "--wait".into(), "--server".into(), url.into()];
    args.extend(images.iter().cloned());
    assert_eq!(imgidx(&args).await.code, 0);

    let run = imgidx(&["collections", "reembed", "images", "--model", "tiny-clip-b", "--wait", "--server", url]).await;
    assert_eq!(run.code, 0, "{run:#?}\n{}", server.log_text());
    assert!(run.stdout.ends_with("Collection images now searches with model tiny-clip-b\n"), "{}", run.stdout);
    let run = imgidx(&["collections", "list", "--server", url]).await;
    let line = run.stdout.lines().find(|l| l.starts_with("images ")).unwrap().to_owned();
    assert!(line.contains(" tiny-clip-b ") && line.contains(" 32 "), "{}", run.stdout);
    let run = imgidx(&["search", "a photo", "--json", "--server", url]).await;
    assert_eq!(run.json()["index_stats"]["model"], "tiny-clip-b", "{run:#?}");

    let run = imgidx(&["collections", "delete-previous", "images", "--server", url]).await;
    assert_eq!((run.code, run.stdout.as_str()), (0, "The previous generation of collection images is deleted\n"), "{run:#?}");
    let run = imgidx(&["collections", "delete-previous", "images", "--server", url]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.ends_with("(HTTP 404, previous_not_found)\n"), "{}", run.stderr);
    let run = imgidx(&["collections", "reembed", "images", "--model", "nope", "--server", url]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("not installed") && run.stderr.ends_with("(HTTP 422, validation_error)\n"), "{}", run.stderr);
}
