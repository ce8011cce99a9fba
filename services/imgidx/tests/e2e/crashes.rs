//! `imgidx serve` on RabbitMQ and PostgreSQL, killed with SIGKILL twenty times mid-job
//! and restarted each time, as a supervisor would: the job completes with no image
//! failed and one point per image. Each kill hands the worker's prefetched tasks back
//! with their delivery count raised; only attempts counted where the work happens may
//! decide that an image failed. Needs the test servers (`tests/run.sh`).

use std::path::Path;
use std::time::Duration;

use crate::serve::{submit, wait_done};
use crate::server::{copy_images, Serve};

/// Settings for serve on the test servers, with a fresh queue prefix and database; None
/// to skip when they are not configured (a failure under `IMGIDX_REQUIRE_SERVICES=1`).
pub(crate) fn on_test_servers() -> Option<Vec<(&'static str, String)>> {
    let (Ok(amqp), Ok(pg)) = (std::env::var("IMGIDX_TEST_AMQP_URL"), std::env::var("IMGIDX_TEST_PG_URL")) else {
        assert_ne!(std::env::var("IMGIDX_REQUIRE_SERVICES").as_deref(), Ok("1"), "IMGIDX_TEST_AMQP_URL and IMGIDX_TEST_PG_URL must be set");
        eprintln!("skipping: RabbitMQ/PostgreSQL not configured (run tests/run.sh)");
        return None;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let unique = format!("k{}_{nanos}", std::process::id());
    let (base, _) = pg.rsplit_once('/').unwrap();
    Some(vec![
        ("IMGIDX__BROKER__URL", amqp),
        ("IMGIDX__BROKER__QUEUE_PREFIX", unique.clone()),
        ("IMGIDX__JOBS__URL", format!("{base}/imgidx_{unique}")),
        // Small batches on one decode thread: the job outlasts twenty kills.
        ("IMGIDX__WORKER__BATCH_SIZE", "4".into()),
        ("IMGIDX__WORKER__DECODE_THREADS", "1".into()),
    ])
}

async fn start(data: &Path, env: &[(&'static str, String)]) -> Serve {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Serve::start(data, &env).await
}

async fn done_count(s: &Serve, job_id: &str) -> u64 {
    let (_, st) = s.get(&format!("/api/v1/index/status/{job_id}")).await;
    st["progress"]["processed_images"].as_u64().unwrap() + st["progress"]["failed_images"].as_u64().unwrap()
}

#[tokio::test]
async fn serve_on_rabbitmq_killed_twenty_times_mid_job_fails_no_image() {
    let Some(env) = on_test_servers() else { return };
    let data = tempfile::tempdir().unwrap();
    let imgs = tempfile::tempdir().unwrap();
    let images = copy_images(imgs.path(), 50);
    let total = images.len() as u64;
    let mut s = start(data.path(), &env).await;
    let job = submit(&s, &images).await;
    let job_id = job["job_id"].as_str().unwrap().to_string();
    assert_eq!(job["new_images_count"], total);

    let (mut kills, mut last) = (0, 0);
    loop {
        // Kill at a moment unrelated to the work, once it has made some progress.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let now = done_count(&s, &job_id).await;
            if now >= last + 12 || now >= total {
                last = now;
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no progress after {kills} kills: {}", s.log_text());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(last < total, "the job finished after {kills} kills; make it bigger");
        tokio::time::sleep(Duration::from_millis(u64::from(std::process::id() ^ kills) % 150)).await;
        s.kill().await;
        kills += 1;
        s = start(data.path(), &env).await;
        if kills == 20 {
            break;
        }
    }

    let done = wait_done(&s, &job_id, Duration::from_secs(300)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"]["processed_images"], total, "every image indexed after {kills} kills: {done}");
    assert_eq!(done["progress"]["failed_images"], 0, "{done}");
    let (_, stats) = s.get("/api/v1/index/stats").await;
    assert_eq!(stats["total_images"], total, "one point per image: {stats}");
    s.stop().await;
}
