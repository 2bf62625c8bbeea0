//! The Socket.IO server (protocol v5 on Engine.IO v4, path `/socket.io`,
//! websocket and polling), DESIGN.md section 9.
//!
//! Client to server: `subscribe-test` / `unsubscribe-test` (an execution id,
//! as a string or as `{executionId}` / `{execution_id}`),
//! `subscribe-system-resources` / `unsubscribe-system-resources`,
//! `subscribe-queue-stats` / `unsubscribe-queue-stats`. Every one is
//! answered with a Socket.IO ack when the client asks for one.
//!
//! Server to client: `subscription-confirmed`, `progress`, `test-complete`,
//! `execution-complete`, `system-resources` and `queue-stats` (each about
//! once a second while anyone listens), and `error` with a message.
//!
//! Each connected socket is a follower of the [`Hub`], drained by its own
//! task: a socket whose transport is slow makes only that task wait, and
//! the hub cuts it off when it falls too far behind.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use socketioxide::extract::{AckSender, Data, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::DisconnectReason;
use socketioxide::{SendError, SocketError, SocketIo};
use uuid::Uuid;

use super::ExecutionComplete;
use super::hub::{Feed, FollowerId, Frame, Hub};
use crate::api::AppState;
use crate::api::system;
use crate::tenants::{Access, Auth, AuthError, bearer_token};

/// Rooms of the two periodic feeds.
const SYSTEM_ROOM: &str = "system-resources";
const QUEUE_ROOM: &str = "queue-stats";

/// How often the periodic feeds are sent.
const FEED_INTERVAL: Duration = Duration::from_secs(1);

/// How long a socket's transport may refuse frames (its buffer full)
/// before the socket is dropped as stalled.
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// How long the reason for a cut-off may wait for the transport.
const REASON_WAIT: Duration = Duration::from_secs(5);

/// Frames socketioxide buffers per socket before `emit` reports it full.
const SOCKET_BUFFER: usize = 1024;

/// `subscription-confirmed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionConfirmed {
    pub execution_id: Uuid,
    pub room: String,
}

/// `error`, and the ack of a request that failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorEvent {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
}

/// The ack of every client event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ack {
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Ack {
    fn ok(room: impl Into<String>) -> Self {
        Self { success: true, room: Some(room.into()), error: None }
    }
    fn failed(message: &str) -> Self {
        Self { success: false, room: None, error: Some(message.to_string()) }
    }
}

/// The room of an execution's events, as the original system named it.
pub fn room_of(execution_id: Uuid) -> String {
    format!("test-{execution_id}")
}

/// The Socket.IO layer for the router, and the tasks behind it.
pub struct SocketServer {
    pub layer: SocketIoLayer,
    pub io: SocketIo,
}

impl SocketServer {
    /// Builds the layer; the periodic feeds run until the runtime stops.
    pub fn start(state: Arc<AppState>, hub: Arc<Hub>) -> Self {
        let (layer, io) = SocketIo::builder().max_buffer_size(SOCKET_BUFFER).build_layer();
        {
            let (state, hub) = (state.clone(), hub.clone());
            let auth = state.auth.clone();
            let handler = move |socket: SocketRef, TryData(handshake): TryData<Handshake>| {
                // Listeners are registered here, not in the returned future:
                // socketioxide spawns that after the connect ack is sent,
                // and a client may emit as soon as it has the ack.
                let key = token_of(&socket, handshake.ok());
                on_connect(socket, state.clone(), hub.clone(), key);
                std::future::ready(())
            };
            io.ns(
                "/",
                handler.with(move |socket: SocketRef, TryData(token): TryData<Handshake>| {
                    let auth = auth.clone();
                    async move { authenticate(&auth, &socket, token.ok()).await }
                }),
            );
        }
        tokio::spawn(hub.run_throttle());
        tokio::spawn(periodic_feeds(io.clone(), state));
        Self { layer, io }
    }
}

/// The handshake's `auth` payload: `{"token": "<API key>"}`.
#[derive(Debug, Deserialize)]
pub struct Handshake {
    token: Option<String>,
}

/// A refused connection; the client gets the message as `connect_error`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// With authentication on, a connection needs a live key: in the
/// handshake's `auth.token` (browsers), or an `Authorization: Bearer`
/// header on the transport's request.
async fn authenticate(auth: &Auth, socket: &SocketRef, handshake: Option<Handshake>) -> Result<(), Refused> {
    match auth.check(token_of(socket, handshake).as_deref()).await {
        Ok(_) => Ok(()),
        Err(AuthError::Store(e)) => {
            tracing::error!(error = %e, "could not check a Socket.IO connection's key");
            Err(Refused("the server cannot check keys right now; try again shortly".into()))
        }
        Err(e) => Err(Refused(e.to_string())),
    }
}

/// The key a connection presents: the handshake's `auth.token`, else an
/// `Authorization: Bearer` header on the transport's request.
fn token_of(socket: &SocketRef, handshake: Option<Handshake>) -> Option<String> {
    handshake.and_then(|h| h.token).or_else(|| {
        let header = socket.req_parts().headers.get(axum::http::header::AUTHORIZATION)?;
        bearer_token(header.to_str().ok()?).map(str::to_string)
    })
}

/// `key`: the one the connection presented; with keys on it may follow
/// only its tenant's executions.
fn on_connect(socket: SocketRef, state: Arc<AppState>, hub: Arc<Hub>, key: Option<String>) {
    let key: Arc<Option<String>> = Arc::new(key);
    let feed = hub.join();
    let follower = feed.id;
    tracing::debug!(sid = %socket.id, follower, transport = ?socket.transport_type(), "socket connected");
    tokio::spawn(drain(socket.clone(), feed));

    {
        let (state, hub) = (state.clone(), hub.clone());
        let key = key.clone();
        socket.on("subscribe-test", move |socket: SocketRef, Data(body): Data<Value>, ack: AckSender| {
            let (state, hub, key) = (state.clone(), hub.clone(), key.clone());
            async move { subscribe_test(socket, ack, body, follower, key.as_deref(), &state, &hub).await }
        });
    }
    {
        let hub = hub.clone();
        socket.on("unsubscribe-test", move |socket: SocketRef, Data(body): Data<Value>, ack: AckSender| {
            let hub = hub.clone();
            async move {
                match execution_id_of(&body) {
                    Ok(id) => {
                        hub.unfollow(follower, id);
                        let _ = ack.send(&Ack::ok(room_of(id)));
                    }
                    Err(bad) => refuse(&socket, ack, &bad.to_string(), &body),
                }
            }
        });
    }
    for (event, feed, join) in [
        ("subscribe-system-resources", SYSTEM_ROOM, true),
        ("unsubscribe-system-resources", SYSTEM_ROOM, false),
        ("subscribe-queue-stats", QUEUE_ROOM, true),
        ("unsubscribe-queue-stats", QUEUE_ROOM, false),
    ] {
        let (state, key) = (state.clone(), key.clone());
        socket.on(event, move |socket: SocketRef, ack: AckSender| {
            let (state, key) = (state.clone(), key.clone());
            async move {
                // Queue figures are per tenant: each tenant has its room.
                let tenant = match state.auth.check(key.as_deref()).await {
                    Ok(Access::Tenant(tenant)) => Some(tenant.id),
                    Ok(Access::Open) => None,
                    Err(e) => {
                        let _ = ack.send(&Ack::failed(&e.to_string()));
                        return;
                    }
                };
                let room = if feed == QUEUE_ROOM { queue_room(tenant) } else { feed.to_string() };
                if join {
                    socket.join(room.clone());
                    // The first figures at once, not a second later.
                    send_feed(&socket, feed, &state, tenant).await;
                } else {
                    socket.leave(room);
                }
                let _ = ack.send(&Ack::ok(feed));
            }
        });
    }
    socket.on_disconnect(move |socket: SocketRef, reason: DisconnectReason| async move {
        tracing::debug!(sid = %socket.id, follower, ?reason, "socket disconnected");
        hub.leave(follower);
    });
}

async fn subscribe_test(
    socket: SocketRef,
    ack: AckSender,
    body: Value,
    follower: FollowerId,
    key: Option<&str>,
    state: &AppState,
    hub: &Hub,
) {
    let id = match execution_id_of(&body) {
        Ok(id) => id,
        Err(bad) => return refuse(&socket, ack, &bad.to_string(), &body),
    };
    // Another tenant's execution is answered as an unknown one; a key
    // revoked since the connection was made follows nothing.
    let tenant = match state.auth.check(key).await {
        Ok(Access::Open) => None,
        Ok(Access::Tenant(tenant)) => Some(tenant.id),
        Err(AuthError::Store(e)) => {
            let request_id = Uuid::new_v4();
            tracing::error!(execution_id = %id, %request_id, error = %e, "subscribe-test could not check the key");
            let message = format!("progress is unavailable right now; try again (request id {request_id})");
            return refuse(&socket, ack, &message, &body);
        }
        Err(refused) => return refuse(&socket, ack, &refused.to_string(), &body),
    };
    if tenant.is_some() {
        match state.engine.store().execution(id).await {
            Ok(Some(e)) if e.tenant_id == tenant => {}
            Ok(_) => return refuse(&socket, ack, &format!("no execution {id}"), &body),
            Err(e) => {
                let request_id = Uuid::new_v4();
                tracing::error!(execution_id = %id, %request_id, error = %e, "subscribe-test failed");
                let message = format!("progress is unavailable right now; try again (request id {request_id})");
                return refuse(&socket, ack, &message, &body);
            }
        }
    }
    let snapshot = match state.engine.progress(id).await {
        Ok(p) => p,
        Err(crate::engine::EngineError::NotFound(_)) => {
            return refuse(&socket, ack, &format!("no execution {id}"), &body);
        }
        Err(e) => {
            let request_id = Uuid::new_v4();
            tracing::error!(execution_id = %id, %request_id, error = %e, "subscribe-test failed");
            let message = format!("progress is unavailable right now; try again (request id {request_id})");
            return refuse(&socket, ack, &message, &body);
        }
    };
    let ended = if snapshot.status.is_finished() {
        match state.engine.summary(id).await {
            Ok((execution, summary)) => Some(ExecutionComplete { execution_id: id, status: execution.status, summary }),
            Err(e) => {
                tracing::warn!(execution_id = %id, error = %e, "no summary for a finished execution");
                None
            }
        }
    } else {
        None
    };
    // Confirmation, snapshot and end go through the follower's queue, so
    // they arrive before any later event of the execution.
    hub.follow(follower, id, Some(snapshot), ended);
    let _ = ack.send(&Ack::ok(room_of(id)));
}

/// An `error` event and a failed ack.
fn refuse(socket: &SocketRef, ack: AckSender, message: &str, body: &Value) {
    let execution_id = match body {
        Value::String(s) => Some(s.chars().take(64).collect()),
        _ => None,
    };
    let _ = socket.emit("error", &ErrorEvent { message: message.to_string(), execution_id });
    let _ = ack.send(&Ack::failed(message));
}

/// Why a subscription's body names no execution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BadSubscription {
    #[error("subscribe with an execution id: a string, or {{\"executionId\": \"...\"}}")]
    NoId,
    #[error("`{0}` is not a valid execution id (a UUID)")]
    NotUuid(String),
}

/// The execution id of a subscription: a string, or an object with
/// `executionId` or `execution_id`.
fn execution_id_of(body: &Value) -> Result<Uuid, BadSubscription> {
    let text = match body {
        Value::String(s) => Some(s.as_str()),
        Value::Object(map) => {
            map.get("executionId").or_else(|| map.get("execution_id")).or_else(|| map.get("id")).and_then(Value::as_str)
        }
        _ => None,
    };
    let text = text.ok_or(BadSubscription::NoId)?;
    Uuid::parse_str(text.trim()).map_err(|_| BadSubscription::NotUuid(text.chars().take(64).collect()))
}

/// Sends one follower its frames, in order, until it leaves or is cut off.
async fn drain(socket: SocketRef, mut feed: Feed) {
    let mut cut_off = feed.cut_off_signal();
    loop {
        let frame = tokio::select! {
            // Checked first: a follower cut off also has its queue closed.
            biased;
            reason = cut_off.wait() => {
                // The reason goes out if the transport takes it within a
                // few seconds (a slow client); a stalled one is just closed.
                let error = ErrorEvent { message: reason, execution_id: None };
                let _ = emit_within(&socket, "error", &error, REASON_WAIT).await;
                let _ = socket.disconnect();
                return;
            }
            frame = feed.next() => frame,
        };
        let Some(frame) = frame else { return };
        let sent = match frame {
            Frame::Subscribed(id) => {
                emit(&socket, "subscription-confirmed", &SubscriptionConfirmed { execution_id: id, room: room_of(id) })
                    .await
            }
            Frame::Progress(id) => match feed.take_progress(id) {
                Some(p) => emit(&socket, "progress", &p).await,
                None => Ok(()),
            },
            Frame::TestComplete(r) => emit(&socket, "test-complete", &*r).await,
            Frame::ExecutionComplete(c) => emit(&socket, "execution-complete", &*c).await,
        };
        if let Err(why) = sent {
            tracing::info!(sid = %socket.id, follower = feed.id, "{why}");
            let _ = socket.disconnect();
            return;
        }
    }
}

/// Why an event did not go out.
#[derive(Debug, thiserror::Error)]
enum EmitError {
    #[error("socket stalled for {} s; disconnected", .0.as_secs())]
    Stalled(Duration),
    #[error("socket closed")]
    Closed,
}

/// Emits, waiting while the socket's transport buffer is full (only this
/// socket's task waits). `Err` when the socket is gone or stalled.
async fn emit<T: Serialize + ?Sized>(socket: &SocketRef, event: &str, data: &T) -> Result<(), EmitError> {
    emit_within(socket, event, data, STALL_LIMIT).await
}

async fn emit_within<T: Serialize + ?Sized>(
    socket: &SocketRef,
    event: &str,
    data: &T,
    limit: Duration,
) -> Result<(), EmitError> {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match socket.emit(event, data) {
            Ok(()) => return Ok(()),
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                if started.elapsed() > limit {
                    return Err(EmitError::Stalled(limit));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(SendError::Socket(SocketError::Closed)) => return Err(EmitError::Closed),
            Err(SendError::Serialize(e)) => {
                tracing::error!(event, error = %e, "an event could not be serialised");
                return Ok(());
            }
        }
    }
}

/// The room of `tenant`'s queue figures (`queue-stats` while keys are off).
fn queue_room(tenant: Option<i64>) -> String {
    tenant.map_or_else(|| QUEUE_ROOM.to_string(), |t| format!("{QUEUE_ROOM}:{t}"))
}

/// `system-resources` and `queue-stats`, once a second, to their rooms
/// while anyone is in them; queue figures to each tenant's room.
async fn periodic_feeds(io: SocketIo, state: Arc<AppState>) {
    let mut tick = tokio::time::interval(FEED_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        // A full socket misses one figure; the next one replaces it.
        if !io.to(SYSTEM_ROOM).sockets().is_empty() {
            match system::system_resources(&state).await {
                Ok(r) => {
                    let _ = io.to(SYSTEM_ROOM).emit(SYSTEM_ROOM, &r).await;
                }
                Err(e) => tracing::debug!(error = %e.message, "no system figures this second"),
            }
        }
        let rooms = io.rooms().await.unwrap_or_default();
        for room in rooms.iter().map(|r| r.to_string()).filter(|r| r.starts_with(QUEUE_ROOM)) {
            let tenant = match room.strip_prefix(QUEUE_ROOM).and_then(|rest| rest.strip_prefix(':')) {
                Some(id) => match id.parse() {
                    Ok(id) => Some(id),
                    Err(_) => continue,
                },
                None => None,
            };
            if io.to(room.clone()).sockets().is_empty() {
                continue;
            }
            match system::queue_stats(&state, tenant).await {
                Ok(q) => {
                    let _ = io.to(room).emit(QUEUE_ROOM, &q).await;
                }
                Err(e) => tracing::debug!(error = %e.message, "no queue figures this second"),
            }
        }
    }
}

/// One feed's current figures to one socket.
async fn send_feed(socket: &SocketRef, feed: &str, state: &AppState, tenant: Option<i64>) {
    let _ = match feed {
        SYSTEM_ROOM => match system::system_resources(state).await {
            Ok(r) => socket.emit(feed, &r),
            Err(_) => return,
        },
        _ => match system::queue_stats(state, tenant).await {
            Ok(q) => socket.emit(feed, &q),
            Err(_) => return,
        },
    };
}

#[cfg(test)]
mod tests {
    use super::{BadSubscription, execution_id_of};
    use serde_json::json;

    #[test]
    fn execution_ids_come_as_strings_or_objects() {
        let id = uuid::Uuid::new_v4();
        assert_eq!(execution_id_of(&json!(id.to_string())), Ok(id));
        assert_eq!(execution_id_of(&json!({"executionId": id.to_string()})), Ok(id));
        assert_eq!(execution_id_of(&json!({"execution_id": id.to_string()})), Ok(id));
        assert_eq!(execution_id_of(&json!("nope")), Err(BadSubscription::NotUuid("nope".into())));
        assert!(execution_id_of(&json!("nope")).unwrap_err().to_string().contains("not a valid execution id"));
        assert_eq!(execution_id_of(&json!(42)), Err(BadSubscription::NoId));
        assert_eq!(execution_id_of(&json!({"other": 1})), Err(BadSubscription::NoId));
    }
}
