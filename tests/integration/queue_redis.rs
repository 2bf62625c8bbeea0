//! The queue contract (`cardrun::queue::conformance`, which the in-memory
//! queue passes in the host's unit tests) on real Redis: one server, and a
//! three-master Redis Cluster. Each check gets its own key
//! prefix, so checks never see each other's keys.

use std::sync::Arc;

use cardrun::queue::Queue;
use cardrun::queue::conformance::{lease_settings, run_all};
use cardrun::queue::redis::{RedisConfig, RedisQueue};
use cardrun_tests::redis::{RedisCluster, RedisServer};

fn fresh_prefix() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn redis_queue_conforms() {
    let server = RedisServer::start();
    let url = server.url();
    run_all(|settings| {
        let config = RedisConfig::single(&url, &fresh_prefix());
        async move { Arc::new(RedisQueue::connect(&config, settings).await.expect("redis")) as Arc<dyn Queue> }
    })
    .await;
}

#[tokio::test]
async fn redis_cluster_queue_conforms() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    run_all(|settings| {
        let config = RedisConfig { urls: urls.clone(), cluster: true, prefix: fresh_prefix() };
        async move { Arc::new(RedisQueue::connect(&config, settings).await.expect("redis cluster")) as Arc<dyn Queue> }
    })
    .await;
}

#[tokio::test]
async fn unreachable_redis_fails_fast_with_a_reason() {
    let port = cardrun_tests::redis::free_port();
    let config = RedisConfig::single(&format!("redis://127.0.0.1:{port}"), "x");
    let started = std::time::Instant::now();
    let err = RedisQueue::connect(&config, lease_settings()).await.err().expect("no server there");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(err.to_string().contains("unavailable"), "{err}");
}
