//! The collector: reads the queue's events and makes them durable and
//! visible. Results go to the store in one transaction per batch (an
//! idempotent upsert keyed by execution and test case, so a result delivered
//! twice is stored once), then to the progress bus; an execution is marked
//! finished only after all of its results are stored.
//!
//! It also watches the queue for lost data (a Redis restarted empty) and
//! re-enqueues unfinished work from the store when that happens.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::domain::{ExecutionStatus, ResultSummary, TestResult};
use crate::progress::{ExecutionComplete, ProgressEvent, ProgressService};
use crate::queue::{Delivery, Queue, QueueEvent};
use crate::store::Store;

/// Events handled per batch at most.
const BATCH: usize = 512;
/// How long a finished event waits for results still on their way through
/// another host before the execution is marked finished anyway.
const FINISH_WAIT: Duration = Duration::from_secs(10);
/// The least time between two writes while results trickle in. Each write
/// is a transaction, a progress snapshot per execution and a hand-off to the
/// store's thread; a model-bound run settles a few tests at a time, so
/// without this it wrote every 2-3 results (docs/BENCHMARKS.md, sixteenth
/// session). A batch that finishes an execution is never held back, and a
/// linger ends when an execution finishes (the queue says when it can).
const LINGER: Duration = Duration::from_millis(5);

/// What the collector remembers of an execution while it runs.
struct Seen {
    progress_updates: bool,
}

/// A finished event whose results are not all stored yet (another host is
/// storing them).
struct Deferred {
    delivery: Delivery,
    since: Instant,
}

pub struct Collector {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub progress: Arc<ProgressService>,
    /// Names this host in the queue's consumer group.
    pub consumer: String,
    /// Called when the queue lost its data, to re-enqueue from the store.
    pub recover: RecoverFn,
    /// Set while a batch is being stored, so a stopping host can wait for it.
    pub busy: Arc<AtomicBool>,
    /// Set when an execution could not be queued (the queue was down): it
    /// is queued from the store once the queue answers again.
    pub recover_pending: Arc<AtomicBool>,
    /// What the deployment's workers hold back (progress messages say so).
    pub admissions: super::Admissions,
    /// Time from settle to durable, per result.
    pub lag: super::DurableLag,
}

/// Re-enqueues unfinished executions from the store.
pub type RecoverFn = Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

impl Collector {
    /// Runs until the runtime stops.
    pub async fn run(self) {
        let mut seen: HashMap<Uuid, Seen> = HashMap::new();
        let mut deferred: Vec<Deferred> = Vec::new();
        let mut backoff = Duration::from_millis(50);
        let mut last_epoch_check = Instant::now();
        let mut last_write = Instant::now();
        loop {
            if last_epoch_check.elapsed() >= Duration::from_secs(1) {
                last_epoch_check = Instant::now();
                self.check_epoch().await;
            }
            let wait = if deferred.is_empty() { Duration::from_millis(500) } else { Duration::from_millis(50) };
            let batch = match self.queue.read_events(&self.consumer, BATCH, wait).await {
                Ok(batch) => {
                    backoff = Duration::from_millis(50);
                    batch
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "reading queue events failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            // Busy from here: a stopping host waits for a lingering batch too.
            self.busy.store(true, Ordering::SeqCst);
            let batch = self.linger(batch, last_write).await;
            if !batch.is_empty() {
                last_write = Instant::now();
            }
            let mut since: HashMap<String, Instant> = HashMap::new();
            let mut retry = Vec::with_capacity(deferred.len());
            for d in std::mem::take(&mut deferred) {
                since.insert(d.delivery.id.clone(), d.since);
                retry.push(d.delivery);
            }
            retry.extend(batch);
            self.handle(retry, &mut seen, &mut deferred, &since).await;
            self.busy.store(false, Ordering::SeqCst);
        }
    }

    /// `batch`, with whatever else arrives until [`LINGER`] after the last
    /// write, when the batch is partial and finishes no execution.
    async fn linger(&self, mut batch: Vec<Delivery>, last_write: Instant) -> Vec<Delivery> {
        let finishes = |d: &Delivery| matches!(d.event, QueueEvent::Finished { .. });
        if batch.is_empty() || batch.len() >= BATCH || batch.iter().any(finishes) {
            return batch;
        }
        let until = last_write + LINGER;
        if until <= Instant::now() {
            return batch;
        }
        self.queue.linger_until(until).await;
        match self.queue.read_events(&self.consumer, BATCH - batch.len(), Duration::ZERO).await {
            Ok(more) => batch.extend(more),
            // Read again on the next turn; this batch is written now.
            Err(e) => tracing::debug!(error = %e, "reading more queue events failed"),
        }
        batch
    }

    async fn check_epoch(&self) {
        match self.queue.epoch_intact().await {
            Ok(true) => {
                if self.recover_pending.swap(false, Ordering::SeqCst) {
                    tracing::info!("the queue answers again: queuing what could not be queued");
                    (self.recover)().await;
                }
            }
            Ok(false) => {
                tracing::warn!(
                    "the queue lost its data (Redis restarted empty?): re-enqueuing unfinished work from the store"
                );
                (self.recover)().await;
                if let Err(e) = self.queue.mark_epoch().await {
                    tracing::warn!(error = %e, "could not mark the queue's epoch");
                }
            }
            Err(e) => tracing::debug!(error = %e, "epoch check failed"),
        }
    }

    async fn handle(
        &self,
        deliveries: Vec<Delivery>,
        seen: &mut HashMap<Uuid, Seen>,
        deferred: &mut Vec<Deferred>,
        since: &HashMap<String, Instant>,
    ) {
        if deliveries.is_empty() {
            return;
        }
        // 1. Every result of the batch, stored in one transaction.
        let mut results: Vec<TestResult> = Vec::new();
        for d in &deliveries {
            match &d.event {
                QueueEvent::Settled { result } => results.push(TestResult::clone(result)),
                QueueEvent::Unrun { execution_id, status, reason, tests } => results.extend(tests.iter().map(|t| {
                    TestResult::unrun(*execution_id, t.test_case_id, t.test_case_name.clone(), *status, reason.clone())
                })),
                _ => {}
            }
        }
        // Every event read while the previous batch was being written is in
        // this one: under load, batches grow and commits stay few.
        if let Err(error) = self.store.put_results(&results).await {
            // Not acknowledged: the events are read again.
            tracing::error!(error = %error, code = error.code(), results = results.len(), "could not store results; will retry");
            tokio::time::sleep(Duration::from_millis(200)).await;
            return self.unacked(deliveries, deferred);
        }
        let durable_at = crate::queue::now_ms();
        for d in &deliveries {
            let n = match &d.event {
                QueueEvent::Settled { .. } => 1,
                QueueEvent::Unrun { tests, .. } => tests.len() as u64,
                _ => continue,
            };
            self.lag.record(durable_at.saturating_sub(d.at_ms), n);
        }

        // 2. Status changes and events, in order.
        let mut touched: HashSet<Uuid> = HashSet::new();
        let mut done = Vec::with_capacity(deliveries.len());
        let mut results = results.into_iter();
        for d in deliveries {
            match &d.event {
                QueueEvent::Started { execution_id } => {
                    if let Err(e) = self.store.set_execution_status(*execution_id, ExecutionStatus::Running).await {
                        tracing::error!(execution_id = %execution_id, error = %e, "could not mark execution running");
                    }
                    touched.insert(*execution_id);
                }
                QueueEvent::Settled { .. } | QueueEvent::Unrun { .. } => {
                    let n = match &d.event {
                        QueueEvent::Unrun { tests, .. } => tests.len(),
                        _ => 1,
                    };
                    for result in results.by_ref().take(n) {
                        let id = result.execution_id;
                        if self.wants_updates(id, seen).await {
                            self.progress.publish(ProgressEvent::TestComplete(Box::new(result)));
                        }
                        touched.insert(id);
                    }
                }
                QueueEvent::Finished { execution_id, status, summary } => {
                    if !self.all_results_stored(*execution_id, summary).await {
                        let since = since.get(&d.id).copied().unwrap_or_else(Instant::now);
                        if since.elapsed() < FINISH_WAIT {
                            deferred.push(Deferred { delivery: d, since });
                            continue;
                        }
                        tracing::warn!(execution_id = %execution_id, "marking finished with results missing from the store");
                    }
                    self.finish(*execution_id, *status, summary.clone()).await;
                    seen.remove(execution_id);
                    touched.remove(execution_id);
                }
            }
            done.push(d.id);
        }

        // 3. One progress snapshot per execution per batch: the latest wins.
        for id in touched {
            if !self.wants_updates(id, seen).await {
                continue;
            }
            match self.queue.execution(id).await {
                Ok(Some(live)) => self.progress.publish(ProgressEvent::Progress(self.admissions.progress_of(&live))),
                Ok(None) => {}
                Err(e) => tracing::debug!(execution_id = %id, error = %e, "no live progress"),
            }
        }
        if let Err(e) = self.queue.ack(&done).await {
            tracing::warn!(error = %e, "could not acknowledge events; they may be handled twice (results are idempotent)");
        }
    }

    fn unacked(&self, deliveries: Vec<Delivery>, deferred: &mut Vec<Deferred>) {
        // The memory queue does not redeliver: keep them here instead.
        deferred.extend(deliveries.into_iter().map(|delivery| Deferred { delivery, since: Instant::now() }));
    }

    async fn wants_updates(&self, id: Uuid, seen: &mut HashMap<Uuid, Seen>) -> bool {
        if let Some(s) = seen.get(&id) {
            return s.progress_updates;
        }
        let progress_updates = match self.store.execution(id).await {
            Ok(Some(e)) => e.configuration.progress_updates,
            _ => true,
        };
        seen.insert(id, Seen { progress_updates });
        progress_updates
    }

    async fn all_results_stored(&self, id: Uuid, summary: &ResultSummary) -> bool {
        match self.store.result_counts(id).await {
            Ok(counts) => counts.iter().map(|(_, n)| n).sum::<usize>() >= summary.total_tests,
            Err(_) => true,
        }
    }

    async fn finish(&self, id: Uuid, status: ExecutionStatus, summary: ResultSummary) {
        if let Err(e) = self.store.set_execution_status(id, status).await {
            tracing::error!(execution_id = %id, error = %e, "could not store execution status");
        }
        tracing::info!(execution_id = %id, status = status.as_str(), passed = summary.passed_tests, failed = summary.failed_tests, "execution finished");
        let final_progress = super::final_progress(id, status, &summary);
        self.progress.publish(ProgressEvent::Progress(final_progress));
        let large = summary.total_tests >= super::heap::TRIM_AFTER_TESTS;
        self.progress.publish(ProgressEvent::ExecutionComplete(ExecutionComplete {
            execution_id: id,
            status,
            summary,
        }));
        if large {
            super::heap::release_freed_memory().await;
        }
    }
}
