//! The progress service: one in-process event bus that the engine's
//! collector publishes to, with the latest snapshot of every execution kept
//! for REST readers.
//!
//! - `hub.rs`: who listens to which execution, coalesced progress and
//!   per-client queues with backpressure (no transport in it);
//! - `socketio.rs`: the Socket.IO server (DESIGN.md section 9) on the hub;
//! - `relay.rs`: events to and from the other API hosts of a deployment;
//! - `client.rs`: a small Socket.IO client, for `cardrun watch`.
//!
//! Invariant: publishing never waits. Listeners are called synchronously
//! and must only hand the event on (a `try_send`, a map insert).

pub mod client;
pub mod hub;
pub mod relay;
pub mod socketio;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::{ExecutionProgress, ExecutionStatus, ResultSummary, TestResult};

/// What the engine reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum ProgressEvent {
    Progress(ExecutionProgress),
    TestComplete(Box<TestResult>),
    ExecutionComplete(ExecutionComplete),
}

impl ProgressEvent {
    pub fn execution_id(&self) -> Uuid {
        match self {
            ProgressEvent::Progress(p) => p.execution_id,
            ProgressEvent::TestComplete(r) => r.execution_id,
            ProgressEvent::ExecutionComplete(c) => c.execution_id,
        }
    }
}

/// The `execution-complete` event: how an execution ended, and its summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionComplete {
    pub execution_id: Uuid,
    pub status: ExecutionStatus,
    pub summary: ResultSummary,
}

/// Where an event came from: this host's collector, or another host's
/// (through the relay). Only local events are relayed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Local,
    Relayed,
}

/// Something that follows every event, called synchronously by `publish`.
pub trait Listener: Send + Sync {
    fn on_event(&self, event: &ProgressEvent, origin: Origin);
}

/// Snapshots kept for finished executions (older ones are read from the
/// store instead).
const FINISHED_SNAPSHOTS: usize = 10_000;

pub struct ProgressService {
    tx: broadcast::Sender<ProgressEvent>,
    snapshots: Mutex<HashMap<Uuid, ExecutionProgress>>,
    listeners: RwLock<Vec<Arc<dyn Listener>>>,
}

impl Default for ProgressService {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressService {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self { tx, snapshots: Mutex::default(), listeners: RwLock::default() }
    }

    /// Publishes an event of this host; a progress event also becomes the
    /// snapshot.
    pub fn publish(&self, event: ProgressEvent) {
        self.publish_from(event, Origin::Local);
    }

    /// Publishes an event that another host published first.
    pub fn publish_relayed(&self, event: ProgressEvent) {
        self.publish_from(event, Origin::Relayed);
    }

    fn publish_from(&self, event: ProgressEvent, origin: Origin) {
        if let ProgressEvent::Progress(p) = &event {
            let mut map = self.snapshots.lock().unwrap_or_else(PoisonError::into_inner);
            if map.len() >= FINISHED_SNAPSHOTS {
                map.retain(|_, s| !s.status.is_finished());
            }
            map.insert(p.execution_id, p.clone());
        }
        let listeners = self.listeners.read().unwrap_or_else(PoisonError::into_inner).clone();
        for listener in &listeners {
            listener.on_event(&event, origin);
        }
        // No subscribers is fine: the snapshot is still kept.
        let _ = self.tx.send(event);
    }

    /// Adds a listener that sees every later event.
    pub fn add_listener(&self, listener: Arc<dyn Listener>) {
        self.listeners.write().unwrap_or_else(PoisonError::into_inner).push(listener);
    }

    /// A lossy stream of every event (a slow receiver skips events; for
    /// in-process followers such as `cardrun run`).
    pub fn subscribe(&self) -> broadcast::Receiver<ProgressEvent> {
        self.tx.subscribe()
    }

    pub fn snapshot(&self, execution_id: Uuid) -> Option<ExecutionProgress> {
        self.snapshots.lock().unwrap_or_else(PoisonError::into_inner).get(&execution_id).cloned()
    }
}
