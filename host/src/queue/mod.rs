//! The work queue and the live state of every execution in it.
//!
//! Its unit of work is one test-case attempt ([`Job`]), so one large
//! execution spreads over every worker that shares the queue.
//!
//! Invariants every backend keeps (checked by `conformance.rs`):
//! - Order: executions by priority (higher first), then first-in first-out;
//!   jobs of one execution in order; a retried job goes to the head of its
//!   execution. With ageing, an execution's priority counts one higher per
//!   `priority_aging` it has waited since it last got a slot. Between
//!   tenants at equal (effective) priority, each slot of a claim goes to
//!   the tenant holding the fewest of the claimer's slots; first-in
//!   first-out holds within a tenant.
//! - An execution's `max_concurrent_tests` holds inside [`Queue::claim`], so
//!   it holds across every worker at once.
//! - A claim hands out a [`Lease`]. Only the holder of a live lease can
//!   [`Queue::finish`] or [`Queue::retry`] it; a stale token is refused, so a
//!   worker whose lease expired cannot settle a test another worker now owns.
//!   [`Queue::reap`] returns expired leases to the queue, and settles a test
//!   as an error after `max_deliveries` expiries.
//! - Each test is settled once. The execution's counters, halt flag and
//!   running count change in the same atomic step as the transition, so any
//!   host can answer progress and any worker can settle any test.
//! - Every settlement, and the end of an execution, is delivered once as a
//!   [`QueueEvent`] to whoever reads [`Queue::read_events`] (the host that
//!   stores results), in the order the transitions happened.

mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use memory::MemoryQueue;

use crate::domain::{
    AssertionSpec, Attempt, ExecutionStatus, Priority, PriorityClass, ResultSummary, TestConfiguration, TestResult,
    TestStatus,
};

/// A self-contained unit of work: everything needed to run one attempt of
/// one test, so a worker needs nothing but the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub execution_id: Uuid,
    /// The execution's tenant: answers are cached per tenant, so a cache
    /// hit tells nobody what another tenant asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<i64>,
    pub test_case_id: i64,
    pub test_case_name: String,
    /// 0 for the first attempt.
    pub attempt: u32,
    pub adapter: String,
    pub model: String,
    /// The rendered prompt (chat messages as `role: content` lines).
    pub prompt: String,
    /// The rendered conversation of a chat prompt; empty for text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chat: Vec<crate::domain::ChatMessage>,
    #[serde(default, skip_serializing_if = "crate::domain::GenerationOptions::is_default")]
    pub options: crate::domain::GenerationOptions,
    pub variables: Vec<(String, String)>,
    pub expected_output: Option<String>,
    pub assertions: Vec<AssertionSpec>,
    /// The versions of uploaded plugins its assertions were planned with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugin_versions: Vec<crate::sandbox::PluginPin>,
    /// The test's threshold on its weighted score, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// The test's `transform`, applied to the model's output before the
    /// assertions (as written: an expression or a function body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
    /// Ask the adapter for token log-probabilities: an assertion reads
    /// them (`perplexity`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logprobs: bool,
    /// The models that grade its assertions unless one names its own
    /// (`--grader`, `DEFAULT_GRADER` on the host that planned it); set only
    /// when an assertion asks a grader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grader: Option<crate::domain::GraderModels>,
    /// The model's price, from the request or the planning host's table;
    /// `None`: unknown, and the test's cost with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<crate::domain::Price>,
    /// The execution's configuration (timeouts, retries, limits, cache).
    pub configuration: Arc<TestConfiguration>,
    /// Earlier attempts of this test: a retry carries them, so whichever
    /// worker runs the last attempt can write the whole result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_attempts: Vec<Attempt>,
    /// Unix milliseconds when this attempt entered the queue, for the
    /// queue-wait histogram (another machine's clock, with workers
    /// elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at_ms: Option<u64>,
}

/// An execution entering the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionEntry {
    pub execution_id: Uuid,
    /// Whose it is: at equal priority, claims share slots between tenants.
    pub tenant_id: Option<i64>,
    pub priority: u8,
    pub max_concurrent_tests: u32,
    /// Tests in the execution, settled or not.
    pub total_tests: u32,
    /// Results already stored (an execution recovered after a restart):
    /// they count towards progress and completion.
    pub already_settled: ResultSummary,
}

/// What a worker asks for when it claims.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimRequest {
    /// Leases wanted at most (the worker's free slots).
    pub max: usize,
    /// Slots of this worker one execution may hold while another execution
    /// waits (`MAX_EXECUTION_SHARE` of `MAX_CONCURRENT_TESTS`).
    pub share_cap: Option<u32>,
    /// Slots this worker holds now, per execution.
    pub held: Vec<(Uuid, u32)>,
    /// Only executions of at least this priority (their own, not aged):
    /// the resource manager admits only critical work (9) between its
    /// normal and emergency thresholds. 0 admits everything.
    pub min_priority: u8,
    /// Tests one tenant may have running at once across the deployment
    /// (`TENANT_MAX_RUNNING_TESTS`); work without a tenant is not counted.
    pub tenant_cap: Option<u32>,
}

impl ClaimRequest {
    pub fn held_by(&self, id: Uuid) -> u32 {
        self.held.iter().find(|(e, _)| *e == id).map_or(0, |(_, n)| *n)
    }
}

/// What a worker's resource manager holds back: executions under
/// `min_priority` (or all, when `room` is 0) wait, for `reason`. Shared
/// through the queue, so that any host's progress messages can say why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Hold {
    pub reason: String,
    pub min_priority: u8,
    pub room: usize,
}

impl Hold {
    /// Whether an execution of `priority` waits for this hold.
    pub fn holds(&self, priority: u8) -> bool {
        self.room == 0 || priority < self.min_priority
    }
}

/// Why an execution of `priority` waits for resources: when every worker
/// that reported (`admissions`, one per live worker) holds it back, the
/// first one's reason; otherwise none.
pub fn waiting_reason(admissions: &[Option<Hold>], priority: u8) -> Option<&str> {
    let mut reason = None;
    for admission in admissions {
        match admission {
            Some(h) if h.holds(priority) => {
                reason.get_or_insert(h.reason.as_str());
            }
            _ => return None,
        }
    }
    reason
}

/// A claimed job and the token that proves the claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub job: Job,
    pub token: u64,
}

impl Lease {
    pub fn id(&self) -> LeaseId {
        LeaseId { token: self.token, execution_id: self.job.execution_id, test_case_id: self.job.test_case_id }
    }
}

/// What proves a claim: the token, and the test it was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId {
    pub token: u64,
    pub execution_id: Uuid,
    pub test_case_id: i64,
}

/// What a worker learns about one of its leases on a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Renewed: keep running.
    Held,
    /// Renewed, but the execution was cancelled or stopped: abort the test
    /// and finish it as cancelled.
    Halted(Halt),
    /// Gone (expired and reaped, or the queue lost its data): abort the test;
    /// its result would be refused.
    Lost,
}

/// What [`Queue::finish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The result was recorded.
    Recorded {
        /// This result stopped the execution (`stop_on_first_failure`):
        /// the worker aborts its other running tests of the execution.
        halted: bool,
    },
    /// The test had already been settled (recorded once, not twice).
    Duplicate,
    /// The lease was not (or no longer) the caller's.
    Stale,
}

/// What [`Queue::retry`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    Requeued,
    /// The execution was halted meanwhile: settle the test instead.
    Halted,
    Stale,
}

/// Why an execution stops early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Halt {
    /// `DELETE`: the rest are `cancelled`; the execution ends `cancelled`.
    Cancelled,
    /// `stop_on_first_failure`: the rest are `skipped`; it ends `failed`.
    StoppedOnFailure,
}

impl Halt {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::StoppedOnFailure => "stopped_on_failure",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cancelled" => Some(Self::Cancelled),
            "stopped_on_failure" => Some(Self::StoppedOnFailure),
            _ => None,
        }
    }

    /// The status of tests that never ran, and their reason.
    pub fn unrun(self) -> (TestStatus, &'static str) {
        match self {
            Self::Cancelled => (TestStatus::Cancelled, "execution cancelled"),
            Self::StoppedOnFailure => (TestStatus::Skipped, "skipped: stop_on_first_failure"),
        }
    }

    /// The reason given to a test aborted while it ran.
    pub fn aborted_reason(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled while running",
            Self::StoppedOnFailure => "cancelled: stop_on_first_failure",
        }
    }

    /// The final status of a halted execution.
    pub fn final_status(halt: Option<Self>) -> ExecutionStatus {
        match halt {
            Some(Self::Cancelled) => ExecutionStatus::Cancelled,
            Some(Self::StoppedOnFailure) => ExecutionStatus::Failed,
            None => ExecutionStatus::Completed,
        }
    }
}

/// A test that was settled without a result of its own (never ran, or its
/// worker kept dying).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnrunTest {
    pub test_case_id: i64,
    pub test_case_name: String,
}

/// What the queue reports to the host that stores results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueueEvent {
    /// The execution's first test was claimed.
    Started { execution_id: Uuid },
    /// A test's final result.
    Settled { result: Box<TestResult> },
    /// Tests settled without running (halt) or abandoned (lease expired
    /// too often), all with one status and reason.
    Unrun { execution_id: Uuid, status: TestStatus, reason: String, tests: Vec<UnrunTest> },
    /// Every test is settled. Comes after all of the execution's other
    /// events.
    Finished { execution_id: Uuid, status: ExecutionStatus, summary: ResultSummary },
}

/// An event and the id to acknowledge it by.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: String,
    pub event: QueueEvent,
    /// Unix milliseconds when the event was added (Redis: the stream
    /// entry's time), for the time from settle to durable.
    pub at_ms: u64,
}

/// The live state of a queued or running execution.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveExecution {
    pub execution_id: Uuid,
    pub priority: u8,
    pub total_tests: u32,
    pub summary: ResultSummary,
    pub running: u32,
    pub waiting: u32,
    pub halt: Option<Halt>,
    /// Unix milliseconds of the first claim.
    pub started_at_ms: Option<u64>,
}

/// Queue counters (DESIGN.md section 4, `/queue/stats` and `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueCounts {
    /// Jobs waiting to be claimed.
    pub waiting: u64,
    /// Waiting jobs per priority class: low, medium, high, critical.
    pub waiting_by_class: [u64; 4],
    /// Leases held now.
    pub active: u64,
    /// Executions with unsettled tests.
    pub executions: u64,
    /// Expired leases returned to the queue (or settled) since start.
    pub reaped: u64,
    /// Workers that sent a heartbeat recently.
    pub workers: u64,
    /// Events not yet read by any host (the Redis stream's lag).
    pub event_lag: u64,
    /// Mean and largest wait between enqueue and claim over recent claims
    /// (this process's claims).
    pub wait_ms_avg: f64,
    pub wait_ms_max: f64,
}

impl QueueCounts {
    pub fn class_index(priority: u8) -> usize {
        match Priority(priority).class() {
            PriorityClass::Low => 0,
            PriorityClass::Medium => 1,
            PriorityClass::High => 2,
            PriorityClass::Critical => 3,
        }
    }
}

/// Queue timing, shared by every process of a deployment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueSettings {
    /// A lease not renewed for this long expires.
    pub lease: Duration,
    /// Expiries of one test before it is settled as an error.
    pub max_deliveries: u32,
    /// An execution that has waited this long since it last got a slot
    /// claims as if its priority were one higher (up to 10), and so on, so
    /// lower priorities start within a bounded time (`PRIORITY_AGING_MS`).
    /// `None`: strict priorities.
    pub priority_aging: Option<Duration>,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self { lease: Duration::from_secs(15), max_deliveries: 3, priority_aging: Some(Duration::from_secs(60)) }
    }
}

impl QueueSettings {
    /// How often a worker renews its leases: a third of the lease, so two
    /// heartbeats may be lost before the lease expires.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(50))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue backend unavailable: {0}")]
    Unavailable(String),
    #[error("queue data is corrupt: {0}")]
    Corrupt(String),
}

/// The shared queue of test attempts and the live state of executions.
#[async_trait::async_trait]
pub trait Queue: Send + Sync + 'static {
    /// `memory` or `redis`.
    fn backend(&self) -> &'static str;

    /// Adds an execution and its waiting jobs. Returns false, changing
    /// nothing, when the queue already holds that execution (so recovery by
    /// several hosts at once enqueues it once).
    async fn enqueue(&self, entry: ExecutionEntry, jobs: Vec<Job>) -> Result<bool, QueueError>;

    /// Leases up to `request.max` jobs whose executions are under their
    /// concurrency limit, in queue order; with a share cap, no execution
    /// gets more than the cap of the caller's slots while another execution
    /// has claimable work.
    async fn claim_with(&self, worker: &str, request: &ClaimRequest) -> Result<Vec<Lease>, QueueError>;

    /// [`Queue::claim_with`] without a share cap.
    async fn claim(&self, worker: &str, max: usize) -> Result<Vec<Lease>, QueueError> {
        self.claim_with(worker, &ClaimRequest { max, ..ClaimRequest::default() }).await
    }

    /// Renews the leases of `tokens` and registers `worker` as alive.
    async fn heartbeat(&self, worker: &str, tokens: &[u64]) -> Result<Vec<LeaseState>, QueueError>;

    /// Records what `worker`'s resource manager holds back now (`None`:
    /// nothing) for one lease period; workers repeat it every heartbeat.
    async fn set_admission(&self, worker: &str, hold: Option<&Hold>) -> Result<(), QueueError>;

    /// The admission of every worker that recorded one within a lease
    /// period.
    async fn admissions(&self) -> Result<Vec<Option<Hold>>, QueueError>;

    /// Settles the lease's test with `result`. With `halt_on_failure` and a
    /// failed result, the execution stops in the same step.
    async fn finish(&self, lease: &LeaseId, result: &TestResult, halt_on_failure: bool)
    -> Result<Finished, QueueError>;

    /// Gives the lease back and puts `job` (the next attempt) at the head of
    /// its execution.
    async fn retry(&self, lease: &LeaseId, job: Job) -> Result<Retried, QueueError>;

    /// Stops an execution: its waiting tests are settled without running.
    /// Returns false when the queue does not hold it (finished or unknown);
    /// halting twice is harmless.
    async fn halt(&self, execution_id: Uuid, halt: Halt) -> Result<bool, QueueError>;

    /// Returns expired leases to the queue; returns how many expired.
    async fn reap(&self) -> Result<u64, QueueError>;

    /// Up to `max` undelivered events, waiting up to `wait` for the first.
    async fn read_events(&self, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;

    /// Waits until `until`, or until an execution finishes, whichever is
    /// first. The collector lingers here to gather results into fewer
    /// writes; the batch that completes an execution is not held back.
    /// A queue that cannot tell when an execution finishes just waits.
    async fn linger_until(&self, until: std::time::Instant) {
        tokio::time::sleep_until(until.into()).await;
    }

    /// Marks events as handled.
    async fn ack(&self, ids: &[String]) -> Result<(), QueueError>;

    /// The live state of one execution, if the queue holds it.
    async fn execution(&self, execution_id: Uuid) -> Result<Option<LiveExecution>, QueueError>;

    /// Every execution the queue holds.
    async fn executions(&self) -> Result<Vec<LiveExecution>, QueueError>;

    async fn counts(&self) -> Result<QueueCounts, QueueError>;

    /// False when the queue has lost its data since `mark_epoch` was last
    /// called (a Redis restarted without persistence): the caller re-enqueues
    /// unfinished work from the store, then marks again.
    async fn epoch_intact(&self) -> Result<bool, QueueError>;

    async fn mark_epoch(&self) -> Result<(), QueueError>;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
