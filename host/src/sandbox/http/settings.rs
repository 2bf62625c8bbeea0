//! The capability's tunables, shared by every adapter.

use std::time::Duration;

use crate::sandbox::endpoints::EndpointSettings;

/// Tunables of the capability, shared by every adapter.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest response body accepted.
    pub max_response_bytes: usize,
    /// Attempts per request (1 = no retries).
    pub max_attempts: u32,
    /// First backoff; doubles each retry, plus up to 50 % jitter.
    pub base_backoff: Duration,
    /// Longest wait between two attempts (also caps `Retry-After`).
    pub max_backoff: Duration,
    /// Concurrency per model endpoint (see `endpoints.rs`).
    pub endpoints: EndpointSettings,
    /// How requests leave the host.
    pub proxy: Proxy,
}

/// Whether model requests go through an HTTP proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Proxy {
    /// Straight to the model's host, on hyper's pooled client.
    #[default]
    Direct,
    /// Through the proxies the environment names (`HTTP_PROXY`,
    /// `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, either case), as reqwest
    /// reads them.
    Environment,
    /// Through this proxy for every request.
    Url(String),
}

impl Proxy {
    /// `Environment` when a proxy variable is set, else `Direct`.
    pub fn from_env() -> Self {
        let named = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"]
            .iter()
            .flat_map(|k| [k.to_string(), k.to_ascii_lowercase()])
            .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()));
        if named { Self::Environment } else { Self::Direct }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_response_bytes: 8 << 20,
            max_attempts: 4,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            endpoints: EndpointSettings::default(),
            proxy: Proxy::Direct,
        }
    }
}
