//! The std-free test plugin (`plugins/testing/bare-assertion`): the
//! benchmark's subject for the sandbox's own cost. Its allocator is its own
//! code, so it is checked here through the real sandbox: small inputs (the
//! arena), inputs far bigger than the arena (`memory.grow`), and errors.

use cardrun::sandbox::{AssertionSpec, Limits, SandboxError, Subject};
use cardrun_tests::{built_plugin, sandbox};

async fn bare_sandbox() -> std::sync::Arc<cardrun::sandbox::Sandbox> {
    let sandbox = sandbox("http://127.0.0.1:9").await;
    let info = sandbox.add_assertion_plugin(&built_plugin("cardrun_test_bare_assertion")).await.unwrap();
    assert_eq!(info.assertion_types, vec!["bare-same-as-expected".to_string()]);
    assert_eq!(info.name, "bare");
    sandbox
}

fn same_as_expected() -> AssertionSpec {
    AssertionSpec::new("bare-same-as-expected", serde_json::Value::Null)
}

#[tokio::test]
async fn passes_and_fails_on_small_inputs() {
    let sandbox = bare_sandbox().await;
    let limits = Limits::default();
    for (output, expected, pass) in [("hello", "hello", true), ("hello", "hellO", false), ("", "", true)] {
        let subject = Subject { output: output.into(), expected: Some(expected.into()), ..Default::default() };
        let outcome = sandbox.evaluate(&same_as_expected(), &subject, &limits).await;
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        assert_eq!(outcome.passed, pass, "{output:?} vs {expected:?}");
    }
}

#[tokio::test]
async fn inputs_bigger_than_the_arena_grow_memory() {
    let sandbox = bare_sandbox().await;
    let limits = Limits::default();
    // Two 1 MiB strings: far past the 64 KiB arena, so both come from
    // `memory.grow`; a difference in the last byte must still be seen.
    let big = "a".repeat(1 << 20);
    let mut other = big.clone();
    other.pop();
    other.push('b');
    for (expected, pass) in [(big.clone(), true), (other, false)] {
        let subject = Subject { output: big.clone(), expected: Some(expected), ..Default::default() };
        let outcome = sandbox.evaluate(&same_as_expected(), &subject, &limits).await;
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        assert_eq!(outcome.passed, pass);
    }
}

#[tokio::test]
async fn a_missing_expected_output_is_the_plugins_error() {
    let sandbox = bare_sandbox().await;
    let outcome = sandbox.evaluate(&same_as_expected(), &Subject::default(), &Limits::default()).await;
    match outcome.error {
        Some(SandboxError::Plugin(message)) => assert!(message.contains("needs an expected output"), "{message}"),
        other => panic!("expected the plugin's own error, got {other:?}"),
    }
}
