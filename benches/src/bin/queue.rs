//! The queue alone, with no-op jobs: the in-memory queue and the Redis queue
//! side by side in one run (DESIGN.md section 10).
//!
//! `cargo run --release -p cardrun-benches --bin queue [JOBS]`
//!
//! Starts a private `redis-server` on a free port (persistence off) unless
//! `REDIS_URL` is set. For each backend it prints:
//! - the time to queue one 1,000-test execution (median of 10);
//! - jobs/s through claim + finish: JOBS no-op jobs (default 50,000) in
//!   executions of 1,000, claimed in batches of 32 by 16 tasks that finish
//!   each job, while one task reads and acknowledges the result events as a
//!   host does;
//! - claim latency p50/p99 over 2,000 single-job claims.
//!
//! BullMQ on the same Redis: `benches/bullmq` (see its README).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cardrun::domain::{ResultSummary, TestConfiguration, TestResult, TestStatus};
use cardrun::queue::redis::{RedisConfig, RedisQueue};
use cardrun::queue::{ExecutionEntry, Job, Lease, MemoryQueue, Queue, QueueSettings};
use cardrun_benches::{job, machine, percentiles};
use uuid::Uuid;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async_main());
}

async fn async_main() {
    let jobs: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(50_000);
    println!("machine: {}", machine());
    let (_server, url) = match std::env::var("REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let server = cardrun_benches::redis_server();
            let url = server.url.clone();
            (Some(server), url)
        }
    };
    println!("redis: {url}\n");
    println!("{:<8} {:>16} {:>14} {:>12} {:>12}", "backend", "queue 1,000 ms", "jobs/s", "claim p50", "claim p99");
    let memory: Arc<dyn Queue> = Arc::new(MemoryQueue::new(QueueSettings::default()));
    report("memory", &memory, jobs).await;
    let config = RedisConfig::single(&url, &format!("bench-{}", Uuid::new_v4().simple()));
    let redis: Arc<dyn Queue> =
        Arc::new(RedisQueue::connect(&config, QueueSettings::default()).await.expect("redis answers"));
    report("redis", &redis, jobs).await;
}

async fn report(name: &str, q: &Arc<dyn Queue>, jobs: usize) {
    let enqueue = enqueue_time(q).await;
    let rate = throughput(q, jobs).await;
    let (p50, p99) = claim_latency(q).await;
    println!(
        "{name:<8} {:>16.2} {:>14.0} {:>9.0} us {:>9.0} us",
        enqueue.as_secs_f64() * 1e3,
        rate,
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
}

async fn execution(q: &Arc<dyn Queue>, n: usize, max: u32) -> Uuid {
    let id = Uuid::new_v4();
    let configuration = Arc::new(TestConfiguration::default());
    let jobs: Vec<Job> = (0..n as i64).map(|i| job(id, i, &configuration)).collect();
    let entry = ExecutionEntry {
        execution_id: id,
        tenant_id: None,
        priority: 5,
        max_concurrent_tests: max,
        total_tests: n as u32,
        already_settled: ResultSummary::default(),
    };
    assert!(q.enqueue(entry, jobs).await.expect("enqueue"));
    id
}

async fn enqueue_time(q: &Arc<dyn Queue>) -> Duration {
    let mut samples = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        ids.push(execution(q, 1_000, 256).await);
        samples.push(started.elapsed());
    }
    for id in ids {
        q.halt(id, cardrun::queue::Halt::Cancelled).await.expect("halt");
    }
    drain_events(q).await;
    percentiles(&mut samples).0
}

async fn drain_events(q: &Arc<dyn Queue>) {
    loop {
        let batch = q.read_events("bench", 1000, Duration::from_millis(50)).await.expect("events");
        if batch.is_empty() {
            return;
        }
        let ids: Vec<String> = batch.into_iter().map(|d| d.id).collect();
        q.ack(&ids).await.expect("ack");
    }
}

async fn throughput(q: &Arc<dyn Queue>, jobs: usize) -> f64 {
    let per_execution = 1_000.min(jobs);
    for _ in 0..jobs.div_ceil(per_execution) {
        execution(q, per_execution, 256).await;
    }
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (q, stop) = (q.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let batch = q.read_events("bench", 1000, Duration::from_millis(20)).await.expect("events");
                let ids: Vec<String> = batch.into_iter().map(|d| d.id).collect();
                q.ack(&ids).await.expect("ack");
            }
        })
    };
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (q, done) = (q.clone(), done.clone());
        tasks.spawn(async move {
            loop {
                let leases = q.claim("bench", 32).await.expect("claim");
                if leases.is_empty() {
                    return;
                }
                for lease in leases {
                    finish_passed(&q, &lease).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let _ = reader.await;
    drain_events(q).await;
    done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

async fn claim_latency(q: &Arc<dyn Queue>) -> (Duration, Duration) {
    execution(q, 2_000, 256).await;
    let mut samples = Vec::with_capacity(2_000);
    loop {
        let started = Instant::now();
        let mut leases = q.claim("bench", 1).await.expect("claim");
        samples.push(started.elapsed());
        let Some(lease) = leases.pop() else { break };
        finish_passed(q, &lease).await;
    }
    drain_events(q).await;
    percentiles(&mut samples)
}

/// Settles a no-op job as passed.
async fn finish_passed(q: &Arc<dyn Queue>, lease: &Lease) {
    let job = &lease.job;
    let result = TestResult::unrun(
        job.execution_id,
        job.test_case_id,
        job.test_case_name.clone(),
        TestStatus::Passed,
        String::new(),
    );
    q.finish(&lease.id(), &result, false).await.expect("finish");
}
