//! Where Redis is, and one connection type for a single server and for a
//! cluster (both reconnect by themselves after a loss).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::queue::QueueError;

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// One URL for a single server; several (or `cluster`) for a cluster's
    /// seed nodes.
    pub urls: Vec<String>,
    pub cluster: bool,
    /// The hash tag of every key (`CARDRUN_REDIS_PREFIX`, default
    /// `cardrun`): deployments sharing a Redis use different ones.
    pub prefix: String,
}

impl RedisConfig {
    /// From `REDIS_URL` (a comma-separated list means cluster nodes), or
    /// `REDIS_HOST`/`REDIS_PORT` as in the original system; `None` when
    /// neither is set. `REDIS_CLUSTER=true` treats one URL as a cluster node.
    pub fn from_env() -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let urls: Vec<String> = match (var("REDIS_URL"), var("REDIS_HOST")) {
            (Some(urls), _) => urls.split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect(),
            (None, Some(host)) => {
                vec![format!("redis://{host}:{}", var("REDIS_PORT").unwrap_or_else(|| "6379".into()))]
            }
            (None, None) => return None,
        };
        let cluster = urls.len() > 1 || var("REDIS_CLUSTER").is_some_and(|v| v == "true" || v == "1");
        Some(Self { urls, cluster, prefix: var("CARDRUN_REDIS_PREFIX").unwrap_or_else(|| "cardrun".into()) })
    }

    /// A single server at `url`.
    pub fn single(url: &str, prefix: &str) -> Self {
        Self { urls: vec![url.to_string()], cluster: false, prefix: prefix.to_string() }
    }
}

/// A multiplexed connection to a server or a cluster.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// How long connecting may take before Redis counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl Conn {
    pub(super) async fn open(config: &RedisConfig, response_timeout: Duration) -> Result<Self, QueueError> {
        let failed = |e: redis::RedisError| QueueError::Unavailable(e.to_string());
        let connecting = async {
            if config.cluster {
                let client = redis::cluster::ClusterClient::builder(config.urls.clone())
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(response_timeout)
                    .build()
                    .map_err(failed)?;
                Ok(Self::Cluster(client.get_async_connection().await.map_err(failed)?))
            } else {
                let url = config.urls.first().ok_or_else(|| QueueError::Unavailable("no Redis URL".into()))?;
                let client = redis::Client::open(url.as_str()).map_err(failed)?;
                let settings = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(response_timeout))
                    .set_max_delay(Duration::from_secs(2));
                Ok(Self::Single(ConnectionManager::new_with_config(client, settings).await.map_err(failed)?))
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT * 2, connecting)
            .await
            .map_err(|_| QueueError::Unavailable(format!("no answer from {}", config.urls.join(","))))?
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
