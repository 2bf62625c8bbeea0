//! The example third-party evaluator builds with its README's command and
//! runs in the sandbox.

use std::process::Command;

use cardrun::sandbox::{AssertionSpec, Limits, Subject};
use cardrun_tests::{repo_root, sandbox};
use serde_json::json;

#[tokio::test]
async fn example_evaluator_builds_from_its_readme_and_runs() {
    let dir = repo_root().join("examples").join("keyword-evaluator");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let command = "cargo build --release --target wasm32-wasip2";
    assert!(readme.contains(command), "the README documents the build command");
    // The README's command, with the target dir shared with the plugins
    // build so dependencies are not compiled twice.
    let target = repo_root().join("target").join("wasm");
    let status = Command::new(env!("CARGO"))
        .args(command.split_whitespace().skip(1))
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "example evaluator builds");
    let bytes = std::fs::read(target.join("wasm32-wasip2/release/keyword_evaluator.wasm")).unwrap();

    let sandbox = sandbox("http://127.0.0.1:9").await;
    let info = sandbox.add_assertion_plugin(&bytes).await.unwrap();
    assert_eq!(info.name, "keywords");
    assert_eq!(info.assertion_types, vec!["keywords"]);
    assert!(sandbox.assertion_types().contains(&"keywords".to_string()));

    let limits = Limits::default();
    let subject = |text: &str| Subject { output: text.into(), ..Default::default() };
    let value = json!({"required": ["refund", "30 days"], "banned": ["guarantee"]});
    let pass = sandbox
        .evaluate(&AssertionSpec::new("keywords", value.clone()), &subject("Refunds take 30 days."), &limits)
        .await;
    assert!(pass.passed, "{}", pass.reason);
    let fail = sandbox
        .evaluate(&AssertionSpec::new("keywords", value.clone()), &subject("We guarantee a refund"), &limits)
        .await;
    assert!(!fail.passed && fail.error.is_none(), "{}", fail.reason);
    let negated = sandbox
        .evaluate(&AssertionSpec::new("not-keywords", json!({"required": ["lawsuit"]})), &subject("all good"), &limits)
        .await;
    assert!(negated.passed, "{}", negated.reason);
    let bad = sandbox.evaluate(&AssertionSpec::new("keywords", json!({"wanted": 1})), &subject("x"), &limits).await;
    assert_eq!(bad.error.map(|e| e.code()), Some("plugin_error"));

    // The SDK exports `check`: the same parameters are refused when a test
    // case is written, before any output exists.
    assert!(info.checks_parameters);
    let refused = sandbox.check_parameters(None, &AssertionSpec::new("keywords", json!({"wanted": 1})), None).await;
    assert_eq!(refused.map_err(|e| e.code()), Err("invalid_parameters"));
    let accepted = sandbox.check_parameters(None, &AssertionSpec::new("keywords", value), None).await;
    assert_eq!(accepted, Ok(()));
}
