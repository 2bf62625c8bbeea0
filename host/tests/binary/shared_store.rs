//! API hosts on one PostgreSQL database, as real processes killed by PID
//! (DESIGN.md section 6): two `cardrun serve --no-worker` hosts and a
//! worker sharing one database and one Redis, a host restarted mid-run, and
//! a store failure that stays internal.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::postgres::PgDatabase;
use super::redis::RedisServer;
use super::support::{Process, Server, SlowOllama, wait_until};

/// A card of `n` tests whose prompts are `say <stem><i>` (a stem of its
/// own keeps the response cache from answering another card's prompts).
async fn card(server: &Server, stem: &str, n: usize) -> i64 {
    let words: Vec<String> = (0..n).map(|i| format!("{stem}{i}")).collect();
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    server.card(&refs, json!({"type": "contains", "value": "say"})).await
}

/// The stored results of `id` as `host` serves them: exactly one per test.
async fn one_result_per_test(host: &Server, id: &str, total: usize) -> Value {
    let results = host.results(id).await;
    let list = results["results"].as_array().cloned().unwrap_or_default();
    let ids: HashSet<i64> = list.iter().filter_map(|r| r["test_case_id"].as_i64()).collect();
    assert_eq!((list.len(), ids.len()), (total, total), "{results}");
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_hosts_share_one_postgres_database() {
    let db = PgDatabase::create();
    let redis = RedisServer::start();
    let ollama = SlowOllama::start(Duration::from_millis(150)).await;
    let dir = tempfile::tempdir().unwrap();
    let (db_url, redis_url) = (db.url(), redis.url());
    let env = [("DATABASE_URL", db_url.as_str()), ("REDIS_URL", redis_url.as_str())];
    let unused = dir.path().join("unused.db");
    let (a, b) = tokio::join!(
        Server::start_with(&unused, &ollama.url, dir.path().join("a.log"), &["--no-worker"], &env),
        Server::start_with(&unused, &ollama.url, dir.path().join("b.log"), &["--no-worker"], &env),
    );
    assert!(!unused.exists(), "no SQLite file when DATABASE_URL names PostgreSQL");
    let health = a.get("/health").await;
    assert_eq!(health["data"]["store_backend"], "postgres", "{health}");
    let _worker = Process::spawn(
        &["worker"],
        &[("REDIS_URL", redis_url.as_str()), ("OLLAMA_BASE_URL", ollama.url.as_str()), ("MAX_CONCURRENT_TESTS", "4")],
        dir.path().join("worker.log"),
    );

    // A card created through A is seen, and queued, through B.
    let first = card(&a, "w", 12).await;
    let seen = b.get(&format!("/api/prompt-cards/{first}")).await;
    assert_eq!(seen["data"]["test_cases"].as_array().map(Vec::len), Some(12), "{seen}");
    let id = b.queue(first, json!({"max_concurrent_tests": 4})).await;

    // Progress is read from either host while it runs, and after.
    wait_until("tests are running", || ollama.prompts() >= 2).await;
    for host in [&a, &b] {
        let progress = host.get(&format!("/api/parallel-test-execution/{id}/progress")).await;
        assert_eq!(progress["data"]["total_tests"], 12, "{progress}");
    }
    let done = a.wait_finished(&id).await;
    assert_eq!((done["status"].as_str(), done["passed_tests"].as_u64()), (Some("completed"), Some(12)), "{done}");
    let from_a = one_result_per_test(&a, &id, 12).await;
    let from_b = one_result_per_test(&b, &id, 12).await;
    assert_eq!(from_a["summary"], from_b["summary"]);
    // Each result stored exactly once, whichever host consumed it.
    assert_eq!(db.query(&format!("SELECT COUNT(*) FROM test_results WHERE execution_id = '{id}'")), "12");

    // Queued through A, cancelled through B.
    let slow = card(&a, "slow", 12).await;
    let id = a.queue(slow, json!({"max_concurrent_tests": 1})).await;
    wait_until("the slow execution runs", || ollama.in_flight() >= 1).await;
    let cancelled = b.delete(&format!("/api/parallel-test-execution/{id}")).await;
    assert_eq!(cancelled["data"]["cancelled"], true, "{cancelled}");
    let done = a.wait_finished(&id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let results = one_result_per_test(&b, &id, 12).await;
    assert!(results["summary"]["cancelled_tests"].as_u64() > Some(0), "{results}");
    let listed = b.get("/api/parallel-test-execution/executions?limit=10").await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(2), "{listed}");

    // A plugin uploaded through A is soon known to B, which plans and
    // validates with it although it runs no tests.
    let plugin = std::path::PathBuf::from(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR)
        .join("cardrun_test_trivial_assertion.wasm");
    let (status, uploaded) = a.upload(None, "application/wasm", std::fs::read(plugin).unwrap()).await;
    assert_eq!(status, 201, "{uploaded}");
    let card = b.post("/api/prompt-cards", json!({"title": "p", "prompt_template": "say {{w}}"})).await;
    let case = json!({"prompt_card_id": card["data"]["id"], "name": "n", "input_variables": {"w": "hi"},
                      "expected_output": "say hi", "assertions": [{"type": "same-as-expected"}]});
    let mut created = Value::Null;
    for _ in 0..100 {
        let reply = reqwest::Client::new().post(format!("{}/api/test-cases", b.base)).json(&case).send().await.unwrap();
        created = reply.json().await.unwrap();
        if created["success"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(created["success"], true, "B never learnt the plugin: {created}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_mid_run_on_postgres_loses_nothing() {
    let db = PgDatabase::create();
    let ollama = SlowOllama::start(Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = db.url();
    let env = [("DATABASE_URL", db_url.as_str()), ("MAX_CONCURRENT_TESTS", "2")];
    let unused = dir.path().join("unused.db");
    let mut host = Server::start_with(&unused, &ollama.url, dir.path().join("first.log"), &[], &env).await;
    let card = card(&host, "w", 16).await;
    let id = host.queue(card, json!({"max_concurrent_tests": 2})).await;
    let stored = || db.query(&format!("SELECT COUNT(*) FROM test_results WHERE execution_id = '{id}'"));
    wait_until("some results are stored", || stored().parse::<u32>().unwrap_or(0) >= 3).await;
    host.process.kill_hard();
    let before: u32 = stored().parse().unwrap();
    assert!(before < 16, "killed mid-run");

    let again = Server::start_with(&unused, &ollama.url, dir.path().join("second.log"), &[], &env).await;
    assert!(again.log_text().contains("recovering execution"), "{}", again.log_text());
    let done = again.wait_finished(&id).await;
    assert_eq!((done["status"].as_str(), done["passed_tests"].as_u64()), (Some("completed"), Some(16)), "{done}");
    one_result_per_test(&again, &id, 16).await;
    assert_eq!(stored(), "16");
    assert_eq!(db.query(&format!("SELECT COUNT(*) FROM execution_jobs WHERE execution_id = '{id}'")), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_is_a_500_whose_cause_is_only_in_the_log() {
    let db = PgDatabase::create();
    let ollama = SlowOllama::start(Duration::from_millis(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = db.url();
    let env = [("DATABASE_URL", db_url.as_str())];
    let host =
        Server::start_with(&dir.path().join("unused.db"), &ollama.url, dir.path().join("serve.log"), &[], &env).await;
    card(&host, "w", 1).await;
    // The table goes away under the running host (an operator's mistake).
    db.query("ALTER TABLE prompt_cards RENAME TO prompt_cards_gone");
    let reply = reqwest::get(format!("{}/api/prompt-cards", host.base)).await.unwrap();
    assert_eq!(reply.status(), 500);
    let body: Value = reply.json().await.unwrap();
    let message = body["error"].as_str().unwrap_or_default();
    let request_id = body["request_id"].as_str().unwrap_or_default().to_string();
    assert!(!request_id.is_empty() && message.contains(&request_id), "{body}");
    assert!(
        !message.contains("prompt_cards") && !message.contains("relation") && !message.contains("postgres"),
        "{body}"
    );
    wait_until("the cause is logged under the request id", || {
        host.log_text().lines().any(|l| l.contains(&request_id) && l.contains("prompt_cards"))
    })
    .await;
}
