//! The host's HTTP capability: the only network a plugin can reach.
//!
//! Each adapter gets an [`HttpGrant`]: the hosts it may reach and the secret
//! headers the host adds for it (so API keys never enter the sandbox).
//! Requests are retried on connection errors, 429 and 5xx with exponential
//! backoff and jitter, honouring `Retry-After`, always within the caller's
//! deadline; response bodies are capped.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT};
use http::uri::InvalidUri;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use url::Url;

/// What the host calls itself where a plugin's request names no agent.
const USER_AGENT_VALUE: &str = concat!("cardrun/", env!("CARGO_PKG_VERSION"));

/// A request that failed before an answer came (refused, reset, TLS).
struct SendError(String);

/// The capability could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("proxy client: {0}")]
    Proxy(#[from] reqwest::Error),
}

/// Why text does not name an allowed destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowedHostError {
    #[error("invalid URL `{text}`: {reason}")]
    InvalidUrl { text: String, reason: url::ParseError },
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error("unclosed `[` in `{0}`")]
    UnclosedBracket(String),
    #[error("invalid port in `{0}`")]
    InvalidPort(String),
}

/// How long an unused pooled connection is kept (reqwest's default).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One allowed destination: a host name and an optional port (`None` means
/// any port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    pub host: String,
    pub port: Option<u16>,
}

impl std::fmt::Display for AllowedHost {
    /// `host` or `host:port`, as [`AllowedHost::parse`] reads it back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match self.port {
            Some(port) => write!(f, "{host}:{port}"),
            None => f.write_str(&host),
        }
    }
}

impl AllowedHost {
    /// Parses `host`, `host:port` or a whole URL (its host and port are used).
    pub fn parse(text: &str) -> Result<Self, AllowedHostError> {
        if text.contains("://") {
            let url =
                Url::parse(text).map_err(|reason| AllowedHostError::InvalidUrl { text: text.to_string(), reason })?;
            let host = url.host_str().ok_or_else(|| AllowedHostError::NoHost(text.to_string()))?;
            return Ok(Self { host: host.to_ascii_lowercase(), port: url.port_or_known_default() });
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            // `[v6addr]` or `[v6addr]:port`
            let (host, after) =
                rest.split_once(']').ok_or_else(|| AllowedHostError::UnclosedBracket(text.to_string()))?;
            (host, after.strip_prefix(':'))
        } else if text.matches(':').count() == 1 {
            let (host, port) = text.split_once(':').unwrap_or((text, ""));
            (host, Some(port))
        } else {
            (text, None)
        };
        if host.is_empty() {
            return Err(AllowedHostError::NoHost(text.to_string()));
        }
        let port =
            port.map(|p| p.parse::<u16>().map_err(|_| AllowedHostError::InvalidPort(text.to_string()))).transpose()?;
        Ok(Self { host: host.to_ascii_lowercase(), port })
    }

    fn permits(&self, url: &Url) -> bool {
        let host = url.host_str().map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase());
        host.as_deref() == Some(self.host.as_str()) && self.port.is_none_or(|p| url.port_or_known_default() == Some(p))
    }
}

/// A header the host adds to requests bound for one host.
#[derive(Debug, Clone)]
pub struct SecretHeader {
    pub host: AllowedHost,
    pub name: HeaderName,
    pub value: HeaderValue,
}

/// What one adapter may do on the network.
#[derive(Debug, Clone, Default)]
pub struct HttpGrant {
    pub allowed: Vec<AllowedHost>,
    pub secret_headers: Vec<SecretHeader>,
}

impl HttpGrant {
    pub fn permits(&self, url: &Url) -> bool {
        self.allowed.iter().any(|a| a.permits(url))
    }
}

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
    pub endpoints: super::endpoints::EndpointSettings,
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
            endpoints: super::endpoints::EndpointSettings::default(),
            proxy: Proxy::Direct,
        }
    }
}

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

/// The connector under the capability's client: plain TCP, and rustls with
/// the Mozilla roots for `https`.
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The client requests leave by.
#[derive(Debug, Clone)]
enum Transport {
    Direct(Client<Connector, Full<Bytes>>),
    /// reqwest speaks to proxies (absolute-form requests, `CONNECT`
    /// tunnels, `NO_PROXY`); hyper's client does not.
    Proxied(reqwest::Client),
}

/// An answer's head, and its body still to read.
enum Answer {
    Direct(Response<Incoming>),
    Proxied(reqwest::Response),
}

impl Answer {
    fn status(&self) -> StatusCode {
        match self {
            Self::Direct(r) => r.status(),
            Self::Proxied(r) => r.status(),
        }
    }

    fn headers(&self) -> &HeaderMap {
        match self {
            Self::Direct(r) => r.headers(),
            Self::Proxied(r) => r.headers(),
        }
    }
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
        let transport = match &settings.proxy {
            Proxy::Direct => Transport::Direct(Self::direct_client()?),
            Proxy::Environment => Transport::Proxied(Self::proxied_client(None)?),
            Proxy::Url(url) => Transport::Proxied(Self::proxied_client(Some(url))?),
        };
        let endpoints = std::sync::Arc::new(super::endpoints::EndpointLimits::new(settings.endpoints));
        Ok(Self { transport, settings, endpoints })
    }

    fn direct_client() -> Result<Client<Connector, Full<Bytes>>, rustls::Error> {
        let mut tcp = HttpConnector::new();
        // Requests are small and answered whole: Nagle would only hold
        // them back (reqwest sets the same).
        tcp.set_nodelay(true);
        // The TLS layer above takes `https` URLs to it.
        tcp.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        // Redirects are not followed (they could leave the allow-list): the
        // plugin sees them. The timer lets idle pooled connections expire.
        Ok(Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector))
    }

    /// reqwest through `proxy`, or through the environment's proxies.
    fn proxied_client(proxy: Option<&str>) -> Result<reqwest::Client, reqwest::Error> {
        // Redirects could leave the allow-list; the plugin sees them. The
        // default headers come from `build_headers`, as on the direct path.
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(url) = proxy {
            builder = builder.no_proxy().proxy(reqwest::Proxy::all(url)?);
        }
        builder.build()
    }

    /// One attempt, within `deadline`.
    async fn exchange(
        &self,
        method: &Method,
        url: &Url,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
        deadline: Instant,
    ) -> Result<Result<Answer, SendError>, tokio::time::error::Elapsed> {
        let deadline = tokio::time::Instant::from_std(deadline);
        match &self.transport {
            Transport::Direct(client) => {
                let mut outgoing = Request::new(Full::new(body.clone()));
                *outgoing.method_mut() = method.clone();
                *outgoing.uri_mut() = uri.clone();
                *outgoing.headers_mut() = headers.clone();
                let sent = tokio::time::timeout_at(deadline, client.request(outgoing)).await?;
                Ok(sent.map(Answer::Direct).map_err(|e| SendError(error_chain(&e))))
            }
            Transport::Proxied(client) => {
                let outgoing = client.request(method.clone(), url.clone()).headers(headers.clone()).body(body.clone());
                let sent = tokio::time::timeout_at(deadline, outgoing.send()).await?;
                Ok(sent.map(Answer::Proxied).map_err(|e| SendError(error_chain(&e))))
            }
        }
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
            let Ok(sent) = self.exchange(&method, &url, &uri, &headers, &body, deadline).await else {
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
                    return tokio::time::timeout_at(deadline.into(), self.read(response))
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

    /// Reads the answer whole, within the cap (the caller holds the
    /// deadline: one timer for the whole body, not one per frame).
    async fn read(&self, answer: Answer) -> Result<PluginResponse, HttpFailure> {
        match answer {
            Answer::Direct(response) => self.read_body(response).await,
            Answer::Proxied(response) => self.read_body(Response::<reqwest::Body>::from(response)).await,
        }
    }

    async fn read_body<B>(&self, response: Response<B>) -> Result<PluginResponse, HttpFailure>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::error::Error + 'static,
    {
        let cap = self.settings.max_response_bytes;
        let declared = response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > cap as u64) {
            return Err(HttpFailure::TooLarge(cap as u64));
        }
        let (parts, mut incoming) = response.into_parts();
        let headers =
            parts.headers.iter().filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string()))).collect();
        let mut body = Vec::new();
        loop {
            let frame = match incoming.frame().await {
                None => break,
                Some(Err(e)) => return Err(HttpFailure::Transport(error_chain(&e))),
                Some(Ok(frame)) => frame,
            };
            let Ok(chunk) = frame.into_data() else { continue };
            if body.len().saturating_add(chunk.len()) > cap {
                return Err(HttpFailure::TooLarge(cap as u64));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(PluginResponse { status: parts.status.as_u16(), headers, body })
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

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn allow_list_matches_host_and_port() {
        let grant = HttpGrant {
            allowed: vec![
                AllowedHost::parse("http://localhost:11434").unwrap(),
                AllowedHost::parse("api.example.com").unwrap(),
            ],
            secret_headers: vec![],
        };
        let ok = |u: &str| grant.permits(&Url::parse(u).unwrap());
        assert!(ok("http://localhost:11434/api/generate"));
        assert!(!ok("http://localhost:11435/api/generate"));
        assert!(ok("https://api.example.com/v1"));
        assert!(ok("http://API.example.com:8080/v1"));
        assert!(!ok("http://evil.example.com/"));
        assert!(!ok("http://api.example.com.evil.net/"));
    }

    #[test]
    fn parses_host_forms() {
        assert_eq!(AllowedHost::parse("h:80").unwrap(), AllowedHost { host: "h".into(), port: Some(80) });
        assert_eq!(AllowedHost::parse("[::1]:80").unwrap(), AllowedHost { host: "::1".into(), port: Some(80) });
        assert_eq!(AllowedHost::parse("https://x.y").unwrap(), AllowedHost { host: "x.y".into(), port: Some(443) });
        assert_eq!(AllowedHost::parse("h:notaport"), Err(AllowedHostError::InvalidPort("h:notaport".into())));
        assert_eq!(AllowedHost::parse("[::1"), Err(AllowedHostError::UnclosedBracket("[::1".into())));
        assert_eq!(AllowedHost::parse(":80"), Err(AllowedHostError::NoHost(":80".into())));
    }

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
