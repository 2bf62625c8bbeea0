//! `providers:` as promptfoo writes them: `adapter:model` text, objects
//! `{id, label, config, prompts}`, maps `{id: options}`, or a `file://`
//! list. `config` becomes generation options; keys that configure the
//! connection (base URLs, keys) belong to the host and are reported as
//! ignored, never silently dropped.

use serde_json::{Map, Value};

use super::files::SuiteFiles;
use super::format::{file_ref, kind_of, unknown_keys};
use crate::domain::GenerationOptions;

/// One model a suite runs against.
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteProvider {
    /// `adapter:model`, as `ModelRef::parse` reads it.
    pub id: String,
    pub label: String,
    pub options: GenerationOptions,
    /// Its price per token, from `config.cost` (input and output alike) or
    /// `config.inputCost` / `config.outputCost`; `None`: the host's table.
    pub price: Option<crate::domain::Price>,
    /// The labels or ids of the prompts it runs; `None`: all.
    pub prompts: Option<Vec<String>>,
}

/// What a resolution found besides providers.
#[derive(Default)]
pub struct Findings {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

pub fn resolve(raw: &Value, files: &dyn SuiteFiles, found: &mut Findings) -> Vec<SuiteProvider> {
    let mut out = Vec::new();
    match raw {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                one(item, &format!("providers[{i}]"), files, found, &mut out);
            }
        }
        Value::Object(map) if !map.contains_key("id") => {
            for (id, options) in map {
                with_options(id, options, &format!("providers.`{id}`"), found, &mut out);
            }
        }
        item => one(item, "providers", files, found, &mut out),
    }
    out
}

fn one(item: &Value, place: &str, files: &dyn SuiteFiles, found: &mut Findings, out: &mut Vec<SuiteProvider>) {
    match item {
        Value::String(text) => match file_ref(text) {
            Some(path) => match files
                .read(path)
                .map_err(|e| e.to_string())
                .and_then(|t| super::yaml::from_str::<Value>(&t).map_err(|e| format!("`{path}`: {e}")))
            {
                Ok(value) => out.extend(resolve(&value, files, found)),
                Err(e) => found.problems.push(format!("{place}: providers file {e}")),
            },
            None => out.push(plain(text)),
        },
        Value::Object(map) if map.contains_key("id") => object(map, place, found, out),
        // `- openai:gpt-4o: {config: ...}`, an older spelling.
        Value::Object(map) if map.len() == 1 => {
            for (id, options) in map {
                with_options(id, options, place, found, out);
            }
        }
        other => found
            .problems
            .push(format!("{place}: a provider is `adapter:model` or {{id, label, config}}, not {}", kind_of(other))),
    }
}

fn plain(id: &str) -> SuiteProvider {
    SuiteProvider {
        id: id.to_string(),
        label: id.to_string(),
        options: GenerationOptions::default(),
        price: None,
        prompts: None,
    }
}

fn with_options(id: &str, options: &Value, place: &str, found: &mut Findings, out: &mut Vec<SuiteProvider>) {
    match options {
        Value::Object(map) => {
            let mut map = map.clone();
            map.insert("id".into(), Value::String(id.to_string()));
            object(&map, place, found, out)
        }
        Value::Null => out.push(plain(id)),
        other => found.problems.push(format!("{place}: provider options must be a map, not {}", kind_of(other))),
    }
}

fn object(map: &Map<String, Value>, place: &str, found: &mut Findings, out: &mut Vec<SuiteProvider>) {
    found.problems.extend(unknown_keys(map, &["id", "label", "config", "prompts", "transform", "delay"], place));
    let Some(id) = map.get("id").and_then(Value::as_str) else {
        return found.problems.push(format!("{place}: `id` must be text such as `ollama:llama3`"));
    };
    if map.contains_key("transform") {
        found.problems.push(format!(
            "{place}: a provider's own `transform` is not supported yet; give it as `defaultTest.options.transform` (every provider's output) or on a test"
        ));
    }
    if map.contains_key("delay") {
        found.warnings.push(format!("{place}: `delay` is ignored; cardrun paces requests by concurrency"));
    }
    let label = match map.get("label") {
        None => id.to_string(),
        Some(Value::String(l)) => l.clone(),
        Some(other) => {
            found.problems.push(format!("{place}: `label` must be text, not {}", kind_of(other)));
            id.to_string()
        }
    };
    let prompts = match map.get("prompts") {
        None => None,
        Some(Value::String(p)) => Some(vec![p.clone()]),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Some(items.iter().filter_map(Value::as_str).map(str::to_string).collect())
        }
        Some(other) => {
            found.problems.push(format!("{place}: `prompts` must be a list of prompt labels, not {}", kind_of(other)));
            None
        }
    };
    let (options, price) = match map.get("config") {
        None | Some(Value::Null) => (GenerationOptions::default(), None),
        Some(Value::Object(config)) => {
            let place = format!("{place}.config");
            (options(config, &place, found), price(config, &place, found))
        }
        Some(other) => {
            found.problems.push(format!("{place}: `config` must be a map, not {}", kind_of(other)));
            (GenerationOptions::default(), None)
        }
    };
    out.push(SuiteProvider { id: id.to_string(), label, options, price, prompts });
}

/// promptfoo's `config.cost` (US dollars per token, input and output
/// alike), `inputCost` and `outputCost` (each overriding `cost` for its side).
fn price(config: &Map<String, Value>, place: &str, found: &mut Findings) -> Option<crate::domain::Price> {
    let mut read = |key: &str| {
        let value = config.get(key)?;
        match value.as_f64().filter(|v| v.is_finite() && *v >= 0.0) {
            Some(v) => Some(v),
            None => {
                found
                    .problems
                    .push(format!("{place}.{key}: must be US dollars per token (a number, 0 or more), not {value}"));
                None
            }
        }
    };
    let (both, input, output) = (read("cost"), read("inputCost"), read("outputCost"));
    let input = input.or(both);
    let output = output.or(both);
    match (input, output) {
        (None, None) => None,
        (Some(i), Some(o)) => Some(crate::domain::Price { input: i, output: o }),
        _ => {
            found.problems.push(format!("{place}: a price needs both sides: `cost`, or `inputCost` and `outputCost`"));
            None
        }
    }
}

/// `config` onto generation options, under each name promptfoo's
/// providers use for them.
fn options(config: &Map<String, Value>, place: &str, found: &mut Findings) -> GenerationOptions {
    let mut o = GenerationOptions::default();
    let mut bad = |key: &str, what: &str, v: &Value| {
        found.problems.push(format!("{place}.{key}: must be {what}, not {}", kind_of(v)));
    };
    for (key, value) in config {
        match key.as_str() {
            "temperature" => match value.as_f64() {
                Some(t) => o.temperature = Some(t),
                None => bad(key, "a number", value),
            },
            "top_p" | "topP" => match value.as_f64() {
                Some(p) => o.top_p = Some(p),
                None => bad(key, "a number", value),
            },
            "max_tokens" | "maxTokens" | "num_predict" | "max_completion_tokens" => {
                match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => o.max_tokens = Some(n),
                    None => bad(key, "a whole number", value),
                }
            }
            "seed" => match value.as_u64() {
                Some(s) => o.seed = Some(s),
                None => bad(key, "a whole number", value),
            },
            "stop" => match value {
                Value::String(s) => o.stop = vec![s.clone()],
                Value::Array(items) if items.iter().all(Value::is_string) => {
                    o.stop = items.iter().filter_map(Value::as_str).map(str::to_string).collect();
                }
                other => bad(key, "text or a list of texts", other),
            },
            "cost" | "inputCost" | "outputCost" => {}
            "response_format" | "format" => found.warnings.push(format!(
                "{place}.{key} is ignored: response formats (JSON mode) are not supported yet; assert `is-json` instead"
            )),
            other => found.warnings.push(format!(
                "{place}.{other} is ignored: cardrun passes temperature, max_tokens, top_p, stop and seed; \
                 server addresses and API keys are the host's settings (OLLAMA_BASE_URL, OPENAI_API_KEY, ...)"
            )),
        }
    }
    if let Err(e) = o.validate() {
        found.problems.push(format!("{place}: {e}"));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::files::UploadedFiles;
    use serde_json::json;

    #[test]
    fn every_form_resolves_and_config_maps_onto_options() {
        let mut found = Findings::default();
        let files = UploadedFiles::default();
        let raw = json!([
            "echo:upper",
            {"id": "ollama:chat:llama3", "label": "warm", "config": {"temperature": 0.7, "num_predict": 64, "stop": "END", "apiBaseUrl": "x"}, "prompts": ["a"]},
            {"openai:gpt-4o-mini": {"config": {"seed": 3}}}
        ]);
        let got = resolve(&raw, &files, &mut found);
        assert!(found.problems.is_empty(), "{:?}", found.problems);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].label, "warm");
        assert_eq!(got[1].options.temperature, Some(0.7));
        assert_eq!(got[1].options.max_tokens, Some(64));
        assert_eq!(got[1].options.stop, vec!["END"]);
        assert_eq!(got[1].prompts, Some(vec!["a".to_string()]));
        assert_eq!(got[2].options.seed, Some(3));
        assert_eq!(found.warnings.len(), 1, "apiBaseUrl is reported as ignored");
        let mut found = Findings::default();
        resolve(&json!([{"id": "x:y", "lable": "z", "config": {"temperature": 9}}]), &files, &mut found);
        assert_eq!(found.problems.len(), 2, "{:?}", found.problems);
        assert!(found.problems[0].contains("did you mean `label`"));
    }
}
