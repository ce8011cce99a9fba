//! The API is stateless: two `imgidx api` processes on one job store and broker answer
//! for the same jobs. A job created through one is watched, listed and cancelled
//! through the other. Needs the test servers (`tests/run.sh`); no worker runs, so the
//! job waits in the queue until it is cancelled.

use serde_json::json;

use crate::crashes::on_test_servers;
use crate::server::{copy_images, Serve};

#[tokio::test]
async fn two_api_processes_answer_for_the_same_jobs() {
    let Some(env) = on_test_servers() else { return };
    let (a_dir, b_dir, imgs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let images = copy_images(imgs.path(), 1);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Each with its own data directory (its embedded index): only the servers are shared.
    let (a, b) = tokio::join!(Serve::api(a_dir.path(), &env), Serve::api(b_dir.path(), &env));

    let paths: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
    let (code, job) = a.post_json("/api/v1/index/add-images", &json!({ "image_paths": paths, "priority": "high" })).await;
    assert_eq!(code, 202, "{job}");
    let job_id = job["job_id"].as_str().unwrap().to_string();

    let (code, status) = b.get(&format!("/api/v1/index/status/{job_id}")).await;
    assert_eq!((code, status["status"].as_str()), (200, Some("queued")), "{status}");
    assert_eq!(status["progress"]["total_images"], images.len());
    let (_, listed) = b.get("/api/v1/index/jobs?priority=high").await;
    assert_eq!((listed["total"].as_u64(), listed["jobs"][0]["job_id"].as_str()), (Some(1), Some(job_id.as_str())), "{listed}");

    let (code, cancelled) = b.post_json(&format!("/api/v1/index/jobs/{job_id}/cancel"), &json!({})).await;
    assert_eq!((code, cancelled["status"].as_str()), (200, Some("cancelled")), "{cancelled}");
    let (_, seen) = a.get(&format!("/api/v1/index/status/{job_id}")).await;
    assert_eq!(seen["status"], "cancelled", "{seen}");
    let (_, listed) = a.get("/api/v1/index/jobs?status=cancelled").await;
    assert_eq!(listed["jobs"][0]["job_id"], job_id.as_str(), "{listed}");
    let (code, again) = a.post_json(&format!("/api/v1/index/jobs/{job_id}/cancel"), &json!({})).await;
    assert_eq!((code, again["error"].as_str()), (409, Some("job_finished")), "{again}");
    tokio::join!(a.stop(), b.stop());
}
