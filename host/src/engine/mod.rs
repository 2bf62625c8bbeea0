//! The engine: the facade the API and the CLI use to queue, watch and
//! cancel executions.
//!
//! Its parts, one job each:
//! - `plan.rs`: a request becomes a stored execution and self-contained jobs;
//! - `dispatch.rs`: the worker that claims leases and runs tests (absent on
//!   an API-only host, `serve --no-worker`);
//! - `attempt.rs`: one attempt of one test, and the final result;
//! - `settle.rs`: the collector that stores results and publishes progress;
//! - `cache.rs`: the response cache;
//! - `plugins.rs`: uploaded plugins shared with workers through the queue's
//!   backend.
//!
//! Flow: submit -> store + queue -> worker claims a lease -> attempt ->
//! retry or finish through the queue -> queue event -> collector -> store +
//! progress. Live state (counters, halts) is the queue's, so any host
//! answers for any execution.

mod admissions;
mod attempt;
mod cache;
mod dispatch;
mod grader;
mod heap;
mod lag;
mod plan;
mod plugins;
mod running;
mod settle;
pub mod stats;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

pub use admissions::Admissions;
pub use cache::{CachedCompletion, ResponseCache, SharedCache};
pub use dispatch::{Reserved, Worker, WorkerConfig};
pub use grader::TestGrader;
pub use lag::DurableLag;
pub use plan::{ExecutionRequest, PlanError};
pub use plugins::{
    PluginSync, SharedItem, SharedPlugins, adapter_shared_id, decode_adapter, encode_adapter, follow_uploads,
    parse_shared_id, shared_id,
};
pub use settle::{Collector, RecoverFn};

use crate::domain::{Execution, ExecutionProgress, ExecutionStatus, ResultSummary, TestResult, TestStatus};
use crate::progress::ProgressService;
use crate::queue::{ExecutionEntry, Halt, Job, LiveExecution, Queue, QueueError};
use crate::sandbox::Sandbox;
use crate::store::{Store, StoreError, StoredJob};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("execution {0} not found")]
    NotFound(Uuid),
}

/// Host-wide engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Tests running at once on this host, all executions together
    /// (`MAX_CONCURRENT_TESTS`).
    pub max_concurrent_tests: usize,
    /// Adapter for bare model names (`DEFAULT_ADAPTER`).
    pub default_adapter: String,
    /// The models that grade assertions which name none (`--grader`,
    /// `DEFAULT_GRADER`).
    pub grader: Option<crate::domain::GraderModels>,
    /// Model prices: `CARDRUN_PRICES` over the built-in table.
    pub prices: Arc<crate::domain::PriceTable>,
    /// What one execution may ask of this host.
    pub limits: HostLimits,
}

/// Host maxima an execution's configuration is checked against when it is
/// queued (a request over one is a 400 naming the variable).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostLimits {
    /// `MAX_TIMEOUT_PER_TEST_MS` (300000).
    pub max_timeout_per_test_ms: u64,
    /// `MAX_RETRIES` (5).
    pub max_retries: u32,
    /// `PLUGIN_MEMORY_BUDGET_MB`: the plugin memory of the whole host; an
    /// execution's `resource_limits.memory_mb` may not exceed it.
    pub plugin_memory_budget_mb: u64,
}

impl Default for HostLimits {
    fn default() -> Self {
        Self { max_timeout_per_test_ms: 300_000, max_retries: 5, plugin_memory_budget_mb: 4096 }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_concurrent_tests: 64,
            default_adapter: "ollama".into(),
            grader: None,
            prices: Arc::default(),
            limits: HostLimits::default(),
        }
    }
}

/// What `cancel` found.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CancelOutcome {
    pub execution_id: Uuid,
    pub status: ExecutionStatus,
    /// False when the execution had already finished (idempotent).
    pub cancelled: bool,
}

struct Inner {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    sandbox: Arc<Sandbox>,
    progress: Arc<ProgressService>,
    config: EngineConfig,
    worker: Option<Worker>,
    collector_busy: Arc<AtomicBool>,
    recover_pending: Arc<AtomicBool>,
    /// What the deployment's workers hold back, for progress messages.
    admissions: Admissions,
    durable_lag: DurableLag,
}

/// Cheap to clone; all clones share one engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An engine over `queue`; with a `worker` this host also runs tests.
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        sandbox: Arc<Sandbox>,
        progress: Arc<ProgressService>,
        config: EngineConfig,
        worker: Option<Worker>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                queue,
                sandbox,
                progress,
                config,
                worker,
                collector_busy: Arc::default(),
                recover_pending: Arc::default(),
                admissions: Admissions::default(),
                durable_lag: DurableLag::default(),
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.inner.sandbox
    }

    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.inner.queue
    }

    pub fn progress_service(&self) -> &Arc<ProgressService> {
        &self.inner.progress
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Time from settle to durable of the results this host stored.
    pub fn durable_lag(&self) -> &DurableLag {
        &self.inner.durable_lag
    }

    pub fn worker(&self) -> Option<&Worker> {
        self.inner.worker.as_ref()
    }

    /// Starts the collector (results to the store, named `consumer` in the
    /// queue's consumer group) and this host's worker, if it has one. They
    /// run until the runtime stops or the returned tasks are aborted.
    pub fn start(&self, consumer: String) -> Vec<tokio::task::JoinHandle<()>> {
        let engine = self.clone();
        let collector = Collector {
            store: self.inner.store.clone(),
            queue: self.inner.queue.clone(),
            progress: self.inner.progress.clone(),
            consumer,
            busy: self.inner.collector_busy.clone(),
            recover_pending: self.inner.recover_pending.clone(),
            admissions: self.inner.admissions.clone(),
            lag: self.inner.durable_lag.clone(),
            recover: Box::new(move || {
                let engine = engine.clone();
                Box::pin(async move {
                    match engine.recover().await {
                        Ok(n) => tracing::info!(recovered = n, "re-queued unfinished executions"),
                        Err(e) => tracing::error!(error = %e, "could not re-queue unfinished executions"),
                    }
                })
            }),
        };
        let mut tasks = vec![tokio::spawn(collector.run())];
        if let Some(worker) = &self.inner.worker {
            tasks.extend(worker.start());
        }
        let admissions = self.inner.admissions.clone();
        tasks.push(tokio::spawn(admissions.follow(self.inner.queue.clone(), self.inner.progress.clone())));
        tasks
    }

    /// Tests running right now on this host.
    pub fn active_tests(&self) -> usize {
        self.inner.worker.as_ref().map_or(0, Worker::active_tests)
    }

    /// Tests settled by this host's worker since it started, per status.
    pub fn finished_counts(&self) -> Vec<(TestStatus, u64)> {
        match &self.inner.worker {
            Some(worker) => worker.settled_counts(),
            None => TestStatus::ALL.iter().map(|s| (*s, 0)).collect(),
        }
    }

    /// Graceful stop: this host's worker drains (see [`Worker::drain`]),
    /// then the results it produced are given a moment to reach the store.
    /// Returns how many tests were handed back unfinished.
    pub async fn drain(&self, grace: Duration) -> usize {
        let handed_back = match &self.inner.worker {
            Some(worker) => worker.drain(grace).await,
            None => 0,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let lag = self.inner.queue.counts().await.map_or(0, |c| c.event_lag);
            // The pause covers a batch taken but not yet marked busy.
            tokio::time::sleep(Duration::from_millis(50)).await;
            if lag == 0 && !self.inner.collector_busy.load(Ordering::SeqCst) {
                break;
            }
        }
        handed_back
    }

    /// Queues every execution the store says is unfinished and the queue
    /// does not hold (after a restart, or after the queue lost its data).
    /// Tests that already have a result are not run again.
    pub async fn recover(&self) -> Result<usize, EngineError> {
        let unfinished = self.inner.store.unfinished_executions().await?;
        let mut count = 0;
        for (execution, jobs) in unfinished {
            let id = execution.execution_id;
            if self.inner.queue.execution(id).await?.is_some() {
                continue;
            }
            let done = self.inner.store.results(id).await?;
            let settled: HashSet<i64> = done.iter().map(|r| r.test_case_id).collect();
            let configuration = Arc::new(execution.configuration.clone());
            let mut pending = Vec::with_capacity(jobs.len().saturating_sub(settled.len()));
            for job in jobs {
                let mut job: Job = serde_json::from_str(&job).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if !settled.contains(&job.test_case_id) {
                    job.configuration = configuration.clone();
                    pending.push(job);
                }
            }
            tracing::info!(execution_id = %id, pending = pending.len(), "recovering execution");
            if self.enqueue(&execution, pending, ResultSummary::of(&done)).await? {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Validates and queues an execution.
    pub async fn submit(&self, request: ExecutionRequest) -> Result<Execution, PlanError> {
        let started = std::time::Instant::now();
        let (execution, jobs) =
            plan::plan(self.inner.store.as_ref(), &self.inner.sandbox, &self.inner.config, request).await?;
        let planned = started.elapsed();
        // Serialised one by one as the store writes them; the jobs come
        // back for the queue once the store has let go of them.
        let shared = Arc::new(jobs);
        let source = {
            let shared = shared.clone();
            (0..shared.len()).map(move |i| {
                let job = &shared[i];
                Ok(StoredJob { test_case_id: job.test_case_id, json: serde_json::to_string(job)? })
            })
        };
        self.inner.store.insert_execution(&execution, Box::new(source)).await?;
        let stored = started.elapsed();
        let jobs = Arc::try_unwrap(shared).unwrap_or_else(|shared| shared.as_ref().clone());
        // Stored first: if queuing fails, recovery queues it later.
        if let Err(e) = self.enqueue(&execution, jobs, ResultSummary::default()).await {
            self.inner.recover_pending.store(true, Ordering::SeqCst);
            tracing::error!(execution_id = %execution.execution_id, error = %e, "could not queue; it will be queued when the queue is back");
        }
        // Where a submission's time goes (the REST bench's timeline reads it).
        tracing::info!(
            execution_id = %execution.execution_id,
            tests = execution.test_case_ids.len(),
            model = %execution.model,
            priority = execution.priority,
            planned_us = planned.as_micros() as u64,
            stored_us = stored.saturating_sub(planned).as_micros() as u64,
            queued_us = started.elapsed().saturating_sub(stored).as_micros() as u64,
            "execution queued"
        );
        Ok(execution)
    }

    async fn enqueue(
        &self,
        execution: &Execution,
        mut jobs: Vec<Job>,
        done: ResultSummary,
    ) -> Result<bool, EngineError> {
        let now = crate::queue::now_ms();
        for job in &mut jobs {
            job.queued_at_ms = Some(now);
        }
        let entry = ExecutionEntry {
            execution_id: execution.execution_id,
            tenant_id: execution.tenant_id,
            priority: execution.priority,
            max_concurrent_tests: execution.configuration.max_concurrent_tests,
            total_tests: u32::try_from(execution.test_case_ids.len()).unwrap_or(u32::MAX),
            already_settled: done,
        };
        let added = self.inner.queue.enqueue(entry, jobs).await?;
        if let Some(worker) = &self.inner.worker {
            worker.wake();
        }
        Ok(added)
    }

    /// Progress of an execution: live from the queue while it runs, else
    /// the last snapshot, else from the store.
    pub async fn progress(&self, id: Uuid) -> Result<ExecutionProgress, EngineError> {
        match self.inner.queue.execution(id).await {
            Ok(Some(live)) => return Ok(self.inner.admissions.progress_of(&live)),
            Ok(None) => {}
            Err(e) => tracing::warn!(execution_id = %id, error = %e, "queue unavailable; answering from the store"),
        }
        if let Some(snapshot) = self.inner.progress.snapshot(id).filter(|p| p.status.is_finished()) {
            return Ok(snapshot);
        }
        let execution = self.inner.store.execution(id).await?.ok_or(EngineError::NotFound(id))?;
        let mut summary = ResultSummary::default();
        for (status, n) in self.inner.store.result_counts(id).await? {
            for _ in 0..n {
                summary.add_unrun(status);
            }
        }
        let total = execution.test_case_ids.len();
        let mut progress = final_progress(id, execution.status, &summary);
        progress.total_tests = total;
        progress.percent = percent(summary.total_tests, total);
        progress.message = format!("{}/{total} tests finished", summary.total_tests);
        progress.updated_at = execution.completed_at.or(execution.started_at).unwrap_or(execution.created_at);
        Ok(progress)
    }

    /// Progress of every queued or running execution.
    pub async fn active(&self) -> Result<Vec<ExecutionProgress>, EngineError> {
        let admissions = &self.inner.admissions;
        let mut list: Vec<ExecutionProgress> =
            self.inner.queue.executions().await?.iter().map(|live| admissions.progress_of(live)).collect();
        list.sort_by_key(|p| p.execution_id);
        Ok(list)
    }

    /// An execution and the summary of its stored results, without reading
    /// the results themselves.
    pub async fn summary(&self, id: Uuid) -> Result<(Execution, ResultSummary), EngineError> {
        let execution = self.inner.store.execution(id).await?.ok_or(EngineError::NotFound(id))?;
        Ok((execution, self.inner.store.result_summary(id).await?))
    }

    /// Results and their summary.
    pub async fn results(&self, id: Uuid) -> Result<(Execution, Vec<TestResult>, ResultSummary), EngineError> {
        let execution = self.inner.store.execution(id).await?.ok_or(EngineError::NotFound(id))?;
        let results = self.inner.store.results(id).await?;
        let summary = ResultSummary::of(&results);
        Ok((execution, results, summary))
    }

    /// Cancels a queued or running execution: waiting tests and in-flight
    /// ones (on every worker) become `cancelled`; finished results stay.
    /// Cancelling a finished execution changes nothing.
    pub async fn cancel(&self, id: Uuid) -> Result<CancelOutcome, EngineError> {
        if !self.inner.queue.halt(id, Halt::Cancelled).await? {
            let execution = self.inner.store.execution(id).await?.ok_or(EngineError::NotFound(id))?;
            return Ok(CancelOutcome { execution_id: id, status: execution.status, cancelled: false });
        }
        tracing::info!(execution_id = %id, "cancelling execution");
        // This host's running tests stop now; other workers' on their next
        // heartbeat.
        if let Some(worker) = &self.inner.worker {
            worker.abort_execution(id, Halt::Cancelled, None).await;
        }
        Ok(CancelOutcome { execution_id: id, status: ExecutionStatus::Cancelled, cancelled: true })
    }
}

fn percent(completed: usize, total: usize) -> f64 {
    if total == 0 { 100.0 } else { (completed as f64 * 1000.0 / total as f64).round() / 10.0 }
}

/// The progress snapshot of an execution the queue holds; `waiting_for`
/// is why its waiting tests wait, when the resource managers hold them.
pub(crate) fn progress_of(live: &LiveExecution, waiting_for: Option<&str>) -> ExecutionProgress {
    let total = live.total_tests as usize;
    let completed = live.summary.total_tests;
    let status = if live.started_at_ms.is_some() { ExecutionStatus::Running } else { ExecutionStatus::Queued };
    let eta = live.started_at_ms.filter(|_| completed > 0 && completed < total).map(|started| {
        let elapsed_ms = crate::queue::now_ms().saturating_sub(started) as f64;
        (elapsed_ms / completed as f64 * (total - completed) as f64) as u64
    });
    let message = match live.halt {
        Some(Halt::Cancelled) => format!("cancelling: {completed}/{total} tests finished"),
        Some(Halt::StoppedOnFailure) => format!("stopping after a failure: {completed}/{total} tests finished"),
        None => match waiting_for {
            Some(reason) => format!("{reason}; {completed}/{total} tests finished"),
            None => format!("{completed}/{total} tests finished"),
        },
    };
    ExecutionProgress {
        job_id: live.execution_id,
        execution_id: live.execution_id,
        status,
        percent: percent(completed, total),
        message,
        current_test: None,
        total_tests: total,
        completed_tests: completed,
        passed_tests: live.summary.passed_tests,
        failed_tests: live.summary.failed_tests + live.summary.error_tests,
        updated_at: Utc::now(),
        estimated_time_remaining_ms: eta,
    }
}

/// The progress snapshot of a finished execution.
pub(crate) fn final_progress(id: Uuid, status: ExecutionStatus, summary: &ResultSummary) -> ExecutionProgress {
    let total = summary.total_tests;
    ExecutionProgress {
        job_id: id,
        execution_id: id,
        status,
        percent: 100.0,
        message: format!("{total}/{total} tests finished"),
        current_test: None,
        total_tests: total,
        completed_tests: total,
        passed_tests: summary.passed_tests,
        failed_tests: summary.failed_tests + summary.error_tests,
        updated_at: Utc::now(),
        estimated_time_remaining_ms: None,
    }
}
