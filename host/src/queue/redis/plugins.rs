//! Uploaded plugins in Redis, by shared id (content hash, after the owner
//! for a tenant's plugin: `engine::shared_id`): `{prefix}:plugins` (id ->
//! bytes) and `{prefix}:plugin-order` (ids in publication order).

use super::conn::Conn;
use crate::engine::SharedPlugins;
use crate::queue::QueueError;

pub struct RedisPlugins {
    pub(super) conn: Conn,
    pub(super) prefix: String,
}

fn unavailable(e: redis::RedisError) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

#[async_trait::async_trait]
impl SharedPlugins for RedisPlugins {
    async fn publish(&self, id: &str, bytes: &[u8]) -> Result<(), QueueError> {
        let added: bool = redis::cmd("HSETNX")
            .arg(format!("{}:plugins", self.prefix))
            .arg(id)
            .arg(bytes)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        if added {
            redis::cmd("RPUSH")
                .arg(format!("{}:plugin-order", self.prefix))
                .arg(id)
                .query_async::<()>(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn retract(&self, id: &str) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HDEL").arg(format!("{}:plugins", self.prefix)).arg(id).ignore();
        pipe.cmd("LREM").arg(format!("{}:plugin-order", self.prefix)).arg(0).arg(id).ignore();
        pipe.query_async::<()>(&mut self.conn.clone()).await.map_err(unavailable)
    }

    async fn hashes(&self) -> Result<Vec<String>, QueueError> {
        redis::cmd("LRANGE")
            .arg(format!("{}:plugin-order", self.prefix))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn fetch(&self, id: &str) -> Result<Option<Vec<u8>>, QueueError> {
        redis::cmd("HGET")
            .arg(format!("{}:plugins", self.prefix))
            .arg(id)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }
}
