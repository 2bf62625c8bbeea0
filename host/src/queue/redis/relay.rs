//! The event relay's transport on Redis pub/sub: one channel per
//! deployment, `{prefix}:events`. On a cluster, a message published on any
//! node reaches subscribers on every node, so the subscriber connects to
//! the first seed node.

use futures_util::StreamExt;
use redis::AsyncCommands;
use tokio::sync::mpsc;

use super::conn::Conn;
use crate::progress::relay::{RelayError, RelayTransport};

pub struct RedisRelay {
    pub(super) conn: Conn,
    pub(super) url: String,
    pub(super) channel: String,
}

fn unavailable(e: redis::RedisError) -> RelayError {
    RelayError::Unavailable(e.to_string())
}

#[async_trait::async_trait]
impl RelayTransport for RedisRelay {
    async fn publish(&self, message: String) -> Result<(), RelayError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.publish(&self.channel, message).await.map_err(unavailable)?;
        Ok(())
    }

    async fn subscribe(&self) -> Result<mpsc::Receiver<String>, RelayError> {
        let client = redis::Client::open(self.url.as_str()).map_err(unavailable)?;
        let mut pubsub = client.get_async_pubsub().await.map_err(unavailable)?;
        pubsub.subscribe(&self.channel).await.map_err(unavailable)?;
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                match message.get_payload::<String>() {
                    Ok(text) => {
                        if tx.send(text).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "a relay message that is not text was skipped"),
                }
            }
        });
        Ok(rx)
    }
}
