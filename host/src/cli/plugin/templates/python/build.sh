#!/usr/bin/env bash
# Builds {{name}}.wasm with the pinned componentize-py (in a venv under
# $CARDRUN_TOOLCHAINS, default ~/.cache/cardrun/toolchains).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
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
"$venv/bin/componentize-py" -d wit -w checked-assertion componentize app -o {{name}}.wasm
