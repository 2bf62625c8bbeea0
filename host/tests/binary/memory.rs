//! The host-wide plugin memory budget, measured on the real process: plugins
//! that allocate all they can, from executions that together ask for twice
//! the budget, do not take the server's resident memory past it, and the
//! pages go back after the tests.

use serde_json::json;

use super::support::{Server, SlowOllama};

/// VmRSS and VmHWM (peak) of process `pid`, in MiB.
fn memory_of(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_that_allocate_without_bound_stay_within_the_budget() {
    const BUDGET_MB: u64 = 128;
    let ollama = SlowOllama::start(std::time::Duration::from_millis(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let hostile = std::path::PathBuf::from(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR)
        .join("cardrun_test_hostile_assertion.wasm");
    let budget = BUDGET_MB.to_string();
    let server = Server::start_with(
        &dir.path().join("cardrun.db"),
        &ollama.url,
        dir.path().join("serve.log"),
        &["--plugin", hostile.to_str().unwrap()],
        &[("PLUGIN_MEMORY_BUDGET_MB", budget.as_str()), ("PLUGIN_MAX_MEMORY_MB", "64"), ("MAX_CONCURRENT_TESTS", "8")],
    )
    .await;
    let pid = server.process.pid();
    // Start the peak afresh after start-up.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let (before, _) = memory_of(&pid);

    // Two executions, each two instances of 64 MiB at once: 256 MiB asked.
    let mut ids = Vec::new();
    for e in 0..2 {
        let card =
            server.post("/api/prompt-cards", json!({"title": format!("e{e}"), "prompt_template": "say {{w}}"})).await;
        let card_id = card["data"]["id"].as_i64().unwrap();
        for i in 0..6 {
            server
                .post(
                    "/api/test-cases",
                    json!({"prompt_card_id": card_id, "name": format!("t{i}"), "input_variables": {"w": i},
                           "assertions": [{"type": "hostile", "value": "alloc"}]}),
                )
                .await;
        }
        ids.push(
            server
                .queue(
                    card_id,
                    json!({"max_concurrent_tests": 2, "retry_failed_tests": false,
                                       "resource_limits": {"memory_mb": 128}}),
                )
                .await,
        );
    }
    for id in &ids {
        let done = server.wait_finished(id).await;
        assert_eq!(done["completed_tests"], 6, "{done}");
        let results = server.results(id).await;
        assert!(
            results["results"].as_array().unwrap().iter().all(|r| r["error"].as_str().unwrap_or("").contains("memory")),
            "every test hit its memory limit: {results}"
        );
    }
    let (after, peak) = memory_of(&pid);
    eprintln!("RSS: {before} MiB before, peak {peak} MiB, {after} MiB after");
    // The peak over the baseline stays within the budget (plus room for the
    // host's own allocations while it stores results).
    assert!(peak.saturating_sub(before) <= BUDGET_MB + 32, "RSS {before} MiB before, peak {peak} MiB");
    // And the instances' pages were given back.
    assert!(after.saturating_sub(before) <= 48, "RSS {before} MiB before, {after} MiB after");
}
