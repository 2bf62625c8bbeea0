//! Parallel execution over real HTTP against the fake model server: queue,
//! progress, results, batch, cancel, stop_on_first_failure, timeouts,
//! retries, cache, priorities, restart, validation.

use std::time::Duration;

use cardrun_tests::TestHost;
use cardrun_tests::fake_llm::FakeLlm;
use reqwest::Method;
use serde_json::{Value, json};

const EXEC: &str = "/api/parallel-test-execution";

fn case(name: &str, vars: Value, assertions: Value) -> Value {
    json!({"name": name, "input_variables": vars, "assertions": assertions})
}

async fn setup(max_concurrent: usize) -> (FakeLlm, TestHost, tempfile::TempDir) {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("cardrun.db"), &fake.base_url(), max_concurrent).await;
    (fake, host, dir)
}

async fn queue(host: &TestHost, body: Value) -> String {
    let (status, reply) = host.post(&format!("{EXEC}/queue"), body).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["data"]["status"], "queued");
    reply["data"]["execution_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn queue_watch_progress_and_read_results() {
    let (fake, host, _dir) = setup(8).await;
    fake.set_latency(20);
    let cases: Vec<Value> = (0..6)
        .map(|i| case(&format!("t{i}"), json!({"n": i}), json!([{"type": "contains", "value": format!("number {i}")}])))
        .collect();
    let (card, ids) = host.card_with_cases("Say number {{n}}", cases).await;
    let id = queue(&host, json!({"prompt_card_id": card, "test_case_ids": ids, "model": "llama3", "priority": "high"}))
        .await;
    let done = host.wait_finished(&id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["percent"], 100.0);
    assert_eq!((done["total_tests"].as_u64(), done["passed_tests"].as_u64()), (Some(6), Some(6)));
    let results = host.results(&id).await;
    assert_eq!(results["summary"]["total_tests"], 6);
    assert_eq!(results["summary"]["passed_tests"], 6);
    let first = &results["results"][0];
    assert_eq!(first["status"], "passed");
    assert!(first["llm_output"].as_str().unwrap().starts_with("Say number"));
    assert!(first["assertion_results"][0]["fuel_used"].as_u64().unwrap() > 0);
    assert_eq!(first["attempts"].as_array().unwrap().len(), 1);
    // The model was warmed once, before the first test.
    let warmups = fake.seen().iter().filter(|s| s.path == "/api/generate" && s.body["prompt"] == "").count();
    assert_eq!(warmups, 1);
    // Progress stays readable after completion and is listed as not active.
    assert_eq!(host.get(&format!("{EXEC}/{id}/progress")).await.1["data"]["completed_tests"], 6);
    let (_, active) = host.get(&format!("{EXEC}/active")).await;
    assert!(active["data"].as_array().unwrap().iter().all(|p| p["execution_id"] != id.as_str()));
    let (_, stats) = host.get(&format!("{EXEC}/queue/stats")).await;
    assert_eq!(stats["data"]["completed"], 1);
    assert_eq!(stats["data"]["backend"], "memory");
}

#[tokio::test]
async fn per_execution_concurrency_is_respected() {
    let (fake, host, _dir) = setup(32).await;
    fake.set_latency(100);
    let cases: Vec<Value> = (0..8).map(|i| case(&format!("t{i}"), json!({"n": i}), json!([]))).collect();
    let (card, _) = host.card_with_cases("p{{n}}", cases).await;
    let id = queue(
        &host,
        json!({"prompt_card_id": card, "model": "ollama:m", "configuration": {"max_concurrent_tests": 3}}),
    )
    .await;
    host.wait_finished(&id).await;
    assert_eq!(fake.max_in_flight(), 3);
}

#[tokio::test]
async fn batch_validates_each_item_on_its_own() {
    let (_fake, host, _dir) = setup(8).await;
    let (card, ids) = host.card_with_cases("x{{a}}", vec![case("a", json!({"a": 1}), json!([]))]).await;
    let (status, reply) = host
        .post(
            &format!("{EXEC}/batch"),
            json!({"executions": [
                {"prompt_card_id": card, "model": "echo:echo"},
                {"prompt_card_id": 424242, "model": "echo:echo"},
                {"prompt_card_id": card, "test_case_ids": ids, "model": "echo:upper", "priority": 99},
                {"nonsense": true},
            ]}),
        )
        .await;
    assert_eq!(status, 202, "{reply}");
    let data = &reply["data"];
    assert_eq!(
        (data["total_executions"].as_u64(), data["successful_queued"].as_u64(), data["failed_to_queue"].as_u64()),
        (Some(4), Some(1), Some(3))
    );
    assert_eq!(data["results"][1]["status"], 404);
    assert!(data["results"][2]["error"].as_str().unwrap().contains("priority"));
    let id = data["results"][0]["execution_id"].as_str().unwrap();
    assert_eq!(host.wait_finished(id).await["status"], "completed");
    assert_eq!(host.post(&format!("{EXEC}/batch"), json!({"executions": []})).await.0, 400);
}

#[tokio::test]
async fn cancel_mid_run_aborts_in_flight_and_keeps_finished_results() {
    let (fake, host, _dir) = setup(8).await;
    fake.set_latency(400);
    let cases: Vec<Value> = (0..8).map(|i| case(&format!("t{i}"), json!({"n": i}), json!([]))).collect();
    let (card, _) = host.card_with_cases("p{{n}}", cases).await;
    let id = queue(
        &host,
        json!({"prompt_card_id": card, "model": "ollama:m", "configuration": {"max_concurrent_tests": 2}}),
    )
    .await;
    // Wait for the first two to finish, then cancel while the next two run.
    for _ in 0..200 {
        let (_, p) = host.get(&format!("{EXEC}/{id}/progress")).await;
        if p["data"]["completed_tests"].as_u64() >= Some(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, reply) = host.call(Method::DELETE, &format!("{EXEC}/{id}"), None).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["data"]["cancelled"], true);
    let done = host.wait_finished(&id).await;
    assert_eq!(done["status"], "cancelled");
    let results = host.results(&id).await;
    let statuses: Vec<&str> =
        results["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.len(), 8, "every test has a result");
    assert!(statuses.iter().filter(|s| **s == "passed").count() >= 2, "{statuses:?}");
    assert!(statuses.iter().filter(|s| **s == "cancelled").count() >= 4, "{statuses:?}");
    let in_flight_aborted =
        results["results"].as_array().unwrap().iter().any(|r| r["error"] == "cancelled while running");
    assert!(in_flight_aborted, "{results}");
    // Nothing more is sent to the model afterwards.
    let requests = fake.request_count();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.request_count(), requests);
    // Idempotent: cancelling again changes nothing.
    let (status, again) = host.call(Method::DELETE, &format!("{EXEC}/{id}"), None).await;
    assert_eq!((status, again["data"]["cancelled"].as_bool()), (200, Some(false)));
    assert_eq!(again["data"]["status"], "cancelled");
}

#[tokio::test]
async fn stop_on_first_failure_skips_the_rest() {
    let (_fake, host, _dir) = setup(8).await;
    let cases = vec![
        case("ok1", json!({"w": "alpha"}), json!([{"type": "contains", "value": "alpha"}])),
        case("bad", json!({"w": "beta"}), json!([{"type": "contains", "value": "gamma"}])),
        case("later1", json!({"w": "c"}), json!([])),
        case("later2", json!({"w": "d"}), json!([])),
    ];
    let (card, _) = host.card_with_cases("{{w}}", cases).await;
    let id = queue(
        &host,
        json!({"prompt_card_id": card, "model": "echo:echo",
        "configuration": {"max_concurrent_tests": 1, "stop_on_first_failure": true, "retry_failed_tests": false}}),
    )
    .await;
    let done = host.wait_finished(&id).await;
    assert_eq!(done["status"], "failed");
    let results = host.results(&id).await;
    let by_name = |n: &str| {
        results["results"].as_array().unwrap().iter().find(|r| r["test_case_name"] == n).unwrap()["status"].clone()
    };
    assert_eq!(by_name("ok1"), "passed");
    assert_eq!(by_name("bad"), "failed");
    assert_eq!(by_name("later1"), "skipped");
    assert_eq!(by_name("later2"), "skipped");
}

#[tokio::test]
async fn timeout_per_test_aborts_the_model_call() {
    let (fake, host, _dir) = setup(8).await;
    fake.set_latency(3_000);
    let (card, _) = host.card_with_cases("slow {{x}}", vec![case("slow", json!({"x": 1}), json!([]))]).await;
    let id = queue(
        &host,
        json!({"prompt_card_id": card, "model": "ollama:m",
        "configuration": {"timeout_per_test": 300, "retry_failed_tests": false}}),
    )
    .await;
    host.wait_finished(&id).await;
    let r = &host.results(&id).await["results"][0];
    assert_eq!(r["status"], "error");
    assert!(r["error"].as_str().unwrap().contains("timeout"), "{r}");
    assert!(r["execution_time_ms"].as_u64().unwrap() < 2_000, "{r}");
}

#[tokio::test]
async fn failed_tests_are_retried_and_marked_flaky() {
    let (fake, host, _dir) = setup(8).await;
    fake.answer_once("flaky one", "wrong");
    for _ in 0..5 {
        fake.answer_once("always bad", "wrong");
    }
    let cases = vec![
        case("flaky", json!({"w": "flaky one"}), json!([{"type": "equals", "value": "flaky one"}])),
        case("broken", json!({"w": "always bad"}), json!([{"type": "equals", "value": "always bad"}])),
    ];
    let (card, _) = host.card_with_cases("{{w}}", cases).await;
    let id =
        queue(&host, json!({"prompt_card_id": card, "model": "ollama:m", "configuration": {"max_retries": 2}})).await;
    host.wait_finished(&id).await;
    let results = host.results(&id).await;
    let get =
        |n: &str| results["results"].as_array().unwrap().iter().find(|r| r["test_case_name"] == n).unwrap().clone();
    let flaky = get("flaky");
    assert_eq!(flaky["status"], "passed");
    assert_eq!(flaky["flaky"], true);
    assert_eq!(flaky["attempts"].as_array().unwrap().len(), 2);
    let broken = get("broken");
    assert_eq!(broken["status"], "failed");
    assert_eq!(broken["attempts"].as_array().unwrap().len(), 3, "first try + max_retries");
    assert_eq!(broken["flaky"], false);
    assert_eq!(results["summary"]["flaky_tests"], 1);

    // With retries off, one attempt only.
    fake.answer_once("flaky one", "wrong");
    let id = queue(&host, json!({"prompt_card_id": card, "model": "ollama:m", "configuration": {"retry_failed_tests": false, "cache_enabled": false}})).await;
    host.wait_finished(&id).await;
    let results = host.results(&id).await;
    assert!(results["results"].as_array().unwrap().iter().all(|r| r["attempts"].as_array().unwrap().len() == 1));
}

#[tokio::test]
async fn identical_requests_hit_the_cache_and_collapse_in_flight() {
    let (fake, host, _dir) = setup(16).await;
    fake.set_latency(200);
    let cases: Vec<Value> =
        (0..5).map(|i| case(&format!("same{i}"), json!({"q": "same question"}), json!([]))).collect();
    let (card, _) = host.card_with_cases("{{q}}", cases).await;
    let id = queue(&host, json!({"prompt_card_id": card, "model": "ollama:m"})).await;
    host.wait_finished(&id).await;
    assert_eq!(fake.prompts(), vec!["same question"], "five concurrent identical requests, one model call");
    let results = host.results(&id).await;
    let hits = results["results"].as_array().unwrap().iter().filter(|r| r["cache_hit"] == true).count();
    assert_eq!(hits, 4);

    let again = queue(&host, json!({"prompt_card_id": card, "model": "ollama:m"})).await;
    host.wait_finished(&again).await;
    assert_eq!(fake.prompts().len(), 1, "a second run is served from the cache");
    assert!(host.results(&again).await["results"].as_array().unwrap().iter().all(|r| r["cache_hit"] == true));

    let uncached =
        queue(&host, json!({"prompt_card_id": card, "model": "ollama:m", "configuration": {"cache_enabled": false}}))
            .await;
    host.wait_finished(&uncached).await;
    assert_eq!(fake.prompts().len(), 6, "cache_enabled: false calls the model every time");
}

#[tokio::test]
async fn higher_priority_queued_later_starts_first_when_slots_are_scarce() {
    let (fake, host, _dir) = setup(1).await;
    fake.set_latency(150);
    let low_cases: Vec<Value> =
        (0..4).map(|i| case(&format!("low{i}"), json!({"n": format!("low-{i}")}), json!([]))).collect();
    let high_cases: Vec<Value> =
        (0..2).map(|i| case(&format!("high{i}"), json!({"n": format!("high-{i}")}), json!([]))).collect();
    let (low_card, _) = host.card_with_cases("{{n}}", low_cases).await;
    let (high_card, _) = host.card_with_cases("{{n}}", high_cases).await;
    let low = queue(&host, json!({"prompt_card_id": low_card, "model": "ollama:m", "priority": 1})).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let high = queue(&host, json!({"prompt_card_id": high_card, "model": "ollama:m", "priority": "critical"})).await;
    host.wait_finished(&low).await;
    host.wait_finished(&high).await;
    assert_eq!(fake.prompts(), vec!["low-0", "high-0", "high-1", "low-1", "low-2", "low-3"]);
}

#[tokio::test]
async fn queue_validation_errors() {
    let (_fake, host, _dir) = setup(8).await;
    let (card, ids) = host.card_with_cases("Hi {{name}}", vec![case("a", json!({"name": "x"}), json!([]))]).await;
    let (other, other_ids) =
        host.card_with_cases("Yo {{name}}", vec![case("b", json!({"name": "y"}), json!([]))]).await;
    assert_ne!(card, other);
    let bad = [
        (json!({"prompt_card_id": 9999, "model": "echo:echo"}), 404, "prompt card 9999"),
        (json!({"prompt_card_id": card, "test_case_ids": [999999], "model": "echo:echo"}), 404, "test case 999999"),
        (
            json!({"prompt_card_id": card, "test_case_ids": other_ids, "model": "echo:echo"}),
            400,
            "belongs to prompt card",
        ),
        (
            json!({"prompt_card_id": card, "test_case_ids": [ids[0], ids[0]], "model": "echo:echo"}),
            400,
            "more than once",
        ),
        (json!({"prompt_card_id": card, "model": "bard:gemini"}), 400, "unknown model adapter `bard`"),
        (json!({"prompt_card_id": card, "model": ""}), 400, "model"),
        (json!({"prompt_card_id": card, "model": "echo:echo", "priority": 11}), 400, "priority"),
        (json!({"prompt_card_id": card, "model": "echo:echo", "priority": "urgent"}), 400, "priority"),
        (
            json!({"prompt_card_id": card, "model": "echo:echo", "configuration": {"max_concurrent_tests": 0}}),
            400,
            "max_concurrent_tests",
        ),
        (
            json!({"prompt_card_id": card, "model": "echo:echo", "configuration": {"timeout_per_test": 1}}),
            400,
            "timeout_per_test",
        ),
        (
            json!({"prompt_card_id": card, "model": "echo:echo", "configuration": {"resource_limits": {"cpu_percent": 500}}}),
            400,
            "cpu_percent",
        ),
        (json!({"prompt_card_id": card, "model": "echo:echo", "configuration": {"retries": 1}}), 400, "retries"),
        (json!({"model": "echo:echo"}), 400, "prompt_card_id"),
    ];
    for (body, want, needle) in bad {
        let (status, reply) = host.post(&format!("{EXEC}/queue"), body.clone()).await;
        assert_eq!(status, want, "{body}: {reply}");
        assert!(reply["error"].as_str().unwrap().contains(needle), "{body}: {reply}");
    }
    // A template variable added after the test case was written.
    host.call(
        Method::PUT,
        &format!("/api/prompt-cards/{card}"),
        Some(json!({"title": "t", "prompt_template": "Hi {{name}} from {{city}}"})),
    )
    .await;
    let (status, reply) =
        host.post(&format!("{EXEC}/queue"), json!({"prompt_card_id": card, "model": "echo:echo"})).await;
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().unwrap().contains("missing template variable(s): city"), "{reply}");
    // Unknown and malformed execution ids.
    let unknown = uuid_like();
    assert_eq!(host.get(&format!("{EXEC}/{unknown}/progress")).await.0, 404);
    assert_eq!(host.get(&format!("{EXEC}/{unknown}/results")).await.0, 404);
    assert_eq!(host.call(Method::DELETE, &format!("{EXEC}/{unknown}"), None).await.0, 404);
    assert_eq!(host.get(&format!("{EXEC}/not-a-uuid/progress")).await.0, 400);
}

fn uuid_like() -> String {
    "7b0e5f5e-0d3c-4f55-9a3c-3f1f1c2b9a10".to_string()
}

#[test]
fn restart_mid_run_loses_no_execution() {
    // The first host runs on its own runtime; dropping that runtime mid-run
    // kills every task at once, like a crash. The fake model and the second
    // host live on another runtime.
    let main = tokio::runtime::Runtime::new().unwrap();
    let fake = main.block_on(FakeLlm::start());
    fake.set_latency(150);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cardrun.db");

    let first = tokio::runtime::Runtime::new().unwrap();
    let (id, done_before) = first.block_on(async {
        let host = TestHost::start(&db, &fake.base_url(), 4).await;
        let cases: Vec<Value> = (0..12).map(|i| case(&format!("t{i}"), json!({"n": i}), json!([]))).collect();
        let (card, _) = host.card_with_cases("restart {{n}}", cases).await;
        let id = queue(
            &host,
            json!({"prompt_card_id": card, "model": "ollama:m", "configuration": {"max_concurrent_tests": 2}}),
        )
        .await;
        loop {
            let (_, p) = host.get(&format!("{EXEC}/{id}/progress")).await;
            let done = p["data"]["completed_tests"].as_u64().unwrap();
            if done >= 3 {
                break (id, done);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    drop(first);

    main.block_on(async {
        let host = TestHost::start(&db, &fake.base_url(), 4).await;
        let done = host.wait_finished(&id).await;
        assert_eq!(done["status"], "completed");
        let results = host.results(&id).await;
        let list = results["results"].as_array().unwrap();
        assert_eq!(list.len(), 12, "each test recorded once");
        assert!(list.iter().all(|r| r["status"] == "passed"), "{results}");
        assert!(done_before < 12);
        let mut names: Vec<&str> = list.iter().map(|r| r["test_case_name"].as_str().unwrap()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 12);
    });
}

#[tokio::test]
async fn resource_limits_bound_the_plugins_of_an_execution() {
    let (_fake, host, _dir) = setup(8).await;
    let hostile = cardrun_tests::built_plugin("cardrun_test_hostile_assertion");
    host.app.engine.sandbox().add_assertion_plugin(&hostile).await.unwrap();
    let cases = vec![
        case("spins", json!({"x": 1}), json!([{"type": "hostile", "value": "loop"}])),
        case("hoards", json!({"x": 2}), json!([{"type": "hostile", "value": "alloc"}])),
        case("behaves", json!({"x": 3}), json!([{"type": "hostile", "value": "ok"}])),
    ];
    let (card, _) = host.card_with_cases("{{x}}", cases).await;
    // 1 % of a 2 s budget is 20 ms of CPU in fuel; 64 MiB over 2 slots is
    // 32 MiB per plugin instance.
    let id = queue(
        &host,
        json!({"prompt_card_id": card, "model": "echo:echo", "configuration": {
        "timeout_per_test": 2000, "max_concurrent_tests": 2, "retry_failed_tests": false,
        "resource_limits": {"cpu_percent": 1, "memory_mb": 64}}}),
    )
    .await;
    host.wait_finished(&id).await;
    let results = host.results(&id).await;
    let get =
        |n: &str| results["results"].as_array().unwrap().iter().find(|r| r["test_case_name"] == n).unwrap().clone();
    let spins = get("spins");
    assert_eq!(spins["status"], "error");
    assert_eq!(spins["assertion_results"][0]["error"], "out_of_fuel", "{spins}");
    // 1 % x 2000 ms = 20 ms of CPU, at the rate measured at start.
    let rate = host.app.engine.sandbox().fuel_calibration().fuel_per_ms;
    let reason = spins["assertion_results"][0]["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("budget of {} units is 20 ms of CPU at {rate} units/ms", 20 * rate)), "{spins}");
    assert!(reason.contains("resource_limits.cpu_percent 1 %"), "{spins}");
    let hoards = get("hoards");
    assert_eq!(hoards["status"], "error", "{hoards}");
    assert_eq!(hoards["assertion_results"][0]["error"], "memory_limit", "{hoards}");
    assert!(
        hoards["assertion_results"][0]["reason"].as_str().unwrap().contains(&(32u64 << 20).to_string()),
        "{hoards}"
    );
    assert_eq!(get("behaves")["status"], "passed");
}

#[tokio::test]
async fn progress_updates_switch_per_test_events() {
    let (_fake, host, _dir) = setup(8).await;
    // One test fails, so the completion summary has more than one count.
    let mut cases: Vec<Value> = (0..2).map(|i| case(&format!("t{i}"), json!({"n": i}), json!([]))).collect();
    cases.push(case("fails", json!({"n": 2}), json!([{"type": "contains", "value": "absent"}])));
    let (card, _) = host.card_with_cases("p{{n}}", cases).await;
    for (enabled, want) in [(true, 3), (false, 0)] {
        let mut events = host.app.engine.progress_service().subscribe();
        let id = queue(
            &host,
            json!({"prompt_card_id": card, "model": "echo:echo",
            "configuration": {"progress_updates": enabled, "cache_enabled": false}}),
        )
        .await;
        let mut test_events = 0;
        let summary = loop {
            match tokio::time::timeout(Duration::from_secs(30), events.recv()).await.expect("events arrive").unwrap() {
                cardrun::progress::ProgressEvent::TestComplete(r) if r.execution_id.to_string() == id => {
                    test_events += 1
                }
                cardrun::progress::ProgressEvent::ExecutionComplete(cardrun::progress::ExecutionComplete {
                    execution_id,
                    summary,
                    ..
                }) if execution_id.to_string() == id => {
                    break summary;
                }
                _ => {}
            }
        };
        assert_eq!(test_events, want, "progress_updates: {enabled}");
        // Either way the REST snapshot is right at the end.
        let progress = host.wait_finished(&id).await;
        assert_eq!(progress["completed_tests"], 3);
        assert_eq!(progress["failed_tests"], 1);
        // The completion event's summary (kept as tests settle) is the one
        // the results endpoint computes from the store.
        let results = host.results(&id).await;
        assert_eq!(serde_json::to_value(&summary).unwrap(), results["summary"], "progress_updates: {enabled}");
        assert_eq!(summary.passed_tests, 2);
        assert_eq!(summary.failed_tests, 1);
    }
}

#[tokio::test]
async fn an_endpoint_that_pushes_back_gets_a_lower_limit_and_another_does_not() {
    let limited = FakeLlm::start().await;
    let fine = FakeLlm::start().await;
    limited.fail_next(6, 429, Some("0"));
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cardrun_tests::host_settings(&dir.path().join("db"), &limited.base_url(), 8);
    settings.sandbox.endpoints.openai_base_url = fine.base_url();
    let host = TestHost::start_with_settings(settings).await;
    let cases =
        (0..6).map(|i| case(&format!("t{i}"), json!({"n": i}), json!([{"type": "contains", "value": "n"}]))).collect();
    let (card, _) = host.card_with_cases("n {{n}}", cases).await;
    for model in ["ollama:m", "openai:m"] {
        let body = json!({"prompt_card_id": card, "model": model, "configuration": {"cache_enabled": false, "max_concurrent_tests": 3}});
        let id = queue(&host, body).await;
        let done = host.wait_finished(&id).await;
        assert_eq!(done["passed_tests"], 6, "{model}: the 429s were retried: {done}");
    }
    let (_, resources) = host.get(&format!("{EXEC}/system/resources")).await;
    let endpoints = resources["data"]["model_endpoints"].as_array().expect("endpoints").clone();
    let find = |base: &str| {
        let port = base.rsplit(':').next().unwrap().to_string();
        endpoints
            .iter()
            .find(|e| e["endpoint"].as_str().unwrap().ends_with(&format!(":{port}")))
            .cloned()
            .expect("listed")
    };
    let pushed = find(&limited.base_url());
    assert!(pushed["pushed_back"].as_u64().unwrap() >= 1, "{pushed}");
    assert!(pushed["limit"].as_u64().unwrap() <= 128, "halved at least once: {pushed}");
    let other = find(&fine.base_url());
    assert_eq!((other["pushed_back"].as_u64(), other["limit"].as_u64()), (Some(0), Some(256)), "{other}");
}
