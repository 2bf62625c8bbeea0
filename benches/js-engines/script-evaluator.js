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
  const body = source.includes("\n") || source.includes("return") ? source : `return (${source});`;
  return new Function("output", "context", body);
}

export function evaluate(input) {
  // The `err` of a result must be a string: componentize-js traps on
  // anything else, so whatever the script throws is turned into one.
  try {
    const source = JSON.parse(input.value);
    if (typeof source !== "string") throw "`value` must be JavaScript source text";
    const vars = {};
    for (const [name, value] of input.context.variables) vars[name] = value;
    const context = { vars, prompt: input.context.prompt };
    const result = compile(source)(input.output, context);
    return toVerdict(result, input.threshold);
  } catch (e) {
    throw String(e);
  }
}

// promptfoo's reading of a script's result: a boolean, a score, or
// `{pass, score, reason}`.
function toVerdict(result, threshold) {
  const min = threshold ?? 0.5;
  if (typeof result === "boolean") {
    return { pass: result, score: result ? 1 : 0, reason: `script returned ${result}` };
  }
  if (typeof result === "number") {
    const score = Math.min(1, Math.max(0, result));
    return { pass: score >= min, score, reason: `script scored ${score}` };
  }
  if (result && typeof result === "object" && typeof result.pass === "boolean") {
    const score = Math.min(1, Math.max(0, result.score ?? (result.pass ? 1 : 0)));
    return { pass: result.pass, score, reason: String(result.reason ?? "") };
  }
  throw `a script must return a boolean, a number or {pass, score, reason}, not ${JSON.stringify(result)}`;
}
