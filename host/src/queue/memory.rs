//! The in-memory queue: the embedded default, for one process.
//!
//! One mutex over plain collections; every transition is one critical
//! section, which is what makes it atomic. No `.await` is held inside it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    ClaimRequest, Delivery, ExecutionEntry, Finished, Halt, Hold, Job, Lease, LeaseId, LeaseState, LiveExecution,
    Queue, QueueCounts, QueueError, QueueEvent, QueueSettings, Retried, UnrunTest, now_ms,
};
use crate::domain::{ResultSummary, TestResult, TestStatus};

/// Order key: higher priority first, then arrival.
type Key = (std::cmp::Reverse<u8>, u64);

struct Execution {
    key: Key,
    tenant: Option<i64>,
    max_concurrent: u32,
    total: u32,
    summary: ResultSummary,
    settled: HashSet<i64>,
    waiting: VecDeque<(Job, Instant)>,
    running: u32,
    halt: Option<Halt>,
    started_at_ms: Option<u64>,
    expiries: HashMap<i64, u32>,
    /// When it last got a slot (or was queued): the start of its ageing.
    waiting_since: Instant,
}

struct LeaseRecord {
    job: Job,
    expires: Instant,
}

#[derive(Default)]
struct Inner {
    executions: HashMap<Uuid, Execution>,
    /// Executions with waiting jobs, in claim order.
    ready: BTreeMap<Key, Uuid>,
    leases: HashMap<u64, LeaseRecord>,
    next_token: u64,
    next_seq: u64,
    /// (id, unix ms when added, event).
    events: VecDeque<(u64, u64, QueueEvent)>,
    next_event: u64,
    /// `Finished` events in `events`, not yet read.
    unread_finishes: usize,
    reaped: u64,
    workers: HashMap<String, Instant>,
    recent_waits_ms: VecDeque<f64>,
    /// Worker -> what it holds back, and until when that stands.
    admissions: HashMap<String, (Option<Hold>, Instant)>,
}

pub struct MemoryQueue {
    inner: Mutex<Inner>,
    events_ready: Notify,
    /// Wakes a lingering collector when an execution finishes.
    execution_finished: Notify,
    settings: QueueSettings,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new(QueueSettings::default())
    }
}

impl MemoryQueue {
    pub fn new(settings: QueueSettings) -> Self {
        Self { inner: Mutex::default(), events_ready: Notify::new(), execution_finished: Notify::new(), settings }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a transition; wakes the event reader if it produced events,
    /// and a lingering one if an execution finished.
    fn transition<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let (out, produced, finished) = {
            let mut inner = self.lock();
            let (events, finishes) = (inner.next_event, inner.unread_finishes);
            let out = f(&mut inner);
            // Transitions only add events; reading takes them away.
            (out, inner.next_event != events, inner.unread_finishes > finishes)
        };
        if produced {
            self.events_ready.notify_one();
        }
        if finished {
            self.execution_finished.notify_waiters();
        }
        out
    }
}

impl Inner {
    fn emit(&mut self, event: QueueEvent) {
        self.next_event += 1;
        self.events.push_back((self.next_event, now_ms(), event));
    }

    /// Settles waiting tests without running them.
    fn halt(&mut self, id: Uuid, halt: Halt) {
        let Some(execution) = self.executions.get_mut(&id) else { return };
        if execution.halt.is_some() {
            return;
        }
        execution.halt = Some(halt);
        let key = execution.key;
        let (status, reason) = halt.unrun();
        let mut tests = Vec::new();
        for (job, _) in execution.waiting.drain(..) {
            if execution.settled.insert(job.test_case_id) {
                execution.summary.add_unrun(status);
                tests.push(UnrunTest { test_case_id: job.test_case_id, test_case_name: job.test_case_name });
            }
        }
        self.ready.remove(&key);
        if !tests.is_empty() {
            self.emit(QueueEvent::Unrun { execution_id: id, status, reason: reason.to_string(), tests });
        }
        self.finish_if_settled(id);
    }

    fn finish_if_settled(&mut self, id: Uuid) {
        let Some(execution) = self.executions.get(&id) else { return };
        if execution.summary.total_tests < execution.total as usize {
            return;
        }
        if let Some(execution) = self.executions.remove(&id) {
            self.ready.remove(&execution.key);
            self.unread_finishes += 1;
            self.emit(QueueEvent::Finished {
                execution_id: id,
                status: Halt::final_status(execution.halt),
                summary: execution.summary,
            });
        }
    }

    /// Is `lease` live and the caller's?
    fn holds(&self, lease: &LeaseId) -> bool {
        self.leases
            .get(&lease.token)
            .is_some_and(|r| r.job.execution_id == lease.execution_id && r.job.test_case_id == lease.test_case_id)
    }

    /// Takes the lease if it is the caller's.
    fn take_lease(&mut self, lease: &LeaseId) -> Option<LeaseRecord> {
        if !self.holds(lease) {
            return None;
        }
        let record = self.leases.remove(&lease.token)?;
        if let Some(execution) = self.executions.get_mut(&record.job.execution_id) {
            execution.running = execution.running.saturating_sub(1);
        }
        Some(record)
    }

    fn requeue_front(&mut self, job: Job) {
        let Some(execution) = self.executions.get_mut(&job.execution_id) else { return };
        let (key, id) = (execution.key, job.execution_id);
        execution.waiting.push_front((job, Instant::now()));
        self.ready.insert(key, id);
    }
}

#[async_trait::async_trait]
impl Queue for MemoryQueue {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn enqueue(&self, entry: ExecutionEntry, jobs: Vec<Job>) -> Result<bool, QueueError> {
        Ok(self.transition(|inner| {
            if inner.executions.contains_key(&entry.execution_id) {
                return false;
            }
            inner.next_seq += 1;
            let key = (std::cmp::Reverse(entry.priority), inner.next_seq);
            let now = Instant::now();
            let has_jobs = !jobs.is_empty();
            inner.executions.insert(
                entry.execution_id,
                Execution {
                    key,
                    tenant: entry.tenant_id,
                    max_concurrent: entry.max_concurrent_tests.max(1),
                    total: entry.total_tests,
                    summary: entry.already_settled,
                    settled: HashSet::new(),
                    waiting: jobs.into_iter().map(|j| (j, now)).collect(),
                    running: 0,
                    halt: None,
                    started_at_ms: None,
                    expiries: HashMap::new(),
                    waiting_since: now,
                },
            );
            if has_jobs {
                inner.ready.insert(key, entry.execution_id);
            }
            // Everything already settled (recovered after the last write).
            inner.finish_if_settled(entry.execution_id);
            true
        }))
    }

    async fn claim_with(&self, _worker: &str, request: &ClaimRequest) -> Result<Vec<Lease>, QueueError> {
        let lease_for = self.settings.lease;
        Ok(self.transition(|inner| {
            let now = Instant::now();
            let mut leases = Vec::new();
            let mut started = Vec::new();
            let Inner { executions, ready, leases: held, next_token, recent_waits_ms, .. } = inner;
            let order = claim_order(ready, executions, self.settings.priority_aging, now);
            let mut slots = Slots::of_claimer(request, executions);
            // First within the fair share; then, if a single execution is
            // left with claimable work, beyond it (nobody else waits).
            for fair in [true, false] {
                if !fair {
                    let claimable = order
                        .iter()
                        .filter(|(_, id)| {
                            executions
                                .get(id)
                                .is_some_and(|e| e.claimable(request.min_priority) && slots.tenant_may_run(e.tenant))
                        })
                        .count();
                    if request.share_cap.is_none() || claimable != 1 {
                        break;
                    }
                }
                let cap = request.share_cap.filter(|_| fair);
                while leases.len() < request.max {
                    let Some((id, run)) = slots.next(&order, executions, request, cap) else { break };
                    let Some(execution) = executions.get_mut(&id) else { break };
                    for _ in 0..run {
                        let mine = slots.by_execution.get(&id).copied().unwrap_or(0);
                        if leases.len() >= request.max
                            || !execution.claimable(request.min_priority)
                            || cap.is_some_and(|cap| mine >= cap)
                            || !slots.tenant_may_run(execution.tenant)
                        {
                            break;
                        }
                        let Some((job, since)) = execution.waiting.pop_front() else { break };
                        execution.running += 1;
                        execution.waiting_since = now;
                        slots.took(id, execution.tenant);
                        if execution.started_at_ms.is_none() {
                            execution.started_at_ms = Some(now_ms());
                            started.push(id);
                        }
                        *next_token += 1;
                        held.insert(*next_token, LeaseRecord { job: job.clone(), expires: now + lease_for });
                        if recent_waits_ms.len() == 1000 {
                            recent_waits_ms.pop_front();
                        }
                        recent_waits_ms.push_back(since.elapsed().as_secs_f64() * 1e3);
                        leases.push(Lease { job, token: *next_token });
                    }
                }
            }
            ready.retain(|_, id| executions.get(id).is_some_and(|e| !e.waiting.is_empty()));
            for execution_id in started {
                inner.emit(QueueEvent::Started { execution_id });
            }
            leases
        }))
    }

    async fn heartbeat(&self, worker: &str, tokens: &[u64]) -> Result<Vec<LeaseState>, QueueError> {
        let lease_for = self.settings.lease;
        let mut inner = self.lock();
        let now = Instant::now();
        inner.workers.insert(worker.to_string(), now);
        let Inner { leases, executions, .. } = &mut *inner;
        Ok(tokens
            .iter()
            .map(|token| match leases.get_mut(token) {
                None => LeaseState::Lost,
                Some(record) => {
                    record.expires = now + lease_for;
                    match executions.get(&record.job.execution_id).and_then(|e| e.halt) {
                        Some(halt) => LeaseState::Halted(halt),
                        None => LeaseState::Held,
                    }
                }
            })
            .collect())
    }

    async fn set_admission(&self, worker: &str, hold: Option<&Hold>) -> Result<(), QueueError> {
        let until = Instant::now() + self.settings.lease;
        self.lock().admissions.insert(worker.to_string(), (hold.cloned(), until));
        Ok(())
    }

    async fn admissions(&self) -> Result<Vec<Option<Hold>>, QueueError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.admissions.retain(|_, (_, until)| *until > now);
        Ok(inner.admissions.values().map(|(hold, _)| hold.clone()).collect())
    }

    async fn finish(
        &self,
        lease: &LeaseId,
        result: &TestResult,
        halt_on_failure: bool,
    ) -> Result<Finished, QueueError> {
        Ok(self.transition(|inner| {
            let Some(record) = inner.take_lease(lease) else { return Finished::Stale };
            let id = record.job.execution_id;
            let Some(execution) = inner.executions.get_mut(&id) else { return Finished::Stale };
            if !execution.settled.insert(record.job.test_case_id) {
                return Finished::Duplicate;
            }
            execution.summary.add(result);
            let halt = halt_on_failure && result.status.is_failure() && execution.halt.is_none();
            inner.emit(QueueEvent::Settled { result: Box::new(result.clone()) });
            if halt {
                inner.halt(id, Halt::StoppedOnFailure);
            }
            inner.finish_if_settled(id);
            Finished::Recorded { halted: halt }
        }))
    }

    async fn retry(&self, lease: &LeaseId, job: Job) -> Result<Retried, QueueError> {
        Ok(self.transition(|inner| {
            if !inner.holds(lease) {
                return Retried::Stale;
            }
            // A halted execution keeps the lease, so the caller can still
            // settle the test with the result it has.
            if inner.executions.get(&job.execution_id).is_none_or(|e| e.halt.is_some()) {
                return Retried::Halted;
            }
            inner.take_lease(lease);
            inner.requeue_front(job);
            Retried::Requeued
        }))
    }

    async fn halt(&self, execution_id: Uuid, halt: Halt) -> Result<bool, QueueError> {
        Ok(self.transition(|inner| {
            if !inner.executions.contains_key(&execution_id) {
                return false;
            }
            inner.halt(execution_id, halt);
            true
        }))
    }

    async fn reap(&self) -> Result<u64, QueueError> {
        let max_deliveries = self.settings.max_deliveries;
        Ok(self.transition(|inner| {
            let now = Instant::now();
            let expired: Vec<u64> = inner.leases.iter().filter(|(_, r)| r.expires <= now).map(|(t, _)| *t).collect();
            for token in &expired {
                let Some(record) = inner.leases.remove(token) else { continue };
                let job = record.job;
                let id = job.execution_id;
                let Some(execution) = inner.executions.get_mut(&id) else { continue };
                execution.running = execution.running.saturating_sub(1);
                if execution.settled.contains(&job.test_case_id) {
                    continue;
                }
                let expiries = execution.expiries.entry(job.test_case_id).or_default();
                *expiries += 1;
                let unrun = match execution.halt {
                    Some(halt) => Some((TestStatus::Cancelled, halt.aborted_reason().to_string())),
                    None if *expiries >= max_deliveries => Some((TestStatus::Error, abandoned_reason(*expiries))),
                    None => None,
                };
                match unrun {
                    Some((status, reason)) => {
                        execution.settled.insert(job.test_case_id);
                        execution.summary.add_unrun(status);
                        let tests =
                            vec![UnrunTest { test_case_id: job.test_case_id, test_case_name: job.test_case_name }];
                        inner.emit(QueueEvent::Unrun { execution_id: id, status, reason, tests });
                        inner.finish_if_settled(id);
                    }
                    None => inner.requeue_front(job),
                }
            }
            inner.reaped += expired.len() as u64;
            expired.len() as u64
        }))
    }

    async fn read_events(&self, _consumer: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so an event pushed in between is
            // not missed.
            let ready = self.events_ready.notified();
            {
                let mut inner = self.lock();
                if !inner.events.is_empty() {
                    let n = inner.events.len().min(max.max(1));
                    let read: Vec<Delivery> = inner
                        .events
                        .drain(..n)
                        .map(|(id, at_ms, event)| Delivery { id: id.to_string(), event, at_ms })
                        .collect();
                    let finishes = read.iter().filter(|d| matches!(d.event, QueueEvent::Finished { .. })).count();
                    inner.unread_finishes = inner.unread_finishes.saturating_sub(finishes);
                    return Ok(read);
                }
            }
            if tokio::time::timeout_at(deadline, ready).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn linger_until(&self, until: Instant) {
        // Registered before looking, so a finish in between is not missed.
        let finished = self.execution_finished.notified();
        let mut finished = std::pin::pin!(finished);
        finished.as_mut().enable();
        if self.lock().unread_finishes == 0 {
            let _ = tokio::time::timeout_at(until.into(), finished).await;
        }
    }

    async fn ack(&self, _ids: &[String]) -> Result<(), QueueError> {
        // Events are handed out once; there is nothing to redeliver.
        Ok(())
    }

    async fn execution(&self, execution_id: Uuid) -> Result<Option<LiveExecution>, QueueError> {
        let inner = self.lock();
        Ok(inner.executions.get(&execution_id).map(|e| live(execution_id, e)))
    }

    async fn executions(&self) -> Result<Vec<LiveExecution>, QueueError> {
        let inner = self.lock();
        Ok(inner.executions.iter().map(|(id, e)| live(*id, e)).collect())
    }

    async fn counts(&self) -> Result<QueueCounts, QueueError> {
        let mut inner = self.lock();
        let alive_since = Instant::now().checked_sub(self.settings.lease).unwrap_or_else(Instant::now);
        inner.workers.retain(|_, seen| *seen >= alive_since);
        let mut counts = QueueCounts {
            active: inner.leases.len() as u64,
            executions: inner.executions.len() as u64,
            reaped: inner.reaped,
            workers: inner.workers.len() as u64,
            event_lag: inner.events.len() as u64,
            ..QueueCounts::default()
        };
        for e in inner.executions.values() {
            let n = e.waiting.len() as u64;
            counts.waiting += n;
            counts.waiting_by_class[QueueCounts::class_index(e.key.0.0)] += n;
        }
        let waits = &inner.recent_waits_ms;
        if !waits.is_empty() {
            counts.wait_ms_avg = waits.iter().sum::<f64>() / waits.len() as f64;
            counts.wait_ms_max = waits.iter().copied().fold(0.0, f64::max);
        }
        Ok(counts)
    }

    async fn epoch_intact(&self) -> Result<bool, QueueError> {
        Ok(true)
    }

    async fn mark_epoch(&self) -> Result<(), QueueError> {
        Ok(())
    }
}

/// Ready executions in claim order: by priority, aged by how long each has
/// waited since it last got a slot, then by arrival.
/// Ready executions in claim order, each with its effective priority: its
/// own plus one per ageing step waited (at most 10), then arrival.
fn claim_order(
    ready: &BTreeMap<Key, Uuid>,
    executions: &HashMap<Uuid, Execution>,
    aging: Option<Duration>,
    now: Instant,
) -> Vec<(u8, Uuid)> {
    let Some(step) = aging.filter(|s| !s.is_zero()) else {
        return ready.iter().map(|((std::cmp::Reverse(priority), _), id)| (*priority, *id)).collect();
    };
    let mut order: Vec<(u8, u64, Uuid)> = ready
        .iter()
        .map(|((std::cmp::Reverse(priority), seq), id)| {
            let waited = executions.get(id).map_or(Duration::ZERO, |e| now.saturating_duration_since(e.waiting_since));
            let steps = (waited.as_nanos() / step.as_nanos()).min(10) as u8;
            (priority.saturating_add(steps).min(10), *seq, *id)
        })
        .collect();
    order.sort_by_key(|(effective, seq, _)| (std::cmp::Reverse(*effective), *seq));
    order.into_iter().map(|(effective, _, id)| (effective, id)).collect()
}

impl Execution {
    /// Whether a claim at `min_priority` may take a test of it now.
    fn claimable(&self, min_priority: u8) -> bool {
        !self.waiting.is_empty() && self.running < self.max_concurrent && self.key.0.0 >= min_priority
    }
}

/// The claimer's slots during one claim: what it held of each execution
/// and each tenant when it asked, plus what the claim has taken so far.
struct Slots {
    by_execution: HashMap<Uuid, u32>,
    by_tenant: HashMap<Option<i64>, u32>,
    /// With a tenant allowance: each tenant's tests running anywhere.
    running_by_tenant: HashMap<Option<i64>, u32>,
    tenant_cap: Option<u32>,
}

impl Slots {
    fn of_claimer(request: &ClaimRequest, executions: &HashMap<Uuid, Execution>) -> Self {
        let mut slots = Self {
            by_execution: HashMap::new(),
            by_tenant: HashMap::new(),
            running_by_tenant: HashMap::new(),
            tenant_cap: request.tenant_cap,
        };
        if request.tenant_cap.is_some() {
            for e in executions.values().filter(|e| e.tenant.is_some()) {
                *slots.running_by_tenant.entry(e.tenant).or_default() += e.running;
            }
        }
        for (id, n) in &request.held {
            *slots.by_execution.entry(*id).or_default() += n;
            if let Some(e) = executions.get(id) {
                *slots.by_tenant.entry(e.tenant).or_default() += n;
            }
        }
        slots
    }

    fn took(&mut self, id: Uuid, tenant: Option<i64>) {
        *self.by_execution.entry(id).or_default() += 1;
        *self.by_tenant.entry(tenant).or_default() += 1;
        if self.tenant_cap.is_some() {
            *self.running_by_tenant.entry(tenant).or_default() += 1;
        }
    }

    /// Whether `tenant` is within its allowance of running tests.
    fn tenant_may_run(&self, tenant: Option<i64>) -> bool {
        match (tenant, self.tenant_cap) {
            (Some(_), Some(cap)) => self.running_by_tenant.get(&tenant).copied().unwrap_or(0) < cap,
            _ => true,
        }
    }

    /// The execution the next slot goes to: among the claimable ones of the
    /// highest effective priority (under `cap` of this claimer's slots, if
    /// any), the first to arrive of the tenant holding the fewest of this
    /// claimer's slots. One tenant's flood of executions thus cannot keep
    /// another tenant's run waiting at the same priority.
    ///
    /// Also how many slots in a row it keeps getting (while it stays
    /// claimable): until its tenant holds as many as the next tenant at
    /// that priority, at least one; with no other tenant there, all of
    /// them. This keeps a claim of many slots one scan, not one per slot.
    fn next(
        &self,
        order: &[(u8, Uuid)],
        executions: &HashMap<Uuid, Execution>,
        request: &ClaimRequest,
        cap: Option<u32>,
    ) -> Option<(Uuid, usize)> {
        let claimable = |id: &Uuid| {
            let mine = self.by_execution.get(id).copied().unwrap_or(0);
            executions.get(id).filter(|e| {
                e.claimable(request.min_priority) && cap.is_none_or(|cap| mine < cap) && self.tenant_may_run(e.tenant)
            })
        };
        let holds = |tenant: &Option<i64>| self.by_tenant.get(tenant).copied().unwrap_or(0);
        let mut best: Option<(u8, u32, Uuid, Option<i64>)> = None;
        for (rank, id) in order {
            let Some(e) = claimable(id) else { continue };
            let tenant_holds = holds(&e.tenant);
            match best {
                None => best = Some((*rank, tenant_holds, *id, e.tenant)),
                Some((best_rank, ..)) if *rank < best_rank => break,
                Some((_, fewest, ..)) if tenant_holds < fewest => best = Some((*rank, tenant_holds, *id, e.tenant)),
                Some(_) => {}
            }
        }
        let (rank, fewest, id, tenant) = best?;
        let next_tenant = order
            .iter()
            .take_while(|(r, _)| *r == rank)
            .filter_map(|(_, other)| claimable(other))
            .filter(|e| e.tenant != tenant)
            .map(|e| holds(&e.tenant))
            .min();
        let run = next_tenant.map_or(usize::MAX, |other| other.saturating_sub(fewest).max(1) as usize);
        Some((id, run))
    }
}

fn live(execution_id: Uuid, e: &Execution) -> LiveExecution {
    LiveExecution {
        execution_id,
        priority: e.key.0.0,
        total_tests: e.total,
        summary: e.summary.clone(),
        running: e.running,
        waiting: e.waiting.len() as u32,
        halt: e.halt,
        started_at_ms: e.started_at_ms,
    }
}

/// The error of a test whose lease expired `n` times.
pub(crate) fn abandoned_reason(n: u32) -> String {
    format!("lease expired {n} times: the worker running this test stopped responding each time")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::queue::conformance::{job, lease_settings};

    /// A lingering collector is woken when an execution finishes, and does
    /// not linger at all while a finish waits to be read.
    #[tokio::test]
    async fn a_linger_ends_when_an_execution_finishes() {
        let queue = Arc::new(MemoryQueue::new(lease_settings()));
        let id = Uuid::new_v4();
        let entry = ExecutionEntry {
            execution_id: id,
            tenant_id: None,
            priority: 5,
            max_concurrent_tests: 1,
            total_tests: 1,
            already_settled: ResultSummary::default(),
        };
        assert!(queue.enqueue(entry, vec![job(id, 1)]).await.unwrap());
        let lease = queue.claim("w1", 1).await.unwrap().pop().unwrap();
        let far = Instant::now() + Duration::from_secs(600);
        let lingering = tokio::spawn({
            let queue = queue.clone();
            async move { queue.linger_until(far).await }
        });
        // The linger starts waiting before the test is settled.
        tokio::task::yield_now().await;
        assert!(!lingering.is_finished());
        let result = TestResult::unrun(id, 1, "t1".into(), TestStatus::Passed, String::new());
        queue.finish(&lease.id(), &result, false).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), lingering)
            .await
            .expect("the linger ended when the execution finished")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), queue.linger_until(far))
            .await
            .expect("no linger while a finish waits to be read");
    }
}
