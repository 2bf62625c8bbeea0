//! The host's HTTP capability: the only network a plugin can reach.
//!
//! Each adapter gets an [`HttpGrant`]: the hosts it may reach and the secret
//! headers the host adds for it (so API keys never enter the sandbox).
//! Requests are retried on connection errors, 429 and 5xx with exponential
//! backoff and jitter, honouring `Retry-After`, always within the caller's
//! deadline; response bodies are capped.

mod allow;
mod settings;
mod transport;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT};
use http::uri::InvalidUri;
use http::{Method, StatusCode, Uri};
use url::Url;

pub use allow::{AllowedHost, AllowedHostError, HttpGrant, SecretHeader};
pub use settings::{HttpSettings, Proxy};
pub use transport::HttpSetupError;
use transport::{SendError, Transport};

/// What the host calls itself where a plugin's request names no agent.
const USER_AGENT_VALUE: &str = concat!("cardrun/", env!("CARGO_PKG_VERSION"));

/// A request as the plugin made it.
#[derive(Debug, Clone)]
pub struct PluginRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct PluginResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a request failed, as the plugin will see it.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpFailure {
    Denied(String),
    InvalidUrl(String),
    Timeout,
    TooLarge(u64),
    Transport(String),
}

/// The capability: one connection-pooling client for every plugin.
///
/// Without a proxy it is hyper's own pooled client rather than reqwest: the
/// capability already does what reqwest adds (redirects are the plugin's,
/// timeouts are the caller's deadline, retries are its own), and the
/// `breakdown` bench measured reqwest's layers at 13-17 us of a 50 us
/// loopback request (docs/BENCHMARKS.md, seventeenth session).
#[derive(Debug, Clone)]
pub struct HttpCapability {
    transport: Transport,
    settings: HttpSettings,
    endpoints: std::sync::Arc<super::endpoints::EndpointLimits>,
}

impl HttpCapability {
    pub fn new(settings: HttpSettings) -> Result<Self, HttpSetupError> {
        let transport = Transport::new(&settings.proxy)?;
        let endpoints = std::sync::Arc::new(super::endpoints::EndpointLimits::new(settings.endpoints));
        Ok(Self { transport, settings, endpoints })
    }

    /// Each model endpoint's concurrency limit, requests in flight and
    /// push-backs.
    pub fn endpoint_status(&self) -> Vec<super::endpoints::EndpointStatus> {
        self.endpoints.status()
    }

    /// Shares the endpoint limits with the deployment through `shared`
    /// (runs until the capability is dropped).
    pub fn share_endpoint_limits(&self, shared: std::sync::Arc<dyn super::endpoints::SharedEndpoints>) {
        tokio::spawn(self.endpoints.clone().sync_with(shared));
    }

    /// Sends `request` if `grant` allows its host, retrying transient
    /// failures until `deadline`.
    pub async fn send(
        &self,
        grant: &HttpGrant,
        request: PluginRequest,
        deadline: Instant,
    ) -> Result<PluginResponse, HttpFailure> {
        let url = Url::parse(&request.url).map_err(|e| HttpFailure::InvalidUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpFailure::InvalidUrl(format!("scheme `{}` is not allowed", url.scheme())));
        }
        if !grant.permits(&url) {
            let host = url.host_str().unwrap_or_default().to_string();
            let shown = match url.port_or_known_default() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            };
            return Err(HttpFailure::Denied(shown));
        }
        // The URL as parsed above (normalised host, IDNA applied), so the
        // host connected to is the host the allow-list checked.
        let uri: Uri = url.as_str().parse().map_err(|e: InvalidUri| HttpFailure::InvalidUrl(e.to_string()))?;
        let method = Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| HttpFailure::InvalidUrl(format!("invalid method `{}`", request.method)))?;
        let headers = build_headers(grant, &url, &request.headers)?;
        let body = Bytes::from(request.body);
        let endpoint = format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        );

        let mut attempt = 0;
        loop {
            attempt += 1;
            if deadline <= Instant::now() {
                return Err(HttpFailure::Timeout);
            }
            let Some(permit) = self.endpoints.acquire(&endpoint, deadline).await else {
                return Err(HttpFailure::Timeout);
            };
            let Ok(sent) = self.transport.exchange(&method, &url, &uri, &headers, &body, deadline.into()).await else {
                return Err(HttpFailure::Timeout);
            };
            if let Ok(response) = &sent {
                let status = response.status();
                if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
                    permit.pushed_back(retry_after(response.headers()).map(|d| d.min(self.settings.max_backoff)));
                } else if status.is_success() {
                    permit.succeeded();
                }
            }
            // Any failure before an answer (refused, reset, closed before
            // the response) is transient; retried while attempts remain.
            let retry_after = match sent {
                Ok(response) if is_retryable(response.status()) && attempt < self.settings.max_attempts => {
                    retry_after(response.headers())
                }
                Ok(response) => {
                    return tokio::time::timeout_at(deadline.into(), response.read(self.settings.max_response_bytes))
                        .await
                        .unwrap_or(Err(HttpFailure::Timeout));
                }
                Err(_) if attempt < self.settings.max_attempts => None,
                Err(SendError(e)) => return Err(HttpFailure::Transport(e)),
            };
            let wait = self.backoff(attempt, retry_after);
            if Instant::now() + wait >= deadline {
                return Err(HttpFailure::Timeout);
            }
            tracing::debug!(url = %url, attempt, wait_ms = wait.as_millis() as u64, "retrying model request");
            tokio::time::sleep(wait).await;
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self.settings.base_backoff.saturating_mul(1 << (attempt - 1).min(16));
        let jitter = exp.mul_f64(fastrand::f64() * 0.5);
        retry_after.unwrap_or(exp + jitter).min(self.settings.max_backoff)
    }
}

fn build_headers(grant: &HttpGrant, url: &Url, pairs: &[(String, String)]) -> Result<HeaderMap, HttpFailure> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpFailure::InvalidUrl(format!("invalid header name `{name}`")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| HttpFailure::InvalidUrl(format!("invalid value for header `{name}`")))?;
        map.append(name, value);
    }
    for secret in grant.secret_headers.iter().filter(|s| s.host.permits(url)) {
        map.insert(secret.name.clone(), secret.value.clone());
    }
    // What the client sent before it was hyper's own, where the plugin
    // set none.
    map.entry(USER_AGENT).or_insert(HeaderValue::from_static(USER_AGENT_VALUE));
    map.entry(ACCEPT).or_insert(HeaderValue::from_static("*/*"));
    Ok(map)
}

fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Retry-After` in seconds (the HTTP-date form is treated as absent).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?;
    text.trim().parse::<f64>().ok().filter(|s| *s >= 0.0).map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn once(url: String) -> (HttpCapability, HttpGrant, PluginRequest) {
        let settings = HttpSettings { max_attempts: 1, ..HttpSettings::default() };
        let grant = HttpGrant { allowed: vec![AllowedHost::parse(&url).unwrap()], secret_headers: vec![] };
        let request = PluginRequest { method: "post".into(), url, headers: vec![], body: b"{}".to_vec() };
        (HttpCapability::new(settings).unwrap(), grant, request)
    }

    /// A raw TCP server on a free port, and a URL to it.
    async fn listen(scheme: &str, path: &str) -> (tokio::net::TcpListener, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("{scheme}://{}{path}", listener.local_addr().unwrap());
        (listener, url)
    }

    /// The request `once` sends, read until its body has come (the head
    /// and the body may arrive apart), in lower case.
    async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
        let mut seen = Vec::new();
        while !seen.ends_with(b"\r\n\r\n{}") {
            let mut chunk = [0; 4096];
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&seen).to_ascii_lowercase()
    }

    /// Answers the first request on `listener` with `reply`; yields the
    /// request it read.
    fn answer_once(listener: tokio::net::TcpListener, reply: &'static [u8]) -> tokio::task::JoinHandle<String> {
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let seen = read_request(&mut socket).await;
            socket.write_all(reply).await.unwrap();
            seen
        })
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[tokio::test]
    async fn sends_the_plugins_request_with_the_hosts_default_headers() {
        let (listener, url) = listen("http", "/api/generate").await;
        let server = answer_once(listener, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: b\r\n\r\nok");
        let (capability, grant, request) = once(url);
        let response = capability.send(&grant, request, soon()).await.unwrap();
        assert_eq!((response.status, response.body.as_slice()), (200, b"ok".as_slice()));
        assert!(response.headers.contains(&("x-a".into(), "b".into())));
        let seen = server.await.unwrap();
        assert!(seen.starts_with("post /api/generate http/1.1\r\n"), "{seen}");
        assert!(seen.contains("\r\nuser-agent: cardrun/") && seen.contains("\r\naccept: */*\r\n"), "{seen}");
        assert!(seen.contains("\r\ncontent-length: 2\r\n") && seen.ends_with("\r\n\r\n{}"), "{seen}");
    }

    #[tokio::test]
    async fn a_configured_proxy_carries_the_request() {
        // The model's host does not resolve: only the proxy can reach it.
        let (listener, proxy) = listen("http", "").await;
        let proxy_saw = answer_once(listener, b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nvia proxy");
        let (_, grant, request) = once("http://model.invalid/api/generate".into());
        let settings = HttpSettings { max_attempts: 1, proxy: Proxy::Url(proxy), ..HttpSettings::default() };
        let capability = HttpCapability::new(settings).unwrap();
        let response = capability.send(&grant, request, soon()).await.unwrap();
        assert_eq!(response.body, b"via proxy");
        let seen = proxy_saw.await.unwrap();
        assert!(seen.starts_with("post http://model.invalid/api/generate http/1.1\r\n"), "{seen}");
        assert!(seen.contains("\r\nuser-agent: cardrun/"), "{seen}");
    }

    #[tokio::test]
    async fn https_goes_through_tls() {
        // A plain TCP listener: the client's first bytes must be a TLS
        // handshake record, and the failed handshake an error, not a panic.
        let (listener, url) = listen("https", "/v1/chat/completions").await;
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut first = [0; 1];
            socket.read_exact(&mut first).await.unwrap();
            socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
            first[0]
        });
        let (capability, grant, request) = once(url);
        let err = capability.send(&grant, request, soon()).await.unwrap_err();
        assert!(matches!(err, HttpFailure::Transport(_)), "{err:?}");
        assert_eq!(server.await.unwrap(), 0x16, "a TLS handshake record");
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_refused_as_it_arrives() {
        let (listener, url) = listen("http", "/").await;
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = socket.read(&mut [0; 4096]).await;
            // Chunked: no length to refuse it by up front.
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await;
            for _ in 0..4 {
                let _ = socket.write_all(b"10\r\n0123456789abcdef\r\n").await;
            }
            let _ = socket.write_all(b"0\r\n\r\n").await;
        });
        let (mut capability, grant, request) = once(url);
        capability.settings.max_response_bytes = 40;
        assert_eq!(capability.send(&grant, request, soon()).await.unwrap_err(), HttpFailure::TooLarge(40));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_runs_into_the_deadline() {
        let (listener, url) = listen("http", "/").await;
        let _hold = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(socket);
        });
        let (capability, grant, request) = once(url);
        let deadline = Instant::now() + Duration::from_millis(200);
        assert_eq!(capability.send(&grant, request, deadline).await.unwrap_err(), HttpFailure::Timeout);
    }

    #[tokio::test]
    async fn a_body_that_stalls_runs_into_the_deadline() {
        let (listener, url) = listen("http", "/").await;
        let _hold = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = socket.read(&mut [0; 4096]).await;
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok").await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let (capability, grant, request) = once(url);
        let deadline = Instant::now() + Duration::from_millis(200);
        assert_eq!(capability.send(&grant, request, deadline).await.unwrap_err(), HttpFailure::Timeout);
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), None);
    }
}
