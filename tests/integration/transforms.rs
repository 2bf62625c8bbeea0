//! promptfoo's `transform` (a test's and an assertion's) and a card's
//! custom template `filters`, through the REST API: JavaScript run in the
//! sandbox, refused with a 400 when it does not compile, an error (never a
//! pass) when it throws or runs away.

use cardrun::sandbox::{Limits, SandboxError};
use cardrun_tests::fake_llm::FakeLlm;
use cardrun_tests::{TestHost, sandbox};
use serde_json::{Value, json};

async fn run(host: &TestHost, card: Value, model: &str) -> Value {
    // The runaway transform burns its fuel budget: 2 % of 5 s, 100 ms of
    // CPU. Boa burns fuel at about 40 % of the calibrated rate
    // (docs/BENCHMARKS.md), so that is about 250 ms of wall time, well
    // inside the deadline even on a loaded machine (at the default 20 % it
    // was 2.5 s of a 5 s deadline).
    let configuration = json!({"timeout_per_test": 5000, "max_retries": 0, "resource_limits": {"cpu_percent": 2}});
    let body = json!({"prompt_card_id": card, "model": model, "configuration": configuration});
    let (status, reply) = host.post("/api/parallel-test-execution/queue", body).await;
    assert_eq!(status, 202, "{reply}");
    let id = reply["data"]["execution_id"].as_str().unwrap().to_string();
    host.wait_finished(&id).await;
    host.results(&id).await
}

fn result<'a>(results: &'a Value, name: &str) -> &'a Value {
    results["results"].as_array().unwrap().iter().find(|r| r["test_case_name"] == name).unwrap()
}

#[tokio::test]
async fn transforms_and_filters_run_in_the_sandbox_through_the_api() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("cardrun.db"), &fake.base_url(), 4).await;

    let (status, card) = host
        .post(
            "/api/prompt-cards",
            json!({
                "title": "filters",
                "prompt_template": "Say {{ word | twice(' ') }} to {{ name | initials }}",
                "filters": {
                    "twice": "(s, sep) => [s, s].join(sep)",
                    "initials": "function (n) { return n.split(' ').map(p => p[0]).join('.'); }"
                }
            }),
        )
        .await;
    assert_eq!(status, 201, "{card}");
    assert_eq!(card["data"]["filters"]["twice"], "(s, sep) => [s, s].join(sep)");
    let card_id = card["data"]["id"].clone();
    let case = |name: &str, extra: Value| {
        let mut body =
            json!({"prompt_card_id": card_id, "name": name, "input_variables": {"word": "hi", "name": "Ada Lovelace"}});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for body in [
        case("plain", json!({"assertions": [{"type": "equals", "value": "SAY HI HI TO A.L"}]})),
        case(
            "test transform",
            json!({"transform": "output.toLowerCase()", "assertions": [{"type": "equals", "value": "say hi hi to a.l"}]}),
        ),
        case(
            "assertion transform",
            json!({"assertions": [
                {"type": "equals", "value": "5", "transform": "output.split(' ').length"},
                {"type": "starts-with", "value": "SAY"}
            ]}),
        ),
        case(
            "throws",
            json!({"transform": "JSON.parse(output)", "assertions": [{"type": "contains", "value": "SAY"}]}),
        ),
        case(
            "runs away",
            json!({"transform": "while (true) {}\nreturn output;", "assertions": [{"type": "contains", "value": "SAY"}]}),
        ),
    ] {
        let (status, reply) = host.post("/api/test-cases", body).await;
        assert_eq!(status, 201, "{reply}");
    }
    // `echo:upper` answers with the prompt in capitals: the filters ran.
    let results = run(&host, card_id.clone(), "echo:upper").await;
    assert_eq!(result(&results, "plain")["llm_output"], "SAY HI HI TO A.L");
    assert_eq!(result(&results, "plain")["status"], "passed");
    let transformed = result(&results, "test transform");
    assert_eq!(
        (transformed["status"].as_str(), transformed["llm_output"].as_str()),
        (Some("passed"), Some("say hi hi to a.l"))
    );
    let per_assertion = result(&results, "assertion transform");
    assert_eq!(per_assertion["status"], "passed", "{per_assertion}");
    assert_eq!(per_assertion["llm_output"], "SAY HI HI TO A.L", "an assertion's transform leaves the output alone");
    let threw = result(&results, "throws");
    assert_eq!(threw["status"], "error", "{threw}");
    assert!(threw["error"].as_str().unwrap().starts_with("script_error: transform:"), "{threw}");
    assert_eq!(threw["llm_output"], "SAY HI HI TO A.L", "the model's output is kept to show why");
    let runaway = result(&results, "runs away");
    assert_eq!(runaway["status"], "error", "{runaway}");
    assert!(runaway["error"].as_str().unwrap().starts_with("out_of_fuel: transform:"), "{runaway}");

    // The export keeps the transforms and says the filters are not in it.
    let export = host.client.get(host.url(&format!("/api/prompt-cards/{card_id}/export"))).send().await.unwrap();
    let yaml = export.text().await.unwrap();
    assert!(yaml.starts_with("# This card's custom filters (initials, twice) are not exported"), "{yaml}");
    assert!(
        yaml.contains("transform: output.toLowerCase()") && yaml.contains("transform: output.split(' ').length"),
        "{yaml}"
    );

    // What does not compile is refused when written, naming the part.
    let (status, reply) = host.post("/api/test-cases", case("bad", json!({"transform": "output.("}))).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("transform: the script does not compile"), "{reply}");
    let (status, reply) = host
        .post(
            "/api/test-cases",
            case("bad", json!({"assertions": [{"type": "contains", "value": "x", "transform": "}"}]})),
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("assertions[0] `contains`"), "{reply}");
    for (filters, needle) in [
        (json!({"shout": "(s => "}), "filters.shout: the script failed: the script does not compile"),
        (json!({"no-dash": "(s => s)"}), "`no-dash` is not a filter name"),
    ] {
        let body = json!({"title": "bad", "prompt_template": "{{ a | shout }}", "filters": filters});
        let (status, reply) = host.post("/api/prompt-cards", body).await;
        assert_eq!(status, 400, "{reply}");
        assert!(reply["error"].as_str().unwrap().contains(needle), "{needle} not in {reply}");
    }
    // A filter that is not a function, or throws, refuses the execution
    // when it is queued, naming the filter and the test.
    let (status, card) = host
        .post(
            "/api/prompt-cards",
            json!({"title": "throws", "prompt_template": "{{ a | boom }}", "filters": {"boom": "(s) => { throw new Error('no ' + s); }"}}),
        )
        .await;
    assert_eq!(status, 201, "{card}");
    let card_id = card["data"]["id"].clone();
    let (status, reply) = host
        .post("/api/test-cases", json!({"prompt_card_id": card_id, "name": "t", "input_variables": {"a": "way"}}))
        .await;
    assert_eq!(status, 201, "{reply}");
    let (status, reply) = host
        .post("/api/parallel-test-execution/queue", json!({"prompt_card_id": card_id, "model": "echo:upper"}))
        .await;
    assert_eq!(status, 400, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains("filter `boom`") && error.contains("no way") && error.contains("(t)"), "{error}");
}

/// A transform sees exactly what promptfoo gives it, and a hostile one is
/// held by the same limits as any plugin.
#[tokio::test]
async fn a_transform_gets_output_and_context_and_its_limits() {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    let subject = cardrun::sandbox::Subject {
        output: "out".into(),
        expected: Some("exp".into()),
        variables: vec![("city".into(), "Lisbon".into())],
        prompt: "p".into(),
        ..Default::default()
    };
    let limits = Limits::default();
    let seen = sandbox
        .transform(
            "JSON.stringify([output, context.vars.city, context.prompt, context.test.expected])",
            &subject.output,
            subject.script_context(),
            &limits,
        )
        .await
        .unwrap();
    assert_eq!(seen, r#"["out","Lisbon","p","exp"]"#);
    let hoard = sandbox.transform("'x'.repeat(1 << 30)", "o", Value::Null, &limits).await.unwrap_err();
    // Boa's allocation fails inside the guest: a trap or the memory limit, never a result.
    assert!(matches!(hoard, SandboxError::MemoryLimit { .. } | SandboxError::Trap { .. }), "{hoard:?}");
    let big = sandbox.transform("'x'.repeat(4 << 20)", "o", Value::Null, &limits).await.unwrap_err();
    assert!(matches!(big, SandboxError::OutputTooLarge { .. }), "{big:?}");
    let not_json = sandbox.run_script("(() => { const a = {}; a.a = a; return a; })", &[], &limits).await.unwrap_err();
    assert_eq!(not_json.code(), "script_error", "{not_json:?}");
}
