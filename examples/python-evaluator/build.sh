#!/usr/bin/env bash
# Builds readability.wasm from app.py + readability.py against the WIT
# (the `checked-assertion` world), with the pinned componentize-py
# (requirements.txt), installed once into a venv under $CARDRUN_TOOLCHAINS
# (default ~/.cache/cardrun/toolchains).
#
#   ./build.sh            (or: bash build.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec bash "$here/../componentize-py.sh" "$here" checked-assertion readability.wasm
