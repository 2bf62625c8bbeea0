//! Uploaded plugins shared with every worker of a deployment, by content
//! hash: the API host publishes each upload (and, at start, every stored
//! one); workers load what they have not loaded yet, on each heartbeat and
//! before running a test whose assertion type they do not know.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use crate::queue::QueueError;
use crate::sandbox::Sandbox;

/// Where a deployment keeps its uploaded plugins (Redis).
#[async_trait::async_trait]
pub trait SharedPlugins: Send + Sync {
    /// Adds a plugin (a no-op if its hash is there already).
    async fn publish(&self, hash: &str, bytes: &[u8]) -> Result<(), QueueError>;
    /// Withdraws a plugin (replaced or deleted): workers unload it.
    async fn retract(&self, hash: &str) -> Result<(), QueueError>;
    /// Every plugin's hash, in publication order.
    async fn hashes(&self) -> Result<Vec<String>, QueueError>;
    async fn fetch(&self, hash: &str) -> Result<Option<Vec<u8>>, QueueError>;
}

/// A worker's view: which shared plugins its sandbox has loaded.
pub struct PluginSync {
    shared: Arc<dyn SharedPlugins>,
    loaded: Mutex<HashSet<String>>,
    /// One sync at a time.
    running: tokio::sync::Mutex<()>,
}

impl PluginSync {
    pub fn new(shared: Arc<dyn SharedPlugins>) -> Self {
        Self { shared, loaded: Mutex::default(), running: tokio::sync::Mutex::new(()) }
    }

    /// Loads every shared plugin this worker has not loaded yet. A plugin
    /// that does not load is logged and not tried again.
    pub async fn sync(&self, sandbox: &Sandbox) {
        let _one = self.running.lock().await;
        let hashes = match self.shared.hashes().await {
            Ok(h) => h,
            Err(e) => return tracing::debug!(error = %e, "could not list shared plugins"),
        };
        let withdrawn: Vec<String> = {
            let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
            let gone: Vec<String> = loaded.iter().filter(|h| !hashes.contains(h)).cloned().collect();
            for hash in &gone {
                loaded.remove(hash);
            }
            gone
        };
        for hash in withdrawn {
            sandbox.remove_assertion_plugin_by_hash(&hash);
            tracing::info!(hash = %hash, "shared plugin withdrawn");
        }
        for hash in hashes {
            if self.loaded.lock().unwrap_or_else(PoisonError::into_inner).contains(&hash) {
                continue;
            }
            match self.shared.fetch(&hash).await {
                Ok(Some(bytes)) => match sandbox.add_assertion_plugin(&bytes).await {
                    Ok(info) => {
                        tracing::info!(plugin = %info.name, hash = %hash, types = ?info.assertion_types, "shared plugin loaded")
                    }
                    Err(e) => tracing::error!(hash = %hash, error = %e, "a shared plugin does not load; skipped"),
                },
                Ok(None) => continue,
                Err(e) => return tracing::debug!(error = %e, "could not fetch a shared plugin"),
            }
            self.loaded.lock().unwrap_or_else(PoisonError::into_inner).insert(hash);
        }
    }
}
