//! How requests leave the host: hyper's pooled client, or reqwest when a
//! proxy is configured; and reading an answer's body within its cap.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HeaderMap};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use url::Url;

use super::{HttpFailure, PluginResponse, Proxy};

/// The capability could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("proxy client: {0}")]
    Proxy(#[from] reqwest::Error),
}

/// How long an unused pooled connection is kept (reqwest's default).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A request that failed before an answer came (refused, reset, TLS).
pub(super) struct SendError(pub(super) String);

/// The connector under the direct client: plain TCP, and rustls with the
/// Mozilla roots for `https`.
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The client requests leave by.
#[derive(Debug, Clone)]
pub(super) enum Transport {
    Direct(Client<Connector, Full<Bytes>>),
    /// reqwest speaks to proxies (absolute-form requests, `CONNECT`
    /// tunnels, `NO_PROXY`); hyper's client does not.
    Proxied(reqwest::Client),
}

/// An answer's head, and its body still to read.
pub(super) enum Answer {
    Direct(Response<Incoming>),
    Proxied(reqwest::Response),
}

impl Transport {
    pub(super) fn new(proxy: &Proxy) -> Result<Self, HttpSetupError> {
        Ok(match proxy {
            Proxy::Direct => Self::Direct(direct_client()?),
            Proxy::Environment => Self::Proxied(proxied_client(None)?),
            Proxy::Url(url) => Self::Proxied(proxied_client(Some(url))?),
        })
    }

    /// One attempt, within `deadline`.
    pub(super) async fn exchange(
        &self,
        method: &Method,
        url: &Url,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
        deadline: tokio::time::Instant,
    ) -> Result<Result<Answer, SendError>, tokio::time::error::Elapsed> {
        match self {
            Self::Direct(client) => {
                let mut outgoing = Request::new(Full::new(body.clone()));
                *outgoing.method_mut() = method.clone();
                *outgoing.uri_mut() = uri.clone();
                *outgoing.headers_mut() = headers.clone();
                let sent = tokio::time::timeout_at(deadline, client.request(outgoing)).await?;
                Ok(sent.map(Answer::Direct).map_err(|e| SendError(error_chain(&e))))
            }
            Self::Proxied(client) => {
                let outgoing = client.request(method.clone(), url.clone()).headers(headers.clone()).body(body.clone());
                let sent = tokio::time::timeout_at(deadline, outgoing.send()).await?;
                Ok(sent.map(Answer::Proxied).map_err(|e| SendError(error_chain(&e))))
            }
        }
    }
}

fn direct_client() -> Result<Client<Connector, Full<Bytes>>, rustls::Error> {
    let mut tcp = HttpConnector::new();
    // Requests are small and answered whole: Nagle would only hold them
    // back (reqwest sets the same).
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
    // default headers come from the capability, as on the direct path.
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(url) = proxy {
        builder = builder.no_proxy().proxy(reqwest::Proxy::all(url)?);
    }
    builder.build()
}

impl Answer {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Self::Direct(r) => r.status(),
            Self::Proxied(r) => r.status(),
        }
    }

    pub(super) fn headers(&self) -> &HeaderMap {
        match self {
            Self::Direct(r) => r.headers(),
            Self::Proxied(r) => r.headers(),
        }
    }

    /// Reads the answer whole, refusing it once over `cap` bytes (the
    /// caller holds the deadline: one timer for the whole body, not one
    /// per frame).
    pub(super) async fn read(self, cap: usize) -> Result<PluginResponse, HttpFailure> {
        match self {
            Self::Direct(response) => read_body(response, cap).await,
            Self::Proxied(response) => read_body(Response::<reqwest::Body>::from(response), cap).await,
        }
    }
}

async fn read_body<B>(response: Response<B>, cap: usize) -> Result<PluginResponse, HttpFailure>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
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

/// An error and its sources, as one line.
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
