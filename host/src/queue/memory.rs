//! The in-memory queue: the embedded default.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use uuid::Uuid;

use super::{ExecutionSlot, Job, Queue, QueueCounts, QueueError};

/// Order key: higher priority first, then arrival.
type Key = (std::cmp::Reverse<u8>, u64);

struct Lane {
    slot: ExecutionSlot,
    pending: VecDeque<(Job, Instant)>,
    active: u32,
}

#[derive(Default)]
struct Inner {
    lanes: BTreeMap<Key, Lane>,
    keys: HashMap<Uuid, Key>,
    next_seq: u64,
    waiting: u64,
    active: u64,
    recent_waits_ms: VecDeque<f64>,
}

/// Executions in a `BTreeMap` by (priority, arrival); each keeps its jobs in
/// order and its count of claimed jobs.
#[derive(Default)]
pub struct MemoryQueue {
    inner: Mutex<Inner>,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Drops a lane that has neither waiting nor running jobs.
    fn tidy(&mut self, execution_id: Uuid) {
        if let Some(key) = self.keys.get(&execution_id).copied()
            && self.lanes.get(&key).is_some_and(|l| l.pending.is_empty() && l.active == 0)
        {
            self.lanes.remove(&key);
            self.keys.remove(&execution_id);
        }
    }

    fn release(&mut self, execution_id: Uuid) -> Option<Key> {
        let key = *self.keys.get(&execution_id)?;
        let lane = self.lanes.get_mut(&key)?;
        if lane.active > 0 {
            lane.active -= 1;
            self.active = self.active.saturating_sub(1);
        }
        Some(key)
    }
}

#[async_trait::async_trait]
impl Queue for MemoryQueue {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn enqueue(&self, slot: ExecutionSlot, jobs: Vec<Job>) -> Result<(), QueueError> {
        let mut inner = self.lock();
        let key = match inner.keys.get(&slot.execution_id) {
            Some(key) => *key,
            None => {
                inner.next_seq += 1;
                let key = (std::cmp::Reverse(slot.priority), inner.next_seq);
                inner.keys.insert(slot.execution_id, key);
                inner.lanes.insert(key, Lane { slot, pending: VecDeque::new(), active: 0 });
                key
            }
        };
        let now = Instant::now();
        let added = jobs.len() as u64;
        if let Some(lane) = inner.lanes.get_mut(&key) {
            lane.pending.extend(jobs.into_iter().map(|j| (j, now)));
        }
        inner.waiting += added;
        Ok(())
    }

    async fn claim(&self) -> Result<Option<Job>, QueueError> {
        let mut inner = self.lock();
        let found = inner.lanes.values_mut().find_map(|lane| {
            if lane.active < lane.slot.max_concurrent_tests {
                let (job, since) = lane.pending.pop_front()?;
                lane.active += 1;
                Some((job, since))
            } else {
                None
            }
        });
        let Some((job, since)) = found else { return Ok(None) };
        inner.waiting -= 1;
        inner.active += 1;
        if inner.recent_waits_ms.len() == 1000 {
            inner.recent_waits_ms.pop_front();
        }
        inner.recent_waits_ms.push_back(since.elapsed().as_secs_f64() * 1e3);
        Ok(Some(job))
    }

    async fn finish(&self, job: &Job) -> Result<(), QueueError> {
        let mut inner = self.lock();
        inner.release(job.execution_id);
        inner.tidy(job.execution_id);
        Ok(())
    }

    async fn retry(&self, job: Job) -> Result<(), QueueError> {
        let mut inner = self.lock();
        let Some(key) = inner.release(job.execution_id) else { return Ok(()) };
        if let Some(lane) = inner.lanes.get_mut(&key) {
            lane.pending.push_front((job, Instant::now()));
            inner.waiting += 1;
        }
        Ok(())
    }

    async fn cancel(&self, execution_id: Uuid) -> Result<Vec<Job>, QueueError> {
        let mut inner = self.lock();
        let Some(key) = inner.keys.remove(&execution_id) else { return Ok(Vec::new()) };
        let Some(lane) = inner.lanes.remove(&key) else { return Ok(Vec::new()) };
        inner.waiting -= lane.pending.len() as u64;
        inner.active = inner.active.saturating_sub(u64::from(lane.active));
        Ok(lane.pending.into_iter().map(|(j, _)| j).collect())
    }

    async fn counts(&self) -> Result<QueueCounts, QueueError> {
        let inner = self.lock();
        let waits = &inner.recent_waits_ms;
        Ok(QueueCounts {
            waiting: inner.waiting,
            active: inner.active,
            executions: inner.lanes.len() as u64,
            wait_ms_avg: if waits.is_empty() { 0.0 } else { waits.iter().sum::<f64>() / waits.len() as f64 },
            wait_ms_max: waits.iter().copied().fold(0.0, f64::max),
        })
    }
}
