//! The work queue. Its unit of work is one test-case attempt ([`Job`]), so
//! one large execution spreads over every worker.
//!
//! Ordering: executions by priority (higher first), then first-in
//! first-out; jobs of one execution in order. An execution's
//! `max_concurrent_tests` is enforced inside [`Queue::claim`] itself, so it
//! holds across every worker that shares the queue.

mod memory;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use memory::MemoryQueue;

use crate::sandbox::AssertionSpec;

/// A self-contained unit of work: everything needed to run one attempt of
/// one test, so a worker needs nothing but the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub execution_id: Uuid,
    pub test_case_id: i64,
    pub test_case_name: String,
    /// 0 for the first attempt.
    pub attempt: u32,
    pub adapter: String,
    pub model: String,
    /// The rendered prompt.
    pub prompt: String,
    pub variables: Vec<(String, String)>,
    pub expected_output: Option<String>,
    pub assertions: Vec<AssertionSpec>,
}

/// An execution's place in the queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExecutionSlot {
    pub execution_id: Uuid,
    pub priority: u8,
    pub max_concurrent_tests: u32,
}

/// Queue counters (DESIGN.md section 4, `/queue/stats`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueCounts {
    /// Jobs waiting to be claimed.
    pub waiting: u64,
    /// Jobs claimed and not yet finished.
    pub active: u64,
    /// Executions with work in the queue.
    pub executions: u64,
    /// Mean and largest wait between enqueue and claim over recent claims.
    pub wait_ms_avg: f64,
    pub wait_ms_max: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue backend unavailable: {0}")]
    Unavailable(String),
}

/// A priority queue of test attempts.
#[async_trait::async_trait]
pub trait Queue: Send + Sync + 'static {
    /// `memory` or `redis`.
    fn backend(&self) -> &'static str;
    /// Adds an execution's jobs (or more jobs of a known execution).
    async fn enqueue(&self, slot: ExecutionSlot, jobs: Vec<Job>) -> Result<(), QueueError>;
    /// Takes the next job whose execution is under its concurrency limit.
    async fn claim(&self) -> Result<Option<Job>, QueueError>;
    /// Marks a claimed job done, freeing its execution's slot.
    async fn finish(&self, job: &Job) -> Result<(), QueueError>;
    /// Frees the job's slot and puts it back at the head of its execution.
    async fn retry(&self, job: Job) -> Result<(), QueueError>;
    /// Forgets an execution: its waiting jobs are removed and returned.
    async fn cancel(&self, execution_id: Uuid) -> Result<Vec<Job>, QueueError>;
    async fn counts(&self) -> Result<QueueCounts, QueueError>;
}

#[cfg(test)]
mod conformance;
