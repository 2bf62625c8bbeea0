//! The REST API over real HTTP: CRUD, suite import/export, validation.

use cardrun_tests::TestHost;
use cardrun_tests::fake_llm::FakeLlm;
use reqwest::Method;
use serde_json::json;

async fn host() -> (TestHost, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("cardrun.db"), "http://127.0.0.1:9", 8).await;
    (host, dir)
}

#[tokio::test]
async fn cards_and_test_cases_crud() {
    let (host, _dir) = host().await;
    let (status, card) = host
        .post(
            "/api/prompt-cards",
            json!({"title": "Capitals", "description": "geo", "prompt_template": "Capital of {{ country }}?"}),
        )
        .await;
    assert_eq!(status, 201, "{card}");
    assert_eq!(card["success"], true);
    assert_eq!(card["data"]["variables"], json!(["country"]));
    let id = card["data"]["id"].as_i64().unwrap();

    let (status, tc) = host
        .post(
            "/api/test-cases",
            json!({"prompt_card_id": id, "name": "France", "input_variables": {"country": "France"},
            "expected_output": "Paris", "assertions": [{"type": "icontains", "value": "paris"}]}),
        )
        .await;
    assert_eq!(status, 201, "{tc}");
    let tc_id = tc["data"]["id"].as_i64().unwrap();

    let (status, got) = host.get(&format!("/api/prompt-cards/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["data"]["test_cases"][0]["name"], "France");

    for n in 0..3 {
        host.post("/api/prompt-cards", json!({"title": format!("Other {n}"), "prompt_template": "x"})).await;
    }
    let (_, page) = host.get("/api/prompt-cards?page=1&limit=2").await;
    assert_eq!(page["data"]["total"], 4);
    assert_eq!(page["data"]["items"].as_array().unwrap().len(), 2);
    let (_, found) = host.get("/api/prompt-cards?search=Capit").await;
    assert_eq!(found["data"]["total"], 1);

    let (status, updated) = host
        .call(
            Method::PUT,
            &format!("/api/prompt-cards/{id}"),
            Some(json!({"title": "Capitals v2", "prompt_template": "Capital of {{country}}, please?"})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["data"]["title"], "Capitals v2");

    let (status, _) = host
        .call(
            Method::PUT,
            &format!("/api/test-cases/{tc_id}"),
            Some(json!({"prompt_card_id": id, "name": "France!", "input_variables": {"country": "France"}})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, listed) = host.get(&format!("/api/test-cases?prompt_card_id={id}")).await;
    assert_eq!(listed["data"][0]["name"], "France!");

    assert_eq!(host.call(Method::DELETE, &format!("/api/test-cases/{tc_id}"), None).await.0, 200);
    assert_eq!(host.get(&format!("/api/test-cases/{tc_id}")).await.0, 404);
    assert_eq!(host.call(Method::DELETE, &format!("/api/prompt-cards/{id}"), None).await.0, 200);
    assert_eq!(host.get(&format!("/api/prompt-cards/{id}")).await.0, 404);
}

#[tokio::test]
async fn crud_validation_errors_are_4xx_with_messages() {
    let (host, _dir) = host().await;
    let cases = [
        ("/api/prompt-cards", json!({"title": "", "prompt_template": "x"}), 400, "title"),
        ("/api/prompt-cards", json!({"title": "t"}), 400, "prompt_template"),
        ("/api/prompt-cards", json!({"title": "t", "prompt_template": "{{a}}", "variables": ["b"]}), 400, "undeclared"),
        ("/api/prompt-cards", json!({"title": "t", "prompt_template": "x", "colour": 1}), 400, "colour"),
        ("/api/test-cases", json!({"prompt_card_id": 999, "name": "x"}), 404, "999"),
    ];
    for (path, body, want, needle) in cases {
        let (status, reply) = host.post(path, body.clone()).await;
        assert_eq!(status, want, "{body}: {reply}");
        assert_eq!(reply["success"], false);
        assert!(reply["error"].as_str().unwrap().contains(needle), "{body}: {reply}");
    }
    let (card, _) = host.card_with_cases("Hi {{name}}", vec![]).await;
    let bad_cases = [
        (json!({"prompt_card_id": card, "name": "x", "input_variables": {}}), "name"),
        (
            json!({"prompt_card_id": card, "name": "x", "input_variables": {"name": "a"}, "assertions": [{"type": "vibes"}]}),
            "known types",
        ),
        (
            json!({"prompt_card_id": card, "name": "x", "input_variables": {"name": "a"}, "assertions": [{"type": "contains", "valu": 1}]}),
            "valu",
        ),
    ];
    for (body, needle) in bad_cases {
        let (status, reply) = host.post("/api/test-cases", body.clone()).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(reply["error"].as_str().unwrap().contains(needle), "{body}: {reply}");
    }
    // Malformed JSON, wrong content, bad ids, unknown routes.
    let raw = host
        .client
        .post(host.url("/api/prompt-cards"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(host.get("/api/prompt-cards/abc").await.0, 400);
    assert_eq!(host.get("/api/prompt-cards?limit=0").await.0, 400);
    assert_eq!(host.get("/api/test-cases").await.0, 400);
    assert_eq!(host.get("/api/nowhere").await.0, 404);
    let huge = "x".repeat(9 << 20);
    let (status, _) = host.post("/api/prompt-cards", json!({"title": "t", "prompt_template": huge})).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn importing_a_suite_again_updates_its_card_instead_of_copying_it() {
    let (host, _dir) = host().await;
    let suite = |france: &str, with_peru: bool| {
        let mut yaml = format!(
            "description: Capitals again\nprompts: ['Capital of {{{{country}}}}?']\ntests:\n  - description: France\n    vars: {{ country: France }}\n    assert: [{{ type: icontains, value: {france} }}]\n  - description: Chile\n    vars: {{ country: Chile }}\n"
        );
        if with_peru {
            yaml.push_str("  - description: Peru\n    vars: { country: Peru }\n");
        }
        yaml
    };
    let import = |yaml: String| {
        let host = &host;
        async move {
            let resp = host.client.post(host.url("/api/prompt-cards/import")).body(yaml).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, first) = import(suite("paris", true)).await;
    assert_eq!(status, 201, "{first}");
    let card = &first["data"]["cards"][0];
    assert_eq!(card["updated"], false);
    let ids: Vec<i64> = card["test_case_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 3);

    // Again, with France's assertion changed and Peru gone.
    let (status, second) = import(suite("lima", false)).await;
    assert_eq!(status, 200, "{second}");
    let again = &second["data"]["cards"][0];
    assert_eq!((again["updated"].as_bool(), &again["prompt_card"]["id"]), (Some(true), &card["prompt_card"]["id"]));
    assert_eq!(again["test_case_ids"], json!([ids[0], ids[1]]), "France and Chile keep their ids");
    let (_, list) = host.get("/api/prompt-cards?search=Capitals%20again").await;
    assert_eq!(list["data"]["total"], 1, "{list}");
    let (status, _) = host.get(&format!("/api/test-cases/{}", ids[2])).await;
    assert_eq!(status, 404, "Peru, no longer in the suite, is deleted");
    let (_, france) = host.get(&format!("/api/test-cases/{}", ids[0])).await;
    assert_eq!(france["data"]["assertions"][0]["value"], "lima", "{france}");
}

#[tokio::test]
async fn suite_yaml_import_and_export_round_trip() {
    let (host, _dir) = host().await;
    let yaml = r#"
description: Capitals
prompts:
  - "What is the capital of {{country}}?"
providers: [echo:echo]
tests:
  - description: France
    vars: { country: France }
    assert:
      - type: icontains
        value: france
  - vars: { country: Peru }
    expected: Lima
"#;
    let resp = host.client.post(host.url("/api/prompt-cards/import")).body(yaml).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = resp.json().await.unwrap();
    let card_id = body["data"]["cards"][0]["prompt_card"]["id"].as_i64().unwrap();
    assert_eq!(body["data"]["cards"][0]["test_case_ids"].as_array().unwrap().len(), 2);

    let exported = host.client.get(host.url(&format!("/api/prompt-cards/{card_id}/export"))).send().await.unwrap();
    assert_eq!(exported.headers()["content-type"], "application/yaml");
    let text = exported.text().await.unwrap();
    let suite = cardrun::suite::Suite::from_yaml(&text).unwrap();
    assert_eq!(suite.tests.len(), 2);
    assert_eq!(suite.tests[1].expected.as_deref(), Some("Lima"));
    assert_eq!(suite.tests[0].assertions[0].kind, "icontains");

    for (bad, needle) in [
        ("prompts: [", "YAML"),
        ("prompts: ['{{x}}']\ntests: [{vars: {}}]", "missing template variable"),
        ("prompts: ['x']\ntests: [{assert: [{type: vibes}]}]", "vibes"),
    ] {
        let resp = host.client.post(host.url("/api/prompt-cards/import")).body(bad).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(needle), "{bad}: {body}");
    }
}

#[tokio::test]
async fn health_names_the_queue_backend() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), &fake.base_url(), 4).await;
    let (status, body) = host.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["queue_backend"], "memory");
    assert_eq!(body["data"]["adapters"], json!(["anthropic", "echo", "ollama", "openai"]));
    let (status, res) = host.get("/api/parallel-test-execution/system/resources").await;
    assert_eq!(status, 200);
    assert!(res["data"]["current_usage"]["memory_total_mb"].as_u64().is_some(), "{res}");
    host.stop().await;
}

#[tokio::test]
async fn plugins_loaded_at_start_are_listed_and_usable() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = std::path::PathBuf::from(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR)
        .join("cardrun_test_trivial_assertion.wasm");
    let host = TestHost::start_with_plugins(&dir.path().join("db"), "http://127.0.0.1:9", 4, vec![plugin]).await;

    let (status, body) = host.get("/api/plugins").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["adapters"], json!(["anthropic", "echo", "ollama", "openai"]));
    let plugins = body["data"]["assertions"].as_array().unwrap();
    let named = |name: &str| plugins.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name}: {body}"));
    assert_eq!(named("trivial")["builtin"], false);
    assert_eq!(named("trivial")["assertion_types"], json!(["same-as-expected"]));
    assert_eq!(named("builtin-assertions")["builtin"], true);
    assert_eq!(named("builtin-json-assertions")["builtin"], true);
    assert_eq!(
        named("builtin-json-assertions")["assertion_types"],
        json!([
            "contains-html",
            "contains-json",
            "contains-sql",
            "contains-xml",
            "is-html",
            "is-json",
            "is-sql",
            "is-valid-openai-tools-call",
            "is-xml",
            "json-schema"
        ])
    );

    // The plugin's type validates and runs like a built-in one.
    assert_eq!(run_one(&host, "same-as-expected", "hi").await["passed_tests"], 1);
    host.stop().await;
}

/// Queues one test of `{{word}}` with `expected` and a single assertion of
/// `kind`, and returns the finished progress.
async fn run_one(host: &TestHost, kind: &str, expected: &str) -> serde_json::Value {
    let (card, ids) = host
        .card_with_cases(
            "{{word}}",
            vec![json!({"name": "one", "input_variables": {"word": "hi"}, "expected_output": expected,
                        "assertions": [{"type": kind}]})],
        )
        .await;
    let (status, queued) = host
        .post(
            "/api/parallel-test-execution/queue",
            json!({"prompt_card_id": card, "test_case_ids": ids, "model": "echo:echo"}),
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    host.wait_finished(queued["data"]["execution_id"].as_str().unwrap()).await
}

#[tokio::test]
async fn uploaded_plugins_are_usable_at_once_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let host = TestHost::start(&db, "http://127.0.0.1:9", 4).await;
    let plugin = cardrun_tests::built_plugin("cardrun_test_bare_assertion");

    let (status, body) = host.post_bytes("/api/plugins", plugin.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["name"], "bare");
    assert_eq!(body["data"]["assertion_types"], json!(["bare-same-as-expected"]));
    assert_eq!(body["data"]["builtin"], false);
    // The same bytes again: accepted, still one plugin.
    let (status, _) = host.post_bytes("/api/plugins", plugin).await;
    assert_eq!(status, 201);
    let (_, list) = host.get("/api/plugins").await;
    let bare = list["data"]["assertions"].as_array().unwrap().iter().filter(|p| p["name"] == "bare").count();
    assert_eq!(bare, 1, "{list}");

    assert_eq!(run_one(&host, "bare-same-as-expected", "hi").await["passed_tests"], 1);
    assert_eq!(run_one(&host, "not-bare-same-as-expected", "hi").await["failed_tests"], 1);
    host.stop().await;

    // A restarted host loads it from the store.
    let host = TestHost::start(&db, "http://127.0.0.1:9", 4).await;
    let (_, list) = host.get("/api/plugins").await;
    assert!(list["data"]["assertions"].as_array().unwrap().iter().any(|p| p["name"] == "bare"), "{list}");
    assert_eq!(run_one(&host, "bare-same-as-expected", "hi").await["passed_tests"], 1);
    host.stop().await;
}

#[tokio::test]
async fn bad_plugin_uploads_are_4xx_with_messages() {
    let (host, _dir) = host().await;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (Vec::new(), 400, "must be the plugin's .wasm component"),
        (b"plugins: [x]".to_vec(), 400, "not a WebAssembly binary"),
        (b"\0asm\x01\0\0\0".to_vec(), 400, "wasm32-wasip2"),
        (cardrun_tests::built_plugin("cardrun_adapter_echo"), 400, "`assertion` world"),
        (cardrun_tests::built_plugin("cardrun_builtin_assertions"), 409, "is built in"),
        // Over the 8 MiB limit of JSON bodies but under the plugin limit:
        // judged as a component, not refused for size.
        (vec![0u8; 9 << 20], 400, "not a WebAssembly binary"),
        (vec![0u8; 33 << 20], 413, ""),
    ];
    for (bytes, status, needle) in cases {
        let len = bytes.len();
        let (got, body) = host.post_bytes("/api/plugins", bytes).await;
        assert_eq!(got, status, "{len} bytes: {body}");
        assert_eq!(body["success"], false, "{body}");
        assert!(body["error"].as_str().unwrap().contains(needle), "{len} bytes: {body}");
    }
    // Nothing was registered.
    let (_, list) = host.get("/api/plugins").await;
    let builtins = cardrun::sandbox::builtin::ASSERTION_PLUGINS.len();
    assert_eq!(list["data"]["assertions"].as_array().unwrap().len(), builtins, "the built-ins only: {list}");
    host.stop().await;
}

/// Without keys, an uploaded adapter is shared: listed, usable and
/// deletable like any upload, while the built-in adapters cannot be deleted.
#[tokio::test]
async fn an_adapter_uploaded_without_a_key_is_listed_used_and_deleted() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("db"), "http://127.0.0.1:9", 4).await;
    let manifest = json!({"name": "team-llm", "config": {"base_url": fake.base_url()},
                          "allowed_hosts": [fake.base_url()]});
    let component = cardrun::sandbox::builtin::ADAPTERS.iter().find(|(n, _)| *n == "ollama").unwrap().1;
    let boundary = "cardrun-host-api-3b9e";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n{manifest}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"component\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(component);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let reply = host
        .client
        .post(host.url("/api/plugins"))
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201, "{}", reply.text().await.unwrap());
    let (_, list) = host.get("/api/plugins").await;
    assert_eq!(list["data"]["uploaded_adapters"][0]["name"], "team-llm", "{list}");
    assert!(list["data"]["adapters"].as_array().unwrap().contains(&json!("team-llm")), "{list}");
    let (card, _) =
        host.card_with_cases("Say {{w}}", vec![json!({"name": "one", "input_variables": {"w": "hi"}})]).await;
    let (status, queued) =
        host.post("/api/parallel-test-execution/queue", json!({"prompt_card_id": card, "model": "team-llm:m"})).await;
    assert_eq!(status, 202, "{queued}");
    let done = host.wait_finished(queued["data"]["execution_id"].as_str().unwrap()).await;
    assert_eq!(done["passed_tests"], 1, "{done}");
    assert_eq!(host.call(Method::DELETE, "/api/plugins/team-llm", None).await.0, 200);
    assert_eq!(host.call(Method::DELETE, "/api/plugins/ollama", None).await.0, 404, "built-ins stay");
    let (_, list) = host.get("/api/plugins").await;
    assert_eq!(list["data"]["uploaded_adapters"], json!([]), "{list}");
    host.stop().await;
}

#[tokio::test]
async fn metrics_are_prometheus_text_that_follows_the_work() {
    let (host, _dir) = host().await;
    let scrape = || async {
        let resp = reqwest::get(host.url("/metrics")).await.unwrap();
        assert_eq!(resp.status(), 200);
        let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
        resp.text().await.unwrap()
    };
    let before = scrape().await;
    assert!(before.contains("cardrun_tests_finished_total{status=\"passed\"} 0\n"), "{before}");

    assert_eq!(run_one(&host, "equals", "hi").await["passed_tests"], 1);
    assert_eq!(run_one(&host, "equals", "nope").await["failed_tests"], 1);
    let text = scrape().await;
    let plugins = format!("cardrun_assertion_plugins {}", cardrun::sandbox::builtin::ASSERTION_PLUGINS.len());
    for line in [
        "cardrun_tests_finished_total{status=\"passed\"} 1",
        "cardrun_tests_finished_total{status=\"failed\"} 1",
        "cardrun_tests_running 0",
        "cardrun_queue_jobs{state=\"waiting\"} 0",
        // A failed test does not fail its execution (only stop_on_first_failure does).
        "cardrun_executions{status=\"completed\"} 2",
        plugins.as_str(),
        "cardrun_build_info{version=\"0.1.0\"} 1",
        // Four attempts (the failing test is retried twice), each claimed
        // and run once.
        "cardrun_queue_wait_seconds_count 4",
        "cardrun_queue_wait_seconds_bucket{le=\"+Inf\"} 4",
        "cardrun_test_attempt_seconds_count 4",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }
    let value = |name: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in:\n{text}"));
        line.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()).expect("a number")
    };
    // The machine's real load decides the pressure (0 normal, 1 elevated,
    // 2 emergency); its exact value is tested with set figures in
    // `resources`.
    assert!([0.0, 1.0, 2.0].contains(&value("cardrun_resource_pressure ")), "{text}");
    let cache = value("cardrun_response_cache_requests_total{result=\"hit\"}")
        + value("cardrun_response_cache_requests_total{result=\"miss\"}");
    assert_eq!(cache, 2.0, "each first attempt is a cache hit or a miss (retries bypass the cache)");
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("cardrun_fuel_per_cpu_millisecond") > 0.0);
    assert!(value("cardrun_concurrency_limit{class=\"ordinary\"}") >= 1.0);
    // Buckets are cumulative.
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("cardrun_test_attempt_seconds_bucket"))
        .map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()).expect("a number"))
        .collect();
    assert!(buckets.len() > 2 && buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    // Every line is a comment or `name[{labels}] number`, in our namespace
    // or the standard process one.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line `{line}`"));
        assert!(name.starts_with("cardrun_") || name.starts_with("process_"), "{line}");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    host.stop().await;
}
