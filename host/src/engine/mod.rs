//! The engine: claims test attempts from the queue, runs them through the
//! sandbox under the global and per-execution limits, and records results.
//!
//! Flow of one job: claim (per-execution limit enforced by the queue) ->
//! global permit -> warm the model once -> model call (cached, single
//! flight) -> assertions -> retry or settle -> store + progress. Every test
//! of an execution is settled exactly once (passed, failed, error, skipped
//! or cancelled); the execution finishes when all are.

mod cache;
mod plan;
mod run;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

pub use cache::ResponseCache;
pub use plan::{ExecutionRequest, PlanError};
use run::{Halt, Run};

use crate::domain::{
    AssertionResult, Attempt, Execution, ExecutionProgress, ExecutionStatus, ResultSummary, TestResult, TestStatus,
};
use crate::progress::{ProgressEvent, ProgressService};
use crate::queue::{ExecutionSlot, Job, Queue, QueueError};
use crate::sandbox::{AssertionSpec, CompletionRequest, GenerationOptions, Prompt, Sandbox, Subject};
use crate::store::{Store, StoreError};

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { max_concurrent_tests: 64, default_adapter: "ollama".into() }
    }
}

/// What `cancel` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CancelOutcome {
    pub execution_id: Uuid,
    pub status: ExecutionStatus,
    /// False when the execution had already finished (idempotent).
    pub cancelled: bool,
}

struct Inner {
    store: Store,
    queue: Arc<dyn Queue>,
    sandbox: Arc<Sandbox>,
    progress: Arc<ProgressService>,
    config: EngineConfig,
    global: Arc<Semaphore>,
    wake: Notify,
    runs: Mutex<HashMap<Uuid, Arc<Run>>>,
    cache: ResponseCache,
    /// Set by [`Engine::drain`]: the dispatcher starts nothing more.
    draining: AtomicBool,
    /// Tests settled since start, per [`TestStatus::ALL`] index.
    finished: [AtomicU64; 5],
    /// Test tasks alive now (not the dispatcher's permit while it waits
    /// for work): see [`Slot`].
    running: Arc<AtomicUsize>,
}

/// A running test's hold on the global limit. Created when the test task
/// is spawned and moved into it, so it is released however the task ends,
/// aborted before its first poll included.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    running: Arc<AtomicUsize>,
}

impl Slot {
    fn new(permit: tokio::sync::OwnedSemaphorePermit, running: &Arc<AtomicUsize>) -> Self {
        running.fetch_add(1, Ordering::SeqCst);
        Self { _permit: permit, running: running.clone() }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Cheap to clone; all clones share one engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    pub fn new(
        store: Store,
        queue: Arc<dyn Queue>,
        sandbox: Arc<Sandbox>,
        progress: Arc<ProgressService>,
        config: EngineConfig,
    ) -> Self {
        let global = Arc::new(Semaphore::new(config.max_concurrent_tests.max(1)));
        Self {
            inner: Arc::new(Inner {
                store,
                queue,
                sandbox,
                progress,
                config,
                global,
                wake: Notify::new(),
                runs: Mutex::default(),
                cache: ResponseCache::default(),
                draining: AtomicBool::new(false),
                finished: Default::default(),
                running: Arc::default(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
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

    /// Tests running right now on this host.
    pub fn active_tests(&self) -> usize {
        self.inner.running.load(Ordering::SeqCst)
    }

    /// Starts the dispatcher; it runs until the runtime shuts down.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(dispatch(inner))
    }

    /// Tests settled by this host since it started, per final status.
    pub fn finished_counts(&self) -> Vec<(TestStatus, u64)> {
        TestStatus::ALL
            .iter()
            .zip(&self.inner.finished)
            .map(|(status, n)| (*status, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Graceful stop: starts no more tests and waits up to `grace` for the
    /// running ones to settle (their results reach the store). Returns how
    /// many were still running when `grace` ran out. Tests not started stay
    /// queued in the store, and so do tests cut off by the grace period:
    /// both run at the next start ([`Engine::recover`]).
    pub async fn drain(&self, grace: Duration) -> usize {
        self.inner.draining.store(true, Ordering::SeqCst);
        self.inner.wake.notify_waiters();
        let deadline = Instant::now() + grace;
        loop {
            let running = self.active_tests();
            if running == 0 || Instant::now() >= deadline {
                return running;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Re-queues every execution the store says is unfinished (after a
    /// restart): tests that already have a result are not run again.
    pub async fn recover(&self) -> Result<usize, EngineError> {
        let unfinished = self.inner.store.unfinished_executions()?;
        let mut count = 0;
        for (execution, jobs) in unfinished {
            let done = self.inner.store.results(execution.execution_id)?;
            let settled: HashSet<i64> = done.iter().map(|r| r.test_case_id).collect();
            let mut pending = Vec::with_capacity(jobs.len().saturating_sub(settled.len()));
            for job in jobs {
                let job: Job = serde_json::from_str(&job).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if !settled.contains(&job.test_case_id) {
                    pending.push(job);
                }
            }
            tracing::info!(execution_id = %execution.execution_id, pending = pending.len(), "recovering execution");
            self.launch(execution, pending, &done).await?;
            count += 1;
        }
        Ok(count)
    }

    /// Validates and queues an execution.
    pub async fn submit(&self, request: ExecutionRequest) -> Result<Execution, PlanError> {
        let (execution, jobs) =
            plan::plan(&self.inner.store, &self.inner.sandbox, &self.inner.config.default_adapter, request)?;
        self.inner.store.insert_execution(&execution, jobs.iter().map(|j| (j.test_case_id, j)))?;
        self.launch(execution.clone(), jobs, &[])
            .await
            .map_err(|e| PlanError::Invalid(format!("could not queue: {e}")))?;
        tracing::info!(execution_id = %execution.execution_id, tests = execution.test_case_ids.len(), model = %execution.model, priority = execution.priority, "execution queued");
        Ok(execution)
    }

    async fn launch(&self, execution: Execution, jobs: Vec<Job>, done: &[TestResult]) -> Result<(), EngineError> {
        let slot = ExecutionSlot {
            execution_id: execution.execution_id,
            priority: execution.priority,
            max_concurrent_tests: execution.configuration.max_concurrent_tests,
        };
        let run = Arc::new(Run::new(execution, done));
        let id = run.execution.execution_id;
        self.inner.runs.lock().unwrap_or_else(PoisonError::into_inner).insert(id, run.clone());
        publish_progress(&self.inner, &run);
        if jobs.is_empty() {
            // Everything already had a result (recovered after the last write).
            maybe_finish(&self.inner, &run);
            return Ok(());
        }
        self.inner.queue.enqueue(slot, jobs).await?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Progress of an execution, live or from the store.
    pub fn progress(&self, id: Uuid) -> Result<ExecutionProgress, EngineError> {
        if let Some(run) = self.run(id) {
            let state = run.state();
            return Ok(run.progress(&state));
        }
        if let Some(snapshot) = self.inner.progress.snapshot(id) {
            return Ok(snapshot);
        }
        let execution = self.inner.store.execution(id)?.ok_or(EngineError::NotFound(id))?;
        let counts = self.inner.store.result_counts(id)?;
        let count =
            |pred: fn(TestStatus) -> bool| counts.iter().filter(|(s, _)| pred(*s)).map(|(_, n)| n).sum::<usize>();
        let total = execution.test_case_ids.len();
        let completed = count(|_| true);
        Ok(ExecutionProgress {
            job_id: id,
            execution_id: id,
            status: execution.status,
            percent: if total == 0 { 100.0 } else { (completed as f64 * 1000.0 / total as f64).round() / 10.0 },
            message: format!("{completed}/{total} tests finished"),
            current_test: None,
            total_tests: total,
            completed_tests: completed,
            passed_tests: count(|s| s == TestStatus::Passed),
            failed_tests: count(TestStatus::is_failure),
            updated_at: execution.completed_at.or(execution.started_at).unwrap_or(execution.created_at),
            estimated_time_remaining_ms: None,
        })
    }

    /// Progress of every queued or running execution on this host.
    pub fn active(&self) -> Vec<ExecutionProgress> {
        let runs: Vec<Arc<Run>> =
            self.inner.runs.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        let mut list: Vec<ExecutionProgress> = runs.iter().map(|r| r.progress(&r.state())).collect();
        list.sort_by_key(|p| p.execution_id);
        list
    }

    /// Results and their summary.
    pub fn results(&self, id: Uuid) -> Result<(Execution, Vec<TestResult>, ResultSummary), EngineError> {
        let execution = self.inner.store.execution(id)?.ok_or(EngineError::NotFound(id))?;
        let results = self.inner.store.results(id)?;
        let summary = ResultSummary::of(&results);
        Ok((execution, results, summary))
    }

    /// Cancels a queued or running execution: waiting tests and in-flight
    /// ones become `cancelled` (in-flight tasks are aborted), finished
    /// results stay. Cancelling a finished execution changes nothing.
    pub async fn cancel(&self, id: Uuid) -> Result<CancelOutcome, EngineError> {
        let Some(run) = self.run(id) else {
            let execution = self.inner.store.execution(id)?.ok_or(EngineError::NotFound(id))?;
            return Ok(CancelOutcome { execution_id: id, status: execution.status, cancelled: false });
        };
        halt(&self.inner, &run, Halt::Cancelled, None).await;
        let status = self.inner.store.execution(id)?.map_or(ExecutionStatus::Cancelled, |e| e.status);
        Ok(CancelOutcome { execution_id: id, status, cancelled: true })
    }

    fn run(&self, id: Uuid) -> Option<Arc<Run>> {
        self.inner.runs.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned()
    }
}

/// The dispatcher: one global permit per running test.
async fn dispatch(inner: Arc<Inner>) {
    let draining = || inner.draining.load(Ordering::SeqCst);
    loop {
        let Ok(permit) = inner.global.clone().acquire_owned().await else { return };
        let job = loop {
            // Checked before every claim: a claimed job is always started.
            if draining() {
                tracing::info!("dispatcher stopped: draining");
                return;
            }
            // Registered before claiming so a wake-up in between is not lost;
            // the timeout also picks up work added by other hosts.
            let woken = inner.wake.notified();
            match inner.queue.claim().await {
                Ok(Some(job)) => break job,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "queue claim failed"),
            }
            let _ = tokio::time::timeout(Duration::from_millis(250), woken).await;
        };
        let Some(run) = inner.runs.lock().unwrap_or_else(PoisonError::into_inner).get(&job.execution_id).cloned()
        else {
            // Its execution was cancelled between enqueue and claim.
            let _ = inner.queue.finish(&job).await;
            continue;
        };
        let mut state = run.state();
        if let Some(halt) = state.halt {
            // Halting already removed the execution from the queue, so this
            // claimed job needs no `finish`; it only needs settling.
            drop(state);
            settle(&inner, &run, skipped(&job, halt));
            continue;
        }
        if state.started.is_none() {
            state.started = Some(Instant::now());
            if let Err(e) = inner.store.set_execution_status(job.execution_id, ExecutionStatus::Running) {
                tracing::error!(execution_id = %job.execution_id, error = %e, "could not mark execution running");
            }
        }
        state.current_test = Some(job.test_case_name.clone());
        let (test_id, name) = (job.test_case_id, job.test_case_name.clone());
        let slot = Slot::new(permit, &inner.running);
        let task = tokio::spawn(run_job(inner.clone(), run.clone(), job, slot));
        state.in_flight.insert(test_id, (task.abort_handle(), name));
    }
}

/// Runs one attempt, then retries it or settles the test.
async fn run_job(inner: Arc<Inner>, run: Arc<Run>, mut job: Job, _slot: Slot) {
    let config = &run.execution.configuration;
    let limits = config.plugin_limits();
    run.warmed
        .get_or_init(|| async {
            if let Err(e) = inner.sandbox.warm(&job.adapter, &job.model, &limits).await {
                tracing::warn!(execution_id = %job.execution_id, model = %job.model, error = %e, "model warm-up failed");
            }
        })
        .await;

    let started = Instant::now();
    let timeout = Duration::from_millis(config.timeout_per_test);
    let attempt = match tokio::time::timeout(timeout, attempt_test(&inner, &run, &job)).await {
        Ok(outcome) => outcome,
        Err(_) => AttemptOutcome::error(format!(
            "timeout: the test exceeded timeout_per_test of {} ms",
            config.timeout_per_test
        )),
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::debug!(execution_id = %job.execution_id, test_id = job.test_case_id, attempt = job.attempt, status = attempt.status.as_str(), elapsed_ms, "test attempt finished");

    let (attempts, retry) = {
        let mut state = run.state();
        let attempts = state.attempts.entry(job.test_case_id).or_default();
        attempts.push(Attempt { status: attempt.status, execution_time_ms: elapsed_ms, error: attempt.error.clone() });
        let retry = attempt.status.is_failure()
            && config.retry_failed_tests
            && job.attempt < config.max_retries
            && state.halt.is_none();
        if retry {
            state.in_flight.remove(&job.test_case_id);
        }
        (state.attempts.get(&job.test_case_id).cloned().unwrap_or_default(), retry)
    };
    if retry {
        job.attempt += 1;
        if let Err(e) = inner.queue.retry(job).await {
            tracing::error!(error = %e, "could not re-queue a retry");
        }
        inner.wake.notify_one();
        return;
    }

    let flaky = attempt.status == TestStatus::Passed && attempts.iter().any(|a| a.status != TestStatus::Passed);
    let result = TestResult {
        execution_id: job.execution_id,
        test_case_id: job.test_case_id,
        test_case_name: job.test_case_name.clone(),
        status: attempt.status,
        llm_output: attempt.output,
        assertion_results: attempt.assertions,
        execution_time_ms: attempts.iter().map(|a| a.execution_time_ms).sum(),
        attempts,
        flaky,
        cache_hit: attempt.cache_hit,
        tokens: attempt.tokens,
        error: attempt.error,
    };
    let failed = result.status.is_failure();
    settle(&inner, &run, result);
    if let Err(e) = inner.queue.finish(&job).await {
        tracing::error!(error = %e, "could not finish a job");
    }
    inner.wake.notify_one();
    if failed && config.stop_on_first_failure {
        halt(&inner, &run, Halt::StoppedOnFailure, Some(job.test_case_id)).await;
    }
}

struct AttemptOutcome {
    status: TestStatus,
    output: String,
    assertions: Vec<AssertionResult>,
    cache_hit: bool,
    tokens: Option<crate::sandbox::TokenUsage>,
    error: Option<String>,
}

impl AttemptOutcome {
    fn error(message: String) -> Self {
        Self {
            status: TestStatus::Error,
            output: String::new(),
            assertions: vec![],
            cache_hit: false,
            tokens: None,
            error: Some(message),
        }
    }
}

async fn attempt_test(inner: &Inner, run: &Run, job: &Job) -> AttemptOutcome {
    let config = &run.execution.configuration;
    let limits = config.plugin_limits();
    let request = CompletionRequest {
        model: job.model.clone(),
        prompt: Prompt::Text(job.prompt.clone()),
        options: GenerationOptions::default(),
    };
    let call = || inner.sandbox.complete(&job.adapter, &request, &limits);
    // A retry must ask the model again: the cached answer is what failed.
    let (completion, cache_hit) = if config.cache_enabled && job.attempt == 0 {
        inner.cache.get_or_call(ResponseCache::key(&job.adapter, &request), call).await
    } else {
        (call().await, false)
    };
    let completion = match completion {
        Ok(c) => c,
        Err(e) => {
            return AttemptOutcome { cache_hit, ..AttemptOutcome::error(format!("{}: {e}", e.code())) };
        }
    };
    let subject = Subject {
        output: completion.text.clone(),
        expected: job.expected_output.clone(),
        test_case_id: job.test_case_id.to_string(),
        variables: job.variables.clone(),
        prompt: job.prompt.clone(),
        latency_ms: completion.duration.as_millis() as u64,
        tokens: completion.tokens,
    };
    // With no assertions, an expected output is checked for equality.
    let implicit;
    let specs: &[AssertionSpec] = if job.assertions.is_empty() && job.expected_output.is_some() {
        implicit = [AssertionSpec::new("equals", serde_json::Value::Null)];
        &implicit
    } else {
        &job.assertions
    };
    let outcomes = inner.sandbox.evaluate_all(specs, &subject, &limits).await;
    let status = if outcomes.iter().any(|o| o.error.is_some()) {
        TestStatus::Error
    } else if outcomes.iter().all(|o| o.passed) {
        TestStatus::Passed
    } else {
        TestStatus::Failed
    };
    let error = outcomes.iter().find(|o| o.error.is_some()).map(|o| format!("{}: {}", o.assertion_type, o.reason));
    AttemptOutcome {
        status,
        output: completion.text,
        assertions: outcomes.into_iter().map(AssertionResult::from).collect(),
        cache_hit,
        tokens: completion.tokens,
        error,
    }
}

fn skipped(job: &Job, halt: Halt) -> TestResult {
    let (status, reason) = match halt {
        Halt::Cancelled => (TestStatus::Cancelled, "execution cancelled"),
        Halt::StoppedOnFailure => (TestStatus::Skipped, "skipped: stop_on_first_failure"),
    };
    TestResult {
        execution_id: job.execution_id,
        test_case_id: job.test_case_id,
        test_case_name: job.test_case_name.clone(),
        status,
        llm_output: String::new(),
        assertion_results: vec![],
        execution_time_ms: 0,
        attempts: vec![],
        flaky: false,
        cache_hit: false,
        tokens: None,
        error: Some(reason.to_string()),
    }
}

/// Records a test's final result exactly once, then publishes it.
fn settle(inner: &Inner, run: &Arc<Run>, result: TestResult) {
    {
        let mut state = run.state();
        if !state.settled.insert(result.test_case_id) {
            return;
        }
        state.in_flight.remove(&result.test_case_id);
        if let Some(i) = TestStatus::ALL.iter().position(|s| *s == result.status) {
            inner.finished[i].fetch_add(1, Ordering::Relaxed);
        }
        state.summary.add(&result);
        // Idempotent by (execution, test case): a test delivered twice (say,
        // after a crash) is recorded once.
        if let Err(e) = inner.store.put_result(&result, true) {
            tracing::error!(execution_id = %result.execution_id, test_id = result.test_case_id, error = %e, "could not store a result");
        }
    }
    if run.execution.configuration.progress_updates {
        inner.progress.publish(ProgressEvent::TestComplete(Box::new(result)));
        publish_progress(inner, run);
    }
    maybe_finish(inner, run);
}

/// Stops an execution: waiting tests become skipped or cancelled; in-flight
/// ones (except `keep`, the test that triggered it) are aborted.
async fn halt(inner: &Arc<Inner>, run: &Arc<Run>, reason: Halt, keep: Option<i64>) {
    let id = run.execution.execution_id;
    let aborted = {
        let mut state = run.state();
        if state.finished || state.halt.is_some() {
            return;
        }
        state.halt = Some(reason);
        let ids: Vec<i64> = state.in_flight.keys().copied().filter(|t| Some(*t) != keep).collect();
        ids.into_iter().filter_map(|t| state.in_flight.remove(&t).map(|(h, name)| (t, h, name))).collect::<Vec<_>>()
    };
    tracing::info!(execution_id = %id, reason = ?reason, in_flight = aborted.len(), "halting execution");
    let waiting = inner.queue.cancel(id).await.unwrap_or_else(|e| {
        tracing::error!(execution_id = %id, error = %e, "could not remove waiting jobs");
        Vec::new()
    });
    for (test_case_id, handle, name) in aborted {
        handle.abort();
        let job_like = Job {
            execution_id: id,
            test_case_id,
            test_case_name: name,
            attempt: 0,
            adapter: String::new(),
            model: String::new(),
            prompt: String::new(),
            variables: vec![],
            expected_output: None,
            assertions: vec![],
        };
        let mut result = skipped(&job_like, Halt::Cancelled);
        result.error = Some(match reason {
            Halt::Cancelled => "cancelled while running".into(),
            Halt::StoppedOnFailure => "cancelled: stop_on_first_failure".into(),
        });
        settle(inner, run, result);
    }
    for job in waiting {
        settle(inner, run, skipped(&job, reason));
    }
    // Tests between claim and spawn are settled by the dispatcher.
    maybe_finish(inner, run);
}

fn maybe_finish(inner: &Inner, run: &Arc<Run>) {
    let (status, progress, summary) = {
        let mut state = run.state();
        if state.finished || state.settled.len() < run.total {
            return;
        }
        state.finished = true;
        state.current_test = None;
        let status = match state.halt {
            Some(Halt::Cancelled) => ExecutionStatus::Cancelled,
            Some(Halt::StoppedOnFailure) => ExecutionStatus::Failed,
            None => ExecutionStatus::Completed,
        };
        (status, run.progress(&state), state.summary.clone())
    };
    let id = run.execution.execution_id;
    if let Err(e) = inner.store.set_execution_status(id, status) {
        tracing::error!(execution_id = %id, error = %e, "could not store execution status");
    }
    inner.runs.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    tracing::info!(execution_id = %id, status = status.as_str(), passed = summary.passed_tests, failed = summary.failed_tests, "execution finished");
    inner.progress.publish(ProgressEvent::Progress(progress));
    inner.progress.publish(ProgressEvent::ExecutionComplete { execution_id: id, status, summary });
}

fn publish_progress(inner: &Inner, run: &Run) {
    let snapshot = run.progress(&run.state());
    inner.progress.publish(ProgressEvent::Progress(snapshot));
}
