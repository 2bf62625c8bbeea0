//! The model-graded types and `similar`, through the whole engine: a suite
//! goes to `POST /api/evaluations`, the tests' assertions ask the grader,
//! and the host routes each call to the fake model server in grader mode
//! (the verdict is chosen by a `[[grade:...]]` marker the output carries).

use cardrun_tests::TestHost;
use cardrun_tests::fake_llm::FakeLlm;
use serde_json::{Value, json};

/// Runs `suite` on `host` (one pair) and returns its results by test name.
async fn run(host: &TestHost, suite: &str) -> Vec<Value> {
    let (status, started) = host.post("/api/evaluations", json!({"suite": suite})).await;
    assert_eq!(status, 202, "{started}");
    let pair = &started["data"]["pairs"][0];
    let execution = pair["execution_id"].as_str().unwrap();
    host.wait_finished(execution).await;
    host.results(execution).await["results"].as_array().unwrap().clone()
}

fn by_name<'a>(results: &'a [Value], name: &str) -> &'a Value {
    results.iter().find(|r| r["test_case_name"] == name).unwrap_or_else(|| panic!("no result `{name}`"))
}

#[tokio::test]
async fn every_model_graded_type_passes_fails_and_errors_as_documented() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("cardrun.db"), &fake.base_url(), 8).await;
    let mut tests = String::new();
    for (kind, value) in [
        ("llm-rubric", "is polite"),
        ("model-graded-closedqa", "names a city"),
        ("factuality", "Paris is the capital of France"),
        ("g-eval", "coherent and polite"),
        ("answer-relevance", ""),
    ] {
        let pass = if kind == "answer-relevance" { "questions=What is the capital of France" } else { "pass" };
        for (outcome, marker) in [("pass", pass), ("fail", "fail"), ("malformed", "malformed")] {
            let marker = if kind == "answer-relevance" && outcome == "fail" {
                "questions=How do bees make honey"
            } else {
                marker
            };
            // g-eval's first call (its steps) sees the criteria alone.
            let value = if kind == "g-eval" { format!("{value} [[grade:{marker}]]") } else { value.to_string() };
            tests.push_str(&format!(
                "  - description: {kind} {outcome}\n    vars: {{answer: 'Paris. [[grade:{marker}]]', query: What is the capital of France}}\n    assert: [{{type: {kind}, value: '{value}'}}]\n"
            ));
        }
    }
    let suite = format!(
        "prompts: ['{{{{answer}}}}']\nproviders: [ollama:m]\ndefaultTest:\n  options: {{provider: ollama:judge}}\ntests:\n{tests}"
    );
    let results = run(&host, &suite).await;
    assert_eq!(results.len(), 15);
    for kind in ["llm-rubric", "model-graded-closedqa", "factuality", "g-eval", "answer-relevance"] {
        let pass = by_name(&results, &format!("{kind} pass"));
        assert_eq!(pass["status"], "passed", "{pass}");
        assert!(pass["grading"]["calls"].as_u64().unwrap() >= 1, "grader calls are billed to the test: {pass}");
        let fail = by_name(&results, &format!("{kind} fail"));
        assert_eq!(fail["status"], "failed", "{fail}");
        assert!(fail["assertion_results"][0]["error"].is_null(), "a failure, not an error: {fail}");
        let malformed = by_name(&results, &format!("{kind} malformed"));
        assert_eq!(malformed["status"], "error", "{malformed}");
        let reason = malformed["assertion_results"][0]["reason"].as_str().unwrap();
        assert!(reason.contains("no JSON object"), "{kind}: {reason}");
    }
    // The grader is the suite's, not the model under test.
    let judged: Vec<_> = fake.seen().into_iter().filter(|s| s.body["model"] == "judge").collect();
    assert!(judged.iter().any(|s| s.path == "/api/generate"), "completions went to the judge");
    assert!(judged.iter().any(|s| s.path == "/api/embed"), "answer-relevance embedded through the judge");
    let rubric =
        judged.iter().find(|s| s.body["prompt"].as_str().unwrap_or_default().contains("cardrun llm-rubric")).unwrap();
    assert!(rubric.body["prompt"].as_str().unwrap().contains("<rubric>\nis polite\n</rubric>"));
    // g-eval's steps are a second grader call; its rating is out of 10.
    assert_eq!(by_name(&results, "g-eval pass")["grading"]["calls"], 2);
    assert_eq!(by_name(&results, "g-eval pass")["assertion_results"][0]["score"], 1.0);
}

#[tokio::test]
async fn grader_failures_are_errors_and_a_missing_grader_is_refused_up_front() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cardrun_tests::host_settings(&dir.path().join("cardrun.db"), &fake.base_url(), 4);
    // An Anthropic that nobody answers: the unreachable grader.
    settings.sandbox.endpoints.anthropic_base_url = "http://127.0.0.1:9".into();
    let host = TestHost::start_with_settings(settings).await;

    let suite = "prompts: ['{{a}}']\nproviders: [ollama:m]\ntests:\n\
        - description: unreachable\n  vars: {a: '[[grade:pass]]'}\n  options: {provider: anthropic:claude-judge}\n  assert: [{type: llm-rubric, value: ok}]\n\
        - description: no embeddings\n  vars: {a: x}\n  assert: [{type: similar, value: x, provider: anthropic:claude-judge}]\n\
        - description: ignores the failure\n  vars: {a: x}\n  assert: [{type: contains, value: x}, {type: llm-rubric, value: ok, provider: anthropic:claude-judge}]\n";
    let mut suite = suite.to_string();
    for kind in ["model-graded-closedqa", "factuality", "answer-relevance", "g-eval"] {
        suite.push_str(&format!(
            "- description: unreachable {kind}\n  vars: {{a: '[[grade:pass]]'}}\n  options: {{provider: anthropic:claude-judge}}\n  assert: [{{type: {kind}, value: ok}}]\n"
        ));
    }
    let results = run(&host, &suite).await;
    for kind in ["model-graded-closedqa", "factuality", "answer-relevance", "g-eval"] {
        let result = by_name(&results, &format!("unreachable {kind}"));
        assert_eq!(result["status"], "error", "{result}");
        assert_eq!(result["assertion_results"][0]["error"], "grader_error", "{result}");
    }
    let unreachable = by_name(&results, "unreachable");
    assert_eq!(unreachable["status"], "error", "{unreachable}");
    let reason = unreachable["assertion_results"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("grader:") && reason.contains("anthropic:claude-judge"), "{reason}");
    assert_eq!(unreachable["assertion_results"][0]["error"], "grader_error");
    let embeddings = by_name(&results, "no embeddings");
    assert_eq!(embeddings["status"], "error");
    let reason = embeddings["assertion_results"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("cannot embed"), "{reason}");
    assert_eq!(by_name(&results, "ignores the failure")["status"], "error");

    // No grader anywhere: refused when queued, naming where to set one.
    let suite =
        "prompts: ['{{a}}']\nproviders: [ollama:m]\ntests: [{vars: {a: x}, assert: [{type: llm-rubric, value: ok}]}]\n";
    let (status, reply) = host.post("/api/evaluations", json!({"suite": suite})).await;
    assert_eq!(status, 400, "{reply}");
    let message = reply.to_string();
    assert!(
        message.contains("llm-rubric") && message.contains("--grader") && message.contains("options.provider"),
        "{message}"
    );
    // An unknown grading adapter is refused too.
    let suite = "prompts: ['{{a}}']\nproviders: [ollama:m]\ntests: [{vars: {a: x}, options: {provider: bard:x}, assert: [{type: llm-rubric, value: ok}]}]\n";
    let (status, reply) = host.post("/api/evaluations", json!({"suite": suite})).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply.to_string().contains("bard"), "{reply}");
}

#[tokio::test]
async fn similar_passes_and_fails_by_threshold_with_either_embedding_api() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("cardrun.db"), &fake.base_url(), 4).await;
    let suite = "prompts: ['{{a}}']\nproviders: [ollama:m]\n\
        defaultTest: {options: {provider: {text: ollama:judge, embedding: 'openai:embedding:text-embedding-3-small'}}}\ntests:\n\
        - description: same words\n  vars: {a: the cat sat on the mat}\n  assert: [{type: similar, value: on the mat the cat sat}]\n\
        - description: other words\n  vars: {a: the cat sat on the mat}\n  assert: [{type: similar, value: quantum chromodynamics lattice}]\n\
        - description: strict\n  vars: {a: the cat sat on the mat}\n  assert: [{type: similar, value: the cat sat on a mat, threshold: 0.99}]\n\
        - description: ollama\n  vars: {a: the cat sat}\n  assert: [{type: similar, value: [dogs bark, the cat sat], provider: ollama:nomic-embed-text}]\n";
    let results = run(&host, suite).await;
    assert_eq!(by_name(&results, "same words")["status"], "passed");
    let other = by_name(&results, "other words");
    assert_eq!(other["status"], "failed", "{other}");
    assert!(other["assertion_results"][0]["reason"].as_str().unwrap().contains("threshold 0.75"));
    assert_eq!(by_name(&results, "strict")["status"], "failed");
    assert_eq!(by_name(&results, "ollama")["status"], "passed");
    let seen = fake.seen();
    let openai = seen.iter().find(|s| s.path == "/v1/embeddings").expect("OpenAI embeddings");
    assert_eq!(openai.body["model"], "text-embedding-3-small");
    let ollama = seen.iter().find(|s| s.path == "/api/embed").expect("Ollama embed");
    assert_eq!(ollama.body["model"], "nomic-embed-text");
}

#[tokio::test]
async fn grader_answers_are_cached_like_model_answers() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("cardrun.db"), &fake.base_url(), 4).await;
    let suite = "prompts: ['{{a}}']\nproviders: [ollama:m]\ndefaultTest: {options: {provider: ollama:judge}}\ntests:\n\
        - {description: one, vars: {a: 'ok [[grade:pass]]'}, assert: [{type: llm-rubric, value: fine}]}\n";
    let first = run(&host, suite).await;
    assert_eq!(first[0]["grading"]["cache_hits"], 0);
    let second = run(&host, suite).await;
    assert_eq!(second[0]["status"], "passed");
    assert_eq!(second[0]["grading"], json!({"calls": 1, "cache_hits": 1, "tokens": second[0]["grading"]["tokens"]}));
    let judged = fake.seen().into_iter().filter(|s| s.body["model"] == "judge").count();
    assert_eq!(judged, 1, "the second run's grading came from the cache");
}

#[tokio::test]
async fn cost_comes_from_the_price_table_or_config_and_is_asserted_and_totalled_per_pair() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("cardrun.db"), &fake.base_url(), 4).await;
    let suite = "prompts: ['{{a}}']\n\
        providers:\n  - openai:gpt-4o-mini\n  - {id: ollama:priced, config: {cost: 0.001}}\n  - ollama:unpriced\n\
        tests:\n\
        - description: cheap\n  vars: {a: one two three}\n  assert: [{type: cost, threshold: 0.01, metric: budget}, {type: finish-reason, value: stop, metric: budget}]\n\
        - description: tight\n  vars: {a: four five six}\n  assert: [{type: cost, value: 0.005}]\n";
    let (status, started) = host.post("/api/evaluations", json!({"suite": suite})).await;
    assert_eq!(status, 202, "{started}");
    let id = started["data"]["evaluation_id"].as_str().unwrap().to_string();
    for pair in started["data"]["pairs"].as_array().unwrap() {
        host.wait_finished(pair["execution_id"].as_str().unwrap()).await;
    }
    let (status, compared) = host.get(&format!("/api/evaluations/{id}/results")).await;
    assert_eq!(status, 200, "{compared}");
    let pairs = compared["data"]["pairs"].as_array().unwrap();
    let pair =
        |model: &str| pairs.iter().find(|p| p["model"] == model).unwrap_or_else(|| panic!("{model}: {compared}"));
    let execution = |model: &str| pair(model)["execution_id"].as_str().unwrap().to_string();

    // gpt-4o-mini at the built-in $0.15 / $0.60 per million: the fake
    // counts 11 prompt tokens and one per word of the answer.
    let openai = host.results(&execution("openai:gpt-4o-mini")).await["results"].as_array().unwrap().clone();
    let cheap = by_name(&openai, "cheap");
    let expected = 11.0 * 0.15e-6 + 3.0 * 0.60e-6;
    assert!((cheap["cost"].as_f64().unwrap() - expected).abs() < 1e-12, "{cheap}");
    assert_eq!(cheap["status"], "passed", "{cheap}");
    assert_eq!(by_name(&openai, "tight")["status"], "passed");

    // config.cost: $0.001 per token, 3 + 3 tokens.
    let priced = host.results(&execution("ollama:priced")).await["results"].as_array().unwrap().clone();
    assert!((by_name(&priced, "cheap")["cost"].as_f64().unwrap() - 0.006).abs() < 1e-12);
    assert_eq!(by_name(&priced, "cheap")["status"], "passed");
    let tight = by_name(&priced, "tight");
    assert_eq!(tight["status"], "failed", "{tight}");
    assert!(tight["assertion_results"][0]["reason"].as_str().unwrap().contains("$0.006000"), "{tight}");
    assert!((pair("ollama:priced")["cost_usd"].as_f64().unwrap() - 0.012).abs() < 1e-12, "{compared}");

    // No price: no cost, and `cost` cannot be judged.
    let unpriced = host.results(&execution("ollama:unpriced")).await["results"].as_array().unwrap().clone();
    let cheap = by_name(&unpriced, "cheap");
    assert_eq!(cheap["status"], "error", "{cheap}");
    assert!(cheap["cost"].is_null());
    assert!(cheap["assertion_results"][0]["reason"].as_str().unwrap().contains("config.cost"), "{cheap}");
    assert!(pair("ollama:unpriced")["cost_usd"].is_null());
    // `finish-reason` read the model's `done_reason`; the named metric is
    // totalled per pair.
    assert_eq!(cheap["assertion_results"][1]["passed"], true, "{cheap}");
    assert_eq!(
        pair("ollama:priced")["metrics"],
        json!([{"name": "budget", "passed": 2, "total": 2, "mean_score": 1.0}])
    );
    assert_eq!(pair("ollama:unpriced")["metrics"][0]["passed"], 1);
}

/// `perplexity` and `perplexity-score` read the tokens' log-probabilities,
/// which the host asks Ollama (`/api/generate`, `/api/chat`) and OpenAI for
/// only in tests that need them; an adapter without them is refused when
/// the test is queued.
#[tokio::test]
async fn perplexity_reads_log_probabilities_from_ollama_and_openai() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("cardrun.db"), &fake.base_url(), 4).await;
    // Each answer token at -0.5: perplexity e^0.5 = 1.649, score 0.378.
    let suite = "prompts: ['{{a}} [[logprob=-0.5]]']\n\
        providers: [ollama:m, 'ollama:chat:m', openai:gpt-4o-mini]\n\
        tests:\n\
        - description: confident enough\n  vars: {a: one}\n  assert: [{type: perplexity, threshold: 1.7}, {type: perplexity-score, threshold: 0.35}]\n\
        - description: too perplexed\n  vars: {a: two}\n  assert: [{type: perplexity, threshold: 1.6}]\n\
        - description: no logprobs asked\n  vars: {a: three}\n  assert: [{type: contains, value: three}]\n";
    let body = json!({"suite": suite, "configuration": {"max_retries": 0}});
    let (status, started) = host.post("/api/evaluations", body).await;
    assert_eq!(status, 202, "{started}");
    for pair in started["data"]["pairs"].as_array().unwrap() {
        let execution = pair["execution_id"].as_str().unwrap();
        host.wait_finished(execution).await;
        let results = host.results(execution).await["results"].as_array().unwrap().clone();
        let model = &pair["model"];
        let confident = by_name(&results, "confident enough");
        assert_eq!(confident["status"], "passed", "{model}: {confident}");
        let score = confident["assertion_results"][1]["score"].as_f64().unwrap();
        assert!((score - 1.0 / (1.0 + 0.5f64.exp())).abs() < 1e-9, "{model}: {confident}");
        let perplexed = by_name(&results, "too perplexed");
        assert_eq!(perplexed["status"], "failed", "{model}: {perplexed}");
        assert!(perplexed["assertion_results"][0]["reason"].as_str().unwrap().contains("1.649"), "{perplexed}");
        assert_eq!(by_name(&results, "no logprobs asked")["status"], "passed");
    }
    // Only the tests that read them asked for log-probabilities.
    let warm_up = |s: &cardrun_tests::fake_llm::Seen| s.path == "/api/generate" && s.body["prompt"] == "";
    let asked: Vec<bool> = fake.seen().iter().filter(|s| !warm_up(s)).map(|s| s.body["logprobs"] == true).collect();
    assert_eq!(asked.iter().filter(|&&a| a).count(), 6, "{asked:?}");
    assert_eq!(asked.iter().filter(|&&a| !a).count(), 3, "{asked:?}");

    // `echo` returns none: refused when queued, naming the adapter.
    let suite = "prompts: ['{{a}}']\nproviders: [echo:echo]\ntests:\n- vars: {a: x}\n  assert: [{type: perplexity, threshold: 2}]\n";
    let (status, reply) = host.post("/api/evaluations", json!({"suite": suite})).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("adapter `echo` does not return"), "{reply}");
}

/// promptfoo's `rubricPrompt`, on `defaultTest.options` (as chat messages)
/// and on an assertion (as text), replaces cardrun's grading prompt; a
/// placeholder that names nothing is refused when the suite is imported.
#[tokio::test]
async fn a_rubric_prompt_replaces_the_grading_prompt() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("cardrun.db"), &fake.base_url(), 4).await;
    let suite = "prompts: ['{{answer}}']\nproviders: [ollama:m]\n\
        defaultTest:\n  options:\n    provider: ollama:judge\n    rubricPrompt:\n      - {role: system, content: You grade strictly.}\n      - {role: user, content: '(cardrun custom chat) Output: {{ output }} Rubric: {{ rubric }} Topic: {{ topic }}'}\n\
        tests:\n\
        - description: chat prompt\n  vars: {answer: 'Hi [[grade:pass]]', topic: greetings}\n  assert: [{type: llm-rubric, value: is a greeting}]\n\
        - description: own prompt\n  vars: {answer: 'Bye [[grade:fail]]', topic: farewells}\n  assert: [{type: llm-rubric, value: is a greeting, rubricPrompt: '(cardrun custom text) {{output}} / {{rubric}}'}]\n";
    let results = run(&host, suite).await;
    assert_eq!(by_name(&results, "chat prompt")["status"], "passed");
    assert_eq!(by_name(&results, "own prompt")["status"], "failed");
    let judged: Vec<_> = fake.seen().into_iter().filter(|s| s.body["model"] == "judge").collect();
    let chat = judged.iter().find(|s| s.path == "/api/chat").expect("the chat prompt went as chat");
    assert_eq!(chat.body["messages"][0]["content"], "You grade strictly.");
    assert_eq!(
        chat.body["messages"][1]["content"],
        "(cardrun custom chat) Output: Hi [[grade:pass]] Rubric: is a greeting Topic: greetings"
    );
    let text = judged.iter().find(|s| s.path == "/api/generate" && s.body["prompt"] != "").expect("the text prompt");
    assert_eq!(text.body["prompt"], "(cardrun custom text) Bye [[grade:fail]] / is a greeting");

    // A placeholder that names nothing is an error, never an empty rubric;
    // a malformed one is refused at import.
    let typo = "prompts: ['{{a}}']\nproviders: [ollama:m]\ntests:\n- description: typo\n  vars: {a: x}\n  assert: [{type: llm-rubric, value: v, provider: ollama:judge, rubricPrompt: '{{ outptu }}'}]\n";
    let typo = by_name(&run(&host, typo).await, "typo").clone();
    assert_eq!(typo["status"], "error", "{typo}");
    assert!(typo["assertion_results"][0]["reason"].as_str().unwrap().contains("`{{ outptu }}`"), "{typo}");
    let unclosed = "prompts: ['{{a}}']\nproviders: [ollama:m]\ntests:\n- vars: {a: x}\n  assert: [{type: llm-rubric, value: v, provider: ollama:judge, rubricPrompt: '{{ output'}]\n";
    let (status, reply) = host.post("/api/evaluations", json!({"suite": unclosed})).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("without its"), "{reply}");
}

/// `select-best` across a 3-provider matrix: each pair's test waits until
/// every pair has run, then the grader sees the row's outputs once and the
/// pair it picks passes; the stored results of every pair say so. A
/// single-pair evaluation and a plain execution are refused.
#[tokio::test]
async fn select_best_picks_across_a_three_provider_matrix() {
    let fake = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = || {
        let mut settings = cardrun_tests::host_settings(&dir.path().join("cardrun.db"), &fake.base_url(), 4);
        // An Anthropic that nobody answers: the unreachable grader.
        settings.sandbox.endpoints.anthropic_base_url = "http://127.0.0.1:9".into();
        settings
    };
    let host = TestHost::start_with_settings(settings()).await;
    // echo's models answer "Say hi", "SAY HI" and "ih yaS".
    let suite = "prompts: ['Say {{w}}']\nproviders: [echo:echo, echo:upper, echo:reverse]\n\
        defaultTest: {options: {provider: ollama:judge}}\n\
        tests:\n\
        - description: loudest\n  vars: {w: hi}\n  assert: [{type: select-best, value: 'the loudest [[grade:best=1]]', metric: pick}, {type: regex, value: '.'}]\n\
        - description: plain\n  vars: {w: yo}\n  assert: [{type: regex, value: '.'}]\n\
        - description: garbled\n  vars: {w: so}\n  assert: [{type: select-best, value: 'loud [[grade:malformed]]'}]\n\
        - description: unreachable\n  vars: {w: no}\n  assert: [{type: select-best, value: loud, provider: anthropic:claude-judge}]\n";
    let (status, started) = host.post("/api/evaluations", json!({"suite": suite})).await;
    assert_eq!(status, 202, "{started}");
    let id = started["data"]["evaluation_id"].as_str().unwrap().to_string();
    let pairs = started["data"]["pairs"].as_array().unwrap().clone();
    for pair in &pairs {
        host.wait_finished(pair["execution_id"].as_str().unwrap()).await;
    }
    // Before the evaluation is read, each pair's `select-best` is pending,
    // and stays so across a restart of the host.
    let first = host.results(pairs[0]["execution_id"].as_str().unwrap()).await;
    let loudest = by_name(first["results"].as_array().unwrap(), "loudest");
    assert_eq!(loudest["assertion_results"][0]["pending"], true, "{loudest}");
    host.stop().await;
    let host = TestHost::start_with_settings(settings()).await;

    let (status, compared) = host.get(&format!("/api/evaluations/{id}/results")).await;
    assert_eq!(status, 200, "{compared}");
    let mut statuses = Vec::new();
    for pair in &pairs {
        let results = host.results(pair["execution_id"].as_str().unwrap()).await;
        let loudest = by_name(results["results"].as_array().unwrap(), "loudest").clone();
        assert!(loudest["assertion_results"][0]["pending"].is_null(), "decided and stored: {loudest}");
        statuses.push(loudest["status"].as_str().unwrap().to_string());
    }
    assert_eq!(statuses, ["failed", "passed", "failed"], "{compared}");
    let rows = compared["data"]["tests"].as_array().unwrap();
    let row = rows.iter().find(|r| r["name"] == "loudest").unwrap();
    assert_eq!(row["verdicts"], json!(["failed", "passed", "failed"]), "{row}");
    // A verdict that cannot be read, or a grader that cannot be reached, is
    // an error in every pair, never a pass.
    for name in ["garbled", "unreachable"] {
        let row = rows.iter().find(|r| r["name"] == name).unwrap();
        assert_eq!(row["verdicts"], json!(["error", "error", "error"]), "{row}");
    }
    let plain = rows.iter().find(|r| r["name"] == "plain").unwrap();
    assert_eq!(plain["verdicts"], json!(["passed", "passed", "passed"]), "{plain}");
    // One grader call per row: the other pairs were answered by the cache.
    let judged = fake.seen().into_iter().filter(|s| s.body["model"] == "judge").count();
    assert_eq!(judged, 2, "`loudest` and `garbled` once each");
    let prompts: Vec<String> = fake
        .seen()
        .into_iter()
        .filter(|s| s.body["model"] == "judge")
        .map(|s| s.body["prompt"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(prompts.iter().any(|p| p.contains("<output index=\"2\">\nih yaS\n</output>")), "{prompts:?}");
    // Reading again decides nothing more.
    host.get(&format!("/api/evaluations/{id}/results")).await;
    assert_eq!(fake.seen().into_iter().filter(|s| s.body["model"] == "judge").count(), 2);

    // Alone, it has nothing to compare.
    let single = "prompts: ['Say {{w}}']\nproviders: [echo:echo]\ndefaultTest: {options: {provider: ollama:judge}}\ntests:\n- vars: {w: hi}\n  assert: [{type: select-best, value: loud}]\n";
    let (status, reply) = host.post("/api/evaluations", json!({"suite": single})).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("single pair"), "{reply}");
    let card = pairs[0]["prompt_card_id"].clone();
    let (status, reply) =
        host.post("/api/parallel-test-execution/queue", json!({"prompt_card_id": card, "model": "echo:echo"})).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("run the suite as an evaluation"), "{reply}");
}
