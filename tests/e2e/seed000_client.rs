//! Seed 000's Python client, verbatim (`tests/clients/seed000_client.py`), against the
//! API with two workers and the aggregator: it submits, waits for `completed`, and
//! asserts a resubmission reports every image already indexed.

use imgidx_tests::{cluster_settings, repo_root, sample_images, services, Cluster};

/// The venv `scripts/setup-ort.sh` makes (with `requests`), or None to skip.
fn python() -> Option<std::path::PathBuf> {
    let py = repo_root().join(".venv/bin/python");
    let ok = std::process::Command::new(&py)
        .args(["-c", "import requests"])
        .status()
        .is_ok_and(|s| s.success());
    match ok {
        true => Some(py),
        false if std::env::var("IMGIDX_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{} with `requests` is missing: run scripts/setup-ort.sh", py.display())
        }
        false => {
            eprintln!("skipping: no .venv with requests (run scripts/setup-ort.sh)");
            None
        }
    }
}

#[tokio::test]
async fn the_guides_python_client_runs_unchanged() {
    let Some(svc) = services() else { return };
    let Some(py) = python() else { return };
    let data = tempfile::tempdir().unwrap();
    let images_dir = tempfile::tempdir().unwrap();
    let images = sample_images(images_dir.path());
    let cluster = Cluster::start(cluster_settings(&svc, data.path()), 2).await;

    let out = tokio::process::Command::new(py)
        .arg(repo_root().join("tests/clients/seed000_client.py"))
        .arg(&cluster.base_url)
        .args(&images)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let n = images.len();
    assert!(stdout.contains(&format!("'new_images_count': {n}")), "{stdout}");
    assert!(stdout.contains(&format!("'processed_images': {n}, 'failed_images': 0")), "{stdout}");
    assert!(stdout.contains(&format!("'already_indexed_count': {n}")), "{stdout}");
    assert_eq!(cluster.vectors.count().await.unwrap(), n as u64);
    cluster.stop().await;
}
