"""`{{name}}`: a cardrun assertion plugin. The output must mention every
word of `value` (a list of strings), ignoring case; its score is the share
it mentions, and a `threshold` in (0, 1] lowers the bar.

Build: ./build.sh    Check: cardrun plugin check {{name}}.wasm
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import AssertionInfo, AssertionInput, AssertionParams, Verdict


def words(value_json: str) -> list[str]:
    try:
        words = json.loads(value_json)
    except json.JSONDecodeError:
        raise Err("`value` must be a list of words")
    if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
        raise Err("`value` must list at least one non-empty word")
    return words


class WitWorld(wit_world.WitWorld):
    def describe(self) -> AssertionInfo:
        return AssertionInfo(
            name="{{name}}",
            version="0.1.0",
            assertion_types=["{{name}}"],
            description="the output mentions every given word, ignoring case",
        )

    def check(self, params: AssertionParams) -> None:
        words(params.value)

    def evaluate(self, input: AssertionInput) -> Verdict:
        wanted = words(input.value)
        output = input.output.lower()
        missing = [w for w in wanted if w.lower() not in output]
        score = 1.0 - len(missing) / len(wanted)
        threshold = input.threshold
        passed = score >= threshold if threshold is not None and 0 < threshold <= 1 else not missing
        reason = f"missing {missing}" if missing else "mentions every word"
        return Verdict(pass_=passed, score=score, reason=reason)
