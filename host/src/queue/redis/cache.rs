//! The response cache shared by every worker of a deployment: answers
//! under `{prefix}:cache:<key>` with a TTL, and a call lock per key.

use std::time::Duration;

use super::conn::Conn;
use crate::engine::{CachedCompletion, SharedCache};

pub struct RedisCache {
    pub(super) conn: Conn,
    pub(super) prefix: String,
    pub(super) ttl: Duration,
}

impl RedisCache {
    fn key(&self, key: &str) -> String {
        format!("{}:cache:{key}", self.prefix)
    }

    fn lock_key(&self, key: &str) -> String {
        format!("{}:cache-lock:{key}", self.prefix)
    }
}

#[async_trait::async_trait]
impl SharedCache for RedisCache {
    async fn get(&self, key: &str) -> Option<CachedCompletion> {
        let text: Option<String> =
            redis::cmd("GET").arg(self.key(key)).query_async(&mut self.conn.clone()).await.ok().flatten();
        text.and_then(|t| serde_json::from_str(&t).ok())
    }

    async fn put(&self, key: &str, value: &CachedCompletion) {
        let Ok(text) = serde_json::to_string(value) else { return };
        let stored: Result<(), _> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(text)
            .arg("PX")
            .arg(self.ttl.as_millis() as u64)
            .query_async(&mut self.conn.clone())
            .await;
        if let Err(e) = stored {
            tracing::debug!(error = %e, "could not write the shared response cache");
        }
    }

    async fn lock(&self, key: &str, hold: Duration) -> bool {
        let taken: Result<Option<String>, _> = redis::cmd("SET")
            .arg(self.lock_key(key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(hold.as_millis() as u64)
            .query_async(&mut self.conn.clone())
            .await;
        // Redis unreachable: call the model rather than wait.
        taken.map_or(true, |t| t.is_some())
    }

    async fn unlock(&self, key: &str) {
        let _: Result<(), _> = redis::cmd("DEL").arg(self.lock_key(key)).query_async(&mut self.conn.clone()).await;
    }
}
