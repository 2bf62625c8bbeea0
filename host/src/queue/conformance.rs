//! Behaviour every [`Queue`] implementation must show. The Redis queue will
//! run the same checks.

use uuid::Uuid;

use super::*;

fn job(execution_id: Uuid, n: i64) -> Job {
    Job {
        execution_id,
        test_case_id: n,
        test_case_name: format!("t{n}"),
        attempt: 0,
        adapter: "echo".into(),
        model: "echo".into(),
        prompt: String::new(),
        variables: vec![],
        expected_output: None,
        assertions: vec![],
    }
}

fn slot(id: Uuid, priority: u8, max: u32) -> ExecutionSlot {
    ExecutionSlot { execution_id: id, priority, max_concurrent_tests: max }
}

pub async fn priority_then_fifo(q: &dyn Queue) {
    let (low, high_a, high_b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    q.enqueue(slot(low, 1, 10), vec![job(low, 1)]).await.unwrap();
    q.enqueue(slot(high_a, 8, 10), vec![job(high_a, 2), job(high_a, 3)]).await.unwrap();
    q.enqueue(slot(high_b, 8, 10), vec![job(high_b, 4)]).await.unwrap();
    let mut order = Vec::new();
    while let Some(j) = q.claim().await.unwrap() {
        order.push(j.test_case_id);
    }
    assert_eq!(order, vec![2, 3, 4, 1]);
}

pub async fn per_execution_limit_holds_in_claim(q: &dyn Queue) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    q.enqueue(slot(a, 9, 2), (1..=5).map(|n| job(a, n)).collect()).await.unwrap();
    q.enqueue(slot(b, 1, 10), vec![job(b, 10)]).await.unwrap();
    let first = q.claim().await.unwrap().unwrap();
    let second = q.claim().await.unwrap().unwrap();
    assert_eq!((first.execution_id, second.execution_id), (a, a));
    // `a` is at its limit, so the lower-priority `b` goes next...
    assert_eq!(q.claim().await.unwrap().unwrap().execution_id, b);
    assert!(q.claim().await.unwrap().is_none());
    // ...and finishing one of `a`'s frees exactly one slot.
    q.finish(&first).await.unwrap();
    assert_eq!(q.claim().await.unwrap().unwrap().test_case_id, 3);
    assert!(q.claim().await.unwrap().is_none());
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.waiting, counts.active), (2, 3));
}

pub async fn retry_goes_to_the_head(q: &dyn Queue) {
    let a = Uuid::new_v4();
    q.enqueue(slot(a, 5, 1), vec![job(a, 1), job(a, 2)]).await.unwrap();
    let mut first = q.claim().await.unwrap().unwrap();
    assert!(q.claim().await.unwrap().is_none(), "limit 1");
    first.attempt = 1;
    q.retry(first).await.unwrap();
    let again = q.claim().await.unwrap().unwrap();
    assert_eq!((again.test_case_id, again.attempt), (1, 1));
}

pub async fn cancel_returns_waiting_jobs(q: &dyn Queue) {
    let a = Uuid::new_v4();
    q.enqueue(slot(a, 5, 1), vec![job(a, 1), job(a, 2), job(a, 3)]).await.unwrap();
    let running = q.claim().await.unwrap().unwrap();
    let dropped = q.cancel(a).await.unwrap();
    assert_eq!(dropped.iter().map(|j| j.test_case_id).collect::<Vec<_>>(), vec![2, 3]);
    assert!(q.claim().await.unwrap().is_none());
    q.finish(&running).await.unwrap(); // finishing after cancel is harmless
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.waiting, counts.active, counts.executions), (0, 0, 0));
}

#[tokio::test]
async fn memory_queue_conforms() {
    priority_then_fifo(&MemoryQueue::new()).await;
    per_execution_limit_holds_in_claim(&MemoryQueue::new()).await;
    retry_goes_to_the_head(&MemoryQueue::new()).await;
    cancel_returns_waiting_jobs(&MemoryQueue::new()).await;
}
