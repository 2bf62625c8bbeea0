//! The worker: claims leases from the queue under the host-wide limit and
//! what its resource manager admits, runs each test (retrying or settling
//! it through the queue), renews its leases, reaps expired ones, and hands
//! leases back when it stops.
//!
//! A worker keeps no execution state that another process needs: whatever
//! it learns (a halt, a lost lease) comes from the queue, and whatever it
//! produces (results) goes to the queue. `cardrun worker` is just this.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OnceCell, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::attempt;
use super::cache::ResponseCache;
use super::plugins::{PluginSync, SharedPlugins};
use super::running::{Running, RunningTable};
use super::stats::WorkerStats;
use crate::domain::{TestResult, TestStatus};
use crate::queue::{ClaimRequest, Finished, Halt, Hold, Job, Lease, LeaseId, LeaseState, Queue, QueueError, Retried};
use crate::resources::{Admission, ResourceManager};
use crate::sandbox::Sandbox;

/// Leases asked for in one claim at most.
const CLAIM_BATCH: usize = 64;
/// How often an idle worker looks for work that no local wake-up announces
/// (work queued through another host).
const IDLE_POLL: Duration = Duration::from_millis(50);
/// Longest wait between claims while the queue is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names this worker in heartbeats and logs.
    pub id: String,
    /// Tests running at once in this process (`MAX_CONCURRENT_TESTS`).
    pub max_concurrent_tests: usize,
    /// How often leases are renewed and expired ones reaped.
    pub heartbeat_interval: Duration,
    /// `MAX_EXECUTION_SHARE` (50 %) of `max_concurrent_tests`: the slots one
    /// execution may hold while another execution waits.
    pub execution_share: Option<u32>,
    /// `TENANT_MAX_RUNNING_TESTS`: a tenant's tests running at once across
    /// the deployment; `None`: no allowance.
    pub tenant_running_cap: Option<u32>,
    /// `PLUGIN_MAX_MEMORY_MB` (256): the most linear memory one plugin
    /// instance gets, whatever an execution's `resource_limits` say.
    pub plugin_max_memory_mb: u64,
    /// `PLUGIN_MEMORY_BUDGET_MB`: the plugin memory of all running tests
    /// together. A test reserves its instance's cap before it starts, and
    /// waits while the budget is spent.
    pub plugin_memory_budget_mb: u64,
    /// Model prices, for what grader calls cost.
    pub prices: Arc<crate::domain::PriceTable>,
}

struct Inner {
    config: WorkerConfig,
    queue: Arc<dyn Queue>,
    sandbox: Arc<Sandbox>,
    cache: Arc<ResponseCache>,
    global: Arc<Semaphore>,
    /// The plugin memory budget, in MiB.
    memory: Arc<Semaphore>,
    wake: Notify,
    draining: AtomicBool,
    running: Mutex<RunningTable>,
    running_count: Arc<AtomicUsize>,
    /// Each model is warmed once per execution, before its first test.
    warmed: Mutex<HashMap<Uuid, Arc<OnceCell<()>>>>,
    /// Tests settled by this worker, per [`TestStatus::ALL`] index.
    settled: [AtomicU64; 5],
    /// Uploaded plugins of the deployment, when it shares them.
    plugins: Option<PluginSync>,
    /// Admission and adaptive concurrency; without one, only
    /// `max_concurrent_tests` limits what starts.
    resources: Option<ResourceManager>,
    /// What the resource manager admitted at the last claim, while it held
    /// work back.
    holding: Mutex<Option<Hold>>,
    /// `resource_limits.cpu_percent` of every running test, summed.
    reserved_cpu_percent: AtomicU64,
    /// Queue waits, run times and cache hits, for `/metrics`.
    stats: WorkerStats,
}

/// What the running tests reserved of the host (`reserved_resources`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Reserved {
    pub tests: usize,
    /// Plugin memory (each test's instance cap) out of the budget.
    pub memory_mb: u64,
    pub memory_budget_mb: u64,
    /// `resource_limits.cpu_percent` of the running tests, summed.
    pub cpu_percent: u64,
}

/// Cheap to clone; clones share one worker.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

/// A running test's hold on the host-wide limit. It moves into the test's
/// task, so it is released however the task ends (aborted included), and
/// it forgets the test in the worker's table.
struct Slot {
    _permit: OwnedSemaphorePermit,
    inner: Arc<Inner>,
    token: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inner.running.lock().unwrap_or_else(PoisonError::into_inner).remove(self.token);
        self.inner.running_count.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Worker {
    /// A worker claiming from `queue`; `cache` answers repeated prompts.
    pub fn new(config: WorkerConfig, queue: Arc<dyn Queue>, sandbox: Arc<Sandbox>, cache: ResponseCache) -> Self {
        let global = Arc::new(Semaphore::new(config.max_concurrent_tests.max(1)));
        let budget =
            usize::try_from(config.plugin_memory_budget_mb).unwrap_or(usize::MAX).clamp(1, Semaphore::MAX_PERMITS);
        let memory = Arc::new(Semaphore::new(budget));
        Self {
            inner: Arc::new(Inner {
                config,
                queue,
                sandbox,
                cache: Arc::new(cache),
                global,
                memory,
                wake: Notify::new(),
                draining: AtomicBool::new(false),
                running: Mutex::default(),
                running_count: Arc::default(),
                warmed: Mutex::default(),
                settled: Default::default(),
                plugins: None,
                resources: None,
                holding: Mutex::new(None),
                reserved_cpu_percent: AtomicU64::new(0),
                stats: WorkerStats::default(),
            }),
        }
    }

    /// Starts work only as `resources` admits it. Call before
    /// [`Worker::start`].
    pub fn with_resources(self, resources: ResourceManager) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.resources = Some(resources);
                Self { inner: Arc::new(inner) }
            }
            Err(inner) => {
                tracing::error!("a resource manager was given to a worker already started; ignored");
                Self { inner }
            }
        }
    }

    /// Queue waits, run times and cache hits since the worker started.
    pub fn stats(&self) -> &WorkerStats {
        &self.inner.stats
    }

    /// What the running tests reserved.
    pub fn reserved(&self) -> Reserved {
        let budget = self.inner.memory_budget_mb();
        let free = self.inner.memory.available_permits() as u64;
        Reserved {
            tests: self.active_tests(),
            memory_mb: budget.min(Semaphore::MAX_PERMITS as u64).saturating_sub(free),
            memory_budget_mb: budget,
            cpu_percent: self.inner.reserved_cpu_percent.load(Ordering::Relaxed),
        }
    }

    /// Loads the deployment's uploaded plugins from `shared`, now and as
    /// they are published. Call before [`Worker::start`].
    pub async fn with_shared_plugins(self, shared: Arc<dyn SharedPlugins>) -> Self {
        let sync = PluginSync::new(shared);
        sync.sync(&self.inner.sandbox).await;
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.plugins = Some(sync);
                Self { inner: Arc::new(inner) }
            }
            // Already shared (started): keep it as it is.
            Err(inner) => Self { inner },
        }
    }

    pub fn id(&self) -> &str {
        &self.inner.config.id
    }

    pub fn max_concurrent_tests(&self) -> usize {
        self.inner.config.max_concurrent_tests
    }

    /// Starts claiming, heartbeating and reaping; runs until the runtime
    /// stops (or [`Worker::drain`]).
    pub fn start(&self) -> Vec<tokio::task::JoinHandle<()>> {
        vec![tokio::spawn(dispatch(self.inner.clone())), tokio::spawn(keep_leases(self.inner.clone()))]
    }

    /// Tells the dispatcher that work was queued in this process.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Tests running now in this worker.
    pub fn active_tests(&self) -> usize {
        self.inner.running_count.load(Ordering::SeqCst)
    }

    /// Tests settled by this worker since it started, per final status.
    pub fn settled_counts(&self) -> Vec<(TestStatus, u64)> {
        TestStatus::ALL.iter().zip(&self.inner.settled).map(|(s, n)| (*s, n.load(Ordering::Relaxed))).collect()
    }

    /// Aborts this worker's running tests of `execution_id` (after a halt)
    /// and settles them as cancelled, except `keep`.
    pub async fn abort_execution(&self, execution_id: Uuid, halt: Halt, keep: Option<u64>) {
        abort_where(&self.inner, |r| r.lease.execution_id == execution_id && Some(r.lease.token) != keep, Some(halt))
            .await;
    }

    /// Graceful stop: claims nothing more, lets running tests finish for up
    /// to `grace`, then hands the leases of the rest back to the queue (at
    /// the head of their executions, with no attempt counted). Returns how
    /// many were handed back.
    pub async fn drain(&self, grace: Duration) -> usize {
        let inner = &self.inner;
        inner.draining.store(true, Ordering::SeqCst);
        inner.wake.notify_waiters();
        let deadline = Instant::now() + grace;
        while self.active_tests() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left: Vec<Running> = inner.running.lock().unwrap_or_else(PoisonError::into_inner).drain();
        let mut handed_back = 0;
        for running in left {
            running.abort.abort();
            // A retry with the same attempt number puts the job back as
            // it was.
            let job = Job::clone(&running.job);
            if matches!(inner.queue.retry(&running.lease, job).await, Ok(Retried::Requeued)) {
                handed_back += 1;
            }
        }
        handed_back
    }
}

impl Inner {
    fn memory_budget_mb(&self) -> u64 {
        self.config.plugin_memory_budget_mb.max(1)
    }
}

/// The dispatcher: one permit per running test; claims in batches, as
/// many as the resource manager admits.
async fn dispatch(inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Ok(first) = inner.global.clone().acquire_owned().await else { return };
        let mut permits = Vec::with_capacity(CLAIM_BATCH);
        permits.push(first);
        while permits.len() < CLAIM_BATCH {
            match inner.global.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        // Checked before every claim: a claimed job is always started.
        if inner.draining.load(Ordering::SeqCst) {
            tracing::info!(worker = %inner.config.id, "dispatcher stopped: draining");
            return;
        }
        // Registered before claiming, so a wake-up in between is not lost.
        let woken = inner.wake.notified();
        let admission = admit(&inner);
        permits.truncate(admission.room);
        let mut request = ClaimRequest {
            max: permits.len(),
            share_cap: inner.config.execution_share,
            held: held(&inner),
            min_priority: admission.min_priority,
            tenant_cap: inner.config.tenant_running_cap,
        };
        let mut claimed = match request.max {
            0 => Ok(Vec::new()),
            _ => inner.queue.claim_with(&inner.config.id, &request).await,
        };
        // The floor: with nothing running, one test of any priority starts
        // whatever the machine's load, so no execution waits forever.
        if admission.floor && matches!(&claimed, Ok(l) if l.is_empty()) {
            if permits.is_empty()
                && let Ok(p) = inner.global.clone().try_acquire_owned()
            {
                permits.push(p);
            }
            request.max = permits.len().min(1);
            request.min_priority = 0;
            if request.max == 1 {
                claimed = inner.queue.claim_with(&inner.config.id, &request).await;
            }
        }
        match claimed {
            Ok(leases) if !leases.is_empty() => {
                backoff = Duration::from_millis(50);
                for lease in leases {
                    let Some(permit) = permits.pop() else { break };
                    start(&inner, lease, permit);
                }
            }
            Ok(_) => {
                drop(permits);
                let _ = tokio::time::timeout(IDLE_POLL, woken).await;
            }
            Err(e) => {
                drop(permits);
                tracing::warn!(worker = %inner.config.id, error = %e, retry_in_ms = backoff.as_millis() as u64, "claim failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Asks the resource manager what may start, and records why work waits
/// in the queue (for every host's progress messages) when that changes.
fn admit(inner: &Arc<Inner>) -> Admission {
    let running = inner.running_count.load(Ordering::SeqCst);
    let max = inner.config.max_concurrent_tests;
    let Some(resources) = &inner.resources else { return Admission::open(max.saturating_sub(running)) };
    let admission = resources.admission(running, max);
    let hold = admission.reason.clone().map(|reason| Hold {
        reason,
        min_priority: admission.min_priority,
        room: if admission.floor { 1 } else { admission.room },
    });
    let mut holding = inner.holding.lock().unwrap_or_else(PoisonError::into_inner);
    if *holding != hold {
        match &hold {
            Some(h) => {
                tracing::info!(worker = %inner.config.id, reason = %h.reason, min_priority = h.min_priority, running, "holding work back")
            }
            None => tracing::info!(worker = %inner.config.id, "admitting work again"),
        }
        *holding = hold.clone();
        drop(holding);
        let inner = inner.clone();
        tokio::spawn(async move {
            if let Err(e) = inner.queue.set_admission(&inner.config.id, hold.as_ref()).await {
                tracing::debug!(worker = %inner.config.id, error = %e, "could not record the admission; the next heartbeat will");
            }
        });
    }
    admission
}

/// This worker's running tests per execution.
fn held(inner: &Inner) -> Vec<(Uuid, u32)> {
    inner.running.lock().unwrap_or_else(PoisonError::into_inner).held()
}

fn start(inner: &Arc<Inner>, lease: Lease, permit: OwnedSemaphorePermit) {
    let token = lease.token;
    if let Some(queued) = lease.job.queued_at_ms {
        inner.stats.queue_wait.observe(Duration::from_millis(crate::queue::now_ms().saturating_sub(queued)));
    }
    inner.running_count.fetch_add(1, Ordering::SeqCst);
    let slot = Slot { _permit: permit, inner: inner.clone(), token };
    let id = lease.id();
    let job = Arc::new(lease.job);
    // The table entry is made before the task can end (and remove it).
    let mut running = inner.running.lock().unwrap_or_else(PoisonError::into_inner);
    let task = tokio::spawn(run_lease(inner.clone(), id, job.clone(), slot));
    running.insert(token, Running { lease: id, job, abort: task.abort_handle() });
}

/// A running test's `cpu_percent`, counted in `reserved_resources` for as
/// long as the test runs.
struct CpuReservation<'a> {
    inner: &'a Inner,
    percent: u64,
}

impl<'a> CpuReservation<'a> {
    fn new(inner: &'a Inner, percent: f64) -> Self {
        let percent = percent.clamp(0.0, 100.0) as u64;
        inner.reserved_cpu_percent.fetch_add(percent, Ordering::Relaxed);
        Self { inner, percent }
    }
}

impl Drop for CpuReservation<'_> {
    fn drop(&mut self) {
        self.inner.reserved_cpu_percent.fetch_sub(self.percent, Ordering::Relaxed);
    }
}

/// Runs one leased attempt, then retries it or settles the test.
async fn run_lease(inner: Arc<Inner>, lease: LeaseId, job: Arc<Job>, _slot: Slot) {
    let job = &*job;
    let limits = inner.sandbox.limits_for(&job.configuration).with_max_memory_mb(inner.config.plugin_max_memory_mb);
    // The instance's memory cap, reserved from the host's budget for as
    // long as the test runs (one plugin instance at a time per test).
    let need = u32::try_from((limits.memory_bytes >> 20).max(1)).unwrap_or(u32::MAX);
    let need = need.min(u32::try_from(inner.memory_budget_mb()).unwrap_or(u32::MAX)).max(1);
    let Ok(_reserved) = inner.memory.clone().acquire_many_owned(need).await else { return };
    let _cpu = CpuReservation::new(&inner, job.configuration.resource_limits.cpu_percent);
    // A type or adapter this worker does not know may be a plugin uploaded
    // since its last sync.
    if let Some(plugins) = &inner.plugins
        && (inner.sandbox.adapter_for(job.tenant_id, &job.adapter).is_err()
            || job.assertions.iter().any(|a| inner.sandbox.assertion_plugin_for(job.tenant_id, &a.kind).is_err()))
    {
        plugins.sync(&inner.sandbox).await;
    }
    let warm = {
        let mut warmed = inner.warmed.lock().unwrap_or_else(PoisonError::into_inner);
        if warmed.len() > 10_000 {
            warmed.clear();
        }
        warmed.entry(job.execution_id).or_default().clone()
    };
    warm.get_or_init(|| async {
        if let Err(e) = inner.sandbox.warm_for(job.tenant_id, &job.adapter, &job.model, &limits).await {
            tracing::warn!(execution_id = %job.execution_id, model = %job.model, error = %e, "model warm-up failed");
        }
    })
    .await;

    let services = attempt::Services { sandbox: &inner.sandbox, cache: &inner.cache, prices: &inner.config.prices };
    tracing::debug!(execution_id = %job.execution_id, test_id = job.test_case_id, attempt = job.attempt, "test attempt started");
    let outcome = attempt::run(&services, job, &limits).await;
    inner.stats.run_time.observe(Duration::from_millis(outcome.elapsed_ms));
    if job.configuration.cache_enabled && job.attempt == 0 {
        let counter = if outcome.cache_hit { &inner.stats.cache_hits } else { &inner.stats.cache_misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(execution_id = %job.execution_id, test_id = job.test_case_id, attempt = job.attempt, status = outcome.status.as_str(), elapsed_ms = outcome.elapsed_ms, "test attempt finished");

    if outcome.wants_retry(job) {
        let mut next = job.clone();
        next.attempt += 1;
        next.queued_at_ms = Some(crate::queue::now_ms());
        next.previous_attempts.push(outcome.record());
        match inner.queue.retry(&lease, next).await {
            Ok(Retried::Requeued) => {
                inner.wake.notify_one();
                return;
            }
            // Halted: settle the test with what it has.
            Ok(Retried::Halted) => {}
            Ok(Retried::Stale) => {
                tracing::warn!(execution_id = %job.execution_id, test_id = job.test_case_id, "lease lost before the retry; another worker has the test");
                return;
            }
            Err(e) => {
                tracing::error!(execution_id = %job.execution_id, test_id = job.test_case_id, error = %e, "could not re-queue a retry; settling the test")
            }
        }
    }
    let result = outcome.into_result(job);
    let halt_on_failure = job.configuration.stop_on_first_failure;
    let finished = settle(&inner, &lease, &result, halt_on_failure).await;
    inner.wake.notify_one();
    if finished == Some(Finished::Recorded { halted: true }) {
        tracing::info!(execution_id = %job.execution_id, test_id = job.test_case_id, "stop_on_first_failure: halting the execution");
        let id = job.execution_id;
        abort_where(
            &inner,
            |r| r.lease.execution_id == id && r.lease.token != lease.token,
            Some(Halt::StoppedOnFailure),
        )
        .await;
    }
}

/// Settles a test through the queue, retrying while the queue is
/// unreachable until the lease would have expired anyway.
async fn settle(inner: &Inner, lease: &LeaseId, result: &TestResult, halt_on_failure: bool) -> Option<Finished> {
    let give_up = Instant::now() + inner.config.heartbeat_interval * 3;
    let mut backoff = Duration::from_millis(50);
    loop {
        match inner.queue.finish(lease, result, halt_on_failure).await {
            Ok(finished) => {
                if let Finished::Recorded { .. } = finished
                    && let Some(i) = TestStatus::ALL.iter().position(|s| *s == result.status)
                {
                    inner.settled[i].fetch_add(1, Ordering::Relaxed);
                }
                if finished == Finished::Stale {
                    tracing::warn!(execution_id = %lease.execution_id, test_id = lease.test_case_id, "result refused: the lease expired and the test was handed to another worker");
                }
                return Some(finished);
            }
            Err(QueueError::Unavailable(e)) if Instant::now() < give_up => {
                tracing::warn!(execution_id = %lease.execution_id, test_id = lease.test_case_id, error = %e, "could not settle a test; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                tracing::error!(execution_id = %lease.execution_id, test_id = lease.test_case_id, error = %e, "could not settle a test; it will run again when its lease expires");
                return None;
            }
        }
    }
}

/// Aborts the running tests that `pick` selects. With a halt they are
/// settled as cancelled; without one (a lost lease) they are only dropped.
async fn abort_where(inner: &Arc<Inner>, pick: impl Fn(&Running) -> bool, halt: Option<Halt>) {
    let picked: Vec<Running> = inner.running.lock().unwrap_or_else(PoisonError::into_inner).remove_where(pick);
    for running in picked {
        running.abort.abort();
        if let Some(halt) = halt {
            let result = TestResult::unrun(
                running.lease.execution_id,
                running.lease.test_case_id,
                running.job.test_case_name.clone(),
                TestStatus::Cancelled,
                halt.aborted_reason().to_string(),
            );
            settle(inner, &running.lease, &result, false).await;
        }
    }
}

/// Renews this worker's leases, acts on halts and lost leases, and reaps
/// expired leases of any worker.
async fn keep_leases(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let tokens: Vec<u64> = inner.running.lock().unwrap_or_else(PoisonError::into_inner).tokens();
        match inner.queue.heartbeat(&inner.config.id, &tokens).await {
            Ok(states) => {
                for (token, state) in tokens.iter().zip(states) {
                    match state {
                        LeaseState::Held => {}
                        LeaseState::Halted(halt) => abort_where(&inner, |r| r.lease.token == *token, Some(halt)).await,
                        LeaseState::Lost => {
                            tracing::warn!(worker = %inner.config.id, token, "lease lost; dropping the test");
                            abort_where(&inner, |r| r.lease.token == *token, None).await;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(worker = %inner.config.id, error = %e, "heartbeat failed"),
        }
        // Repeated, so it outlives a lost write and expires with the worker.
        let hold = inner.holding.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Err(e) = inner.queue.set_admission(&inner.config.id, hold.as_ref()).await {
            tracing::debug!(worker = %inner.config.id, error = %e, "could not record the admission");
        }
        if let Some(plugins) = &inner.plugins {
            plugins.sync(&inner.sandbox).await;
        }
        match inner.queue.reap().await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(worker = %inner.config.id, expired = n, "reaped expired leases");
                inner.wake.notify_one();
            }
            Err(e) => tracing::debug!(error = %e, "reap failed"),
        }
    }
}
