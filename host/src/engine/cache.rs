//! The response cache: identical model requests are answered once, and
//! concurrent identical requests are collapsed into one (single flight).
//! Errors are never cached.
//!
//! With a [`SharedCache`] (Redis, when the deployment has one) a miss here
//! asks it before calling the model, and answers are written there with a
//! TTL, so identical prompts are answered once across workers; a lock per
//! key collapses concurrent identical calls on different workers too.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::sandbox::{Completion, CompletionRequest, SandboxError, TokenUsage};

/// What the shared cache keeps of a completion.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CachedCompletion {
    pub text: String,
    pub tokens: Option<TokenUsage>,
    pub finish_reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<f64>>,
}

/// A cache shared by every worker of a deployment. Failures are not
/// errors: the model is asked instead.
#[async_trait::async_trait]
pub trait SharedCache: Send + Sync {
    async fn get(&self, key: &str) -> Option<CachedCompletion>;
    async fn put(&self, key: &str, value: &CachedCompletion);
    /// Takes the key's call lock for `hold`; false if another worker has it.
    async fn lock(&self, key: &str, hold: Duration) -> bool;
    async fn unlock(&self, key: &str);
}

/// A held call lock of the shared cache, released when dropped.
struct SharedLock {
    shared: Arc<dyn SharedCache>,
    key: String,
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        let (shared, key) = (self.shared.clone(), std::mem::take(&mut self.key));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { shared.unlock(&key).await });
        }
    }
}

/// How long a worker waits for another worker's identical call.
const SHARED_WAIT: Duration = Duration::from_secs(60);

fn completion_of(c: CachedCompletion) -> Completion {
    Completion {
        text: c.text,
        tokens: c.tokens,
        finish_reason: c.finish_reason,
        logprobs: c.logprobs,
        fuel_used: 0,
        duration: Duration::ZERO,
    }
}

/// Entries kept before the oldest half is dropped.
const CAPACITY: usize = 50_000;

/// One key's slot: when it was last created (for eviction) and the answer,
/// filled by whichever caller runs the model first.
type Slot = (u64, Arc<OnceCell<Completion>>);

#[derive(Default)]
pub struct ResponseCache {
    entries: Mutex<HashMap<String, Slot>>,
    clock: std::sync::atomic::AtomicU64,
    shared: Option<Arc<dyn SharedCache>>,
}

impl ResponseCache {
    /// A cache backed by `shared` as well as by this process's memory.
    pub fn with_shared(shared: Arc<dyn SharedCache>) -> Self {
        Self { shared: Some(shared), ..Self::default() }
    }

    /// The key: tenant, adapter, model, rendered prompt and generation
    /// options.
    pub fn key(tenant: Option<i64>, adapter: &str, request: &CompletionRequest) -> String {
        let mut h = Sha256::new();
        if let Some(tenant) = tenant {
            h.update(tenant.to_le_bytes());
            h.update([1]);
        }
        for part in [adapter, &request.model] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(serde_json::to_vec(&request.prompt).unwrap_or_default());
        h.update([0]);
        h.update(serde_json::to_vec(&request.options).unwrap_or_default());
        // An answer without log-probabilities cannot serve a test that
        // reads them (one with them could, but is kept apart for clarity).
        if request.logprobs {
            h.update([0, b'L']);
        }
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
        let from_shared = std::sync::atomic::AtomicBool::new(false);
        let result = cell
            .get_or_try_init(|| {
                called = true;
                self.shared_or_call(&key, call, &from_shared)
            })
            .await
            .cloned();
        if result.is_err() {
            let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if map.get(&key).is_some_and(|(_, c)| Arc::ptr_eq(c, &cell) && c.get().is_none()) {
                map.remove(&key);
            }
        }
        (result, !called || from_shared.load(std::sync::atomic::Ordering::Relaxed))
    }
}

impl ResponseCache {
    /// On a local miss: the shared cache, else the model (under the key's
    /// lock, so concurrent identical calls on other workers wait for this
    /// one's answer).
    async fn shared_or_call<F, Fut>(
        &self,
        key: &str,
        call: F,
        from_shared: &std::sync::atomic::AtomicBool,
    ) -> Result<Completion, SandboxError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Completion, SandboxError>>,
    {
        let Some(shared) = &self.shared else { return call().await };
        let deadline = tokio::time::Instant::now() + SHARED_WAIT;
        loop {
            if let Some(hit) = shared.get(key).await {
                from_shared.store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok(completion_of(hit));
            }
            if shared.lock(key, SHARED_WAIT).await || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Released however this call ends: an aborted test (cancelled, timed
        // out) must not leave others waiting for the lock to expire.
        let _lock = SharedLock { shared: shared.clone(), key: key.to_string() };
        let result = call().await;
        if let Ok(c) = &result {
            let value = CachedCompletion {
                text: c.text.clone(),
                tokens: c.tokens,
                finish_reason: c.finish_reason.clone(),
                logprobs: c.logprobs.clone(),
            };
            shared.put(key, &value).await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{GenerationOptions, Prompt};

    #[test]
    fn keys_differ_by_tenant_and_request() {
        let request = |text: &str| CompletionRequest {
            model: "m".into(),
            prompt: Prompt::Text(text.into()),
            options: GenerationOptions::default(),
            logprobs: false,
        };
        let open = ResponseCache::key(None, "echo", &request("hi"));
        assert_eq!(open, ResponseCache::key(None, "echo", &request("hi")), "stable");
        assert_ne!(open, ResponseCache::key(None, "echo", &request("ho")));
        assert_ne!(open, ResponseCache::key(None, "ollama", &request("hi")));
        let acme = ResponseCache::key(Some(1), "echo", &request("hi"));
        assert_ne!(open, acme);
        assert_ne!(acme, ResponseCache::key(Some(2), "echo", &request("hi")), "one tenant's answer is not another's");
    }
}
