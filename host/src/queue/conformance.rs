//! Behaviour every [`Queue`] implementation must show: the contract of
//! `queue/mod.rs` as reusable checks. Each check takes a fresh, empty queue
//! whose lease lasts [`LEASE_MS`]; [`run_all`] runs them all.
//!
//! Compiled for the crate's own tests and, with the `conformance` feature,
//! for the integration tests that run it on real Redis servers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::*;
use crate::domain::{ResultSummary, TestConfiguration, TestResult, TestStatus};

/// The lease of queues under test: short, so expiry is quick to test.
pub const LEASE_MS: u64 = 1000;

pub fn lease_settings() -> QueueSettings {
    QueueSettings { lease: Duration::from_millis(LEASE_MS), max_deliveries: 2, priority_aging: None }
}

/// A job of test case `n` of `execution_id`, echo and no assertions.
pub fn job(execution_id: Uuid, n: i64) -> Job {
    Job {
        tenant_id: None,
        execution_id,
        test_case_id: n,
        test_case_name: format!("t{n}"),
        attempt: 0,
        adapter: "echo".into(),
        model: "echo".into(),
        prompt: String::new(),
        chat: vec![],
        options: Default::default(),
        variables: vec![],
        expected_output: None,
        assertions: vec![],
        plugin_versions: vec![],
        threshold: None,
        transform: None,
        logprobs: false,
        grader: None,
        price: None,
        configuration: Arc::new(TestConfiguration::default()),
        previous_attempts: vec![],
        queued_at_ms: None,
    }
}

fn entry(id: Uuid, priority: u8, max: u32, total: u32) -> ExecutionEntry {
    ExecutionEntry {
        execution_id: id,
        tenant_id: None,
        priority,
        max_concurrent_tests: max,
        total_tests: total,
        already_settled: ResultSummary::default(),
    }
}

async fn enqueue(q: &dyn Queue, id: Uuid, priority: u8, max: u32, tests: std::ops::RangeInclusive<i64>) {
    let jobs: Vec<Job> = tests.map(|n| job(id, n)).collect();
    let total = jobs.len() as u32;
    assert!(q.enqueue(entry(id, priority, max, total), jobs).await.unwrap());
}

fn result(lease: &Lease, status: TestStatus) -> TestResult {
    let mut r = TestResult::unrun(
        lease.job.execution_id,
        lease.job.test_case_id,
        lease.job.test_case_name.clone(),
        status,
        String::new(),
    );
    r.error = None;
    r.execution_time_ms = 10;
    r
}

async fn claim_one(q: &dyn Queue) -> Option<Lease> {
    let mut leases = q.claim("w1", 1).await.unwrap();
    assert!(leases.len() <= 1);
    leases.pop()
}

/// Every event available now (the reader waits briefly for the first).
async fn events(q: &dyn Queue) -> Vec<QueueEvent> {
    let mut all = Vec::new();
    loop {
        let batch = q.read_events("host-1", 100, Duration::from_millis(100)).await.unwrap();
        if batch.is_empty() {
            return all;
        }
        let ids: Vec<String> = batch.iter().map(|d| d.id.clone()).collect();
        q.ack(&ids).await.unwrap();
        all.extend(batch.into_iter().map(|d| d.event));
    }
}

fn finished_of(events: &[QueueEvent], id: Uuid) -> Option<(ExecutionStatus, ResultSummary)> {
    events.iter().find_map(|e| match e {
        QueueEvent::Finished { execution_id, status, summary } if *execution_id == id => {
            Some((*status, summary.clone()))
        }
        _ => None,
    })
}

pub async fn priority_then_fifo(q: &dyn Queue) {
    let (low, high_a, high_b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    enqueue(q, low, 1, 10, 1..=1).await;
    enqueue(q, high_a, 8, 10, 2..=3).await;
    enqueue(q, high_b, 8, 10, 4..=4).await;
    let mut order = Vec::new();
    while let Some(l) = claim_one(q).await {
        order.push(l.job.test_case_id);
    }
    assert_eq!(order, vec![2, 3, 4, 1]);
}

pub async fn claims_several_per_call_in_order(q: &dyn Queue) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    enqueue(q, a, 5, 2, 1..=3).await;
    enqueue(q, b, 5, 10, 4..=5).await;
    let leases = q.claim("w1", 10).await.unwrap();
    let ids: Vec<i64> = leases.iter().map(|l| l.job.test_case_id).collect();
    assert_eq!(ids, vec![1, 2, 4, 5], "a stops at its limit of 2; b follows");
    let tokens: std::collections::HashSet<u64> = leases.iter().map(|l| l.token).collect();
    assert_eq!(tokens.len(), 4, "every lease has its own token");
    assert_eq!(leases[0].job, job(a, 1), "the payload arrives whole");
}

pub async fn per_execution_limit_holds_in_claim(q: &dyn Queue) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    enqueue(q, a, 9, 2, 1..=5).await;
    enqueue(q, b, 1, 10, 10..=10).await;
    let first = claim_one(q).await.unwrap();
    let second = claim_one(q).await.unwrap();
    assert_eq!((first.job.execution_id, second.job.execution_id), (a, a));
    // `a` is at its limit, so the lower-priority `b` goes next...
    assert_eq!(claim_one(q).await.unwrap().job.execution_id, b);
    assert!(claim_one(q).await.is_none());
    // ...and finishing one of `a`'s frees exactly one slot.
    assert_eq!(
        q.finish(&first.id(), &result(&first, TestStatus::Passed), false).await.unwrap(),
        Finished::Recorded { halted: false }
    );
    assert_eq!(claim_one(q).await.unwrap().job.test_case_id, 3);
    assert!(claim_one(q).await.is_none());
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.waiting, counts.active, counts.executions), (2, 3, 2));
    assert_eq!(counts.waiting_by_class, [0, 0, 0, 2], "priority 9 is critical");
    let live = q.execution(a).await.unwrap().unwrap();
    assert_eq!((live.total_tests, live.running, live.waiting, live.summary.passed_tests), (5, 2, 2, 1));
    assert!(live.started_at_ms.is_some());
}

pub async fn retry_goes_to_the_head_with_its_attempts(q: &dyn Queue) {
    let a = Uuid::new_v4();
    enqueue(q, a, 5, 1, 1..=2).await;
    let first = claim_one(q).await.unwrap();
    assert!(claim_one(q).await.is_none(), "limit 1");
    let mut next = first.job.clone();
    next.attempt = 1;
    next.previous_attempts.push(Attempt { status: TestStatus::Failed, execution_time_ms: 7, error: None });
    assert_eq!(q.retry(&first.id(), next.clone()).await.unwrap(), Retried::Requeued);
    assert_eq!(q.retry(&first.id(), next.clone()).await.unwrap(), Retried::Stale, "the lease was given back");
    let again = claim_one(q).await.unwrap();
    assert_eq!(again.job, next);
}

pub async fn stale_tokens_are_refused_and_results_recorded_once(q: &dyn Queue) {
    let a = Uuid::new_v4();
    enqueue(q, a, 5, 5, 1..=2).await;
    let lease = claim_one(q).await.unwrap();
    let forged = Lease { token: lease.token.wrapping_add(1000), ..lease.clone() };
    assert_eq!(q.finish(&forged.id(), &result(&lease, TestStatus::Passed), false).await.unwrap(), Finished::Stale);
    let other_test = Lease { job: job(a, 2), ..lease.clone() };
    assert_eq!(q.finish(&other_test.id(), &result(&lease, TestStatus::Passed), false).await.unwrap(), Finished::Stale);
    assert_eq!(q.retry(&forged.id(), lease.job.clone()).await.unwrap(), Retried::Stale);
    assert_eq!(
        q.finish(&lease.id(), &result(&lease, TestStatus::Passed), false).await.unwrap(),
        Finished::Recorded { halted: false }
    );
    assert_eq!(q.finish(&lease.id(), &result(&lease, TestStatus::Passed), false).await.unwrap(), Finished::Stale);
    let settled = events(q).await.iter().filter(|e| matches!(e, QueueEvent::Settled { .. })).count();
    assert_eq!(settled, 1);
}

pub async fn expired_leases_are_reaped_then_abandoned(q: &dyn Queue) {
    let a = Uuid::new_v4();
    enqueue(q, a, 5, 5, 1..=1).await;
    let first = claim_one(q).await.unwrap();
    // Heartbeats keep a lease past its first expiry.
    tokio::time::sleep(Duration::from_millis(LEASE_MS * 2 / 3)).await;
    assert_eq!(q.heartbeat("w1", &[first.token]).await.unwrap(), vec![LeaseState::Held]);
    tokio::time::sleep(Duration::from_millis(LEASE_MS * 2 / 3)).await;
    assert_eq!(q.reap().await.unwrap(), 0, "renewed, so not expired");
    assert_eq!(q.counts().await.unwrap().workers, 1);
    // Without heartbeats it expires and is handed out again...
    tokio::time::sleep(Duration::from_millis(LEASE_MS + 50)).await;
    assert_eq!(q.reap().await.unwrap(), 1);
    assert_eq!(q.heartbeat("w1", &[first.token]).await.unwrap(), vec![LeaseState::Lost]);
    let second = claim_one(q).await.expect("redelivered");
    assert_eq!(second.job.test_case_id, 1);
    assert_ne!(second.token, first.token);
    // ...and the first holder can no longer settle it.
    assert_eq!(q.finish(&first.id(), &result(&first, TestStatus::Passed), false).await.unwrap(), Finished::Stale);
    // At `max_deliveries` expiries (2 here) the test is settled as an error.
    tokio::time::sleep(Duration::from_millis(LEASE_MS + 50)).await;
    assert_eq!(q.reap().await.unwrap(), 1);
    assert!(claim_one(q).await.is_none());
    let all = events(q).await;
    let abandoned = all.iter().find_map(|e| match e {
        QueueEvent::Unrun { status, reason, tests, .. } => Some((*status, reason.clone(), tests.len())),
        _ => None,
    });
    let (status, reason, n) = abandoned.expect("an unrun event");
    assert_eq!((status, n), (TestStatus::Error, 1));
    assert!(reason.contains("lease expired 2 times"), "{reason}");
    let (status, summary) = finished_of(&all, a).expect("finished");
    assert_eq!((status, summary.error_tests), (ExecutionStatus::Completed, 1));
    assert_eq!(q.counts().await.unwrap().reaped, 2);
}

pub async fn cancel_settles_waiting_tests_and_flags_running_ones(q: &dyn Queue) {
    let a = Uuid::new_v4();
    enqueue(q, a, 5, 1, 1..=3).await;
    let running = claim_one(q).await.unwrap();
    assert!(q.halt(a, Halt::Cancelled).await.unwrap());
    assert!(q.halt(a, Halt::Cancelled).await.unwrap(), "halting twice is harmless");
    assert!(claim_one(q).await.is_none());
    assert_eq!(q.heartbeat("w1", &[running.token]).await.unwrap(), vec![LeaseState::Halted(Halt::Cancelled)]);
    let mut next = running.job.clone();
    next.attempt = 1;
    assert_eq!(q.retry(&running.id(), next).await.unwrap(), Retried::Halted, "no retry after a halt");
    let mut aborted = result(&running, TestStatus::Cancelled);
    aborted.error = Some(Halt::Cancelled.aborted_reason().into());
    assert_eq!(q.finish(&running.id(), &aborted, false).await.unwrap(), Finished::Recorded { halted: false });
    let all = events(q).await;
    let unrun: Vec<i64> = all
        .iter()
        .filter_map(|e| match e {
            QueueEvent::Unrun { status: TestStatus::Cancelled, tests, .. } => Some(tests),
            _ => None,
        })
        .flatten()
        .map(|t| t.test_case_id)
        .collect();
    assert_eq!(unrun, vec![2, 3]);
    let (status, summary) = finished_of(&all, a).expect("finished after the running test settled");
    assert_eq!((status, summary.cancelled_tests, summary.total_tests), (ExecutionStatus::Cancelled, 3, 3));
    assert!(matches!(all.last(), Some(QueueEvent::Finished { .. })), "finished comes last");
    assert!(!q.halt(a, Halt::Cancelled).await.unwrap(), "a finished execution is not held");
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.waiting, counts.active, counts.executions), (0, 0, 0));
    assert!(q.execution(a).await.unwrap().is_none());
}

pub async fn a_failure_stops_the_execution_atomically(q: &dyn Queue) {
    let a = Uuid::new_v4();
    enqueue(q, a, 5, 2, 1..=4).await;
    let leases = q.claim("w1", 2).await.unwrap();
    assert_eq!(leases.len(), 2);
    // A pass does not stop it, even when asked to stop on failure.
    assert_eq!(
        q.finish(&leases[0].id(), &result(&leases[0], TestStatus::Passed), true).await.unwrap(),
        Finished::Recorded { halted: false }
    );
    let third = claim_one(q).await.unwrap();
    assert_eq!(
        q.finish(&third.id(), &result(&third, TestStatus::Failed), true).await.unwrap(),
        Finished::Recorded { halted: true }
    );
    assert!(claim_one(q).await.is_none(), "test 4 was skipped, not handed out");
    assert_eq!(q.heartbeat("w2", &[leases[1].token]).await.unwrap(), vec![LeaseState::Halted(Halt::StoppedOnFailure)]);
    let mut aborted = result(&leases[1], TestStatus::Cancelled);
    aborted.error = Some(Halt::StoppedOnFailure.aborted_reason().into());
    q.finish(&leases[1].id(), &aborted, true).await.unwrap();
    let all = events(q).await;
    let (status, summary) = finished_of(&all, a).expect("finished");
    assert_eq!(status, ExecutionStatus::Failed);
    assert_eq!(
        (summary.passed_tests, summary.failed_tests, summary.skipped_tests, summary.cancelled_tests),
        (1, 1, 1, 1)
    );
}

pub async fn events_report_start_results_and_the_summary(q: &dyn Queue) {
    let a = Uuid::new_v4();
    // Recovered after a restart: one of three results was already stored.
    let mut stored = ResultSummary::default();
    stored.add_unrun(TestStatus::Skipped);
    let recovered = ExecutionEntry { already_settled: stored, ..entry(a, 5, 4, 3) };
    assert!(q.enqueue(recovered.clone(), vec![job(a, 2), job(a, 3)]).await.unwrap());
    assert!(!q.enqueue(recovered, vec![job(a, 2)]).await.unwrap(), "enqueued once");
    for lease in q.claim("w1", 10).await.unwrap() {
        let mut r = result(&lease, TestStatus::Passed);
        r.flaky = lease.job.test_case_id == 3;
        q.finish(&lease.id(), &r, false).await.unwrap();
    }
    let all = events(q).await;
    assert!(matches!(all.first(), Some(QueueEvent::Started { execution_id }) if *execution_id == a));
    let settled: Vec<i64> = all
        .iter()
        .filter_map(|e| match e {
            QueueEvent::Settled { result } => Some(result.test_case_id),
            _ => None,
        })
        .collect();
    assert_eq!(settled, vec![2, 3]);
    let (status, summary) = finished_of(&all, a).unwrap();
    assert_eq!(status, ExecutionStatus::Completed);
    assert_eq!((summary.total_tests, summary.passed_tests, summary.skipped_tests, summary.flaky_tests), (3, 2, 1, 1));
    assert_eq!(summary.total_execution_time, 20);
    assert_eq!(summary.average_execution_time, 10.0);
    // An execution whose every result is stored finishes at once.
    let b = Uuid::new_v4();
    let mut all_stored = ResultSummary::default();
    all_stored.add_unrun(TestStatus::Passed);
    assert!(q.enqueue(ExecutionEntry { already_settled: all_stored, ..entry(b, 5, 4, 1) }, vec![]).await.unwrap());
    assert_eq!(finished_of(&events(q).await, b).map(|f| f.0), Some(ExecutionStatus::Completed));
}

pub async fn a_share_cap_holds_while_another_execution_waits(q: &dyn Queue) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    enqueue(q, a, 10, 10, 1..=6).await;
    let fair = |held: Vec<(Uuid, u32)>| ClaimRequest { max: 4, share_cap: Some(2), held, ..ClaimRequest::default() };
    // Alone, an execution may use every slot it is offered...
    let first = q.claim_with("w1", &fair(vec![])).await.unwrap();
    assert_eq!(first.iter().filter(|l| l.job.execution_id == a).count(), 4);
    // ...but once another waits, it gets no more than the cap, whatever its
    // priority, and the other one gets the free slots.
    enqueue(q, b, 0, 10, 10..=12).await;
    let next = q.claim_with("w1", &ClaimRequest { max: 3, ..fair(vec![(a, 4)]) }).await.unwrap();
    let ids: Vec<Uuid> = next.iter().map(|l| l.job.execution_id).collect();
    assert_eq!(ids, vec![b, b], "a is over its share, b is capped at 2 of this worker's slots");
    // Another worker, holding nothing, gets its share of each.
    let other = q.claim_with("w2", &fair(vec![])).await.unwrap();
    let of = |id: Uuid| other.iter().filter(|l| l.job.execution_id == id).count();
    assert_eq!((of(a), of(b)), (2, 1));
}

/// At equal priority, one tenant's many executions cannot keep another
/// tenant's run waiting: each slot goes to the tenant holding fewer of the
/// claimer's slots.
pub async fn tenants_share_slots_at_equal_priority(q: &dyn Queue) {
    let of_tenant = |tenant: i64, id: Uuid, jobs: std::ops::RangeInclusive<i64>| {
        let jobs: Vec<Job> = jobs.map(|n| Job { tenant_id: Some(tenant), ..job(id, n) }).collect();
        (ExecutionEntry { tenant_id: Some(tenant), ..entry(id, 5, 100, jobs.len() as u32) }, jobs)
    };
    // Tenant 1 floods first: three executions of 20 tests; tenant 2 then
    // queues 4 tests at the same priority, behind all 60.
    let flood: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    for (k, id) in flood.iter().enumerate() {
        let first = k as i64 * 100;
        let (e, jobs) = of_tenant(1, *id, first + 1..=first + 20);
        assert!(q.enqueue(e, jobs).await.unwrap());
    }
    let small = Uuid::new_v4();
    let (e, jobs) = of_tenant(2, small, 1000..=1003);
    assert!(q.enqueue(e, jobs).await.unwrap());
    let count = |leases: &[Lease], id: Uuid| leases.iter().filter(|l| l.job.execution_id == id).count();

    // A claimer with 6 free slots gives the small run half of them, with or
    // without a per-execution share cap.
    for cap in [None, Some(4)] {
        let leases =
            q.claim_with("w1", &ClaimRequest { max: 6, share_cap: cap, ..ClaimRequest::default() }).await.unwrap();
        assert_eq!(
            count(&leases, small),
            3,
            "cap {cap:?}: {:?}",
            leases.iter().map(|l| l.job.test_case_id).collect::<Vec<_>>()
        );
        // Within the flooding tenant, its executions keep their order.
        assert_eq!(count(&leases, flood[0]), 3, "cap {cap:?}");
        // Hand them back for the next round.
        for lease in leases {
            q.retry(&lease.id(), lease.job.clone()).await.unwrap();
        }
    }
    // A claimer already busy with the flood gives every free slot to the
    // other tenant until it holds as many.
    let held = vec![(flood[0], 5), (flood[1], 3)];
    let leases = q.claim_with("w2", &ClaimRequest { max: 4, held, ..ClaimRequest::default() }).await.unwrap();
    assert_eq!(count(&leases, small), 4, "{:?}", leases.iter().map(|l| l.job.test_case_id).collect::<Vec<_>>());
    // Higher priority still comes first, whoever holds what.
    let urgent = Uuid::new_v4();
    let (e, jobs) = of_tenant(1, urgent, 2000..=2001);
    assert!(q.enqueue(ExecutionEntry { priority: 9, ..e }, jobs).await.unwrap());
    let leases = q.claim_with("w2", &ClaimRequest { max: 2, ..ClaimRequest::default() }).await.unwrap();
    assert_eq!(count(&leases, urgent), 2);
}

/// A tenant allowance caps one tenant's running tests across every
/// claimer; work without a tenant is not counted.
pub async fn a_tenant_allowance_caps_its_running_tests_everywhere(q: &dyn Queue) {
    let queue_for = |tenant: Option<i64>, id: Uuid, jobs: std::ops::RangeInclusive<i64>| {
        let jobs: Vec<Job> = jobs.map(|n| Job { tenant_id: tenant, ..job(id, n) }).collect();
        (ExecutionEntry { tenant_id: tenant, ..entry(id, 5, 100, jobs.len() as u32) }, jobs)
    };
    let (a1, a2, b, open) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for (tenant, id, jobs) in
        [(Some(1), a1, 1..=5), (Some(1), a2, 11..=15), (Some(2), b, 21..=25), (None, open, 31..=35)]
    {
        let (e, jobs) = queue_for(tenant, id, jobs);
        assert!(q.enqueue(e, jobs).await.unwrap());
    }
    let capped = ClaimRequest { max: 5, tenant_cap: Some(2), ..ClaimRequest::default() };
    let first = q.claim_with("w1", &capped).await.unwrap();
    // Another claimer, holding none of them, still sees tenant 1 at its
    // allowance: the count is of tests running anywhere.
    let second = q.claim_with("w2", &ClaimRequest { max: 20, ..capped.clone() }).await.unwrap();
    let all: Vec<&Lease> = first.iter().chain(&second).collect();
    let of = |tenant: Option<i64>| all.iter().filter(|l| l.job.tenant_id == tenant).count();
    assert_eq!((of(Some(1)), of(Some(2))), (2, 2), "{:?}", all.iter().map(|l| l.job.test_case_id).collect::<Vec<_>>());
    assert_eq!(of(None), 5, "work without a tenant is not counted");
    // A finished test frees one of tenant 1's places.
    let done = all.iter().find(|l| l.job.tenant_id == Some(1)).unwrap();
    q.finish(&done.id(), &result(done, TestStatus::Passed), false).await.unwrap();
    let third = q.claim_with("w2", &ClaimRequest { max: 20, ..capped.clone() }).await.unwrap();
    assert_eq!(third.iter().filter(|l| l.job.tenant_id == Some(1)).count(), 1);
    assert_eq!(third.iter().filter(|l| l.job.tenant_id == Some(2)).count(), 0);
}

pub async fn a_minimum_priority_claims_only_work_at_or_above_it(q: &dyn Queue) {
    let (low, critical) = (Uuid::new_v4(), Uuid::new_v4());
    enqueue(q, low, 5, 10, 1..=3).await;
    enqueue(q, critical, 9, 10, 10..=11).await;
    let only_critical = ClaimRequest { max: 10, min_priority: 9, ..ClaimRequest::default() };
    let first = q.claim_with("w1", &only_critical).await.unwrap();
    assert_eq!(first.iter().map(|l| l.job.test_case_id).collect::<Vec<_>>(), vec![10, 11]);
    // Nothing at that priority is left; the rest waits, untouched...
    assert!(q.claim_with("w1", &only_critical).await.unwrap().is_empty());
    // ...also with a share cap, whose "alone" rule must not reach below it.
    let capped = ClaimRequest { share_cap: Some(1), ..only_critical.clone() };
    assert!(q.claim_with("w1", &capped).await.unwrap().is_empty());
    let rest = q.claim_with("w1", &ClaimRequest { max: 10, ..ClaimRequest::default() }).await.unwrap();
    assert_eq!(rest.iter().map(|l| l.job.test_case_id).collect::<Vec<_>>(), vec![1, 2, 3]);
}

pub async fn admissions_of_workers_are_shared_and_say_why_work_waits(q: &dyn Queue) {
    let cpu = Hold { reason: "waiting for CPU".into(), min_priority: 9, room: 4 };
    q.set_admission("w1", Some(&cpu)).await.unwrap();
    q.set_admission("w2", None).await.unwrap();
    let mut all = q.admissions().await.unwrap();
    all.sort_by_key(Option::is_some);
    assert_eq!(all, vec![None, Some(cpu.clone())]);
    // One worker admits ordinary work: it does not wait for resources.
    assert_eq!(waiting_reason(&all, 5), None);
    // Once every worker holds it back, it does; critical work never did.
    q.set_admission("w2", Some(&cpu)).await.unwrap();
    let all = q.admissions().await.unwrap();
    assert_eq!(waiting_reason(&all, 5), Some("waiting for CPU"));
    assert_eq!(waiting_reason(&all, 9), None);
    assert_eq!(waiting_reason(&[], 5), None, "no worker, no reason to give");
}

/// Needs a queue built with `priority_aging` of [`AGING_MS`]
/// ([`aging_settings`]).
pub async fn waiting_work_ages_past_a_busier_higher_priority(q: &dyn Queue) {
    let (low, high) = (Uuid::new_v4(), Uuid::new_v4());
    enqueue(q, low, 4, 10, 1..=1).await;
    enqueue(q, high, 5, 1, 10..=19).await;
    let mut order = Vec::new();
    for _ in 0..4 {
        let lease = claim_one(q).await.expect("work");
        order.push(lease.job.execution_id);
        q.finish(&lease.id(), &result(&lease, TestStatus::Passed), false).await.unwrap();
        tokio::time::sleep(Duration::from_millis(AGING_MS + AGING_MS / 3)).await;
    }
    // Without ageing `low` would wait for all ten of `high`'s tests; one
    // priority below, it starts within two steps of ageing.
    let at = order.iter().position(|id| *id == low).expect("the low-priority test started");
    assert!((1..=2).contains(&at), "claimed at position {at}");
}

/// The ageing step of queues under [`waiting_work_ages_past_a_busier_higher_priority`].
pub const AGING_MS: u64 = 300;

pub fn aging_settings() -> QueueSettings {
    QueueSettings { priority_aging: Some(Duration::from_millis(AGING_MS)), ..lease_settings() }
}

/// Runs every check, each on a fresh queue from `make` with the given
/// settings ([`lease_settings`], or [`aging_settings`] for ageing).
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn(QueueSettings) -> Fut,
    Fut: Future<Output = Arc<dyn Queue>>,
{
    let make_default = || make(lease_settings());
    priority_then_fifo(&*make_default().await).await;
    claims_several_per_call_in_order(&*make_default().await).await;
    per_execution_limit_holds_in_claim(&*make_default().await).await;
    retry_goes_to_the_head_with_its_attempts(&*make_default().await).await;
    stale_tokens_are_refused_and_results_recorded_once(&*make_default().await).await;
    expired_leases_are_reaped_then_abandoned(&*make_default().await).await;
    cancel_settles_waiting_tests_and_flags_running_ones(&*make_default().await).await;
    a_failure_stops_the_execution_atomically(&*make_default().await).await;
    events_report_start_results_and_the_summary(&*make_default().await).await;
    a_share_cap_holds_while_another_execution_waits(&*make_default().await).await;
    a_minimum_priority_claims_only_work_at_or_above_it(&*make_default().await).await;
    tenants_share_slots_at_equal_priority(&*make_default().await).await;
    a_tenant_allowance_caps_its_running_tests_everywhere(&*make_default().await).await;
    admissions_of_workers_are_shared_and_say_why_work_waits(&*make_default().await).await;
    waiting_work_ages_past_a_busier_higher_priority(&*make(aging_settings()).await).await;
}

#[cfg(test)]
#[tokio::test]
async fn memory_queue_conforms() {
    run_all(|settings| async move { Arc::new(MemoryQueue::new(settings)) as Arc<dyn Queue> }).await;
}
