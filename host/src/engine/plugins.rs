//! Uploaded plugins shared with every worker of a deployment, by content
//! hash and owner: the API host publishes each upload (and, at start, every
//! stored one); workers load what they have not loaded yet, on each
//! heartbeat and before running a test whose assertion type they do not
//! know, into the namespace of the tenant that uploaded it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use crate::queue::QueueError;
use crate::sandbox::{AdapterManifest, Owner, Sandbox, SandboxError};

/// How a plugin is named where it is shared: an assertion plugin by its
/// content hash, after `t<tenant>/` for a tenant's own (two tenants may
/// upload the same bytes as plugins of their own); a bare hash is a shared
/// plugin. A model adapter as `adapter/t<tenant>/<name>/<hash>`.
pub fn shared_id(owner: Owner, hash: &str) -> String {
    match owner {
        Some(tenant) => format!("t{tenant}/{hash}"),
        None => hash.to_string(),
    }
}

/// The shared id of `owner`'s adapter `name` whose component hashes to `hash`.
pub fn adapter_shared_id(owner: Owner, name: &str, hash: &str) -> String {
    format!("adapter/{}/{name}/{hash}", owner.map_or_else(|| "shared".to_string(), |t| format!("t{t}")))
}

/// What a shared id names.
#[derive(Debug, PartialEq, Eq)]
pub enum SharedItem<'a> {
    Assertion { owner: Owner, hash: &'a str },
    Adapter { owner: Owner, name: &'a str, hash: &'a str },
}

/// The item a [`shared_id`] or [`adapter_shared_id`] names; `None` for a
/// malformed one.
pub fn parse_shared_id(id: &str) -> Option<SharedItem<'_>> {
    let owner_of = |text: &str| -> Option<Owner> {
        match text {
            "shared" => Some(None),
            _ => Some(Some(text.strip_prefix('t')?.parse().ok()?)),
        }
    };
    if let Some(rest) = id.strip_prefix("adapter/") {
        let mut parts = rest.splitn(3, '/');
        let (owner, name, hash) = (owner_of(parts.next()?)?, parts.next()?, parts.next()?);
        return Some(SharedItem::Adapter { owner, name, hash });
    }
    match id.split_once('/') {
        None => Some(SharedItem::Assertion { owner: None, hash: id }),
        Some(("shared", _)) => None,
        Some((tenant, hash)) => Some(SharedItem::Assertion { owner: owner_of(tenant)?, hash }),
    }
}

/// An adapter as shared: its manifest (JSON) and its component, one after
/// the other, the manifest's length first (4 bytes, little-endian).
pub fn encode_adapter(manifest: &str, component: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(4 + manifest.len() + component.len());
    bytes.extend_from_slice(&u32::try_from(manifest.len()).unwrap_or(u32::MAX).to_le_bytes());
    bytes.extend_from_slice(manifest.as_bytes());
    bytes.extend_from_slice(component);
    bytes
}

/// The manifest and component of [`encode_adapter`]; `None` if malformed.
pub fn decode_adapter(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let len = usize::try_from(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?)).ok()?;
    let manifest = std::str::from_utf8(bytes.get(4..4usize.checked_add(len)?)?).ok()?;
    Some((manifest, bytes.get(4 + len..)?))
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

/// Keeps an API host that runs no tests in step with the uploads other API
/// hosts take (it plans and validates with them; workers follow uploads on
/// their heartbeat): a sync every second, for as long as the sandbox lives.
pub fn follow_uploads(shared: Arc<dyn SharedPlugins>, sandbox: &Arc<Sandbox>) {
    let sync = PluginSync::new(shared);
    let sandbox = Arc::downgrade(sandbox);
    tokio::spawn(async move {
        while let Some(sandbox) = sandbox.upgrade() {
            sync.sync(&sandbox).await;
            drop(sandbox);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
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
            match parse_shared_id(&id) {
                Some(SharedItem::Assertion { owner, hash }) => sandbox.remove_assertion_plugin_by_hash(owner, hash),
                Some(SharedItem::Adapter { owner, name, .. }) => {
                    let _ = sandbox.remove_adapter_plugin_for(owner, name);
                }
                None => {}
            }
            tracing::info!(plugin_id = %id, "shared plugin withdrawn");
        }
        for hash in hashes {
            if self.loaded.lock().unwrap_or_else(PoisonError::into_inner).contains(&hash) {
                continue;
            }
            let Some(item) = parse_shared_id(&hash) else {
                tracing::error!(plugin_id = %hash, "a shared plugin's id is malformed; skipped");
                self.loaded.lock().unwrap_or_else(PoisonError::into_inner).insert(hash);
                continue;
            };
            match self.shared.fetch(&hash).await {
                // The API host that took the upload checked the tenant's
                // allowance; a worker only mirrors it.
                Ok(Some(bytes)) => match load(sandbox, &item, &bytes).await {
                    Ok(()) => tracing::info!(plugin_id = %hash, "shared plugin loaded"),
                    Err(e) => tracing::error!(plugin_id = %hash, error = %e, "a shared plugin does not load; skipped"),
                },
                Ok(None) => continue,
                Err(e) => return tracing::debug!(error = %e, "could not fetch a shared plugin"),
            }
            self.loaded.lock().unwrap_or_else(PoisonError::into_inner).insert(hash);
        }
    }
}

/// Registers a shared item in this worker's sandbox.
async fn load(sandbox: &Sandbox, item: &SharedItem<'_>, bytes: &[u8]) -> Result<(), SandboxError> {
    match *item {
        // In publication order: a later version of a plugin replaces the
        // earlier, which stays for the tests queued with it.
        SharedItem::Assertion { owner, .. } => sandbox.install_assertion_plugin_for(owner, bytes).await.map(|_| ()),
        SharedItem::Adapter { owner, name, hash } => {
            // The host that took the upload has it already.
            if sandbox.uploaded_adapters(owner).iter().any(|a| a.name == name && a.hash == hash) {
                return Ok(());
            }
            let malformed = || SandboxError::BadDescription("a shared adapter record is malformed".into());
            let (manifest, component) = decode_adapter(bytes).ok_or_else(malformed)?;
            let manifest: AdapterManifest = serde_json::from_str(manifest).map_err(|_| malformed())?;
            let settings = manifest.settings()?;
            sandbox.add_adapter_plugin_for(owner, name, component, settings).await.map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_ids_name_the_owner_and_the_item() {
        assert_eq!(shared_id(None, "abc"), "abc");
        assert_eq!(shared_id(Some(7), "abc"), "t7/abc");
        assert_eq!(parse_shared_id("abc"), Some(SharedItem::Assertion { owner: None, hash: "abc" }));
        assert_eq!(parse_shared_id("t7/abc"), Some(SharedItem::Assertion { owner: Some(7), hash: "abc" }));
        assert_eq!(parse_shared_id("x7/abc"), None);
        assert_eq!(parse_shared_id("t/abc"), None);
        let id = adapter_shared_id(Some(7), "acme-llm", "abc");
        assert_eq!(parse_shared_id(&id), Some(SharedItem::Adapter { owner: Some(7), name: "acme-llm", hash: "abc" }));
        assert_eq!(parse_shared_id("adapter/t7/acme-llm"), None);
    }

    #[test]
    fn an_adapter_record_round_trips() {
        let record = encode_adapter("{\"name\":\"a\"}", b"\0asm");
        assert_eq!(decode_adapter(&record), Some(("{\"name\":\"a\"}", &b"\0asm"[..])));
        assert_eq!(decode_adapter(&record[..6]), None);
        assert_eq!(decode_adapter(&[255, 255, 255, 255, 1]), None);
    }
}
