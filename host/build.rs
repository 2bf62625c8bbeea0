//! Builds the plugins workspace for `wasm32-wasip2` and embeds the built-in
//! plugins, so that `cargo build` alone gives a complete binary.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

const BUILTINS: &[(&str, &str)] = &[
    ("ASSERTIONS", "cardrun_builtin_assertions"),
    ("JSON_ASSERTIONS", "cardrun_builtin_json_assertions"),
    ("JS_ASSERTIONS", "cardrun_builtin_js_assertions"),
    ("GRADED_ASSERTIONS", "cardrun_builtin_graded_assertions"),
    ("ADAPTER_ECHO", "cardrun_adapter_echo"),
    ("ADAPTER_OLLAMA", "cardrun_adapter_ollama"),
    ("ADAPTER_OPENAI", "cardrun_adapter_openai"),
    ("ADAPTER_ANTHROPIC", "cardrun_adapter_anthropic"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ lives in the workspace root").to_path_buf();
    let plugins = root.join("plugins");
    let wit = root.join("wit");
    let target_dir =
        env::var_os("CARDRUN_WASM_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target").join("wasm"));
    for path in [&plugins, &wit] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=CARDRUN_WASM_TARGET_DIR");

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags target the host, not wasm.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_BUILD_")
            || matches!(
                key.as_str(),
                "RUSTFLAGS" | "CARGO_ENCODED_RUSTFLAGS" | "CARGO_TARGET_DIR" | "RUSTC_WORKSPACE_WRAPPER"
            )
        {
            cmd.env_remove(&key);
        }
    }
    let status = cmd.status().expect("could not run cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the plugins for wasm32-wasip2 failed (see above). \
             If the target is missing, run: rustup target add wasm32-wasip2"
        );
    }

    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut code = String::new();
    for (constant, file) in BUILTINS {
        let path = wasm_dir.join(format!("{file}.wasm"));
        assert!(path.exists(), "built plugin missing: {}", path.display());
        code.push_str(&format!("pub const {constant}: &[u8] = include_bytes!({:?});\n", path.display().to_string()));
    }
    code.push_str(&format!(
        "/// Where `build.rs` put every plugin of the plugins workspace, including\n\
         /// the test-only ones (`cardrun_test_*.wasm`).\n\
         pub const PLUGIN_BUILD_DIR: &str = {:?};\n",
        wasm_dir.display().to_string()
    ));
    fs::write(out.join("builtin_plugins.rs"), code).expect("writing OUT_DIR/builtin_plugins.rs");
}
