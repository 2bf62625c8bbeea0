"""The cardrun plugin: the `checked-assertion` world of wit/cardrun.wit,
implemented over `readability.py`. componentize-py generates `wit_world`
from the WIT when it builds the component (see build.sh)."""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import AssertionInfo, AssertionInput, AssertionParams, Verdict

import readability


def _bounds(value_json: str) -> readability.Bounds:
    try:
        return readability.parse_bounds(json.loads(value_json))
    except (readability.BadParameters, json.JSONDecodeError) as e:
        raise Err(str(e))


class WitWorld(wit_world.WitWorld):
    def describe(self) -> AssertionInfo:
        return AssertionInfo(
            name="readability",
            version="0.1.0",
            assertion_types=["readability"],
            description="Flesch-Kincaid grade level and Flesch reading ease of the output",
        )

    def check(self, params: AssertionParams) -> None:
        _bounds(params.value)

    def evaluate(self, input: AssertionInput) -> Verdict:
        judged = readability.judge(input.output, _bounds(input.value))
        # A threshold in (0, 1] is the minimum score, as the host reads it.
        passed = judged.passed
        if input.threshold is not None and 0 < input.threshold <= 1:
            passed = judged.score >= input.threshold
        return Verdict(pass_=passed, score=judged.score, reason=judged.reason)
