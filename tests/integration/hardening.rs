//! Sandbox hardening (issue 9): one cap on every byte a plugin returns,
//! valid scores that agree with pass and threshold, owned type names (no hijack, no
//! look-alikes), replace and delete by name, host maxima checked at queue
//! time, the host-wide plugin memory budget, and no retries of failures a
//! retry would repeat.

use cardrun::sandbox::{AssertionSpec, Limits, SandboxError, Subject};
use cardrun_tests::fake_llm::FakeLlm;
use cardrun_tests::{TestHost, built_plugin, compile_bomb, sandbox};
use serde_json::{Value, json};

const EXEC: &str = "/api/parallel-test-execution";

async fn hostile(what: &str) -> cardrun::sandbox::AssertionOutcome {
    hostile_at(what, None).await
}

async fn hostile_at(what: &str, threshold: Option<f64>) -> cardrun::sandbox::AssertionOutcome {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    sandbox.add_assertion_plugin(&built_plugin("cardrun_test_hostile_assertion")).await.unwrap();
    let limits = Limits::from_resource_limits(1.0, 64, 1_000, 1);
    let mut spec = AssertionSpec::new("hostile", json!(what));
    spec.threshold = threshold;
    sandbox.evaluate(&spec, &Subject { output: "x".into(), ..Default::default() }, &limits).await
}

#[tokio::test]
async fn a_huge_error_is_refused_without_being_kept() {
    let outcome = hostile("big-error").await;
    let err = outcome.error.expect("an error");
    assert!(matches!(err, SandboxError::OutputTooLarge { .. }), "{err}");
    // What is kept and reported is the cap's message, not the 8 MiB text.
    assert!(outcome.reason.len() < 200, "{} bytes kept", outcome.reason.len());
}

#[tokio::test]
async fn scores_must_be_numbers_from_zero_to_one() {
    for what in ["nan-score", "score-above-one"] {
        let outcome = hostile(what).await;
        let err = outcome.error.expect("an error");
        assert_eq!(err.code(), "bad_verdict", "{what}: {err}");
        assert!(err.is_deterministic());
    }
    // `not-` cannot turn a bad score into a good one.
    let sandbox = sandbox("http://127.0.0.1:9").await;
    sandbox.add_assertion_plugin(&built_plugin("cardrun_test_hostile_assertion")).await.unwrap();
    let outcome = sandbox
        .evaluate(
            &AssertionSpec::new("not-hostile", json!("nan-score")),
            &Subject::default(),
            &Limits::from_resource_limits(1.0, 64, 1_000, 1),
        )
        .await;
    assert_eq!(outcome.error.map(|e| e.code()), Some("bad_verdict"));
    assert_eq!(outcome.score, 0.0);
}

#[tokio::test]
async fn pass_and_score_must_agree_with_the_threshold() {
    // Without a score threshold: no pass at 0, no failure at 1.
    for what in ["pass-at-zero", "fail-at-one"] {
        let outcome = hostile(what).await;
        let err = outcome.error.expect("an error");
        assert_eq!(err.code(), "bad_verdict", "{what}: {err}");
        assert!(!outcome.passed, "{what}");
    }
    assert!(hostile("pass-at-half").await.passed);
    // With one in (0, 1], a pass must reach it...
    let below = hostile_at("pass-at-half", Some(0.8)).await;
    assert!(!below.passed);
    let err = below.error.expect("an error");
    assert_eq!(err.code(), "bad_verdict");
    assert!(err.to_string().contains("below the threshold 0.8"), "{err}");
    assert!(hostile_at("pass-at-half", Some(0.5)).await.passed);
    // ...and a threshold that cannot be a score (a distance of 3) falls back
    // to the rule without one.
    assert!(hostile_at("pass-at-half", Some(3.0)).await.passed);
    assert_eq!(hostile_at("pass-at-zero", Some(3.0)).await.error.map(|e| e.code()), Some("bad_verdict"));
}

#[tokio::test]
async fn types_are_owned_hijacks_are_409_and_look_alikes_400() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), "http://127.0.0.1:9", 4).await;
    let trivial = built_plugin("cardrun_test_trivial_assertion");
    let (status, body) = host.post_bytes("/api/plugins", trivial.clone()).await;
    assert_eq!(status, 201, "{body}");

    let (status, body) = host.post_bytes("/api/plugins", built_plugin("cardrun_test_impostor_assertion")).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("provided by plugin `trivial`"), "{body}");
    let (status, body) = host.post_bytes("/api/plugins", built_plugin("cardrun_test_lookalike_assertion")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("a-z, 0-9 and -"), "{body}");
    // The owner's tests still run the owner's code.
    let (_, list) = host.get("/api/plugins").await;
    let names: Vec<&str> =
        list["data"]["assertions"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(names.contains(&"trivial") && !names.contains(&"impostor") && !names.contains(&"lookalike"), "{list}");

    // Replacing is explicit and by name; the component must be that plugin.
    let (status, body) = host.put_bytes("/api/plugins/trivial", built_plugin("cardrun_test_impostor_assertion")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("not `trivial`"), "{body}");
    let (status, body) = host.put_bytes("/api/plugins/trivial", trivial).await;
    assert_eq!(status, 200, "{body}");

    // Deleting frees the type; deleting again, or a built-in, is refused.
    let deleted = host.call(reqwest::Method::DELETE, "/api/plugins/trivial", None).await;
    assert_eq!(deleted.0, 200, "{}", deleted.1);
    assert_eq!(host.call(reqwest::Method::DELETE, "/api/plugins/trivial", None).await.0, 404);
    assert_eq!(host.call(reqwest::Method::DELETE, "/api/plugins/builtin-assertions", None).await.0, 409);
    let (status, body) = host.post_bytes("/api/plugins", built_plugin("cardrun_test_impostor_assertion")).await;
    assert_eq!(status, 201, "{body}");
    host.stop().await;

    // After a restart the deleted plugin stays deleted; the impostor, now
    // the owner, is loaded.
    let host = TestHost::start(&dir.path().join("db"), "http://127.0.0.1:9", 4).await;
    let (_, list) = host.get("/api/plugins").await;
    let names: Vec<&str> =
        list["data"]["assertions"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(names.contains(&"impostor") && !names.contains(&"trivial"), "{list}");
    host.stop().await;
}

#[tokio::test]
async fn plugin_files_take_precedence_over_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    // An upload first claims the type...
    let host = TestHost::start(&db, "http://127.0.0.1:9", 4).await;
    let (status, _) = host.post_bytes("/api/plugins", built_plugin("cardrun_test_impostor_assertion")).await;
    assert_eq!(status, 201);
    host.stop().await;
    // ...then the operator starts the host with a file that provides it:
    // the file wins, and the upload is skipped (and logged).
    let trivial = std::path::PathBuf::from(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR)
        .join("cardrun_test_trivial_assertion.wasm");
    let host = TestHost::start_with_plugins(&db, "http://127.0.0.1:9", 4, vec![trivial]).await;
    let (_, list) = host.get("/api/plugins").await;
    let names: Vec<&str> =
        list["data"]["assertions"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(names.contains(&"trivial") && !names.contains(&"impostor"), "{list}");
    let (status, _) = host.post_bytes("/api/plugins", built_plugin("cardrun_test_impostor_assertion")).await;
    assert_eq!(status, 409);
    host.stop().await;
}

async fn queue(host: &TestHost, card: i64, configuration: Value) -> (u16, Value) {
    host.post(
        &format!("{EXEC}/queue"),
        json!({"prompt_card_id": card, "model": "echo:echo", "configuration": configuration}),
    )
    .await
}

#[tokio::test]
async fn requests_over_the_host_maxima_are_400_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), "http://127.0.0.1:9", 4).await;
    let (card, _) = host.card_with_cases("{{w}}", vec![json!({"name": "a", "input_variables": {"w": "x"}})]).await;
    let defaults = cardrun::engine::HostLimits::default();
    for (configuration, needle) in [
        (json!({"timeout_per_test": defaults.max_timeout_per_test_ms + 1}), "MAX_TIMEOUT_PER_TEST_MS"),
        (json!({"max_retries": defaults.max_retries + 1}), "MAX_RETRIES"),
        (json!({"resource_limits": {"memory_mb": defaults.plugin_memory_budget_mb + 1}}), "PLUGIN_MEMORY_BUDGET_MB"),
    ] {
        let (status, body) = queue(&host, card, configuration.clone()).await;
        assert_eq!(status, 400, "{configuration}: {body}");
        assert!(body["error"].as_str().unwrap().contains(needle), "{body}");
    }
    host.stop().await;
}

#[tokio::test]
async fn a_plugin_that_loops_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = std::path::PathBuf::from(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR)
        .join("cardrun_test_hostile_assertion.wasm");
    let host = TestHost::start_with_plugins(&dir.path().join("db"), "http://127.0.0.1:9", 4, vec![hostile]).await;
    let (card, _) = host
        .card_with_cases(
            "{{w}}",
            vec![
                json!({"name": "loops", "input_variables": {"w": "x"}, "assertions": [{"type": "hostile", "value": "loop"}]}),
                json!({"name": "fails", "input_variables": {"w": "x"}, "assertions": [{"type": "equals", "value": "y"}]}),
            ],
        )
        .await;
    let (status, body) = queue(
        &host,
        card,
        json!({"max_retries": 2, "timeout_per_test": 2000, "resource_limits": {"cpu_percent": 1}, "cache_enabled": false}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["data"]["execution_id"].as_str().unwrap().to_string();
    host.wait_finished(&id).await;
    let results = host.results(&id).await;
    let by_name =
        |n: &str| results["results"].as_array().unwrap().iter().find(|r| r["test_case_name"] == n).cloned().unwrap();
    let loops = by_name("loops");
    assert_eq!(loops["status"], "error");
    assert!(loops["error"].as_str().unwrap().contains("out of fuel"), "{loops}");
    assert_eq!(loops["attempts"].as_array().unwrap().len(), 1, "a loop is not retried: {loops}");
    // An assertion that fails on the model's output is still retried.
    assert_eq!(by_name("fails")["attempts"].as_array().unwrap().len(), 3);
    host.stop().await;
}

#[tokio::test]
async fn tests_wait_for_the_plugin_memory_budget() {
    let fake = FakeLlm::start().await;
    fake.set_latency(150);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cardrun_tests::host_settings(&dir.path().join("db"), &fake.base_url(), 16);
    // 64 MiB for all plugins; each test's instance may use 32 MiB.
    settings.limits.plugin_memory_budget_mb = 64;
    let host = TestHost::start_with_settings(settings).await;
    // Two executions, each within the budget on its own (two instances of
    // 32 MiB), together over it.
    let mut ids = Vec::new();
    for e in 0..2 {
        let cases: Vec<Value> = (0..3).map(|i| json!({"name": format!("t{i}"), "input_variables": {"w": i}})).collect();
        let (card, _) = host.card_with_cases(&format!("e{e} p{{{{w}}}}"), cases).await;
        let (status, body) = host
            .post(
                &format!("{EXEC}/queue"),
                json!({"prompt_card_id": card, "model": "ollama:m",
                       "configuration": {"max_concurrent_tests": 2, "resource_limits": {"memory_mb": 64}}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["data"]["execution_id"].as_str().unwrap().to_string());
    }
    for id in ids {
        assert_eq!(host.wait_finished(&id).await["completed_tests"], 3);
    }
    assert_eq!(fake.max_in_flight(), 2, "two 32 MiB reservations fill a 64 MiB budget");
    host.stop().await;
}

#[tokio::test]
async fn a_compile_bomb_is_refused_before_compiling_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), "http://127.0.0.1:9", 4).await;
    let (_, before) = host.get("/api/plugins").await;
    let (status, body) = host.post_bytes("/api/plugins", compile_bomb(20_000)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("20000 locals"), "{body}");
    // A small function of the same shape is only refused as the wrong world:
    // the structure check is what stopped the big one.
    let (status, body) = host.post_bytes("/api/plugins", compile_bomb(10)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("`assertion` world"), "{body}");
    // Nothing was registered or stored: a restart lists the same plugins.
    let (_, after) = host.get("/api/plugins").await;
    assert_eq!(before, after);
    host.stop().await;
    let host = TestHost::start(&dir.path().join("db"), "http://127.0.0.1:9", 4).await;
    assert_eq!(host.get("/api/plugins").await.1, before);
    host.stop().await;
}

#[tokio::test]
async fn a_normal_execution_starts_within_one_slot_turnover_beside_a_greedy_one() {
    let fake = FakeLlm::start().await;
    fake.set_latency(300);
    let dir = tempfile::tempdir().unwrap();
    // Four slots; one execution may hold half of them while another waits.
    let host = TestHost::start(&dir.path().join("db"), &fake.base_url(), 4).await;
    let greedy: Vec<Value> = (0..8).map(|i| json!({"name": format!("g{i}"), "input_variables": {"w": i}})).collect();
    let (greedy_card, _) = host.card_with_cases("greedy {{w}}", greedy).await;
    let (status, body) = host
        .post(
            &format!("{EXEC}/queue"),
            json!({"prompt_card_id": greedy_card, "model": "ollama:m", "priority": "critical",
                   "configuration": {"max_concurrent_tests": 8, "cache_enabled": false}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    // Alone, it takes every slot.
    for _ in 0..200 {
        if fake.prompts().len() == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(fake.prompts().len(), 4);
    let (normal_card, _) =
        host.card_with_cases("normal {{w}}", vec![json!({"name": "n", "input_variables": {"w": 1}})]).await;
    let (status, body) = host
        .post(&format!("{EXEC}/queue"), json!({"prompt_card_id": normal_card, "model": "ollama:m", "priority": "low"}))
        .await;
    assert_eq!(status, 202, "{body}");
    host.wait_finished(body["data"]["execution_id"].as_str().unwrap()).await;
    // The normal test started in the second wave, not after all eight
    // greedy ones, which is where its priority alone would put it. Its
    // first request is the model warm-up (an empty prompt; the greedy
    // execution's is request 0, then its first four tests): in the second
    // wave it is one of requests 5-8.
    let seen = fake.seen();
    let warmups: Vec<usize> = seen.iter().enumerate().filter(|(_, s)| s.body["prompt"] == "").map(|(i, _)| i).collect();
    assert_eq!(warmups.len(), 2, "{:?}", fake.prompts());
    assert!((5..9).contains(&warmups[1]), "the normal test started at request {}: {:?}", warmups[1], fake.prompts());
    host.stop().await;
}

/// Every compiled artifact under `dir`.
fn artifacts(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for engine_dir in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(engine_dir.path()).into_iter().flatten().flatten() {
            found.push(file.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

#[tokio::test]
async fn refused_and_deleted_plugins_leave_no_artifact_and_the_count_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("artifacts");
    let mut settings = cardrun_tests::host_settings(&dir.path().join("db"), "http://127.0.0.1:9", 4);
    settings.sandbox.cache_dir = Some(cache.clone());
    settings.sandbox.max_plugins = 1;
    let host = TestHost::start_with_settings(settings).await;
    let builtins = artifacts(&cache).len();
    let hash = |bytes: &[u8]| format!("{}.cwasm", cardrun::sandbox::content_hash(bytes));

    let trivial = built_plugin("cardrun_test_trivial_assertion");
    assert_eq!(host.post_bytes("/api/plugins", trivial.clone()).await.0, 201);
    assert!(artifacts(&cache).contains(&hash(&trivial)));
    // Refused after compiling (the type is taken): its artifact is gone.
    let impostor = built_plugin("cardrun_test_impostor_assertion");
    assert_eq!(host.post_bytes("/api/plugins", impostor.clone()).await.0, 409);
    assert!(!artifacts(&cache).contains(&hash(&impostor)), "{:?}", artifacts(&cache));
    // One plugin is this host's maximum.
    let (status, body) = host.post_bytes("/api/plugins", built_plugin("cardrun_test_bare_assertion")).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("PLUGIN_MAX_COUNT"), "{body}");
    assert!(!artifacts(&cache).contains(&hash(&built_plugin("cardrun_test_bare_assertion"))));
    // Deleting collects the artifact and frees the place.
    assert_eq!(host.call(reqwest::Method::DELETE, "/api/plugins/trivial", None).await.0, 200);
    assert_eq!(artifacts(&cache).len(), builtins, "{:?}", artifacts(&cache));
    assert_eq!(host.post_bytes("/api/plugins", built_plugin("cardrun_test_bare_assertion")).await.0, 201);
    host.stop().await;
}

#[tokio::test]
async fn a_describe_without_bound_is_refused_and_kept_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), "http://127.0.0.1:9", 4).await;
    let (_, before) = host.get("/api/plugins").await;
    let (status, body) = host.post_bytes("/api/plugins", built_plugin("cardrun_test_greedy_describe")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("100000 assertion types declared; at most 64"), "{body}");
    assert!(body.to_string().len() < 1024, "the reply stays small");
    assert_eq!(host.get("/api/plugins").await.1, before);
    let (_, health) = host.get("/health").await;
    assert!(health.to_string().len() < 16 * 1024, "{} bytes", health.to_string().len());
    host.stop().await;
}

#[tokio::test]
async fn the_host_answers_while_an_upload_compiles() {
    let dir = tempfile::tempdir().unwrap();
    // A cache of its own, so the upload really compiles.
    let mut settings = cardrun_tests::host_settings(&dir.path().join("db"), "http://127.0.0.1:9", 4);
    settings.sandbox.cache_dir = Some(dir.path().join("artifacts"));
    let host = TestHost::start_with_settings(settings).await;
    // The JSON built-ins, 3.5 MB: about a second of Cranelift; refused in
    // the end (409, built-in types), but only after compiling.
    let big = built_plugin("cardrun_builtin_json_assertions");
    let mut bytes = big.clone();
    // A custom section at the end: other bytes, so not the cached
    // compilation of the built-in, and still a valid component.
    bytes.extend_from_slice(&[0, 5, 4, b'p', b'a', b'd', b'!']);
    let upload = {
        let (client, url) = (host.client.clone(), host.url("/api/plugins"));
        tokio::spawn(async move { client.post(url).body(bytes).send().await.map(|r| r.status().as_u16()) })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, _) = host.get("/health").await;
    assert_eq!(status, 200);
    assert!(!upload.is_finished(), "/health answered while the upload was still compiling");
    assert_eq!(upload.await.unwrap().unwrap(), 409);
    host.stop().await;
}
