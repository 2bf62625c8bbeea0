#!/usr/bin/env bash
# Builds openai-chat.wasm from app.py + openai_chat.py against the WIT (the
# `model-adapter` world), with the pinned componentize-py
# (requirements.txt), installed once into a venv under $CARDRUN_TOOLCHAINS
# (default ~/.cache/cardrun/toolchains).
#
#   ./build.sh            (or: bash build.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec bash "$here/../componentize-py.sh" "$here" model-adapter openai-chat.wasm
