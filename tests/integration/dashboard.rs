//! The dashboard end to end in a real browser (Debian's Chromium, driven by
//! playwright-core from `tests/js/dashboard.mjs`): a run started from a
//! card, counts reaching the total, a failed test's detail, a cancelled
//! run, the executions list and the system chart, with screenshots under
//! `target/tmp/dashboard`.

use std::time::Duration;

use cardrun_tests::TestHost;
use cardrun_tests::fake_llm::FakeLlm;
use cardrun_tests::js::NodePeer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_runs_inspects_and_cancels_from_the_dashboard() {
    let fake = FakeLlm::start().await;
    fake.set_latency(150);
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), &fake.base_url(), 8).await;
    let capitals = (0..8)
        .map(|i| {
            // The fake model echoes the prompt; two expectations differ.
            let expected = if i % 4 == 3 {
                format!("Name the capital of France, please {i}")
            } else {
                format!("Name the capital of country {i}")
            };
            json!({"name": format!("capital {i}"), "input_variables": {"c": format!("country {i}")},
                   "expected_output": expected, "assertions": [{"type": "equals", "metric": "accuracy"}]})
        })
        .collect();
    let (capitals, _) = host.card_with_cases("Name the capital of {{c}}", capitals).await;
    let slow = (0..40).map(|i| json!({"name": format!("slow {i}"), "input_variables": {"n": i}})).collect();
    let (slow, _) = host.card_with_cases("Slow {{n}}", slow).await;
    // Give the cards their titles (card_with_cases names them `t`).
    for (id, title) in [(capitals, "Capitals"), (slow, "Slow")] {
        let (_, card) = host.get(&format!("/api/prompt-cards/{id}")).await;
        let body = json!({"title": title, "prompt_template": card["data"]["prompt_template"]});
        let (status, _) = host.call(reqwest::Method::PUT, &format!("/api/prompt-cards/{id}"), Some(body)).await;
        assert_eq!(status, 200);
    }

    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let mut browser = NodePeer::start("dashboard.mjs", &[&host.base, out.to_str().expect("utf-8 path")]);
    let report = browser.report("ok", Duration::from_secs(180)).await;
    assert_eq!(report["ok"], true, "{report:#}");
    let shots = report["screenshots"].as_array().expect("screenshots");
    assert_eq!(shots.len(), 7, "{report}");
    for shot in shots {
        let bytes = std::fs::read(shot.as_str().expect("path")).expect("screenshot saved");
        assert!(bytes.starts_with(b"\x89PNG"), "{shot} is a PNG");
    }
    assert!(browser.wait().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_asks_for_an_api_key_when_the_server_needs_one() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), "http://127.0.0.1:9", 2).await;
    let (card, _) = host.card_with_cases("Say {{w}}", vec![json!({"name": "a", "input_variables": {"w": "x"}})]).await;
    let body = json!({"title": "Keyed", "prompt_template": "Say {{w}}"});
    let (status, _) = host.call(reqwest::Method::PUT, &format!("/api/prompt-cards/{card}"), Some(body)).await;
    assert_eq!(status, 200);
    let store = host.app.engine.store().clone();
    cardrun::tenants::create_tenant(store.as_ref(), "acme").await.unwrap();
    let key = cardrun::tenants::create_key(store.as_ref(), "acme").await.unwrap();
    // The host reads whether keys are needed at most once a second; a
    // browser that starts within that second would find the API open.
    let mut open = true;
    for _ in 0..100 {
        let (status, _) = host.call(reqwest::Method::GET, "/api/prompt-cards", None).await;
        open = status != 401;
        if !open {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!open, "the API still answers without a key");

    let mut browser = NodePeer::start("dashboard_key.mjs", &[&host.base, &key.secret]);
    let report = browser.report("ok", Duration::from_secs(120)).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(browser.wait().await.success());
}
