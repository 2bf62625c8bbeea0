//! Assertion parameters are checked when a test case is written (issue 14,
//! point 4): by each plugin's `check` export, over real HTTP, for create,
//! update, suite import and evaluations; a plugin without `check` still
//! loads and its parameters are found at run time.

use cardrun::sandbox::AssertionSpec;
use cardrun_tests::{TestHost, sandbox};
use reqwest::Method;
use serde_json::{Value, json};

async fn host() -> (TestHost, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let plugin = std::path::PathBuf::from(cardrun::sandbox::builtin::PLUGIN_BUILD_DIR)
        .join("cardrun_test_trivial_assertion.wasm");
    let host = TestHost::start_with_plugins(&dir.path().join("db"), "http://127.0.0.1:9", 4, vec![plugin]).await;
    (host, dir)
}

fn case(card: i64, assertions: Value) -> Value {
    json!({"prompt_card_id": card, "name": "one", "input_variables": {"word": "hi"}, "assertions": assertions})
}

fn error_of(reply: &Value) -> &str {
    reply["error"].as_str().unwrap_or_else(|| panic!("an error message: {reply}"))
}

#[tokio::test]
async fn invalid_parameters_are_refused_when_a_test_case_is_created_or_updated() {
    let (host, _dir) = host().await;
    let (card, ids) = host.card_with_cases("{{word}}", vec![]).await;
    assert!(ids.is_empty());

    let refused = [
        (json!([{"type": "regex", "value": "(unclosed"}]), "invalid regex"),
        (
            json!([{"type": "contains", "value": "a"}, {"type": "not-regex", "value": "[z-a]"}]),
            "assertions[1] `not-regex`",
        ),
        (json!([{"type": "regex", "value": "a", "config": {"flags": "q"}}]), "unknown regex flag"),
        (json!([{"type": "length", "value": "9-3"}]), "lower end above"),
        (json!([{"type": "similarity", "value": "x", "threshold": 1.5}]), "minimum score"),
        (json!([{"type": "contains-any", "value": []}]), "at least one"),
        (json!([{"type": "json-schema"}]), "needs a JSON Schema"),
        (json!([{"type": "is-json", "value": {"type": "no-such-type"}}]), "invalid JSON Schema"),
        // `contains` without a value reads the expected output, absent here.
        (json!([{"type": "contains"}]), "expected output"),
    ];
    for (assertions, needle) in refused {
        let (status, reply) = host.post("/api/test-cases", case(card, assertions.clone())).await;
        assert_eq!(status, 400, "{assertions}: {reply}");
        assert!(error_of(&reply).contains(needle), "{assertions}: {reply}");
        assert!(error_of(&reply).contains("invalid parameters"), "{assertions}: {reply}");
    }
    let (_, cases) = host.get(&format!("/api/test-cases?prompt_card_id={card}")).await;
    assert_eq!(cases["data"], json!([]), "nothing refused was stored");

    // Valid parameters (and the same with an expected output) are accepted.
    let good = json!([{"type": "regex", "value": "^h(i|ello)$"}, {"type": "is-json", "value": {"type": "object"}}]);
    let (status, created) = host.post("/api/test-cases", case(card, good)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_i64().unwrap();
    let mut with_expected = case(card, json!([{"type": "contains"}]));
    with_expected["expected_output"] = json!("hi");
    assert_eq!(host.post("/api/test-cases", with_expected).await.0, 201);

    // An update with a bad parameter is refused and leaves the stored case.
    let (status, reply) = host
        .call(Method::PUT, &format!("/api/test-cases/{id}"), Some(case(card, json!([{"type": "regex", "value": "("}]))))
        .await;
    assert_eq!(status, 400, "{reply}");
    assert!(error_of(&reply).contains("invalid regex"), "{reply}");
    let (_, stored) = host.get(&format!("/api/test-cases/{id}")).await;
    assert_eq!(stored["data"]["assertions"][0]["value"], "^h(i|ello)$");

    // The built-ins say they check; a plugin of the plain `assertion`
    // world (no `check`) loads, says it does not, and is accepted.
    let (_, plugins) = host.get("/api/plugins").await;
    let checks = |name: &str| {
        plugins["data"]["assertions"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["checks_parameters"]
            .clone()
    };
    assert_eq!(checks("builtin-assertions"), true);
    assert_eq!(checks("builtin-json-assertions"), true);
    assert_eq!(checks("trivial"), false);
    let (status, reply) = host.post("/api/test-cases", case(card, json!([{"type": "same-as-expected"}]))).await;
    assert_eq!(status, 201, "{reply}");
    host.stop().await;
}

#[tokio::test]
async fn a_suite_with_invalid_parameters_is_refused_whole_with_every_problem() {
    let (host, _dir) = host().await;
    let suite = r#"description: Checked at import
prompts: ["Say {{word}}"]
providers: [echo]
defaultTest:
  assert:
    - type: length
      value: "9-3"
tests:
  - description: first
    vars: { word: hi }
    assert:
      - type: regex
        value: "(unclosed"
  - description: second
    vars: { word: yo }
  - description: third
    vars: { word: hey }
    assert:
      - type: json-schema
        value: { type: 12 }
"#;
    let resp = host.client.post(host.url("/api/prompt-cards/import")).body(suite).send().await.unwrap();
    let status = resp.status().as_u16();
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(status, 400, "{reply}");
    let error = error_of(&reply);
    assert!(error.contains("3 problems"), "{error}");
    assert!(error.contains("`first`, assert[1] `regex`: invalid parameters: invalid regex"), "{error}");
    assert!(
        error.contains("`length`") && error.contains("(and in 2 more tests)"),
        "the default assertion once: {error}"
    );
    assert!(error.contains("`third`") && error.contains("invalid JSON Schema"), "{error}");
    assert!(error.contains("line 12:"), "the regex's line: {error}");
    let (_, cards) = host.get("/api/prompt-cards").await;
    assert_eq!(cards["data"]["items"], json!([]), "nothing of a refused suite is stored: {cards}");

    // An evaluation of the same suite is refused the same way.
    let (status, reply) = host.post("/api/evaluations", json!({"suite": suite})).await;
    assert_eq!(status, 400, "{reply}");
    assert!(error_of(&reply).contains("invalid regex"), "{reply}");
    host.stop().await;
}

#[tokio::test]
async fn the_sdk_exports_check_and_plugins_without_it_are_checked_at_run_time() {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    // A plugin of the plain `assertion` world: accepted unchecked.
    let trivial = cardrun_tests::built_plugin("cardrun_test_trivial_assertion");
    let info = sandbox.add_assertion_plugin(&trivial).await.unwrap();
    assert!(!info.checks_parameters);
    let spec = AssertionSpec::new("same-as-expected", json!({"any": "thing"}));
    assert!(sandbox.check_parameters(None, &spec, None).await.is_ok());

    // The built-ins check, with `not-` and a threshold as written.
    let bad = sandbox.check_parameters(None, &AssertionSpec::new("not-regex", json!("(")), None).await.unwrap_err();
    assert_eq!(bad.code(), "invalid_parameters", "{bad}");
    let mut spec = AssertionSpec::new("contains-all", json!(["a", "b"]));
    spec.threshold = Some(0.5);
    assert!(sandbox.check_parameters(None, &spec, None).await.is_ok());
    spec.threshold = Some(0.0);
    assert!(sandbox.check_parameters(None, &spec, None).await.is_err());
    let unknown = sandbox.check_parameters(None, &AssertionSpec::new("vibes", Value::Null), None).await.unwrap_err();
    assert_eq!(unknown.code(), "unknown_assertion");

    // Identical parameters in one request are checked once.
    let mut checks = cardrun::sandbox::ParameterChecks::new(&sandbox, None);
    for _ in 0..3 {
        assert!(checks.check(&AssertionSpec::new("regex", json!("(")), None).await.is_err());
        assert!(checks.check(&AssertionSpec::new("regex", json!("a")), None).await.is_ok());
    }
    assert_eq!(checks.distinct(), 2);
}
