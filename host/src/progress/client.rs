//! A small Socket.IO client (protocol v5 over Engine.IO v4, websocket
//! transport, default namespace), enough for `cardrun watch`: connect,
//! emit events, receive events, answer pings.
//!
//! Why not a client crate: `rust_socketio` brings OpenSSL and a second
//! HTTP stack; the websocket crate used here is already in the build for
//! the server side, and the protocol subset a follower needs is four packet
//! types.

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{0}` is not an http(s) or ws(s) URL")]
    BadUrl(String),
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the server refused the Socket.IO connection: {0}")]
    Refused(String),
    #[error("the connection closed before the handshake finished")]
    Handshake,
    #[error("the connection is closed")]
    Closed,
}

/// One event from the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

pub struct SocketClient {
    outgoing: mpsc::UnboundedSender<Message>,
    events: mpsc::UnboundedReceiver<Event>,
}

/// `http://host:port[/prefix]` (or ws/wss) to the Socket.IO websocket URL.
pub fn websocket_url(server: &str) -> Result<String, ClientError> {
    let server = server.trim().trim_end_matches('/');
    let base = if let Some(rest) = server.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = server.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if server.starts_with("ws://") || server.starts_with("wss://") {
        server.to_string()
    } else {
        return Err(ClientError::BadUrl(server.to_string()));
    };
    Ok(format!("{base}/socket.io/?EIO=4&transport=websocket"))
}

impl SocketClient {
    /// Connects to `server` (its HTTP base URL) and joins the default
    /// namespace.
    pub async fn connect(server: &str) -> Result<Self, ClientError> {
        Self::connect_with_key(server, None).await
    }

    /// [`SocketClient::connect`], presenting an API key in the handshake's
    /// `auth` (a server with tenants refuses connections without one).
    pub async fn connect_with_key(server: &str, key: Option<&str>) -> Result<Self, ClientError> {
        use futures_util::{SinkExt, StreamExt};
        let url = websocket_url(server)?;
        let (stream, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| ClientError::Connect { url: server.to_string(), reason: e.to_string() })?;
        let (mut sink, mut source) = stream.split();

        // Engine.IO open ("0{...}"), then the namespace connect ("40").
        loop {
            match source.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with('0') => break,
                Some(Ok(_)) => continue,
                _ => return Err(ClientError::Handshake),
            }
        }
        let connect = match key {
            Some(token) => format!("40{}", serde_json::json!({ "token": token })),
            None => "40".to_string(),
        };
        sink.send(Message::text(connect)).await.map_err(|_| ClientError::Handshake)?;
        loop {
            match source.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with("40") => break,
                Some(Ok(Message::Text(t))) if t.starts_with("44") => {
                    return Err(ClientError::Refused(t[2..].to_string()));
                }
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                    sink.send(Message::text("3")).await.map_err(|_| ClientError::Handshake)?;
                }
                Some(Ok(_)) => continue,
                _ => return Err(ClientError::Handshake),
            }
        }

        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                if sink.send(message).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let pong = out_tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = source.next().await {
                let Message::Text(text) = message else { continue };
                match text.as_str() {
                    // Engine.IO ping; answered at once.
                    "2" => {
                        let _ = pong.send(Message::text("3"));
                    }
                    // Engine.IO close, or the server left the namespace.
                    "1" | "41" => break,
                    t => {
                        if let Some(event) = parse_event(t)
                            && event_tx.send(event).is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
        Ok(Self { outgoing: out_tx, events: event_rx })
    }

    /// Sends an event with one argument.
    pub fn emit(&self, name: &str, data: &Value) -> Result<(), ClientError> {
        let packet = format!("42{}", Value::Array(vec![Value::String(name.to_string()), data.clone()]));
        self.outgoing.send(Message::text(packet)).map_err(|_| ClientError::Closed)
    }

    /// The next event; `None` once the connection closed.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Leaves the namespace and closes the connection.
    pub fn close(self) {
        let _ = self.outgoing.send(Message::text("41"));
    }
}

/// `42[name, data]` or `42<ack id>[name, data]` (an event), else `None`.
fn parse_event(packet: &str) -> Option<Event> {
    let body = packet.strip_prefix("42")?;
    let body = body.trim_start_matches(|c: char| c.is_ascii_digit());
    let Value::Array(mut parts) = serde_json::from_str::<Value>(body).ok()? else { return None };
    if parts.is_empty() {
        return None;
    }
    let data = if parts.len() > 1 { parts.swap_remove(1) } else { Value::Null };
    let Value::String(name) = parts.swap_remove(0) else { return None };
    Some(Event { name, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_map_to_the_websocket_endpoint() {
        assert_eq!(websocket_url("http://h:1/").unwrap(), "ws://h:1/socket.io/?EIO=4&transport=websocket");
        assert_eq!(websocket_url("https://h").unwrap(), "wss://h/socket.io/?EIO=4&transport=websocket");
        assert!(websocket_url("h:1").is_err());
    }

    #[test]
    fn event_packets_parse_with_and_without_ack_ids() {
        assert_eq!(
            parse_event(r#"42["progress",{"a":1}]"#),
            Some(Event { name: "progress".into(), data: json!({"a":1}) })
        );
        assert_eq!(parse_event(r#"4217["x"]"#), Some(Event { name: "x".into(), data: Value::Null }));
        assert_eq!(parse_event("40"), None);
        assert_eq!(parse_event("42[1]"), None);
        assert_eq!(parse_event("42{"), None);
    }
}
