//! Replacing a plugin keeps the version queued tests were planned with
//! (issue 14, point 3): tests queued before `PUT /api/plugins/{name}` are
//! judged by the old version, tests queued after by the new, also after a
//! restart; versions beyond those kept end with a clear error.

use cardrun_tests::TestHost;
use cardrun_tests::fake_llm::FakeLlm;
use serde_json::{Value, json};

const EXEC: &str = "/api/parallel-test-execution";

/// Queues `card` on the fake model, one test at a time.
async fn queue(host: &TestHost, card: i64) -> String {
    let request = json!({"prompt_card_id": card, "model": "llama3",
                         "configuration": {"max_concurrent_tests": 1, "cache_enabled": false}});
    let (status, queued) = host.post(&format!("{EXEC}/queue"), request).await;
    assert_eq!(status, 202, "{queued}");
    queued["data"]["execution_id"].as_str().unwrap().to_string()
}

fn reasons(results: &Value) -> Vec<String> {
    results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["assertion_results"][0]["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tests_queued_before_a_replacement_keep_the_version_they_were_planned_with() {
    let fake = FakeLlm::start().await;
    fake.set_latency(150);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let host = TestHost::start(&db, &fake.base_url(), 1).await;
    let (status, v1) =
        host.post_bytes("/api/plugins", cardrun_tests::built_plugin("cardrun_test_trivial_assertion")).await;
    assert_eq!(status, 201, "{v1}");
    // `same-as-expected` with an expected output the model never gives:
    // version 1 fails each test (empty reason), version 2 passes it ("v2").
    let cases = (0..4)
        .map(|i| {
            json!({"name": format!("t{i}"), "input_variables": {"w": format!("w{i}")},
                        "expected_output": "never", "assertions": [{"type": "same-as-expected"}]})
        })
        .collect();
    let (card, _) = host.card_with_cases("Say {{w}}", cases).await;

    let before = queue(&host, card).await;
    let (status, v2) =
        host.put_bytes("/api/plugins/trivial", cardrun_tests::built_plugin("cardrun_test_trivial_assertion_v2")).await;
    assert_eq!(status, 200, "{v2}");
    assert_ne!(v1["data"]["hash"], v2["data"]["hash"]);
    let after = queue(&host, card).await;

    host.wait_finished(&before).await;
    host.wait_finished(&after).await;
    let (old, new) = (host.results(&before).await, host.results(&after).await);
    assert_eq!(old["summary"]["failed_tests"], 4, "version 1 judged every test queued before: {old}");
    assert_eq!(reasons(&new), ["v2"; 4], "version 2 judges what was queued after: {new}");

    // Tests queued with version 1 and recovered after a restart are still
    // judged by it: the store keeps the versions queued tests use. (Version
    // 1 again, queue, then version 2 again, and stop before they all ran.)
    let v1_bytes = cardrun_tests::built_plugin("cardrun_test_trivial_assertion");
    assert_eq!(host.put_bytes("/api/plugins/trivial", v1_bytes).await.0, 200);
    let pending = queue(&host, card).await;
    let v2_bytes = cardrun_tests::built_plugin("cardrun_test_trivial_assertion_v2");
    assert_eq!(host.put_bytes("/api/plugins/trivial", v2_bytes).await.0, 200);
    host.stop().await;
    let host = TestHost::start(&db, &fake.base_url(), 1).await;
    let (_, list) = host.get("/api/plugins").await;
    let trivial =
        list["data"]["assertions"].as_array().unwrap().iter().find(|p| p["name"] == "trivial").unwrap().clone();
    assert_eq!(trivial["version"], "0.2.0", "the current version after a restart: {trivial}");
    host.wait_finished(&pending).await;
    let recovered = host.results(&pending).await;
    assert_eq!(recovered["summary"]["failed_tests"], 4, "version 1 judged them all: {recovered}");
    host.stop().await;
}

#[tokio::test]
async fn a_version_no_longer_kept_is_a_clear_error() {
    let sandbox = cardrun_tests::sandbox("http://127.0.0.1:9").await;
    let v1 =
        sandbox.add_assertion_plugin(&cardrun_tests::built_plugin("cardrun_test_trivial_assertion")).await.unwrap();
    let spec = cardrun::sandbox::AssertionSpec::new("same-as-expected", Value::Null);
    let pins = sandbox.pins_for(None, std::slice::from_ref(&spec));
    assert_eq!(pins.len(), 1, "an uploaded plugin's type is pinned");
    assert!(sandbox.pins_for(None, &[cardrun::sandbox::AssertionSpec::new("contains", json!("x"))]).is_empty());
    let subject = cardrun::sandbox::Subject { output: "a".into(), expected: Some("b".into()), ..Default::default() };
    let limits = cardrun::sandbox::Limits::default();

    // Replaced: the pinned version still judges.
    sandbox
        .replace_assertion_plugin("trivial", &cardrun_tests::built_plugin("cardrun_test_trivial_assertion_v2"))
        .await
        .unwrap();
    let judged = sandbox.evaluate_pinned(None, &pins, &spec, &subject, &limits, None).await;
    assert!(!judged.passed && judged.error.is_none(), "version 1: {judged:?}");
    assert!(sandbox.evaluate(&spec, &subject, &limits).await.passed, "unpinned: the current version");
    assert_eq!(sandbox.assertion_plugin_versions(None, "trivial").len(), 2);

    // Deleted: every version goes, and a pinned test says why it cannot run.
    sandbox.remove_assertion_plugin("trivial").unwrap();
    let gone = sandbox.evaluate_pinned(None, &pins, &spec, &subject, &limits, None).await;
    let error = gone.error.expect("an error");
    assert_eq!(error.code(), "version_gone", "{error}");
    assert!(error.to_string().contains(&v1.hash[..12]), "{error}");
}
