#!/usr/bin/env bash
# Builds a Python plugin with the pinned componentize-py; the examples'
# build.sh call it. A plugin outside this repository has the same steps in
# its own build.sh (`cardrun plugin new --lang python`).
#
#   componentize-py.sh DIR WORLD OUTPUT
#
# DIR holds app.py and requirements.txt (componentize-py==VERSION); the pin
# is installed once into a venv under $CARDRUN_TOOLCHAINS (default
# ~/.cache/cardrun/toolchains). The WIT is this repository's wit/.
set -euo pipefail
dir="$(cd "$1" && pwd)"
world="$2"
output="$3"
wit="${CARDRUN_WIT:-$(cd "$(dirname "$0")/../wit" && pwd)}"
toolchains="${CARDRUN_TOOLCHAINS:-${XDG_CACHE_HOME:-$HOME/.cache}/cardrun/toolchains}"
venv="$toolchains/componentize-py-$(sed -n 's/^componentize-py==//p' "$dir/requirements.txt")"
mkdir -p "$toolchains"
(
    # One installer at a time: builds may run side by side.
    flock 9
    if [ ! -x "$venv/bin/componentize-py" ]; then
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements.txt"
    fi
) 9>"$venv.lock"
cd "$dir"
"$venv/bin/componentize-py" -d "$wit" -w "$world" componentize app -o "$output"
