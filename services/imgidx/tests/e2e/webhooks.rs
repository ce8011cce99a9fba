//! Webhooks from a live `imgidx serve` to a receiver on loopback (allowed here by
//! `api.webhook_allow_private`): one validly signed delivery per job, for a directory
//! trigger and for add-images, and a delivery that first failed is made after serve is
//! killed and started again.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use hmac::Mac;
use serde_json::{json, Value};

use crate::server::{copy_images, Serve};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What the receiver got: headers and body of each request, and what it answered.
#[derive(Clone, Debug)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: Value,
    /// The signature matches (checked as a receiver would, over the bytes as they came),
    /// and so does the content type.
    valid: bool,
    answered: u16,
}

#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    answer: Arc<AtomicU16>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let answered = r.answer.load(Ordering::SeqCst);
    let key = base64::engine::general_purpose::STANDARD.decode(SECRET.trim_start_matches("whsec_")).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", header("webhook-id"), header("webhook-timestamp")).as_bytes());
    mac.update(&body);
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    let valid = header("webhook-signature") == expected && header("content-type") == "application/json";
    r.got.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        valid,
        answered,
    });
    StatusCode::from_u16(answered).unwrap()
}

async fn receiver() -> (Receiver, String) {
    let r = Receiver { got: Default::default(), answer: Arc::new(AtomicU16::new(200)) };
    let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

impl Receiver {
    fn of_job(&self, job_id: &str) -> Vec<Received> {
        self.got.lock().unwrap().iter().filter(|r| r.body["data"]["job_id"] == job_id).cloned().collect()
    }

    async fn wait_for(&self, job_id: &str, answered: u16) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.of_job(job_id);
            if got.iter().any(|r| r.answered == answered) {
                assert!(got.iter().all(|r| r.valid), "every delivery validly signed: {got:?}");
                return got;
            }
            assert!(tokio::time::Instant::now() < deadline, "no delivery answered {answered} for {job_id}: {got:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn deliveries(s: &Serve, job_id: &str) -> Value {
    let (code, body) = s.get(&format!("/api/v1/index/jobs/{job_id}/webhooks")).await;
    assert_eq!(code, 200, "{body}");
    body
}

#[tokio::test]
async fn each_job_is_announced_once_signed_also_across_a_restart() {
    let (receiver, url) = receiver().await;
    let data = tempfile::tempdir().unwrap();
    let imgs = tempfile::tempdir().unwrap();
    let images = copy_images(imgs.path(), 1);
    let root = imgs.path().canonicalize().unwrap().display().to_string();
    let env = [
        ("IMGIDX__API__ALLOWED_ROOTS", root.as_str()),
        ("IMGIDX__API__WEBHOOK_SECRET", SECRET),
        ("IMGIDX__API__WEBHOOK_ALLOW_PRIVATE", "true"),
    ];
    let s = Serve::start(data.path(), &env).await;

    // A directory trigger, told at its end.
    let (code, job) = s.post_json("/api/v1/index/trigger", &json!({ "image_dir": root, "webhook_url": url })).await;
    assert_eq!(code, 202, "{job}");
    let job_id = job["job_id"].as_str().unwrap();
    let got = receiver.wait_for(job_id, 200).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let payload = &got[0].body;
    assert_eq!(payload["type"], "job.completed", "{payload}");
    assert_eq!(payload["data"]["status"], "completed");
    assert_eq!(payload["data"]["progress"]["processed_images"], images.len());
    assert!(got[0].id.starts_with("msg_") && !got[0].timestamp.is_empty() && got[0].signature.starts_with("v1,"));
    let listed = deliveries(&s, job_id).await;
    let d = &listed["deliveries"][0];
    assert_eq!((d["state"].as_str(), d["attempts"].as_u64(), d["last_status"].as_u64()), (Some("delivered"), Some(1), Some(200)), "{listed}");
    assert_eq!(d["webhook_id"], got[0].id.as_str());

    // A receiver that is down when the next job ends: the attempt is recorded, serve is
    // killed before the retry, and the restarted serve delivers it.
    receiver.answer.store(503, Ordering::SeqCst);
    let paths: Vec<String> = images.iter().take(2).map(|p| p.display().to_string()).collect();
    let (code, job) =
        s.post_json("/api/v1/index/add-images", &json!({ "image_paths": paths, "webhook_url": url, "priority": "high" })).await;
    assert_eq!(code, 200, "indexed already: nothing queued, no job: {job}");
    let body = json!({ "image_paths": [images[0].display().to_string()], "webhook_url": "ftp://nope/" });
    let (code, refused) = s.post_json("/api/v1/index/add-images", &body).await;
    assert_eq!((code, refused["error"].as_str()), (422, Some("validation_error")), "{refused}");
    let fresh = imgs.path().join("fresh.png");
    std::fs::copy(&images[0], &fresh).unwrap();
    let (code, job) = s
        .post_json("/api/v1/index/add-images", &json!({ "image_paths": [fresh.display().to_string()], "webhook_url": url }))
        .await;
    assert_eq!(code, 202, "{job}");
    let job_id = job["job_id"].as_str().unwrap().to_string();
    receiver.wait_for(&job_id, 503).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let listed = deliveries(&s, &job_id).await;
        if listed["deliveries"][0]["last_status"] == 503 {
            assert_eq!(listed["deliveries"][0]["state"], "pending", "{listed}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.kill().await;
    receiver.answer.store(200, Ordering::SeqCst);
    let s = Serve::start(data.path(), &env).await;
    let got = receiver.wait_for(&job_id, 200).await;
    let accepted: Vec<&Received> = got.iter().filter(|r| r.answered == 200).collect();
    assert_eq!(accepted.len(), 1, "{got:?}");
    assert!(got.iter().all(|r| r.id == got[0].id && r.body == got[0].body), "every attempt the same message: {got:?}");
    let listed = deliveries(&s, &job_id).await;
    let d = &listed["deliveries"][0];
    assert_eq!((d["state"].as_str(), d["attempts"].as_u64()), (Some("delivered"), Some(got.len() as u64)), "{listed}");
    let (code, _) = s.get("/api/v1/index/jobs/no-such-job/webhooks").await;
    assert_eq!(code, 404);
    // Nothing more arrives: each job was announced once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.got.lock().unwrap().iter().filter(|r| r.answered == 200).count(), 2);
    s.stop().await;
}
