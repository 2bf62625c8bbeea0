//! Every built-in assertion type through the real Wasm component: a pass, a
//! failure and a bad-parameter case each, plus negation.

use cardrun::sandbox::{AssertionSpec, Limits, Subject, TokenUsage};
use cardrun_tests::sandbox;
use serde_json::{Value, json};

fn spec(kind: &str, value: Value) -> AssertionSpec {
    AssertionSpec::new(kind, value)
}

fn subject(output: &str) -> Subject {
    Subject { output: output.to_string(), ..Subject::default() }
}

/// `(type, value, threshold, config, output, expected outcome)`; `None` as
/// the outcome means "an error (bad parameters)".
type Case = (&'static str, Value, Option<f64>, Option<Value>, &'static str, Option<bool>);

fn cases() -> Vec<Case> {
    vec![
        ("equals", json!("Paris"), None, None, "Paris", Some(true)),
        ("equals", json!("Paris"), None, None, "paris", Some(false)),
        ("equals", json!({"a": 1}), None, None, "{\"a\": 1}", Some(true)),
        ("equals", Value::Null, None, None, "x", None),
        ("contains", json!("cat"), None, None, "a cat sat", Some(true)),
        ("contains", json!("dog"), None, None, "a cat sat", Some(false)),
        ("contains", json!(3), None, None, "a cat sat", None),
        ("icontains", json!("CAT"), None, None, "a cat sat", Some(true)),
        ("icontains", json!("DOG"), None, None, "a cat sat", Some(false)),
        ("icontains", json!([1]), None, None, "x", None),
        ("contains-any", json!(["dog", "cat"]), None, None, "a cat", Some(true)),
        ("contains-any", json!(["dog", "cow"]), None, None, "a cat", Some(false)),
        ("contains-any", json!(7), None, None, "a cat", None),
        ("contains-all", json!(["a", "cat"]), None, None, "a cat", Some(true)),
        ("contains-all", json!(["a", "dog"]), None, None, "a cat", Some(false)),
        ("contains-all", json!([]), None, None, "a cat", None),
        ("starts-with", json!("Hello"), None, None, "Hello world", Some(true)),
        ("starts-with", json!("world"), None, None, "Hello world", Some(false)),
        ("starts-with", json!({}), None, None, "Hello", None),
        ("ends-with", json!("world"), None, None, "Hello world", Some(true)),
        ("ends-with", json!("Hello"), None, None, "Hello world", Some(false)),
        ("ends-with", json!(false), None, None, "Hello", None),
        ("regex", json!("^\\d{3}-\\d{4}$"), None, None, "555-1234", Some(true)),
        ("regex", json!("/^hello/i"), None, None, "HELLO there", Some(true)),
        ("regex", json!("^hello"), None, Some(json!({"flags": "i"})), "HELLO", Some(true)),
        ("regex", json!("^hello"), None, None, "HELLO", Some(false)),
        ("regex", json!("(unclosed"), None, None, "x", None),
        ("length", json!(5), None, None, "abcde", Some(true)),
        ("length", json!("3-10"), None, None, "abcde", Some(true)),
        ("length", json!(">=5"), None, None, "abcde", Some(true)),
        ("length", json!(">=6"), None, None, "abcde", Some(false)),
        ("length", json!("<=5"), None, None, "abcde", Some(true)),
        ("length", json!("<=4"), None, None, "abcde", Some(false)),
        ("length", json!(">4"), None, None, "abcde", Some(true)),
        ("length", json!("<5"), None, None, "abcde", Some(false)),
        ("length", json!("lots"), None, None, "abcde", None),
        ("word-count", json!("2-3"), None, None, "one two three", Some(true)),
        ("word-count", json!("<3"), None, None, "one two three", Some(false)),
        ("word-count", json!(true), None, None, "one", None),
        ("is-json", Value::Null, None, None, "{\"ok\": true}", Some(true)),
        ("is-json", Value::Null, None, None, "{ok: true}", Some(false)),
        ("is-json", json!({"type": 5}), None, None, "{}", None),
        ("contains-json", Value::Null, None, None, "Here:\n```json\n{\"a\": [1, 2]}\n```", Some(true)),
        ("contains-json", Value::Null, None, None, "The answer is {\"a\": 1}.", Some(true)),
        ("contains-json", Value::Null, None, None, "no json here", Some(false)),
        ("contains-json", json!({"type": "nope"}), None, None, "{\"a\": 1}", None),
        (
            "json-schema",
            json!({"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}, "required": ["age"]}),
            None,
            None,
            "{\"age\": 42}",
            Some(true),
        ),
        ("json-schema", json!({"type": "object", "required": ["age"]}), None, None, "{\"name\": \"x\"}", Some(false)),
        (
            "json-schema",
            json!({"type": "array", "prefixItems": [{"type": "string"}], "items": false}),
            None,
            None,
            "[\"a\", 1]",
            Some(false),
        ),
        ("json-schema", json!({"minimum": "zero"}), None, None, "1", None),
        ("levenshtein", json!("kitten"), Some(3.0), None, "sitting", Some(true)),
        ("levenshtein", json!("kitten"), Some(2.0), None, "sitting", Some(false)),
        ("levenshtein", json!("kitten"), Some(-1.0), None, "sitting", None),
        ("similarity", json!("the cat sat on the mat"), Some(0.8), None, "The cat sat on a mat", Some(true)),
        ("similarity", json!("the cat sat on the mat"), Some(0.8), None, "quantum chromodynamics", Some(false)),
        ("similarity", json!("x"), Some(2.0), None, "x", None),
        ("similarity", json!("x"), Some(0.0), None, "x", None),
        ("levenshtein", json!("abc"), None, None, "xyz", Some(true)),
        ("contains-all", json!(["a", "cat", "dog"]), Some(0.6), None, "a cat", Some(true)),
        ("contains-all", json!(["a", "cat", "dog"]), Some(0.7), None, "a cat", Some(false)),
        ("latency", json!(100), None, None, "x", Some(true)),
        ("latency", json!("<=10"), None, None, "x", Some(false)),
        ("latency", Value::Null, None, None, "x", None),
        ("tokens", json!(50), None, None, "x", Some(true)),
        ("tokens", json!(10), None, None, "x", Some(false)),
        ("tokens", json!("many"), None, None, "x", None),
        ("icontains-any", json!(["DOG", "CAT"]), None, None, "a cat", Some(true)),
        ("icontains-any", json!(["DOG"]), None, None, "a cat", Some(false)),
        ("icontains-any", json!(7), None, None, "a cat", None),
        ("icontains-all", json!(["A", "CAT"]), None, None, "a cat", Some(true)),
        ("icontains-all", json!(["A", "DOG"]), None, None, "a cat", Some(false)),
        ("icontains-all", json!([]), None, None, "a cat", None),
        ("rouge-n", json!("the cat sat on the mat"), None, None, "the cat sat on a mat", Some(true)),
        ("rouge-n", json!("the cat sat on the mat"), None, None, "dogs bark", Some(false)),
        ("rouge-n", json!(5), None, None, "x", None),
        (
            "bleu",
            json!("the quick brown fox jumps over the lazy dog"),
            None,
            None,
            "the quick brown fox jumps over the lazy dog",
            Some(true),
        ),
        ("bleu", json!("the quick brown fox jumps over the lazy dog"), None, None, "a slow red cat", Some(false)),
        ("bleu", json!({"ref": 1}), None, None, "x", None),
        ("is-refusal", Value::Null, None, None, "I'm sorry, but I can't help with that.", Some(true)),
        ("is-refusal", Value::Null, None, None, "Paris is the capital of France.", Some(false)),
        ("is-refusal", json!("yes"), None, None, "x", None),
        ("is-xml", json!("note.to"), None, None, "<note><to>Ada</to></note>", Some(true)),
        ("is-xml", Value::Null, None, None, "<note><to>Ada</note>", Some(false)),
        ("is-xml", json!(3), None, None, "<a/>", None),
        ("contains-xml", Value::Null, None, None, "Here: <a><b/></a> done", Some(true)),
        ("contains-xml", Value::Null, None, None, "no markup here", Some(false)),
        ("contains-xml", json!("a..b"), None, None, "<a/>", None),
        (
            "is-valid-openai-tools-call",
            json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "required": ["city"]}}}]),
            None,
            None,
            r#"[{"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]"#,
            Some(true),
        ),
        ("is-valid-openai-tools-call", Value::Null, None, None, "the weather is nice", Some(false)),
        ("is-valid-openai-tools-call", json!("tools"), None, None, "{}", None),
        ("is-html", Value::Null, None, None, "<div><p>Hi</p></div>", Some(true)),
        ("is-html", Value::Null, None, None, "Hi <p>there</p>", Some(false)),
        ("is-html", json!("div"), None, None, "<p/>", None),
        ("contains-html", Value::Null, None, None, "Hi <p>there</p>", Some(true)),
        ("contains-html", Value::Null, None, None, "if a < b and c > d", Some(false)),
        ("contains-html", json!(1), None, None, "x", None),
        ("is-sql", json!({"allowedTables": ["users"]}), None, None, "SELECT name FROM users WHERE id = 1", Some(true)),
        ("is-sql", Value::Null, None, None, "SELEC name FROM users", Some(false)),
        ("is-sql", json!({"databaseType": "oracle9"}), None, None, "SELECT 1", None),
        ("contains-sql", Value::Null, None, None, "Here:\n```sql\nSELECT 1;\n```", Some(true)),
        ("contains-sql", Value::Null, None, None, "no query here", Some(false)),
        ("contains-sql", json!(["users"]), None, None, "SELECT 1", None),
        ("javascript", json!("output.startsWith('Hello')"), None, None, "Hello world", Some(true)),
        ("javascript", json!("output.length / 100"), Some(0.5), None, "Hello world", Some(false)),
        ("javascript", json!("output.includes("), None, None, "x", None),
        // The subject's model call has no finish reason and no price here
        // (graded_assertions.rs runs both against a model).
        ("finish-reason", json!("stop"), None, None, "x", Some(false)),
        ("cost", json!(0.01), None, None, "x", None),
        // No log-probabilities here: an error, never a pass (with them below).
        ("perplexity", Value::Null, Some(2.0), None, "x", None),
        ("perplexity-score", Value::Null, None, None, "x", None),
    ]
}

#[tokio::test]
async fn every_builtin_type_passes_fails_and_rejects_bad_parameters() {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    let limits = Limits::default();
    let mut covered = std::collections::BTreeSet::new();
    for (kind, value, threshold, config, output, expected) in cases() {
        let mut s = spec(kind, value.clone());
        s.threshold = threshold;
        s.config = config;
        let mut subj = subject(output);
        subj.latency_ms = 40;
        subj.tokens = Some(TokenUsage { prompt: 12, completion: 8 });
        let outcome = sandbox.evaluate(&s, &subj, &limits).await;
        match expected {
            Some(pass) => {
                assert!(outcome.error.is_none(), "{kind} {value}: unexpected error {:?}", outcome.error);
                assert_eq!(outcome.passed, pass, "{kind} {value} on {output:?}: {}", outcome.reason);
                assert!(outcome.fuel_used > 0, "{kind}: fuel is measured");
            }
            None => {
                assert!(!outcome.passed, "{kind} {value}: bad parameters must not pass");
                assert_eq!(
                    outcome.error.as_ref().map(|e| e.code()),
                    Some("plugin_error"),
                    "{kind} {value}: {}",
                    outcome.reason
                );
            }
        }
        covered.insert(kind);
    }
    // The model-graded types pass and fail with a grader in
    // `graded_assertions.rs`; here, without one, each is an error.
    for kind in ["llm-rubric", "model-graded-closedqa", "factuality", "answer-relevance", "g-eval", "similar"] {
        let subj = Subject { prompt: "Say thanks".into(), ..subject("Thank you") };
        let outcome = sandbox.evaluate(&spec(kind, json!("polite")), &subj, &limits).await;
        assert!(!outcome.passed, "{kind} passed without a grader");
        assert_eq!(outcome.error.as_ref().map(|e| e.code()), Some("grader_error"), "{kind}: {}", outcome.reason);
        assert!(outcome.reason.contains("no grader model is configured"), "{kind}: {}", outcome.reason);
        covered.insert(kind);
    }
    // With the model call's log-probabilities (-0.5 each: perplexity 1.649).
    let scored = Subject { logprobs: Some(std::sync::Arc::from([-0.5, -0.5])), ..subject("a b") };
    for (kind, threshold, pass) in
        [("perplexity", 1.7, true), ("perplexity", 1.6, false), ("perplexity-score", 0.35, true)]
    {
        let mut s = spec(kind, Value::Null);
        s.threshold = Some(threshold);
        let outcome = sandbox.evaluate(&s, &scored, &limits).await;
        assert!(outcome.error.is_none() && outcome.passed == pass, "{kind} {threshold}: {}", outcome.reason);
    }
    // `select-best` is judged across an evaluation's pairs
    // (graded_assertions.rs); alone it is an error, never a pass.
    let alone = sandbox.evaluate(&spec("select-best", json!("loudest")), &subject("HI"), &limits).await;
    assert_eq!(alone.error.as_ref().map(|e| e.code()), Some("plugin_error"), "{}", alone.reason);
    assert!(alone.reason.contains("once every pair has run"), "{}", alone.reason);
    covered.insert("select-best");
    let types = sandbox.assertion_types();
    for t in &types {
        assert!(covered.contains(t.as_str()), "built-in type {t} has no test case");
    }
    assert_eq!(types.len(), 41, "{types:?}");
}

#[tokio::test]
async fn not_prefix_negates_any_type() {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    let limits = Limits::default();
    let out = sandbox.evaluate(&spec("not-contains", json!("dog")), &subject("a cat"), &limits).await;
    assert!(out.passed, "{}", out.reason);
    assert_eq!(out.score, 1.0);
    let out = sandbox.evaluate(&spec("not-contains", json!("cat")), &subject("a cat"), &limits).await;
    assert!(!out.passed);
    let mut sim = spec("not-similarity", json!("alpha beta"));
    sim.threshold = Some(0.9);
    let out = sandbox.evaluate(&sim, &subject("gamma delta"), &limits).await;
    assert!(out.passed && out.score > 0.9, "{out:?}");
    let out = sandbox.evaluate(&spec("not-length", json!(">=3")), &subject("ab"), &limits).await;
    assert!(out.passed);
    // A bad parameter stays an error when negated: it must not turn into a pass.
    let out = sandbox.evaluate(&spec("not-regex", json!("(")), &subject("x"), &limits).await;
    assert!(!out.passed && out.error.is_some());
}

#[tokio::test]
async fn unknown_type_lists_the_known_ones() {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    let out = sandbox.evaluate(&spec("vibes", json!(1)), &subject("x"), &Limits::default()).await;
    assert!(!out.passed);
    assert_eq!(out.error.as_ref().map(|e| e.code()), Some("unknown_assertion"));
    assert!(out.reason.contains("contains-all") && out.reason.contains("json-schema"), "{}", out.reason);
    let err = sandbox.assertion_plugin("not-vibes").err().expect("unknown");
    assert!(err.to_string().contains("not-vibes"));
}

#[tokio::test]
async fn equals_uses_expected_output_when_no_value() {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    let mut subj = subject("42");
    subj.expected = Some("42".into());
    let out = sandbox.evaluate(&spec("equals", Value::Null), &subj, &Limits::default()).await;
    assert!(out.passed, "{}", out.reason);
}
