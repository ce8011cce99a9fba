//! TLS to the backends: the whole pipeline over amqps:// and PostgreSQL with
//! sslmode=require, each verified against the test servers' CA; and a broker whose
//! certificate nobody vouches for is refused.

use std::path::PathBuf;
use std::time::Duration;

use imgidx_shared::broker::RabbitBroker;
use imgidx_shared::config::BrokerSettings;
use imgidx_tests::{cluster_settings, management_connections, or_skip, sample_images, services, Cluster, Services};

const WAIT: Duration = Duration::from_secs(120);

/// amqps URL, CA file and management URL, or None (after saying why) to skip.
fn tls_services(svc: &Services) -> Option<(String, PathBuf, String)> {
    let all = match (svc.amqps_url.clone(), svc.tls_ca_file.clone(), svc.mgmt_url.clone()) {
        (Some(amqps), Some(ca), Some(mgmt)) => Some((amqps, ca, mgmt)),
        _ => None,
    };
    or_skip(all, "IMGIDX_TEST_AMQPS_URL, IMGIDX_TEST_TLS_CA_FILE or IMGIDX_TEST_RABBIT_MGMT_URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_over_tls_to_rabbitmq_and_postgres() {
    let Some(svc) = services() else { return };
    let Some((amqps, ca, mgmt)) = tls_services(&svc) else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = sample_images(dir.path());
    let mut settings = cluster_settings(&svc, dir.path());
    settings.broker.url = Some(amqps);
    settings.broker.tls_ca_file = Some(ca.clone());
    settings.jobs.url = settings.jobs.url.map(|u| format!("{u}?sslmode=require"));
    settings.jobs.tls_ca_file = Some(ca);
    let prefix = settings.broker.queue_prefix.clone();
    let cluster = Cluster::start(settings, 1).await;

    let (code, body) = cluster.add_images(&images, "normal").await;
    assert_eq!(code, 202, "{body}");
    let done = cluster.wait_job(body["job_id"].as_str().unwrap(), WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"]["processed_images"], images.len(), "{done}");

    // API, aggregator and worker: every broker connection is encrypted.
    for connection in management_connections(&mgmt, &prefix, 3).await {
        assert_eq!(connection["ssl"], true, "{connection}");
    }
    cluster.stop().await;
}

#[tokio::test]
async fn an_unverifiable_broker_and_a_ca_file_without_amqps_are_refused() {
    let Some(svc) = services() else { return };
    let Some((amqps, ca, _)) = tls_services(&svc) else { return };
    let prefix = format!("t_{}", uuid::Uuid::new_v4().simple());
    // The system roots do not know the test CA.
    let settings = BrokerSettings { url: Some(amqps), queue_prefix: prefix.clone(), ..BrokerSettings::default() };
    match RabbitBroker::connect(&settings, "tls-test").await {
        Err(e) => assert!(e.to_string().to_lowercase().contains("certificate"), "{e}"),
        Ok(_) => panic!("connected to a broker whose certificate nobody vouches for"),
    }
    // A CA file with a plain amqp:// URL would silently not use TLS: refused.
    let settings = BrokerSettings {
        url: Some(svc.amqp_url.clone()),
        queue_prefix: prefix,
        tls_ca_file: Some(ca),
        ..BrokerSettings::default()
    };
    match RabbitBroker::connect(&settings, "tls-test").await {
        Err(e) => assert!(e.to_string().contains("not amqps"), "{e}"),
        Ok(_) => panic!("a CA file with amqp:// was accepted"),
    }
}
