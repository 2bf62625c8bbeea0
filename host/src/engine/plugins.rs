//! Uploaded plugins shared with every worker of a deployment, by content
//! hash and owner: the API host publishes each upload (and, at start, every
//! stored one); workers load what they have not loaded yet, on each
//! heartbeat and before running a test whose assertion type they do not
//! know, into the namespace of the tenant that uploaded it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use crate::queue::QueueError;
use crate::sandbox::{Owner, Sandbox};

/// How a plugin is named where it is shared: its content hash, after
/// `t<tenant>/` for a tenant's own (two tenants may upload the same bytes as
/// plugins of their own). A bare hash is a shared plugin.
pub fn shared_id(owner: Owner, hash: &str) -> String {
    match owner {
        Some(tenant) => format!("t{tenant}/{hash}"),
        None => hash.to_string(),
    }
}

/// The owner and hash a [`shared_id`] names; `None` for a malformed one.
pub fn parse_shared_id(id: &str) -> Option<(Owner, &str)> {
    match id.split_once('/') {
        None => Some((None, id)),
        Some((tenant, hash)) => Some((Some(tenant.strip_prefix('t')?.parse().ok()?), hash)),
    }
}

/// Where a deployment keeps its uploaded plugins (Redis).
#[async_trait::async_trait]
pub trait SharedPlugins: Send + Sync {
    /// Adds a plugin under its [`shared_id`] (a no-op if it is there).
    async fn publish(&self, id: &str, bytes: &[u8]) -> Result<(), QueueError>;
    /// Withdraws a plugin (replaced or deleted): workers unload it.
    async fn retract(&self, id: &str) -> Result<(), QueueError>;
    /// Every plugin's [`shared_id`], in publication order.
    async fn hashes(&self) -> Result<Vec<String>, QueueError>;
    async fn fetch(&self, id: &str) -> Result<Option<Vec<u8>>, QueueError>;
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
        for id in withdrawn {
            if let Some((owner, hash)) = parse_shared_id(&id) {
                sandbox.remove_assertion_plugin_by_hash(owner, hash);
            }
            tracing::info!(plugin_id = %id, "shared plugin withdrawn");
        }
        for hash in hashes {
            if self.loaded.lock().unwrap_or_else(PoisonError::into_inner).contains(&hash) {
                continue;
            }
            let Some((owner, _)) = parse_shared_id(&hash) else {
                tracing::error!(plugin_id = %hash, "a shared plugin's id is malformed; skipped");
                self.loaded.lock().unwrap_or_else(PoisonError::into_inner).insert(hash);
                continue;
            };
            match self.shared.fetch(&hash).await {
                // The API host that took the upload checked the tenant's
                // allowance; a worker only mirrors it.
                Ok(Some(bytes)) => match sandbox.add_assertion_plugin_for(owner, &bytes, None).await {
                    Ok(info) => {
                        tracing::info!(plugin = %info.name, plugin_id = %hash, types = ?info.assertion_types, "shared plugin loaded")
                    }
                    Err(e) => tracing::error!(plugin_id = %hash, error = %e, "a shared plugin does not load; skipped"),
                },
                Ok(None) => continue,
                Err(e) => return tracing::debug!(error = %e, "could not fetch a shared plugin"),
            }
            self.loaded.lock().unwrap_or_else(PoisonError::into_inner).insert(hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_ids_name_the_owner_and_the_hash() {
        assert_eq!(shared_id(None, "abc"), "abc");
        assert_eq!(shared_id(Some(7), "abc"), "t7/abc");
        assert_eq!(parse_shared_id("abc"), Some((None, "abc")));
        assert_eq!(parse_shared_id("t7/abc"), Some((Some(7), "abc")));
        assert_eq!(parse_shared_id("x7/abc"), None);
        assert_eq!(parse_shared_id("t/abc"), None);
    }
}
