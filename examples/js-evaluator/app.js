// The cardrun plugin: the `checked-assertion` world of wit/cardrun.wit,
// implemented over jsonpath.js. componentize-js turns this module into a
// component (see package.json's `build`); an exported function that throws
// returns the `err` case of its `result`.

import { BadParameters, judge, parseSpec } from "./jsonpath.js";

export function describe() {
  return {
    name: "json-path",
    version: "0.1.0",
    assertionTypes: ["json-path"],
    description: "checks the nodes a JSONPath selects in the output's JSON",
  };
}

function spec(valueJson) {
  try {
    return parseSpec(JSON.parse(valueJson));
  } catch (e) {
    throw e instanceof BadParameters || e instanceof SyntaxError ? e.message : e;
  }
}

export function check(params) {
  spec(params.value);
}

export function evaluate(input) {
  const verdict = judge(input.output, spec(input.value));
  // A threshold in (0, 1] is the minimum score, as the host reads it.
  if (input.threshold !== undefined && input.threshold > 0 && input.threshold <= 1) {
    verdict.pass = verdict.score >= input.threshold;
  }
  return verdict;
}
