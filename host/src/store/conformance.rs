//! Behaviour every [`Store`] backend must show: the contract of
//! `store/mod.rs` as reusable checks. Each check takes a fresh, empty store
//! from `make`; [`run_all`] runs them all.
//!
//! Compiled for the crate's own tests (SQLite in memory and on a file) and,
//! with the `conformance` feature, for the integration tests that run it on
//! a real PostgreSQL.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use chrono::{Duration as Age, Utc};
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::domain::{EvaluationPair, TestConfiguration};

fn card(title: &str, description: &str) -> CardInput {
    CardInput {
        tenant_id: None,
        title: title.into(),
        description: description.into(),
        prompt_template: format!("Say {{{{x}}}} for {title}"),
        variables: vec!["x".into()],
        filters: Default::default(),
    }
}

fn case(name: &str, x: &str) -> TestCaseInput {
    let mut vars = serde_json::Map::new();
    vars.insert("x".into(), json!(x));
    TestCaseInput {
        name: name.into(),
        input_variables: vars,
        expected_output: Some(x.into()),
        assertions: vec![serde_json::from_value(json!({"type": "contains", "value": x})).expect("assertion")],
        threshold: None,
        transform: None,
    }
}

fn execution(card_id: i64, tests: &[i64], age_ms: i64) -> Execution {
    Execution {
        tenant_id: None,
        execution_id: Uuid::new_v4(),
        prompt_card_id: card_id,
        test_case_ids: tests.to_vec(),
        model: "echo:echo".into(),
        configuration: TestConfiguration::default(),
        priority: 5,
        status: ExecutionStatus::Queued,
        created_at: Utc::now() - Age::milliseconds(age_ms),
        started_at: None,
        completed_at: None,
    }
}

fn jobs(tests: &[i64]) -> JobSource {
    let tests = tests.to_vec();
    Box::new(tests.into_iter().map(|t| Ok(StoredJob { test_case_id: t, json: json!({"test_case_id": t}).to_string() })))
}

fn result(e: Uuid, test: i64, status: TestStatus, ms: u64, flaky: bool) -> TestResult {
    TestResult {
        execution_time_ms: ms,
        flaky,
        ..TestResult::unrun(e, test, format!("t{test}"), status, format!("reason {test}"))
    }
}

async fn cards_round_trip(store: Arc<dyn Store>) {
    let created = store.create_card(&card("Greeting", "says hi")).await.unwrap();
    assert!(created.id > 0);
    assert_eq!(created.title, "Greeting");
    assert_eq!(created.variables, ["x"]);
    let read = store.card(created.id).await.unwrap().expect("card");
    assert_eq!((read.id, read.title.as_str(), read.description.as_str()), (created.id, "Greeting", "says hi"));
    assert_eq!(read.prompt_template, created.prompt_template);

    let updated = store.update_card(created.id, &card("Farewell", "says bye")).await.unwrap().expect("updated");
    assert_eq!(updated.title, "Farewell");
    assert!(updated.updated_at >= created.updated_at);
    assert!(store.update_card(created.id + 1000, &card("x", "")).await.unwrap().is_none());

    assert!(store.delete_card(created.id).await.unwrap());
    assert!(!store.delete_card(created.id).await.unwrap());
    assert!(store.card(created.id).await.unwrap().is_none());
}

async fn cards_page_and_search(store: Arc<dyn Store>) {
    for i in 0..25 {
        store
            .create_card(&card(&format!("Card {i:02}"), if i % 5 == 0 { "Special_Offer" } else { "plain" }))
            .await
            .unwrap();
    }
    store.create_card(&card("100% sure", "percent")).await.unwrap();
    let all = store.list_cards(None, None, 1, 10).await.unwrap();
    assert_eq!(all.total, 26);
    assert_eq!(all.items.len(), 10);
    assert_eq!(all.items[0].title, "100% sure", "newest first");
    assert_eq!(all.items[1].title, "Card 24");
    let last = store.list_cards(None, None, 3, 10).await.unwrap();
    assert_eq!(last.items.len(), 6);
    assert_eq!(last.items.last().map(|c| c.title.as_str()), Some("Card 00"));
    assert!(store.list_cards(None, None, 4, 10).await.unwrap().items.is_empty());

    let special = store.list_cards(None, Some("special_offer"), 1, 100).await.unwrap();
    assert_eq!(special.total, 5, "description matches, ASCII case ignored");
    let titles: Vec<&str> = special.items.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(titles, ["Card 20", "Card 15", "Card 10", "Card 05", "Card 00"]);
    assert_eq!(store.list_cards(None, Some("%"), 1, 100).await.unwrap().total, 1, "% matches itself");
    assert_eq!(store.list_cards(None, Some("p_a"), 1, 100).await.unwrap().total, 0, "_ matches itself");
    assert_eq!(store.list_cards(None, Some("card 1"), 1, 100).await.unwrap().total, 10);
}

async fn test_cases_belong_to_cards(store: Arc<dyn Store>) {
    assert!(store.create_test_case(4242, &case("orphan", "a")).await.unwrap().is_none(), "no card, no case");
    let c = store.create_card(&card("Cases", "")).await.unwrap();
    let a = store.create_test_case(c.id, &case("a", "1")).await.unwrap().expect("a");
    let mut with_threshold = case("b", "2");
    with_threshold.threshold = Some(0.75);
    let b = store.create_test_case(c.id, &with_threshold).await.unwrap().expect("b");
    assert_eq!(b.threshold, Some(0.75));
    assert_eq!(a.input_variables["x"], "1");
    assert_eq!(a.assertions.len(), 1);
    let listed: Vec<i64> = store.test_cases_of(c.id).await.unwrap().iter().map(|t| t.id).collect();
    assert_eq!(listed, [a.id, b.id]);
    // Pages continue after the last id seen, and end empty.
    let other = store.create_card(&card("Other", "")).await.unwrap();
    store.create_test_case(other.id, &case("elsewhere", "0")).await.unwrap().expect("other");
    let c3 = store.create_test_case(c.id, &case("c", "3")).await.unwrap().expect("c");
    let first = store.test_cases_after(c.id, 0, 2).await.unwrap();
    assert_eq!(first.iter().map(|t| t.id).collect::<Vec<_>>(), [a.id, b.id]);
    assert_eq!(first[1], b, "a page holds whole test cases");
    let rest = store.test_cases_after(c.id, b.id, 2).await.unwrap();
    assert_eq!(rest.iter().map(|t| t.id).collect::<Vec<_>>(), [c3.id]);
    assert!(store.test_cases_after(c.id, c3.id, 2).await.unwrap().is_empty());
    assert!(store.delete_test_case(c3.id).await.unwrap());

    let renamed = store.update_test_case(a.id, &case("a2", "9")).await.unwrap().expect("updated");
    assert_eq!((renamed.name.as_str(), renamed.expected_output.as_deref()), ("a2", Some("9")));
    assert!(store.update_test_case(b.id + 1000, &case("z", "z")).await.unwrap().is_none());
    assert!(store.delete_test_case(a.id).await.unwrap());
    assert!(!store.delete_test_case(a.id).await.unwrap());
    assert!(store.test_case(a.id).await.unwrap().is_none());

    assert!(store.delete_card(c.id).await.unwrap());
    assert!(store.test_case(b.id).await.unwrap().is_none(), "deleting a card deletes its cases");
}

async fn import_updates_by_title_and_name(store: Arc<dyn Store>) {
    let first = store.import_card(&card("Suite", "v1"), &[case("a", "1"), case("b", "2")]).await.unwrap();
    assert!(!first.updated);
    assert_eq!(first.test_case_ids.len(), 2);
    let second =
        store.import_card(&card("Suite", "v2"), &[case("c", "3"), case("b", "22"), case("a", "11")]).await.unwrap();
    assert!(second.updated);
    assert_eq!(second.card.id, first.card.id);
    assert_eq!(second.card.description, "v2");
    assert_eq!(second.test_case_ids[1], first.test_case_ids[1], "b keeps its id");
    assert_eq!(second.test_case_ids[2], first.test_case_ids[0], "a keeps its id");
    let third = store.import_card(&card("Suite", "v3"), &[case("b", "222")]).await.unwrap();
    let left = store.test_cases_of(third.card.id).await.unwrap();
    assert_eq!(left.len(), 1, "cases the import no longer has are deleted");
    assert_eq!((left[0].id, left[0].expected_output.as_deref()), (first.test_case_ids[1], Some("222")));
    assert_eq!(store.list_cards(None, None, 1, 10).await.unwrap().total, 1);
}

async fn evaluations_round_trip(store: Arc<dyn Store>) {
    let e = Evaluation {
        tenant_id: None,
        evaluation_id: Uuid::new_v4(),
        description: "matrix".into(),
        pairs: vec![EvaluationPair {
            label: "p1 · echo".into(),
            prompt: "p1".into(),
            provider: "echo".into(),
            model: "echo:echo".into(),
            prompt_card_id: 1,
            execution_id: Uuid::new_v4(),
        }],
        created_at: Utc::now(),
    };
    store.insert_evaluation(&e).await.unwrap();
    let read = store.evaluation(e.evaluation_id).await.unwrap().expect("evaluation");
    assert_eq!(read.description, "matrix");
    assert_eq!(read.pairs, e.pairs);
    assert!(store.evaluation(Uuid::new_v4()).await.unwrap().is_none());
}

async fn executions_keep_jobs_until_finished(store: Arc<dyn Store>) {
    let older = execution(1, &[3, 1, 2], 2000);
    let newer = execution(1, &[7], 1000);
    store.insert_execution(&newer, jobs(&[7])).await.unwrap();
    store.insert_execution(&older, jobs(&[3, 1, 2])).await.unwrap();
    let read = store.execution(older.execution_id).await.unwrap().expect("execution");
    assert_eq!(
        (read.test_case_ids.as_slice(), read.status, read.priority),
        (&[3, 1, 2][..], ExecutionStatus::Queued, 5)
    );
    assert!(read.started_at.is_none());

    assert!(store.set_execution_status(older.execution_id, ExecutionStatus::Running).await.unwrap());
    let started = store.execution(older.execution_id).await.unwrap().expect("running").started_at.expect("started");
    assert!(store.set_execution_status(older.execution_id, ExecutionStatus::Running).await.unwrap());
    let again = store.execution(older.execution_id).await.unwrap().expect("running").started_at;
    assert_eq!(again, Some(started), "the first start is kept");

    let unfinished = store.unfinished_executions().await.unwrap();
    let ids: Vec<Uuid> = unfinished.iter().map(|(e, _)| e.execution_id).collect();
    assert_eq!(ids, [older.execution_id, newer.execution_id], "oldest first");
    let order: Vec<i64> = unfinished[0]
        .1
        .iter()
        .map(|j| serde_json::from_str::<serde_json::Value>(j).unwrap()["test_case_id"].as_i64().unwrap())
        .collect();
    assert_eq!(order, [3, 1, 2], "jobs in queue order");

    assert!(store.set_execution_status(older.execution_id, ExecutionStatus::Completed).await.unwrap());
    assert!(!store.set_execution_status(older.execution_id, ExecutionStatus::Running).await.unwrap());
    assert!(!store.set_execution_status(older.execution_id, ExecutionStatus::Failed).await.unwrap());
    let done = store.execution(older.execution_id).await.unwrap().expect("done");
    assert_eq!(done.status, ExecutionStatus::Completed, "a finished execution never moves again");
    assert!(done.completed_at.is_some());
    let unfinished = store.unfinished_executions().await.unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].0.execution_id, newer.execution_id);
    assert!(store.execution(Uuid::new_v4()).await.unwrap().is_none());
}

async fn executions_list_and_count(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let e = execution(1, &[1], 5000 - i * 100);
        store.insert_execution(&e, jobs(&[1])).await.unwrap();
        ids.push(e.execution_id);
    }
    store.set_execution_status(ids[0], ExecutionStatus::Cancelled).await.unwrap();
    store.set_execution_status(ids[1], ExecutionStatus::Running).await.unwrap();
    let recent: Vec<Uuid> = store.recent_executions(None, 2, 1).await.unwrap().iter().map(|e| e.execution_id).collect();
    assert_eq!(recent, [ids[3], ids[2]], "newest first, after the offset");
    let counts = store.execution_counts(None).await.unwrap();
    assert_eq!(counts.len(), ExecutionStatus::ALL.len(), "every status, zero included");
    let count = |s: ExecutionStatus| counts.iter().find(|(k, _)| *k == s).map(|(_, n)| *n);
    assert_eq!(count(ExecutionStatus::Queued), Some(3));
    assert_eq!(count(ExecutionStatus::Running), Some(1));
    assert_eq!(count(ExecutionStatus::Cancelled), Some(1));
    assert_eq!(count(ExecutionStatus::Completed), Some(0));
}

async fn results_are_upserted_once_per_test(store: Arc<dyn Store>) {
    let e = execution(1, &[1, 2, 3, 4, 5, 6], 0);
    store.insert_execution(&e, jobs(&e.test_case_ids)).await.unwrap();
    let id = e.execution_id;
    let first = vec![
        result(id, 2, TestStatus::Passed, 10, false),
        result(id, 1, TestStatus::Failed, 30, true),
        // The same test twice in one batch: the last one wins.
        result(id, 3, TestStatus::Error, 5, false),
        result(id, 3, TestStatus::Passed, 6, false),
    ];
    store.put_results(&first).await.unwrap();
    // Delivered again (another host, a redelivery): replaced, not added.
    store.put_results(&[result(id, 1, TestStatus::Passed, 31, false)]).await.unwrap();
    store
        .put_results(&[
            result(id, 4, TestStatus::Skipped, 0, false),
            result(id, 5, TestStatus::Cancelled, 0, false),
            result(id, 6, TestStatus::Error, 7, true),
        ])
        .await
        .unwrap();
    store.put_results(&[]).await.unwrap();

    let stored = store.results(id).await.unwrap();
    let order: Vec<i64> = stored.iter().map(|r| r.test_case_id).collect();
    assert_eq!(order, [2, 1, 3, 4, 5, 6], "in the order first stored");
    assert_eq!(stored[1].status, TestStatus::Passed);
    assert_eq!(stored[1].execution_time_ms, 31);
    assert_eq!(stored[2].status, TestStatus::Passed, "the batch's last result of a test wins");

    assert_eq!(store.result_summary(id).await.unwrap(), ResultSummary::of(&stored));
    let mut counts = store.result_counts(id).await.unwrap();
    counts.sort_by_key(|(s, _)| s.as_str());
    let expected = {
        let mut c =
            vec![(TestStatus::Passed, 3), (TestStatus::Skipped, 1), (TestStatus::Cancelled, 1), (TestStatus::Error, 1)];
        c.sort_by_key(|(s, _)| s.as_str());
        c
    };
    assert_eq!(counts, expected);
    assert_eq!(store.result_summary(Uuid::new_v4()).await.unwrap(), ResultSummary::default());
    assert!(store.results(Uuid::new_v4()).await.unwrap().is_empty());
}

async fn large_batches_keep_their_order(store: Arc<dyn Store>) {
    // More than one statement's worth in both backends' chunking.
    let tests: Vec<i64> = (0..12_000).rev().collect();
    let e = execution(1, &tests, 0);
    store.insert_execution(&e, jobs(&tests)).await.unwrap();
    let (_, stored) = store.unfinished_executions().await.unwrap().pop().expect("unfinished");
    assert_eq!(stored.len(), tests.len());
    let first: serde_json::Value = serde_json::from_str(&stored[0]).unwrap();
    let last: serde_json::Value = serde_json::from_str(&stored[stored.len() - 1]).unwrap();
    assert_eq!((first["test_case_id"].as_i64(), last["test_case_id"].as_i64()), (Some(11_999), Some(0)));

    let results: Vec<TestResult> =
        tests.iter().map(|&t| result(e.execution_id, t, TestStatus::Passed, 1, false)).collect();
    store.put_results(&results).await.unwrap();
    let read = store.results(e.execution_id).await.unwrap();
    assert_eq!(read.len(), tests.len());
    assert!(read.iter().map(|r| r.test_case_id).eq(tests.iter().copied()));
    assert_eq!(store.result_summary(e.execution_id).await.unwrap().total_execution_time, 12_000);
}

async fn plugins_keep_upload_order(store: Arc<dyn Store>) {
    store.put_plugin(None, "h1", "alpha", b"one").await.unwrap();
    store.put_plugin(None, "h2", "beta", b"two").await.unwrap();
    store.put_plugin(None, "h3", "alpha", b"three").await.unwrap();
    let names = |p: &[StoredPlugin]| p.iter().map(|p| p.hash.clone()).collect::<Vec<_>>();
    assert_eq!(names(&store.plugins().await.unwrap()), ["h1", "h2", "h3"]);
    // The same bytes again: the newest.
    store.put_plugin(None, "h1", "alpha", b"one").await.unwrap();
    let all = store.plugins().await.unwrap();
    assert_eq!(names(&all), ["h2", "h3", "h1"]);
    assert_eq!(all[2].bytes, b"one");

    // A replacement keeps the newest `keep` uploads of the name (earlier
    // versions stay for tests queued before it) and drops the rest.
    let replaced = store.replace_plugin(None, "h4", "alpha", b"four", 2).await.unwrap();
    assert_eq!(replaced, ["h3"], "h1 (newest before h4) is kept");
    assert_eq!(names(&store.plugins().await.unwrap()), ["h2", "h1", "h4"]);
    assert!(store.replace_plugin(None, "h4", "alpha", b"four", 2).await.unwrap().is_empty(), "not itself");
    assert_eq!(store.replace_plugin(None, "h5", "alpha", b"five", 2).await.unwrap(), ["h1"]);
    assert_eq!(names(&store.plugins().await.unwrap()), ["h2", "h4", "h5"]);
    assert_eq!(store.delete_plugin(None, "beta").await.unwrap(), ["h2"]);
    assert!(store.delete_plugin(None, "beta").await.unwrap().is_empty());
    let mut alpha = store.delete_plugin(None, "alpha").await.unwrap();
    alpha.sort();
    assert_eq!(alpha, ["h4", "h5"], "a delete drops every version");
    store.put_plugin(None, "h4", "alpha", b"four").await.unwrap();
    assert_eq!(names(&store.plugins().await.unwrap()), ["h4"]);

    // Tenants' plugins: the same bytes and name under two owners are two
    // plugins, each replaced and deleted on its own.
    store.put_plugin(Some(1), "h4", "alpha", b"four").await.unwrap();
    store.put_plugin(Some(2), "h4", "alpha", b"four").await.unwrap();
    let owners = |p: &[StoredPlugin]| p.iter().map(|p| (p.owner, p.hash.clone())).collect::<Vec<_>>();
    assert_eq!(
        owners(&store.plugins().await.unwrap()),
        [(None, "h4".to_string()), (Some(1), "h4".to_string()), (Some(2), "h4".to_string())]
    );
    assert_eq!(store.replace_plugin(Some(1), "h5", "alpha", b"five", 1).await.unwrap(), ["h4"]);
    assert_eq!(store.delete_plugin(Some(2), "alpha").await.unwrap(), ["h4"]);
    assert_eq!(owners(&store.plugins().await.unwrap()), [(None, "h4".to_string()), (Some(1), "h5".to_string())]);
}

async fn adapters_are_kept_per_owner(store: Arc<dyn Store>) {
    let adapter = |name: &str, hash: &str| StoredAdapter {
        name: name.into(),
        hash: hash.into(),
        bytes: b"wasm".to_vec(),
        manifest: format!("{{\"name\":\"{name}\"}}"),
    };
    assert!(store.put_adapter(Some(1), &adapter("acme-llm", "h1")).await.unwrap());
    assert!(!store.put_adapter(Some(1), &adapter("acme-llm", "h2")).await.unwrap(), "one per name and owner");
    assert!(store.put_adapter(Some(2), &adapter("acme-llm", "h2")).await.unwrap(), "another owner's name");
    let all = store.adapters().await.unwrap();
    let seen: Vec<(Option<i64>, String)> = all.iter().map(|(o, a)| (*o, a.hash.clone())).collect();
    assert_eq!(seen, [(Some(1), "h1".to_string()), (Some(2), "h2".to_string())]);
    assert_eq!(all[0].1.manifest, "{\"name\":\"acme-llm\"}");
    assert!(store.delete_adapter(Some(1), "acme-llm").await.unwrap());
    assert!(!store.delete_adapter(Some(1), "acme-llm").await.unwrap());
    assert_eq!(store.adapters().await.unwrap().len(), 1);
}

async fn concurrent_writers_lose_nothing(store: Arc<dyn Store>) {
    let e = execution(1, &[], 0);
    store.insert_execution(&e, Box::new(std::iter::empty())).await.unwrap();
    let id = e.execution_id;
    let mut tasks = Vec::new();
    for writer in 0..8i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut cards = Vec::new();
            for batch in 0..10i64 {
                let results: Vec<TestResult> =
                    (0..20).map(|n| result(id, writer * 1000 + batch * 20 + n, TestStatus::Passed, 1, false)).collect();
                store.put_results(&results).await.unwrap();
                // Every writer also redelivers another writer's batch.
                let other = (writer + 1) % 8;
                let again: Vec<TestResult> =
                    (0..20).map(|n| result(id, other * 1000 + batch * 20 + n, TestStatus::Passed, 1, false)).collect();
                store.put_results(&again).await.unwrap();
                cards.push(store.create_card(&card(&format!("w{writer} b{batch}"), "")).await.unwrap().id);
            }
            // Every writer imports the same suite: one card results.
            store.import_card(&card("Shared suite", ""), &[case("a", "1")]).await.unwrap();
            cards
        }));
    }
    let mut card_ids = HashSet::new();
    for task in tasks {
        for card_id in task.await.unwrap() {
            assert!(card_ids.insert(card_id), "card ids are unique");
        }
    }
    assert_eq!(store.results(id).await.unwrap().len(), 8 * 10 * 20, "each result stored exactly once");
    assert_eq!(store.result_summary(id).await.unwrap().passed_tests, 1600);
    let shared = store.list_cards(None, Some("Shared suite"), 1, 10).await.unwrap();
    assert_eq!(shared.total, 1, "concurrent imports of one title make one card");
}

/// Runs every check, each on a fresh store from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    cards_round_trip(make().await).await;
    cards_page_and_search(make().await).await;
    test_cases_belong_to_cards(make().await).await;
    import_updates_by_title_and_name(make().await).await;
    evaluations_round_trip(make().await).await;
    executions_keep_jobs_until_finished(make().await).await;
    executions_list_and_count(make().await).await;
    results_are_upserted_once_per_test(make().await).await;
    large_batches_keep_their_order(make().await).await;
    plugins_keep_upload_order(make().await).await;
    adapters_are_kept_per_owner(make().await).await;
    concurrent_writers_lose_nothing(make().await).await;
    tenants_and_keys(make().await).await;
    cards_and_executions_belong_to_their_tenant(make().await).await;
}

async fn cards_and_executions_belong_to_their_tenant(store: Arc<dyn Store>) {
    let early = store.create_card(&card("Made before keys", "")).await.unwrap();
    let mut before = execution(early.id, &[1], 0);
    before.tenant_id = None;
    store.insert_execution(&before, jobs(&[1])).await.unwrap();
    let acme = store.create_tenant("acme").await.unwrap().expect("new").id;
    assert_eq!(store.adopt_unowned(acme).await.unwrap(), (1, 1));
    assert_eq!(store.card(early.id).await.unwrap().unwrap().tenant_id, Some(acme));
    assert_eq!(store.execution(before.execution_id).await.unwrap().unwrap().tenant_id, Some(acme));
    assert_eq!(store.adopt_unowned(acme).await.unwrap(), (0, 0), "nothing left to adopt");
    let beta = store.create_tenant("beta").await.unwrap().expect("new").id;
    let owned = |tenant, title: &str| CardInput { tenant_id: tenant, ..card(title, "") };
    let a = store.create_card(&owned(Some(acme), "A")).await.unwrap();
    assert_eq!(a.tenant_id, Some(acme));
    store.create_card(&owned(Some(beta), "B")).await.unwrap();
    store.create_card(&owned(None, "open")).await.unwrap();
    let titles = |page: CardPage| page.items.into_iter().map(|c| c.title).collect::<Vec<_>>();
    assert_eq!(titles(store.list_cards(Some(acme), None, 1, 10).await.unwrap()), ["A", "Made before keys"]);
    assert_eq!(store.list_cards(Some(beta), None, 1, 10).await.unwrap().total, 1);
    assert_eq!(store.list_cards(None, None, 1, 10).await.unwrap().total, 4, "no scope: every card");
    assert_eq!(store.card(a.id).await.unwrap().unwrap().tenant_id, Some(acme));

    // Imports match titles within the tenant.
    let mine = store.import_card(&owned(Some(acme), "Suite"), &[case("x", "1")]).await.unwrap();
    let theirs = store.import_card(&owned(Some(beta), "Suite"), &[case("x", "1")]).await.unwrap();
    assert!(!theirs.updated, "another tenant's title is not theirs to update");
    assert_ne!(mine.card.id, theirs.card.id);
    assert!(store.import_card(&owned(Some(acme), "Suite"), &[case("x", "2")]).await.unwrap().updated);

    let mut e = execution(a.id, &[1], 0);
    e.tenant_id = Some(acme);
    store.insert_execution(&e, jobs(&[1])).await.unwrap();
    assert_eq!(store.execution(e.execution_id).await.unwrap().unwrap().tenant_id, Some(acme));
    assert_eq!(store.recent_executions(Some(acme), 10, 0).await.unwrap().len(), 2);
    assert_eq!(store.unfinished_tests(acme).await.unwrap(), 2, "one test in each queued execution");
    assert_eq!(store.unfinished_tests(beta).await.unwrap(), 0);
    let queued = |counts: Vec<(ExecutionStatus, u64)>| counts[0].1;
    assert_eq!(queued(store.execution_counts(Some(acme)).await.unwrap()), 2);
    assert_eq!(queued(store.execution_counts(Some(beta)).await.unwrap()), 0);
    store.set_execution_status(e.execution_id, ExecutionStatus::Completed).await.unwrap();
    assert_eq!(store.unfinished_tests(acme).await.unwrap(), 1, "finished ones do not count");
    assert!(store.recent_executions(Some(beta), 10, 0).await.unwrap().is_empty());
    let evaluation = Evaluation {
        tenant_id: Some(beta),
        evaluation_id: Uuid::new_v4(),
        description: "d".into(),
        pairs: Vec::new(),
        created_at: Utc::now(),
    };
    store.insert_evaluation(&evaluation).await.unwrap();
    let read = store.evaluation(evaluation.evaluation_id).await.unwrap().unwrap();
    assert_eq!(read.tenant_id, Some(beta));
}

async fn tenants_and_keys(store: Arc<dyn Store>) {
    assert!(store.tenants().await.unwrap().is_empty());
    let acme = store.create_tenant("acme").await.unwrap().expect("new");
    assert!(store.create_tenant("acme").await.unwrap().is_none(), "names are unique");
    let beta = store.create_tenant("beta").await.unwrap().expect("new");
    let names: Vec<String> = store.tenants().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["acme", "beta"]);

    assert!(store.create_api_key(acme.id, "k1", "hash-1").await.unwrap());
    assert!(store.create_api_key(beta.id, "k2", "hash-2").await.unwrap());
    assert!(!store.create_api_key(beta.id + 100, "k3", "hash-3").await.unwrap(), "no tenant, no key");
    let found = store.tenant_of_key("hash-1").await.unwrap().expect("live key");
    assert_eq!((found.id, found.name.as_str()), (acme.id, "acme"));
    assert_eq!(store.tenant_of_key("hash-2").await.unwrap().map(|t| t.id), Some(beta.id));
    assert!(store.tenant_of_key("hash-3").await.unwrap().is_none());

    assert!(store.revoke_api_key("k1").await.unwrap());
    assert!(!store.revoke_api_key("k1").await.unwrap(), "revoked once");
    assert!(!store.revoke_api_key("nope").await.unwrap());
    assert!(store.tenant_of_key("hash-1").await.unwrap().is_none(), "a revoked key opens nothing");
    assert!(store.tenant_of_key("hash-2").await.unwrap().is_some(), "other keys live on");
}
