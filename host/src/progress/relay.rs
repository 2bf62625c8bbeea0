//! Events between the API hosts of one deployment.
//!
//! Each result is stored by one host (the one whose collector read it from
//! the queue's event stream), but subscribers may be connected to any
//! host. The relay publishes this host's events on a channel every host
//! listens to, and republishes the other hosts' events locally.
//!
//! Invariants: only local events are sent (a relayed event is never sent
//! again); a host skips its own messages; publishing never waits (the
//! outbound queue is bounded, and a full one drops the event with a
//! warning, counted in `dropped`); events of one host arrive in the order
//! it published them, batched into one message per send.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Listener, Origin, ProgressEvent, ProgressService};

/// Events waiting to be sent before new ones are dropped.
const OUTBOUND: usize = 65_536;
/// Events per message at most.
const BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("event relay unavailable: {0}")]
    Unavailable(String),
}

/// How messages travel between hosts (Redis pub/sub in a deployment).
#[async_trait::async_trait]
pub trait RelayTransport: Send + Sync + 'static {
    /// Sends one message to every host, this one included.
    async fn publish(&self, message: String) -> Result<(), RelayError>;
    /// The messages of every host from now on, until the connection drops.
    async fn subscribe(&self) -> Result<mpsc::Receiver<String>, RelayError>;
}

/// One message on the channel.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    origin: String,
    events: Vec<ProgressEvent>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RelayCounters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub dropped: AtomicU64,
}

pub struct Relay {
    outbound: mpsc::Sender<ProgressEvent>,
    pub counters: Arc<RelayCounters>,
}

impl Relay {
    /// Starts relaying `service`'s local events over `transport`, and
    /// republishing other hosts' events into it. `origin` names this host.
    pub fn start(service: &Arc<ProgressService>, transport: Arc<dyn RelayTransport>, origin: String) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(OUTBOUND);
        let counters = Arc::new(RelayCounters::default());
        tokio::spawn(send_loop(rx, transport.clone(), origin.clone(), counters.clone()));
        tokio::spawn(receive_loop(Arc::downgrade(service), transport, origin, counters.clone()));
        let relay = Arc::new(Self { outbound: tx, counters });
        service.add_listener(relay.clone());
        relay
    }
}

impl Listener for Relay {
    fn on_event(&self, event: &ProgressEvent, origin: Origin) {
        if origin != Origin::Local {
            return;
        }
        if self.outbound.try_send(event.clone()).is_err() {
            let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "event relay is behind; events for other hosts were dropped");
            }
        }
    }
}

async fn send_loop(
    mut rx: mpsc::Receiver<ProgressEvent>,
    transport: Arc<dyn RelayTransport>,
    origin: String,
    counters: Arc<RelayCounters>,
) {
    let mut events = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut events, BATCH).await > 0 {
        let count = events.len() as u64;
        let envelope = Envelope { origin: origin.clone(), events: std::mem::take(&mut events) };
        let message = match serde_json::to_string(&envelope) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "an event could not be serialised for the relay");
                continue;
            }
        };
        match transport.publish(message).await {
            Ok(()) => {
                counters.sent.fetch_add(count, Ordering::Relaxed);
            }
            Err(e) => {
                counters.dropped.fetch_add(count, Ordering::Relaxed);
                tracing::warn!(error = %e, events = count, "events for other hosts were not sent");
            }
        }
    }
}

async fn receive_loop(
    service: std::sync::Weak<ProgressService>,
    transport: Arc<dyn RelayTransport>,
    origin: String,
    counters: Arc<RelayCounters>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match transport.subscribe().await {
            Ok(mut messages) => {
                backoff = Duration::from_millis(100);
                while let Some(message) = messages.recv().await {
                    let Some(service) = service.upgrade() else { return };
                    match serde_json::from_str::<Envelope>(&message) {
                        Ok(envelope) if envelope.origin == origin => {}
                        Ok(envelope) => {
                            counters.received.fetch_add(envelope.events.len() as u64, Ordering::Relaxed);
                            for event in envelope.events {
                                service.publish_relayed(event);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "an unreadable relay message was skipped"),
                    }
                }
                tracing::warn!("event relay connection lost; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "event relay unavailable"),
        }
        if service.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ExecutionStatus, ResultSummary};
    use std::sync::Mutex;
    use tokio::sync::broadcast;

    /// Every host on one broadcast channel, as pub/sub does it.
    struct Loopback(broadcast::Sender<String>);

    #[async_trait::async_trait]
    impl RelayTransport for Loopback {
        async fn publish(&self, message: String) -> Result<(), RelayError> {
            self.0.send(message).map(|_| ()).map_err(|e| RelayError::Unavailable(e.to_string()))
        }
        async fn subscribe(&self) -> Result<mpsc::Receiver<String>, RelayError> {
            let mut rx = self.0.subscribe();
            let (tx, out) = mpsc::channel(1024);
            tokio::spawn(async move {
                while let Ok(m) = rx.recv().await {
                    if tx.send(m).await.is_err() {
                        return;
                    }
                }
            });
            Ok(out)
        }
    }

    struct Seen(Mutex<Vec<(uuid::Uuid, Origin)>>);
    impl Listener for Seen {
        fn on_event(&self, event: &ProgressEvent, origin: Origin) {
            self.0.lock().unwrap().push((event.execution_id(), origin));
        }
    }

    #[tokio::test]
    async fn events_reach_the_other_host_once_and_are_not_sent_back() {
        let (tx, _) = broadcast::channel(1024);
        let (a, b) = (Arc::new(ProgressService::new()), Arc::new(ProgressService::new()));
        let _ra = Relay::start(&a, Arc::new(Loopback(tx.clone())), "a".into());
        let _rb = Relay::start(&b, Arc::new(Loopback(tx.clone())), "b".into());
        let (seen_a, seen_b) = (Arc::new(Seen(Mutex::default())), Arc::new(Seen(Mutex::default())));
        a.add_listener(seen_a.clone());
        b.add_listener(seen_b.clone());
        // Let both subscriptions start.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let id = uuid::Uuid::new_v4();
        a.publish(ProgressEvent::ExecutionComplete(super::super::ExecutionComplete {
            execution_id: id,
            status: ExecutionStatus::Completed,
            summary: ResultSummary::default(),
        }));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(*seen_a.0.lock().unwrap(), [(id, Origin::Local)]);
        assert_eq!(*seen_b.0.lock().unwrap(), [(id, Origin::Relayed)]);
    }
}
