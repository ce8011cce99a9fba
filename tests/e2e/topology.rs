//! Upgrades keep working: task queues declared by an earlier version with another
//! delivery limit (5) are used as they are instead of failing every connection
//! (RabbitMQ refuses to redeclare a queue with other arguments).

use imgidx_shared::broker::{Broker, RabbitBroker};
use imgidx_shared::config::BrokerSettings;
use imgidx_shared::messages::{ImageTask, Priority};
use imgidx_tests::{cluster_settings, services};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_declared_with_other_arguments_are_used_as_they_are() {
    let Some(svc) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut old = cluster_settings(&svc, dir.path()).broker;
    old.delivery_limit = 5;
    let first = RabbitBroker::connect(&old, "test-old").await.unwrap();
    first.close().await;

    let new = BrokerSettings { delivery_limit: 100, ..old };
    let broker = RabbitBroker::connect(&new, "test-new").await.expect("connects to the queues as they are");
    let task = ImageTask {
        job_id: "j".into(),
        point_id: uuid::Uuid::new_v4(),
        path: "/x.jpg".into(),
        stamp: None,
        request_id: None,
        collection: None,
        object_key: None,
    };
    broker.publish_tasks(Priority::Normal, std::slice::from_ref(&task)).await.unwrap();
    assert_eq!(broker.waiting_tasks().await.unwrap(), 1);
    broker.close().await;
}
