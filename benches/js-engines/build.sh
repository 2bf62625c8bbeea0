#!/usr/bin/env bash
# Builds the three candidates of the JavaScript-engine comparison into out/:
# starlingmonkey.wasm (componentize-js), quickjs.wasm (componentize-qjs),
# both from script-evaluator.js, and boa.wasm and boa-intl.wasm: cardrun's
# built-in `javascript` plugin, without and with `Intl`.
#   bash benches/js-engines/build.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
mkdir -p out
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build:starlingmonkey
npm run --silent build:quickjs
# Boa: cardrun's built-in `javascript` plugin (plugins/assertions-js), as
# host/build.rs builds it; and the same source with `Intl`, built as a crate
# of its own (a workspace and lock of its own: Boa's ICU data pins
# versions the plugins workspace does not use).
root="$(cd "$here/../.." && pwd)"
cargo build --release --target wasm32-wasip2 --quiet --manifest-path "$root/plugins/Cargo.toml" \
    -p cardrun-builtin-js-assertions --target-dir "$root/target/wasm"
cp "$root/target/wasm/wasm32-wasip2/release/cardrun_builtin_js_assertions.wasm" out/boa.wasm
intl="$root/target/js-engines/boa-intl"
mkdir -p "$intl"
cat > "$intl/Cargo.toml" <<TOML
[package]
name = "js-engine-boa-intl"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]
path = "$root/plugins/assertions-js/src/lib.rs"

[dependencies]
cardrun-plugin-sdk = { path = "$root/plugins/sdk" }
serde_json = "1"
boa_engine = { version = "0.21", default-features = false, features = ["intl_bundled"] }

[workspace]

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = "debuginfo"
TOML
cargo build --release --target wasm32-wasip2 --quiet --manifest-path "$intl/Cargo.toml" --target-dir "$root/target/wasm-intl"
cp "$root/target/wasm-intl/wasm32-wasip2/release/js_engine_boa_intl.wasm" out/boa-intl.wasm
ls -l out/*.wasm
