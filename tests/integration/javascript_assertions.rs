//! The built-in `javascript` assertion type: promptfoo's scripts run by Boa
//! inside a component, with the sandbox's limits, a fresh realm per test.

use cardrun::sandbox::{AssertionOutcome, AssertionSpec, Limits, Sandbox, SandboxError, Subject};
use cardrun_tests::sandbox;
use serde_json::json;

async fn judge(sandbox: &Sandbox, source: &str, output: &str, limits: &Limits) -> AssertionOutcome {
    let subject = Subject {
        output: output.into(),
        variables: vec![("city".into(), "Lisbon".into())],
        prompt: "Where to?".into(),
        ..Default::default()
    };
    sandbox.evaluate(&AssertionSpec::new("javascript", json!(source)), &subject, limits).await
}

#[tokio::test]
async fn scripts_judge_with_output_and_context_as_promptfoo_does() {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    let limits = Limits::default();
    let pass =
        judge(&sandbox, "output.includes(context.vars.city) && context.prompt === 'Where to?'", "Lisbon!", &limits)
            .await;
    assert!(pass.passed && pass.error.is_none(), "{}", pass.reason);
    let fail = judge(&sandbox, "output.length < 3", "Lisbon!", &limits).await;
    assert!(!fail.passed && fail.error.is_none(), "{}", fail.reason);
    let object = judge(
        &sandbox,
        "const n = output.length;\nreturn {pass: n > 3, score: 0.75, reason: `n=${n}`};",
        "Lisbon!",
        &limits,
    )
    .await;
    assert_eq!((object.passed, object.score, object.reason.as_str()), (true, 0.75, "n=7"));
    // A thrown error fails the assertion with the message, as in promptfoo.
    let threw = judge(&sandbox, "JSON.parse(output).ok", "not json", &limits).await;
    assert!(!threw.passed && threw.error.is_none() && threw.reason.contains("SyntaxError"), "{}", threw.reason);
    // A result that is no verdict is an error, not a pass.
    let odd = judge(&sandbox, "'yes'", "x", &limits).await;
    assert_eq!(odd.error.map(|e| e.code()), Some("plugin_error"), "{}", odd.reason);
    // Negation and thresholds go through the host's rules.
    let mut spec = AssertionSpec::new("not-javascript", json!("output.length / 10"));
    spec.threshold = Some(0.5);
    let negated = sandbox.evaluate(&spec, &Subject { output: "abc".into(), ..Default::default() }, &limits).await;
    assert!(negated.passed && negated.error.is_none(), "{}", negated.reason);
}

#[tokio::test]
async fn every_test_gets_a_fresh_realm() {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    let limits = Limits::default();
    let set = judge(&sandbox, "globalThis.leak = 'x';\nreturn true;", "a", &limits).await;
    assert!(set.passed, "{}", set.reason);
    let seen = judge(&sandbox, "typeof globalThis.leak === 'undefined'", "a", &limits).await;
    assert!(seen.passed, "state leaked between tests: {}", seen.reason);
}

#[tokio::test]
async fn hostile_scripts_are_contained_like_any_plugin() {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    // 5 % of 2 s: 100 ms of CPU; 32 MiB.
    let limits = Limits::from_resource_limits(5.0, 32, 2_000, 1).with_fuel_rate(sandbox.fuel_calibration().fuel_per_ms);
    let looping = judge(&sandbox, "while (true) {}\nreturn true;", "a", &limits).await;
    assert!(
        matches!(looping.error, Some(SandboxError::OutOfFuel { .. }) | Some(SandboxError::Deadline { .. })),
        "{:?}",
        looping.error
    );
    let greedy = judge(
        &sandbox,
        "const a = [];\nwhile (true) a.push('x'.repeat(1 << 16) + a.length);\nreturn true;",
        "a",
        &limits,
    )
    .await;
    assert!(
        matches!(greedy.error, Some(SandboxError::MemoryLimit { .. }) | Some(SandboxError::OutOfFuel { .. })),
        "{:?}",
        greedy.error
    );
    let deep = judge(&sandbox, "function f(n) { return f(n + 1) + 1; }\nreturn f(0);", "a", &limits).await;
    assert!(deep.error.is_some() && !deep.passed, "{}", deep.reason);
    // The host serves on: the next script runs.
    let fine = judge(&sandbox, "output === 'a'", "a", &Limits::default()).await;
    assert!(fine.passed, "{}", fine.reason);
}

#[tokio::test]
async fn a_script_that_does_not_compile_is_refused_when_written() {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    let broken = AssertionSpec::new("javascript", json!("output.includes("));
    let refused = sandbox.check_parameters(None, &broken, None).await;
    assert!(
        matches!(&refused, Err(SandboxError::InvalidParameters(m)) if m.contains("does not compile")),
        "{refused:?}"
    );
    let fine = AssertionSpec::new("javascript", json!("output.length > 1 // trailing comment"));
    assert_eq!(sandbox.check_parameters(None, &fine, None).await, Ok(()));
    let not_text = AssertionSpec::new("javascript", json!(42));
    assert!(sandbox.check_parameters(None, &not_text, None).await.is_err());
}
