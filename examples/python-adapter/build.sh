#!/usr/bin/env bash
# Builds openai-chat.wasm from app.py + openai_chat.py against the WIT.
#
#   ./build.sh            (or: bash build.sh)
#
# The pinned componentize-py (requirements.txt) is installed once into a
# venv under $CARDRUN_TOOLCHAINS (default ~/.cache/cardrun/toolchains).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wit="${CARDRUN_WIT:-$here/../../wit}"
toolchains="${CARDRUN_TOOLCHAINS:-${XDG_CACHE_HOME:-$HOME/.cache}/cardrun/toolchains}"
venv="$toolchains/componentize-py-$(sed -n 's/^componentize-py==//p' "$here/requirements.txt")"
mkdir -p "$toolchains"
(
    # One installer at a time: builds may run side by side.
    flock 9
    if [ ! -x "$venv/bin/componentize-py" ]; then
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    fi
) 9>"$venv.lock"
cd "$here"
"$venv/bin/componentize-py" -d "$wit" -w model-adapter componentize app -o openai-chat.wasm
