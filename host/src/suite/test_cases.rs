//! `tests:` and `defaultTest:` as promptfoo writes them: inline tests,
//! `file://` YAML/JSON/JSONL/CSV files and globs, `vars` from files,
//! `defaultTest` merged into each test (its vars under the test's, its
//! assertions first), array vars expanded into every combination, and
//! `$ref` to `assertionTemplates`.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::files::{FileError, SuiteFiles};
use super::format::{file_ref, kind_of, suggest_field, unknown_keys};
use crate::domain::{AssertionSpec, GraderModels};

/// Why a `file://` value cannot be used.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("`{path}`: {reason}")]
    Parse { path: String, reason: String },
}

/// Why a transform is not JavaScript to run.
#[derive(Debug, thiserror::Error)]
enum ScriptError {
    #[error("a transform is JavaScript text or a file:// path, not {0}")]
    NotText(&'static str),
    #[error("the transform is empty")]
    Empty,
    #[error("file {0}")]
    File(#[from] FileError),
}

/// A test whose list vars expand past [`MAX_COMBINATIONS`].
#[derive(Debug, thiserror::Error)]
#[error("its list vars make more than {MAX_COMBINATIONS} combinations")]
struct TooManyCombinations;

/// One test after merging and expansion.
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteTest {
    pub description: Option<String>,
    pub vars: Map<String, Value>,
    pub expected: Option<String>,
    pub assertions: Vec<AssertionSpec>,
    /// Passes when the weighted score of its assertions reaches it.
    pub threshold: Option<f64>,
    /// The providers (labels, ids, `adapter:*`) it runs on; `None`: all.
    pub providers: Option<Vec<String>>,
    /// The prompts (labels, ids) it runs with; `None`: all.
    pub prompts: Option<Vec<String>>,
    /// `options.transform`: JavaScript applied to the output before the
    /// assertions (a file's function already made a body).
    pub transform: Option<String>,
    /// `tests[n]` or `tests.csv row 3`, for messages.
    pub place: String,
}

/// Combinations one test's array vars may expand into.
const MAX_COMBINATIONS: usize = 10_000;
const TEST_KEYS: [&str; 10] = [
    "description",
    "vars",
    "assert",
    "options",
    "metadata",
    "threshold",
    "expected",
    "providers",
    "prompts",
    "provider",
];
/// Assertion types promptfoo's `__expected` cells may name.
const EXPECTED_TYPES: [&str; 32] = [
    "equals",
    "contains",
    "icontains",
    "contains-all",
    "contains-any",
    "icontains-all",
    "icontains-any",
    "starts-with",
    "regex",
    "is-json",
    "contains-json",
    "is-xml",
    "contains-xml",
    "is-sql",
    "contains-sql",
    "similar",
    "levenshtein",
    "rouge-n",
    "bleu",
    "meteor",
    "latency",
    "cost",
    "perplexity",
    "word-count",
    "llm-rubric",
    "model-graded-closedqa",
    "factuality",
    "answer-relevance",
    "g-eval",
    "classifier",
    "moderation",
    "webhook",
];

/// Everything the resolution of tests needs.
pub struct Context<'a> {
    pub files: &'a dyn SuiteFiles,
    pub templates: &'a Map<String, Value>,
}

/// The default test's parts, merged into every test.
#[derive(Default)]
struct Defaults {
    vars: Vars,
    assertions: Vec<AssertionSpec>,
    threshold: Option<f64>,
    /// `defaultTest.options.provider`: what grades every test's assertions
    /// unless the test or the assertion names another.
    grader: Option<GraderModels>,
    /// `defaultTest.options.rubricPrompt`, unless a test or an assertion
    /// has its own.
    rubric_prompt: Option<Value>,
    /// `defaultTest.options.transform`, unless a test has its own.
    transform: Option<String>,
}

pub fn resolve(
    tests: Option<&Value>,
    default_test: Option<&Value>,
    cx: &Context<'_>,
    problems: &mut Vec<String>,
) -> Vec<SuiteTest> {
    let defaults = match default_test {
        None => Defaults::default(),
        Some(raw) => defaults(raw, cx, problems),
    };
    let mut raw_tests: Vec<(String, Value)> = Vec::new();
    match tests {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(path) => from_files(path, &format!("tests[{i}]"), cx, problems, &mut raw_tests),
                    other => raw_tests.push((format!("tests[{i}]"), other.clone())),
                }
            }
        }
        Some(Value::String(path)) => from_files(path, "tests", cx, problems, &mut raw_tests),
        Some(other) => problems.push(format!("`tests` must be a list or a file:// path, not {}", kind_of(other))),
    }
    let mut out = Vec::new();
    for (place, raw) in raw_tests {
        test(&place, &raw, &defaults, cx, problems, &mut out);
    }
    out
}

fn defaults(raw: &Value, cx: &Context<'_>, problems: &mut Vec<String>) -> Defaults {
    let loaded;
    let raw = match raw {
        Value::String(text) => match file_ref(text)
            .ok_or("a map or a file:// path")
            .and_then(|path| load_value(path, cx.files).map_err(|_| "a readable file").map(|v| (path, v)))
        {
            Ok((_, v)) => {
                loaded = v;
                &loaded
            }
            Err(what) => {
                problems.push(format!("`defaultTest` must be {what}: {text}"));
                return Defaults::default();
            }
        },
        other => other,
    };
    let Value::Object(map) = raw else {
        problems.push(format!("`defaultTest` must be a map, not {}", kind_of(raw)));
        return Defaults::default();
    };
    problems.extend(unknown_keys(map, &TEST_KEYS, "defaultTest"));
    unsupported_parts(map, "defaultTest", problems);
    Defaults {
        vars: map.get("vars").map(|v| vars(v, "defaultTest", cx, problems)).unwrap_or_default(),
        assertions: map.get("assert").map(|a| assertions(a, "defaultTest", cx, problems)).unwrap_or_default(),
        threshold: threshold(map, "defaultTest", problems),
        grader: grader(map, "defaultTest", problems),
        rubric_prompt: map.get("options").and_then(|o| o.get("rubricPrompt")).cloned(),
        transform: transform(map, "defaultTest", cx, problems),
    }
}

/// The tests in the file(s) `path` names.
fn from_files(path: &str, place: &str, cx: &Context<'_>, problems: &mut Vec<String>, out: &mut Vec<(String, Value)>) {
    let path = file_ref(path).unwrap_or(path);
    let files = match cx.files.expand(path) {
        Ok(files) => files,
        Err(e) => return problems.push(format!("{place}: test file {e}")),
    };
    for file in files {
        let ext = file.rsplit_once('.').map_or("", |(_, e)| e).to_ascii_lowercase();
        let text = match cx.files.read(&file) {
            Ok(text) => text,
            Err(e) => {
                problems.push(format!("{place}: test file {e}"));
                continue;
            }
        };
        let parsed = match ext.as_str() {
            "csv" => csv_tests(&file, &text),
            "jsonl" => text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(n, l)| {
                    serde_json::from_str(l)
                        .map(|v| (format!("{file} line {}", n + 1), v))
                        .map_err(|e| vec![format!("{file} line {}: {e}", n + 1)])
                })
                .collect(),
            "yaml" | "yml" | "json" => match super::yaml::from_str::<Value>(&text) {
                Ok(Value::Array(items)) => {
                    Ok(items.into_iter().enumerate().map(|(n, v)| (format!("{file} [{n}]"), v)).collect())
                }
                Ok(one @ Value::Object(_)) => Ok(vec![(file.clone(), one)]),
                Ok(other) => Err(vec![format!("{file}: a test file holds a list of tests, not {}", kind_of(&other))]),
                Err(e) => Err(vec![format!("{file}: {}", suggest_field(&e.to_string()))]),
            },
            "js" | "mjs" | "ts" | "py" => Err(vec![format!(
                "{place}: `{file}` generates tests with code; test generators (JavaScript, Python) are not supported yet"
            )]),
            _ => Err(vec![format!("{place}: `{file}`: test files are .yaml, .yml, .json, .jsonl or .csv")]),
        };
        match parsed {
            Ok(tests) => out.extend(tests),
            Err(e) => problems.extend(e),
        }
    }
}

/// CSV rows as test maps: columns are vars, except promptfoo's
/// `__expected*`, `__description` and `__metric`.
fn csv_tests(file: &str, text: &str) -> Result<Vec<(String, Value)>, Vec<String>> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| vec![format!("{file}: {e}")])?.clone();
    let mut problems = Vec::new();
    for h in headers.iter().filter(|h| h.starts_with("__")) {
        let known = ["__description", "__metric", "__threshold"].contains(&h)
            || h.starts_with("__expected")
            || h.starts_with("__metadata:");
        if !known {
            let why = match h {
                "__prefix" | "__suffix" => "prompt prefixes and suffixes are not supported yet".to_string(),
                _ => "not a column promptfoo defines (`__expected`, `__description`, `__metric`, `__threshold`)"
                    .to_string(),
            };
            problems.push(format!("{file}: column `{h}`: {why}"));
        }
    }
    let mut out = Vec::new();
    for (n, record) in reader.records().enumerate() {
        // Row 1 is the header.
        let place = format!("{file} row {}", n + 2);
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{place}: {e}"));
                continue;
            }
        };
        let (mut vars, mut assert, mut test) = (Map::new(), Vec::new(), Map::new());
        let metric = headers.iter().position(|h| h == "__metric").and_then(|i| record.get(i)).filter(|m| !m.is_empty());
        for (header, cell) in headers.iter().zip(record.iter()) {
            if header.starts_with("__expected") {
                if !cell.trim().is_empty() {
                    let mut spec = serde_json::to_value(expected_assertion(cell)).unwrap_or(Value::Null);
                    if let (Some(m), Value::Object(o)) = (metric, &mut spec) {
                        o.insert("metric".into(), Value::String(m.to_string()));
                    }
                    assert.push(spec);
                }
            } else if header == "__description" {
                test.insert("description".into(), Value::String(cell.to_string()));
            } else if header == "__threshold" && !cell.trim().is_empty() {
                match cell.trim().parse::<f64>() {
                    Ok(t) => {
                        test.insert("threshold".into(), serde_json::json!(t));
                    }
                    Err(_) => problems.push(format!("{place}: __threshold `{cell}` is not a number")),
                }
            } else if !header.starts_with("__") {
                vars.insert(header.to_string(), Value::String(cell.to_string()));
            }
        }
        test.insert("vars".into(), Value::Object(vars));
        test.insert("assert".into(), Value::Array(assert));
        out.push((place, Value::Object(test)));
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// promptfoo's `__expected` cell: `type:value`, `not-type:value`,
/// `type(threshold):value`, `fn:`/`javascript:` code, `grade:` rubric, or
/// else a value the output must equal.
pub fn expected_assertion(cell: &str) -> AssertionSpec {
    for (prefix, kind) in [
        ("javascript:", "javascript"),
        ("fn:", "javascript"),
        ("eval:", "javascript"),
        ("python:", "python"),
        ("grade:", "llm-rubric"),
        ("llm-rubric:", "llm-rubric"),
    ] {
        if let Some(rest) = cell.strip_prefix(prefix) {
            return AssertionSpec::new(kind, Value::String(rest.trim().to_string()));
        }
    }
    let (head, value) = match cell.split_once(':') {
        Some((head, value)) => (head, Some(value)),
        None => (cell, None),
    };
    let (negated, base) = head.strip_prefix("not-").map_or((false, head), |b| (true, b));
    let (base, threshold) = match base.split_once('(') {
        Some((b, rest)) => (b, rest.strip_suffix(')').and_then(|t| t.parse::<f64>().ok())),
        None => (base, None),
    };
    if !EXPECTED_TYPES.contains(&base) || (value.is_none() && !["is-json", "is-xml", "is-sql"].contains(&base)) {
        return AssertionSpec::new("equals", Value::String(cell.to_string()));
    }
    let kind = if negated { format!("not-{base}") } else { base.to_string() };
    let mut spec = AssertionSpec::new(&kind, value.map_or(Value::Null, |v| Value::String(v.to_string())));
    spec.threshold = threshold;
    spec
}

fn unsupported_parts(map: &Map<String, Value>, place: &str, problems: &mut Vec<String>) {
    if map.contains_key("provider") {
        problems.push(format!(
            "{place}: a per-test `provider` is not supported yet; list the test's providers under `providers`"
        ));
    }
    if let Some(options) = map.get("options") {
        match options {
            Value::Object(o) => {
                let known = ["provider", "transform", "postprocess", "rubricPrompt"];
                for key in o.keys().filter(|k| !known.contains(&k.as_str())) {
                    problems.push(format!("{place}: options.{key}: not supported yet"));
                }
            }
            other => problems.push(format!("{place}: `options` must be a map, not {}", kind_of(other))),
        }
    }
}

fn test(
    place: &str,
    raw: &Value,
    defaults: &Defaults,
    cx: &Context<'_>,
    problems: &mut Vec<String>,
    out: &mut Vec<SuiteTest>,
) {
    let Value::Object(map) = raw else {
        return problems.push(format!("{place}: a test is a map with `vars` and `assert`, not {}", kind_of(raw)));
    };
    problems.extend(unknown_keys(map, &TEST_KEYS, place));
    unsupported_parts(map, place, problems);
    let description = match map.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(other) => Some(other.to_string()),
    };
    let expected = match map.get("expected") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => Some(e.clone()),
        Some(other) => Some(other.to_string()),
    };
    let mut merged = defaults.vars.clone();
    if let Some(v) = map.get("vars") {
        merged.extend(vars(v, place, cx, problems));
    }
    let mut specs = defaults.assertions.clone();
    if let Some(a) = map.get("assert") {
        specs.extend(assertions(a, place, cx, problems));
    }
    let threshold = threshold(map, place, problems).or(defaults.threshold);
    // The grading model: the assertion's own, else the test's, else the
    // default test's (promptfoo's order).
    if let Some(grader) = grader(map, place, problems).or_else(|| defaults.grader.clone()) {
        for spec in specs.iter_mut().filter(|s| s.provider.is_none()) {
            spec.provider = Some(grader.clone());
        }
    }
    // promptfoo's `options.rubricPrompt`: the grading prompt of the
    // model-graded types that take one, unless an assertion has its own.
    let rubric_prompt = map.get("options").and_then(|o| o.get("rubricPrompt")).or(defaults.rubric_prompt.as_ref());
    if let Some(prompt) = rubric_prompt {
        for spec in specs.iter_mut().filter(|s| RUBRIC_PROMPT_TYPES.contains(&s.base_type().1)) {
            with_rubric_prompt(spec, prompt.clone());
        }
    }
    let providers = names(map, "providers", place, problems);
    let prompts = names(map, "prompts", place, problems);
    let transform = transform(map, place, cx, problems).or_else(|| defaults.transform.clone());
    let combinations = match expand(&merged.values, &merged.from_files) {
        Ok(c) => c,
        Err(e) => return problems.push(format!("{place}: {e}")),
    };
    let several = combinations.len() > 1;
    for (n, vars) in combinations.into_iter().enumerate() {
        let description = match (&description, several) {
            (Some(d), true) => Some(format!("{d} #{}", n + 1)),
            (d, _) => d.clone(),
        };
        out.push(SuiteTest {
            description,
            vars,
            expected: expected.clone(),
            assertions: specs.clone(),
            threshold,
            providers: providers.clone(),
            prompts: prompts.clone(),
            transform: transform.clone(),
            place: place.to_string(),
        });
    }
}

/// A test's `providers` or `prompts` filter: a name or a list of names.
fn names(map: &Map<String, Value>, key: &str, place: &str, problems: &mut Vec<String>) -> Option<Vec<String>> {
    match map.get(key)? {
        Value::String(one) => Some(vec![one.clone()]),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            Some(items.iter().filter_map(Value::as_str).map(str::to_string).collect())
        }
        other => {
            problems.push(format!("{place}: `{key}` must be a list of names, not {}", kind_of(other)));
            None
        }
    }
}

/// A test's `options.provider`: the model that grades its assertions.
fn grader(map: &Map<String, Value>, place: &str, problems: &mut Vec<String>) -> Option<GraderModels> {
    let raw = map.get("options")?.get("provider")?;
    match serde_json::from_value::<GraderModels>(raw.clone()) {
        Ok(models) => Some(models),
        Err(e) => {
            problems.push(format!("{place}: options.provider: {e}"));
            None
        }
    }
}

/// The model-graded types whose grading prompt a suite may replace.
const RUBRIC_PROMPT_TYPES: [&str; 3] = ["llm-rubric", "model-graded-closedqa", "factuality"];

/// Puts `prompt` in the assertion's `config.rubricPrompt`, where its plugin
/// reads it, unless it has one.
fn with_rubric_prompt(spec: &mut AssertionSpec, prompt: Value) {
    let config = spec.config.get_or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(config) = config {
        config.entry("rubricPrompt").or_insert(prompt);
    }
}

/// A test's `options.transform` (or promptfoo's older `postprocess`):
/// inline JavaScript, or a `file://` module's function made a body.
fn transform(map: &Map<String, Value>, place: &str, cx: &Context<'_>, problems: &mut Vec<String>) -> Option<String> {
    let options = map.get("options")?;
    let (key, raw) = ["transform", "postprocess"].into_iter().find_map(|k| Some((k, options.get(k)?)))?;
    script(raw, cx).map_err(|e| problems.push(format!("{place}: options.{key}: {e}"))).ok()
}

/// A transform as a suite writes it: JavaScript text, or `file://x.js`
/// (`:name` for one export) made the body that calls its function.
fn script(raw: &Value, cx: &Context<'_>) -> Result<String, ScriptError> {
    let text = raw.as_str().ok_or_else(|| ScriptError::NotText(kind_of(raw)))?;
    if text.trim().is_empty() {
        return Err(ScriptError::Empty);
    }
    match file_ref(text) {
        Some(path) => javascript_file(path, cx.files).map_err(ScriptError::from),
        None => Ok(text.to_string()),
    }
}

/// A test's `threshold`: a number in 0..=1.
fn threshold(map: &Map<String, Value>, place: &str, problems: &mut Vec<String>) -> Option<f64> {
    let value = map.get("threshold")?;
    match value.as_f64() {
        Some(t) if (0.0..=1.0).contains(&t) => Some(t),
        _ => {
            problems.push(format!("{place}: `threshold` must be a number in 0..=1, not {value}"));
            None
        }
    }
}

/// `vars:` as a map or a `file://` path to one; values that are
/// `file://` paths are read (text as text, JSON/YAML parsed). A list read
/// from a file stays one value: only lists written in the suite expand.
fn vars(raw: &Value, place: &str, cx: &Context<'_>, problems: &mut Vec<String>) -> Vars {
    let mut out = Vars::default();
    let map = match raw {
        Value::Object(m) => m.clone(),
        Value::String(text) if file_ref(text).is_some() => {
            let path = file_ref(text).unwrap_or_default();
            match load_value(path, cx.files) {
                Ok(Value::Object(m)) => {
                    out.from_files.extend(m.keys().cloned());
                    m
                }
                Ok(other) => {
                    problems.push(format!("{place}: vars file `{path}` holds {}, not a map", kind_of(&other)));
                    return out;
                }
                Err(e) => {
                    problems.push(format!("{place}: vars file {e}"));
                    return out;
                }
            }
        }
        Value::Null => return out,
        other => {
            problems.push(format!("{place}: `vars` must be a map, not {}", kind_of(other)));
            return out;
        }
    };
    for (name, value) in map {
        let value = match &value {
            Value::String(text) => match file_ref(text) {
                Some(path) => match load_value(path, cx.files) {
                    Ok(v) => {
                        out.from_files.insert(name.clone());
                        v
                    }
                    Err(e) => {
                        problems.push(format!("{place}: vars.{name}: file {e}"));
                        continue;
                    }
                },
                None => value,
            },
            _ => value,
        };
        out.values.insert(name, value);
    }
    out
}

/// Vars and which of them came from files.
#[derive(Default, Clone)]
struct Vars {
    values: Map<String, Value>,
    from_files: HashSet<String>,
}

impl Vars {
    fn extend(&mut self, other: Vars) {
        for name in other.values.keys() {
            self.from_files.remove(name);
        }
        self.values.extend(other.values);
        self.from_files.extend(other.from_files);
    }
}

/// A file's content: JSON and YAML parsed, anything else as text.
fn load_value(path: &str, files: &dyn SuiteFiles) -> Result<Value, LoadError> {
    let text = files.read(path)?;
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e).to_ascii_lowercase();
    let parse = |reason: String| LoadError::Parse { path: path.to_string(), reason };
    match ext.as_str() {
        "json" => serde_json::from_str(&text).map_err(|e| parse(e.to_string())),
        "yaml" | "yml" => super::yaml::from_str(&text).map_err(|e| parse(e.to_string())),
        _ => Ok(Value::String(text)),
    }
}

/// A `javascript` assertion's `file://checks.js` or `file://checks.js:name`,
/// as promptfoo reads it: a CommonJS module whose `module.exports` (or its
/// export `name`) is a function of `(output, context)`. The file becomes
/// the body the `javascript` type runs: the module, then that call.
fn javascript_file(reference: &str, files: &dyn SuiteFiles) -> Result<String, FileError> {
    let (path, function) = match reference.rsplit_once(':') {
        Some((path, name))
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$') =>
        {
            (path, Some(name))
        }
        _ => (reference, None),
    };
    let module = files.read(path)?;
    let (export, what) = match function {
        Some(name) => (format!("module.exports[{}]", Value::String(name.to_string())), format!("a function `{name}`")),
        None => ("module.exports".to_string(), "a function (`module.exports = (output, context) => ...`)".to_string()),
    };
    let missing = Value::String(format!("`{path}` exports no {what}"));
    Ok(format!(
        "const module = {{ exports: {{}} }};\nconst exports = module.exports;\n{module}\n;\n\
         const assertion = {export};\n\
         if (typeof assertion !== 'function') throw new Error({missing});\n\
         return assertion(output, context);"
    ))
}

/// Every combination of the array-valued vars written in the suite, in
/// key order.
fn expand(
    vars: &Map<String, Value>,
    from_files: &HashSet<String>,
) -> Result<Vec<Map<String, Value>>, TooManyCombinations> {
    let mut out = vec![Map::new()];
    for (name, value) in vars {
        match value {
            Value::Array(choices) if !choices.is_empty() && !from_files.contains(name) => {
                let total = out.len().saturating_mul(choices.len());
                if total > MAX_COMBINATIONS {
                    return Err(TooManyCombinations);
                }
                let mut next = Vec::with_capacity(total);
                for partial in &out {
                    for choice in choices {
                        let mut m = partial.clone();
                        m.insert(name.clone(), choice.clone());
                        next.push(m);
                    }
                }
                out = next;
            }
            _ => {
                for m in &mut out {
                    m.insert(name.clone(), value.clone());
                }
            }
        }
    }
    Ok(out)
}

/// `assert:` items: assertion maps, `$ref`s to `assertionTemplates`, with
/// `file://` values read.
fn assertions(raw: &Value, place: &str, cx: &Context<'_>, problems: &mut Vec<String>) -> Vec<AssertionSpec> {
    let Value::Array(items) = raw else {
        problems.push(format!("{place}: `assert` must be a list, not {}", kind_of(raw)));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (j, item) in items.iter().enumerate() {
        let at = format!("{place}, assert[{j}]");
        let mut item = item.clone();
        if let Some(reference) = item.get("$ref").and_then(Value::as_str) {
            let name = reference.strip_prefix("#/assertionTemplates/").unwrap_or(reference);
            match cx.templates.get(name) {
                Some(template) => item = template.clone(),
                None => {
                    let names: Vec<&str> = cx.templates.keys().map(String::as_str).collect();
                    let hint = crate::domain::closest(name, &names)
                        .map_or_else(String::new, |b| format!("; did you mean `{b}`?"));
                    problems.push(format!("{at}: `$ref` names no assertion template `{name}`{hint}"));
                    continue;
                }
            }
        }
        let Value::Object(map) = &mut item else {
            problems.push(format!("{at}: an assertion is a map with `type`, not {}", kind_of(&item)));
            continue;
        };
        if let Some(raw) = map.get("transform") {
            match script(raw, cx) {
                Ok(body) => {
                    map.insert("transform".into(), Value::String(body));
                }
                Err(e) => {
                    problems.push(format!("{at}: transform: {e}"));
                    continue;
                }
            }
        }
        // promptfoo's `rubricPrompt` on an assertion: its plugin reads it
        // from `config`.
        if let Some(prompt) = map.remove("rubricPrompt") {
            let config = map.entry("config").or_insert_with(|| Value::Object(Map::new()));
            match config {
                Value::Object(config) => {
                    config.insert("rubricPrompt".into(), prompt);
                }
                other => {
                    problems.push(format!("{at}: `config` must be a map, not {}", kind_of(other)));
                    continue;
                }
            }
        }
        let kind = map.get("type").and_then(Value::as_str).unwrap_or_default();
        let javascript = kind.strip_prefix("not-").unwrap_or(kind) == "javascript";
        if let Some(path) = map.get("value").and_then(Value::as_str).and_then(file_ref).filter(|_| javascript) {
            match javascript_file(path, cx.files) {
                Ok(source) => {
                    map.insert("value".into(), Value::String(source));
                }
                Err(e) => {
                    problems.push(format!("{at}: value file {e}"));
                    continue;
                }
            }
        } else if let Some(path) = map.get("value").and_then(Value::as_str).and_then(file_ref) {
            match load_value(path, cx.files) {
                Ok(v) => {
                    map.insert("value".into(), v);
                }
                Err(e) => {
                    problems.push(format!("{at}: value file {e}"));
                    continue;
                }
            }
        }
        match serde_json::from_value::<AssertionSpec>(item) {
            Ok(spec) => out.push(spec),
            Err(e) => problems.push(format!("{at}: {}", suggest_field(&e.to_string()))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::files::UploadedFiles;
    use serde_json::json;

    fn files() -> UploadedFiles {
        UploadedFiles::new([
            ("t/a.yaml".to_string(), "- vars: {q: one}\n  assert: [{type: contains, value: o}]\n".to_string()),
            (
                "t/b.csv".into(),
                "q,__expected,__expected2,__description\ntwo,icontains:TW,not-contains:x,second\nthree,three,,\n"
                    .into(),
            ),
            ("t/c.jsonl".into(), "{\"vars\": {\"q\": \"four\"}}\n\n{\"vars\": {\"q\": \"five\"}}\n".into()),
            ("ctx.txt".into(), "long context".into()),
        ])
        .unwrap()
    }

    #[test]
    fn files_defaults_expansion_and_templates() {
        let files = files();
        let templates = json!({"short": {"type": "javascript", "value": "output.length < 9"}});
        let templates = templates.as_object().cloned().unwrap();
        let cx = Context { files: &files, templates: &templates };
        let mut problems = Vec::new();
        let tests = json!([
            "file://t/*",
            {"description": "grid", "vars": {"a": [1, 2], "b": ["x", "y", "z"], "ctx": "file://ctx.txt"}, "assert": [{"$ref": "#/assertionTemplates/short"}]}
        ]);
        let default = json!({"vars": {"tone": "dry"}, "assert": [{"type": "is-json", "metric": "format"}]});
        let got = resolve(Some(&tests), Some(&default), &cx, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(got.len(), 1 + 2 + 2 + 6);
        assert_eq!(got[0].assertions[0].metric.as_deref(), Some("format"), "defaultTest's assertions come first");
        assert_eq!(got[0].vars["tone"], "dry");
        assert_eq!(got[1].description.as_deref(), Some("second"));
        assert_eq!(got[1].assertions[1].kind, "icontains");
        assert_eq!(got[1].assertions[2].kind, "not-contains");
        assert_eq!(got[2].assertions[1], AssertionSpec::new("equals", json!("three")));
        assert_eq!(got[10].vars["ctx"], "long context");
        assert_eq!(got[10].description.as_deref(), Some("grid #6"));
        assert_eq!((&got[10].vars["a"], &got[10].vars["b"]), (&json!(2), &json!("z")));
        assert_eq!(got[10].assertions[1].kind, "javascript");
    }

    #[test]
    fn problems_name_their_place() {
        let files = files();
        let templates = Map::new();
        let cx = Context { files: &files, templates: &templates };
        let mut problems = Vec::new();
        let tests = json!(["file://t/none.csv", {"vars": {"q": "file://no.txt"}, "assert": [{"$ref": "#/assertionTemplates/x"}, {"type": "equals", "valeu": 1}], "threshold": 1.5}]);
        resolve(Some(&tests), None, &cx, &mut problems);
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems[0].starts_with("tests[0]: test file `t/none.csv`"), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("did you mean `value`")), "{problems:?}");
    }

    #[test]
    fn expected_cells_read_as_promptfoo_reads_them() {
        assert_eq!(expected_assertion("Paris"), AssertionSpec::new("equals", json!("Paris")));
        assert_eq!(expected_assertion("Note: x"), AssertionSpec::new("equals", json!("Note: x")));
        assert_eq!(expected_assertion("is-json").kind, "is-json");
        let s = expected_assertion("similar(0.8):hello");
        assert_eq!((s.kind.as_str(), s.threshold), ("similar", Some(0.8)));
        assert_eq!(expected_assertion("fn:output.length > 2").kind, "javascript");
        assert_eq!(expected_assertion("grade:is polite").kind, "llm-rubric");
    }
}
