// `{{name}}`: a cardrun assertion plugin. The output must mention every
// word of `value` (a list of strings), ignoring case; its score is the
// share it mentions, and a `threshold` in (0, 1] lowers the bar.
//
// Build: npm install && npm run build    Check: cardrun plugin check {{name}}.wasm
// An exported function that throws returns the `err` case of its result.

function words(valueJson) {
  let words;
  try {
    words = JSON.parse(valueJson);
  } catch {
    throw "`value` must be a list of words";
  }
  if (!Array.isArray(words) || words.length === 0 || !words.every((w) => typeof w === "string" && w.trim())) {
    throw "`value` must list at least one non-empty word";
  }
  return words;
}

export function describe() {
  return {
    name: "{{name}}",
    version: "0.1.0",
    assertionTypes: ["{{name}}"],
    description: "the output mentions every given word, ignoring case",
  };
}

export function check(params) {
  words(params.value);
}

export function evaluate(input) {
  const wanted = words(input.value);
  const output = input.output.toLowerCase();
  const missing = wanted.filter((w) => !output.includes(w.toLowerCase()));
  const score = 1 - missing.length / wanted.length;
  const t = input.threshold;
  const pass = t !== undefined && t > 0 && t <= 1 ? score >= t : missing.length === 0;
  const reason = missing.length ? `missing ${JSON.stringify(missing)}` : "mentions every word";
  return { pass, score, reason };
}
