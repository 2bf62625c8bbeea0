//! The progress service: one in-process event bus that the engine publishes
//! to, with the latest snapshot of every execution kept for REST readers.
//! (The Socket.IO layer will subscribe to the same bus.)

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::{ExecutionProgress, ExecutionStatus, ResultSummary, TestResult};

/// What the engine reports.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum ProgressEvent {
    Progress(ExecutionProgress),
    TestComplete(Box<TestResult>),
    ExecutionComplete { execution_id: Uuid, status: ExecutionStatus, summary: ResultSummary },
}

/// Snapshots kept for finished executions (older ones are read from the
/// store instead).
const FINISHED_SNAPSHOTS: usize = 10_000;

pub struct ProgressService {
    tx: broadcast::Sender<ProgressEvent>,
    snapshots: Mutex<HashMap<Uuid, ExecutionProgress>>,
}

impl Default for ProgressService {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressService {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self { tx, snapshots: Mutex::default() }
    }

    /// Publishes an event; a progress event also becomes the snapshot.
    pub fn publish(&self, event: ProgressEvent) {
        if let ProgressEvent::Progress(p) = &event {
            let mut map = self.snapshots.lock().unwrap_or_else(PoisonError::into_inner);
            if map.len() >= FINISHED_SNAPSHOTS {
                map.retain(|_, s| !s.status.is_finished());
            }
            map.insert(p.execution_id, p.clone());
        }
        // No subscribers is fine: the snapshot is still kept.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ProgressEvent> {
        self.tx.subscribe()
    }

    pub fn snapshot(&self, execution_id: Uuid) -> Option<ExecutionProgress> {
        self.snapshots.lock().unwrap_or_else(PoisonError::into_inner).get(&execution_id).cloned()
    }
}
