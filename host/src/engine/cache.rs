//! The response cache: identical model requests are answered once, and
//! concurrent identical requests are collapsed into one (single flight).
//! Errors are never cached.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::sandbox::{Completion, CompletionRequest, SandboxError};

/// Entries kept before the oldest half is dropped.
const CAPACITY: usize = 50_000;

/// One key's slot: when it was last created (for eviction) and the answer,
/// filled by whichever caller runs the model first.
type Slot = (u64, Arc<OnceCell<Completion>>);

#[derive(Default)]
pub struct ResponseCache {
    entries: Mutex<HashMap<String, Slot>>,
    clock: std::sync::atomic::AtomicU64,
}

impl ResponseCache {
    /// The key: adapter, model, rendered prompt and generation options.
    pub fn key(adapter: &str, request: &CompletionRequest) -> String {
        let mut h = Sha256::new();
        for part in [adapter, &request.model] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(serde_json::to_vec(&request.prompt).unwrap_or_default());
        h.update([0]);
        h.update(serde_json::to_vec(&request.options).unwrap_or_default());
        hex::encode(h.finalize())
    }

    /// Returns the cached completion for `key` or runs `call` (once, however
    /// many callers wait). The flag says whether this caller was served
    /// without calling the model itself.
    pub async fn get_or_call<F, Fut>(&self, key: String, call: F) -> (Result<Completion, SandboxError>, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Completion, SandboxError>>,
    {
        let cell = {
            let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if map.len() >= CAPACITY {
                let mut ages: Vec<u64> = map.values().map(|(t, _)| *t).collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() / 2];
                map.retain(|_, (t, _)| *t > cutoff);
            }
            let now = self.clock.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            map.entry(key.clone()).or_insert_with(|| (now, Arc::new(OnceCell::new()))).1.clone()
        };
        if let Some(hit) = cell.get() {
            return (Ok(hit.clone()), true);
        }
        let mut called = false;
        let result = cell
            .get_or_try_init(|| {
                called = true;
                call()
            })
            .await
            .cloned();
        if result.is_err() {
            let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if map.get(&key).is_some_and(|(_, c)| Arc::ptr_eq(c, &cell) && c.get().is_none()) {
                map.remove(&key);
            }
        }
        (result, !called)
    }
}
