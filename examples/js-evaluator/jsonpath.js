// A JSONPath subset and the checks the `json-path` assertion makes, with no
// dependencies (the plugin runs inside cardrun's WebAssembly sandbox).
//
// Paths: `$`, `.name`, `['name']` / `["name"]`, `[3]`, `[-1]`, `[*]` and
// `.*` (every member), `..name` (every `name` below). That covers what
// assertions on model output use; filters (`?()`) are refused by name.

export class BadParameters extends Error {}

/** Parses `path` into steps: {kind: "key"|"index"|"all"|"descend", key}. */
export function parsePath(path) {
  if (typeof path !== "string" || !path.startsWith("$")) {
    throw new BadParameters("`path` must be a JSONPath starting with `$`");
  }
  const steps = [];
  let i = 1;
  const name = /^[A-Za-z_$][\w$-]*/;
  while (i < path.length) {
    const rest = path.slice(i);
    if (rest.startsWith("..")) {
      const m = rest.slice(2).match(name);
      if (!m) throw new BadParameters(`expected a name after \`..\` at ${i} in ${path}`);
      steps.push({ kind: "descend", key: m[0] });
      i += 2 + m[0].length;
    } else if (rest.startsWith(".*")) {
      steps.push({ kind: "all" });
      i += 2;
    } else if (rest.startsWith(".")) {
      const m = rest.slice(1).match(name);
      if (!m) throw new BadParameters(`expected a name after \`.\` at ${i} in ${path}`);
      steps.push({ kind: "key", key: m[0] });
      i += 1 + m[0].length;
    } else if (rest.startsWith("[")) {
      const close = rest.indexOf("]");
      if (close < 0) throw new BadParameters(`unclosed \`[\` at ${i} in ${path}`);
      const inner = rest.slice(1, close).trim();
      if (inner === "*") steps.push({ kind: "all" });
      else if (/^-?\d+$/.test(inner)) steps.push({ kind: "index", key: Number(inner) });
      else if (/^'[^']*'$|^"[^"]*"$/.test(inner)) steps.push({ kind: "key", key: inner.slice(1, -1) });
      else if (inner.startsWith("?")) throw new BadParameters("filter expressions (`[?(...)]`) are not supported");
      else throw new BadParameters(`cannot read \`[${inner}]\` in ${path}`);
      i += close + 1;
    } else {
      throw new BadParameters(`unexpected \`${rest[0]}\` at ${i} in ${path}`);
    }
  }
  return steps;
}

/** Every node of `doc` that `steps` select. */
export function select(doc, steps) {
  let nodes = [doc];
  for (const step of steps) {
    const next = [];
    for (const node of nodes) {
      if (step.kind === "key") {
        if (isObject(node) && Object.hasOwn(node, step.key)) next.push(node[step.key]);
      } else if (step.kind === "index") {
        if (Array.isArray(node)) {
          const at = step.key < 0 ? node.length + step.key : step.key;
          if (at >= 0 && at < node.length) next.push(node[at]);
        }
      } else if (step.kind === "all") {
        if (Array.isArray(node)) next.push(...node);
        else if (isObject(node)) next.push(...Object.values(node));
      } else {
        descend(node, step.key, next);
      }
    }
    nodes = next;
  }
  return nodes;
}

function descend(node, key, into) {
  if (Array.isArray(node)) {
    for (const item of node) descend(item, key, into);
  } else if (isObject(node)) {
    if (Object.hasOwn(node, key)) into.push(node[key]);
    for (const value of Object.values(node)) descend(value, key, into);
  }
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

const FIELDS = ["path", "equals", "matches", "type", "min", "max", "count", "all"];
const TYPES = ["string", "number", "boolean", "object", "array", "null"];

/** Reads the assertion's `value`: `{path, equals?, matches?, type?, min?,
 * max?, count?, all?}`, or a bare path string (the path must exist). */
export function parseSpec(value) {
  if (typeof value === "string") value = { path: value };
  if (!isObject(value)) throw new BadParameters("`value` must be a JSONPath or {path, equals, matches, ...}");
  const unknown = Object.keys(value).filter((k) => !FIELDS.includes(k));
  if (unknown.length) throw new BadParameters(`unknown field(s) ${unknown.join(", ")}; known: ${FIELDS.join(", ")}`);
  const spec = { ...value, steps: parsePath(value.path) };
  if (value.matches !== undefined) {
    try {
      spec.regex = new RegExp(value.matches);
    } catch (e) {
      throw new BadParameters(`\`matches\` is not a regular expression: ${e.message}`);
    }
  }
  if (value.type !== undefined && !TYPES.includes(value.type)) {
    throw new BadParameters(`\`type\` must be one of ${TYPES.join(", ")}`);
  }
  for (const bound of ["min", "max", "count"]) {
    if (value[bound] !== undefined && typeof value[bound] !== "number") {
      throw new BadParameters(`\`${bound}\` must be a number`);
    }
  }
  return spec;
}

/** The JSON document in a model's output: the whole text, or the first
 * fenced ```json block (models often wrap JSON in one). */
export function parseOutput(output) {
  const fenced = output.match(/```(?:json)?\s*\n([\s\S]*?)```/);
  const text = fenced ? fenced[1] : output;
  try {
    return { doc: JSON.parse(text) };
  } catch (e) {
    return { error: `the output is not JSON: ${e.message}` };
  }
}

function typeOf(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/** Why `node` fails `spec`'s conditions, or null when it passes. */
function problem(node, spec) {
  if (spec.type !== undefined && typeOf(node) !== spec.type) return `is ${typeOf(node)}, not ${spec.type}`;
  if (spec.equals !== undefined && JSON.stringify(node) !== JSON.stringify(spec.equals)) {
    return `is ${JSON.stringify(node)}, not ${JSON.stringify(spec.equals)}`;
  }
  if (spec.regex && !(typeof node === "string" && spec.regex.test(node))) {
    return `${JSON.stringify(node)} does not match /${spec.matches}/`;
  }
  if (spec.min !== undefined && !(typeof node === "number" && node >= spec.min)) return `${JSON.stringify(node)} < ${spec.min}`;
  if (spec.max !== undefined && !(typeof node === "number" && node <= spec.max)) return `${JSON.stringify(node)} > ${spec.max}`;
  return null;
}

/** Judges `output` against `spec`: {pass, score, reason}. With `all`, every
 * selected node must pass (score: the share that does); otherwise one is
 * enough. `count` asks for exactly that many selected nodes. */
export function judge(output, spec) {
  const parsed = parseOutput(output);
  if (parsed.error) return { pass: false, score: 0, reason: parsed.error };
  const nodes = select(parsed.doc, spec.steps);
  if (spec.count !== undefined && nodes.length !== spec.count) {
    return { pass: false, score: 0, reason: `${spec.path} selects ${nodes.length} node(s), not ${spec.count}` };
  }
  if (nodes.length === 0) {
    return { pass: false, score: 0, reason: `${spec.path} selects nothing` };
  }
  const problems = nodes.map((node) => problem(node, spec));
  const passing = problems.filter((p) => p === null).length;
  const pass = spec.all ? passing === nodes.length : passing > 0;
  const score = spec.all ? passing / nodes.length : pass ? 1 : 0;
  if (pass) return { pass, score: 1, reason: `${spec.path}: ${passing} of ${nodes.length} node(s) pass` };
  const first = problems.find((p) => p !== null);
  return { pass, score: Math.min(score, 0.999), reason: `${spec.path}: ${first}` };
}
