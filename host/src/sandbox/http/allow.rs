//! Where an adapter may send requests: allowed hosts, and the secret
//! headers the host adds for them (so API keys never enter the sandbox).

use http::header::{HeaderName, HeaderValue};
use url::Url;

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

    /// Whether `url` goes to this host (and port, where one is set).
    pub(crate) fn permits(&self, url: &Url) -> bool {
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

#[cfg(test)]
mod tests {
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
}
