#!/usr/bin/env bash
# Builds the three candidates of the JavaScript-engine comparison into out/:
# starlingmonkey.wasm (componentize-js), quickjs.wasm (componentize-qjs),
# both from script-evaluator.js, and boa.wasm (boa/, Rust).
#   bash benches/js-engines/build.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
mkdir -p out
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build:starlingmonkey
npm run --silent build:quickjs
target="${CARGO_TARGET_DIR:-$here/../../target/wasm}"
(cd boa && CARGO_TARGET_DIR="$target" cargo build --release --target wasm32-wasip2 --quiet)
cp "$target/wasm32-wasip2/release/js_engine_boa.wasm" out/boa.wasm
(cd boa && CARGO_TARGET_DIR="$target" cargo build --release --target wasm32-wasip2 --quiet --features intl)
cp "$target/wasm32-wasip2/release/js_engine_boa.wasm" out/boa-intl.wasm
ls -l out/*.wasm
