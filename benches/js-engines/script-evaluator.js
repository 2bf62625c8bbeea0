// The JavaScript-engine comparison's script candidate (issue 17, point 5):
// a `javascript` assertion whose `value` is promptfoo-style source, run by
// the engine the component embeds. The same file is built with
// componentize-js (StarlingMonkey) and componentize-qjs (QuickJS); the Boa
// candidate (boa/src/lib.rs) does the same in Rust.

export function describe() {
  return {
    name: "js-script",
    version: "0.1.0",
    assertionTypes: ["javascript"],
    description: "a JavaScript expression or function body, run in the component's engine",
  };
}

export function check(params) {
  try {
    const source = JSON.parse(params.value);
    if (typeof source !== "string") throw "`value` must be JavaScript source text";
    compile(source);
  } catch (e) {
    throw String(e);
  }
}

function compile(source) {
  // promptfoo's rule: several lines, or a `return`, make a function body.
  const body = source.includes("\n") || source.includes("return") ? source : `return (\n${source}\n);`;
  return new Function("output", "context", body);
}

// The same semantics as cardrun's built-in `javascript` plugin: a script
// that does not compile, or returns no verdict, is an error; one that
// throws fails, its error the reason (as in promptfoo).
export function evaluate(input) {
  // The `err` of a result must be a string: componentize-js traps on
  // anything else, so whatever is thrown here is turned into one.
  let script;
  let context;
  try {
    const source = JSON.parse(input.value);
    if (typeof source !== "string") throw "`value` must be JavaScript source text";
    const vars = {};
    for (const [name, value] of input.context.variables) vars[name] = value;
    context = { vars, prompt: input.context.prompt };
    script = compile(source);
  } catch (e) {
    throw `the script does not compile: ${e}`;
  }
  let result;
  try {
    result = script(input.output, context);
  } catch (e) {
    return { pass: false, score: 0, reason: `the script threw: ${e}` };
  }
  try {
    return toVerdict(result, input.threshold);
  } catch (e) {
    throw String(e);
  }
}

// promptfoo's reading of a script's result, as the built-in reads it: a
// boolean, a score (passing at or above the threshold, above 0 without
// one), or `{pass, score, reason}`.
function toVerdict(result, threshold) {
  if (typeof result === "boolean") {
    return { pass: result, score: result ? 1 : 0, reason: `the script returned ${result}` };
  }
  if (typeof result === "number" && Number.isFinite(result)) {
    const pass = threshold === undefined ? result > 0 : result >= threshold;
    const score = threshold !== undefined && threshold > 1 ? (pass ? 1 : 0) : Math.min(1, Math.max(0, result));
    return { pass, score, reason: `the script returned ${result}` };
  }
  if (result && typeof result === "object" && (typeof result.pass === "boolean" || typeof result.score === "number")) {
    const pass = typeof result.pass === "boolean" ? result.pass : toVerdict(result.score, threshold).pass;
    const score = Math.min(1, Math.max(0, result.score ?? (pass ? 1 : 0)));
    return { pass, score, reason: String(result.reason ?? "") };
  }
  throw `a script must return a boolean, a number or {pass, score, reason}, not ${JSON.stringify(result)}`;
}
