//! The plugins workspace and the example evaluator are separate (wasm)
//! workspaces; their native unit tests run from here so that the one test
//! command covers them.

use std::process::Command;

use cardrun_tests::repo_root;

fn cargo_test(manifest: &str) {
    let root = repo_root();
    let status = Command::new(env!("CARGO"))
        .args(["test", "--quiet", "--manifest-path"])
        .arg(root.join(manifest))
        .arg("--target-dir")
        .arg(root.join("target").join("plugins-native"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "unit tests of {manifest} failed");
}

#[test]
fn builtin_plugin_unit_tests_pass() {
    cargo_test("plugins/Cargo.toml");
}

#[test]
fn example_evaluator_unit_tests_pass() {
    cargo_test("examples/keyword-evaluator/Cargo.toml");
}
