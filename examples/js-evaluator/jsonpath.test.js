// Unit tests of the evaluator's logic, in Node: `npm test`.
import assert from "node:assert/strict";
import test from "node:test";

import { BadParameters, judge, parsePath, parseSpec, select } from "./jsonpath.js";

const doc = {
  user: { name: "Ada", tags: ["admin", "ops"] },
  items: [{ sku: "a1", price: 3 }, { sku: "b2", price: 12 }],
};

test("paths select what JSONPath selects", () => {
  const at = (path) => select(doc, parsePath(path));
  assert.deepEqual(at("$.user.name"), ["Ada"]);
  assert.deepEqual(at("$['user']['tags'][1]"), ["ops"]);
  assert.deepEqual(at("$.items[-1].sku"), ["b2"]);
  assert.deepEqual(at("$.items[*].price"), [3, 12]);
  assert.deepEqual(at("$..price"), [3, 12]);
  assert.deepEqual(at("$.user.*"), ["Ada", ["admin", "ops"]]);
  assert.deepEqual(at("$.missing.name"), []);
});

test("malformed paths and specs are refused with a reason", () => {
  for (const bad of ["user.name", "$.items[", "$.items[?(@.price>1)]", "$..", "$.a b"]) {
    assert.throws(() => parsePath(bad), BadParameters, bad);
  }
  for (const bad of [42, { path: "$.a", unknown: 1 }, { path: "$.a", matches: "(" }, { path: "$", type: "list" }]) {
    assert.throws(() => parseSpec(bad), BadParameters, JSON.stringify(bad));
  }
});

test("conditions on the selected nodes", () => {
  const output = JSON.stringify(doc);
  const verdict = (value) => judge(output, parseSpec(value));
  assert.equal(verdict("$.user.name").pass, true);
  assert.equal(verdict({ path: "$.user.name", equals: "Ada" }).pass, true);
  assert.equal(verdict({ path: "$.user.name", equals: "Bob" }).pass, false);
  assert.equal(verdict({ path: "$.user.name", matches: "^A" }).pass, true);
  assert.equal(verdict({ path: "$.items[*].price", max: 10 }).pass, true, "one node is enough");
  const all = verdict({ path: "$.items[*].price", max: 10, all: true });
  assert.equal(all.pass, false);
  assert.equal(all.score, 0.5);
  assert.match(all.reason, /12 > 10/);
  assert.equal(verdict({ path: "$.items[*]", count: 2 }).pass, true);
  assert.equal(verdict({ path: "$.user.tags", type: "array" }).pass, true);
  assert.equal(verdict("$.nothing").pass, false);
});

test("JSON inside a fenced block is found; prose is not JSON", () => {
  const fenced = "Here you go:\n```json\n{\"ok\": true}\n```\n";
  assert.equal(judge(fenced, parseSpec({ path: "$.ok", equals: true })).pass, true);
  const prose = judge("Sure! The answer is yes.", parseSpec("$.ok"));
  assert.equal(prose.pass, false);
  assert.match(prose.reason, /not JSON/);
});
