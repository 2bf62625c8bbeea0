//! `prompts:` as promptfoo writes them: text, lists, `file://` paths (text
//! files split on `---` lines, JSON/YAML chat conversations, JSONL one
//! conversation per line, globs), objects `{id, label, raw}` and maps
//! `{prompt-or-path: label}`. A bare path to a prompt file counts as a
//! file, so it is never sent to a model as literal text.

use serde_json::Value;

use super::files::{FileError, SuiteFiles};
use super::format::{file_ref, kind_of, unknown_keys};

/// Why a prompt file gives no prompts; each names the suite's `place`.
#[derive(Debug, thiserror::Error)]
enum PromptFileError {
    #[error("{place}: `{path}` is a prompt function; prompt functions (JavaScript, Python) are not supported yet")]
    Function { place: String, path: String },
    #[error("{place}: prompt file {source}")]
    File { place: String, source: FileError },
    #[error("{place}: `{path}`: {reason}")]
    Parse { place: String, path: String, reason: String },
    #[error("{place}: `{path}` line {line}: {reason}")]
    ParseLine { place: String, path: String, line: usize, reason: String },
    #[error("{place}: prompt file `{path}` is empty")]
    Empty { place: String, path: String },
    #[error("{place}: `{path}` is not a chat conversation (a list of {{role, content}} messages): {reason}")]
    NotChat { place: String, path: String, reason: String },
    #[error("{place}: `{path}` holds no messages")]
    NoMessages { place: String, path: String },
}
use crate::domain::ChatMessage;

/// One prompt of a suite.
#[derive(Debug, Clone, PartialEq)]
pub struct SuitePrompt {
    /// What tables and providers' `prompts:` call it.
    pub label: String,
    /// The template text (a chat conversation as a JSON list).
    pub template: String,
    /// The `id` it was given, which providers' `prompts:` may also use.
    pub id: Option<String>,
}

const TEXT_EXTENSIONS: [&str; 5] = ["txt", "md", "j2", "njk", "prompt"];
const CODE_EXTENSIONS: [&str; 6] = ["js", "mjs", "cjs", "ts", "py", "json5"];

/// Resolves `raw`, adding every problem to `problems`.
pub fn resolve(raw: &Value, files: &dyn SuiteFiles, problems: &mut Vec<String>) -> Vec<SuitePrompt> {
    let mut out = Vec::new();
    match raw {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                one(item, &format!("prompts[{i}]"), files, problems, &mut out);
            }
        }
        Value::Object(map) if !is_prompt_object(map) => {
            // `{prompt-or-path: label}`.
            for (prompt, label) in map {
                let place = format!("prompts.`{prompt}`");
                match label {
                    Value::String(label) => from_text(prompt, Some(label), None, &place, files, problems, &mut out),
                    other => problems.push(format!("{place}: the label must be text, not {}", kind_of(other))),
                }
            }
        }
        item => one(item, "prompts", files, problems, &mut out),
    }
    out
}

fn is_prompt_object(map: &serde_json::Map<String, Value>) -> bool {
    map.contains_key("raw") || map.contains_key("id")
}

fn one(item: &Value, place: &str, files: &dyn SuiteFiles, problems: &mut Vec<String>, out: &mut Vec<SuitePrompt>) {
    match item {
        Value::String(text) => from_text(text, None, None, place, files, problems, out),
        Value::Object(map) => {
            problems.extend(unknown_keys(map, &["id", "label", "raw", "config"], place));
            if map.contains_key("config") {
                problems.push(format!("{place}: per-prompt `config` is not supported yet; set it on the provider"));
            }
            let text = |key: &str| map.get(key).and_then(Value::as_str);
            let label = text("label");
            match (text("raw"), text("id")) {
                (Some(raw), id) => out.push(SuitePrompt {
                    label: label.or(id).unwrap_or(raw).to_string(),
                    template: raw.to_string(),
                    id: id.map(str::to_string),
                }),
                (None, Some(id)) => from_text(id, label, Some(id), place, files, problems, out),
                (None, None) => {
                    problems.push(format!("{place}: a prompt object needs `raw` (the text) or `id` (a path)"))
                }
            }
        }
        other => problems
            .push(format!("{place}: a prompt is text, a file:// path or {{id, label, raw}}, not {}", kind_of(other))),
    }
}

fn from_text(
    text: &str,
    label: Option<&str>,
    id: Option<&str>,
    place: &str,
    files: &dyn SuiteFiles,
    problems: &mut Vec<String>,
    out: &mut Vec<SuitePrompt>,
) {
    let path = file_ref(text).or_else(|| looks_like_a_path(text).then_some(text));
    let Some(path) = path else {
        out.push(SuitePrompt {
            label: label.unwrap_or(text).to_string(),
            template: text.to_string(),
            id: id.map(str::to_string),
        });
        return;
    };
    let paths = match files.expand(path) {
        Ok(paths) => paths,
        Err(e) => return problems.push(format!("{place}: prompt file {e}")),
    };
    let several_files = paths.len() > 1;
    for file in paths {
        let before = out.len();
        if let Err(e) = from_file(&file, place, files, out) {
            problems.push(e.to_string());
            continue;
        }
        let found = out.len() - before;
        for (n, prompt) in out[before..].iter_mut().enumerate() {
            let base = match (label, several_files) {
                (Some(l), false) => l.to_string(),
                (Some(l), true) => format!("{l}: {file}"),
                (None, _) => file.clone(),
            };
            prompt.label = if found > 1 { format!("{base} #{}", n + 1) } else { base };
            prompt.id = id.map(str::to_string);
        }
    }
}

/// A bare `prompts/a.txt` is a file to read, as promptfoo reads it.
fn looks_like_a_path(text: &str) -> bool {
    let Some((_, ext)) = text.rsplit_once('.') else { return false };
    !text.contains(char::is_whitespace)
        && !text.contains("{{")
        && (TEXT_EXTENSIONS.contains(&ext) || ["json", "jsonl", "yaml", "yml"].contains(&ext))
}

/// Adds the prompts of one file (labels are set by the caller).
fn from_file(
    path: &str,
    place: &str,
    files: &dyn SuiteFiles,
    out: &mut Vec<SuitePrompt>,
) -> Result<(), PromptFileError> {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e).to_ascii_lowercase();
    if CODE_EXTENSIONS.contains(&ext.as_str()) {
        return Err(PromptFileError::Function { place: place.to_string(), path: path.to_string() });
    }
    let text = files.read(path).map_err(|source| PromptFileError::File { place: place.to_string(), source })?;
    let parse = |path: String, reason: String| PromptFileError::Parse { place: place.to_string(), path, reason };
    let push = |out: &mut Vec<SuitePrompt>, template: String| {
        out.push(SuitePrompt { label: String::new(), template, id: None })
    };
    match ext.as_str() {
        "json" => {
            let value = serde_json::from_str(&text).map_err(|e| parse(path.to_string(), e.to_string()))?;
            push(out, chat_json(value, path, place)?)
        }
        "yaml" | "yml" => {
            let value: Value = super::yaml::from_str(&text).map_err(|e| parse(path.to_string(), e.to_string()))?;
            push(out, chat_json(value, path, place)?)
        }
        "jsonl" => {
            for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let value = serde_json::from_str(line).map_err(|e| PromptFileError::ParseLine {
                    place: place.to_string(),
                    path: path.to_string(),
                    line: n + 1,
                    reason: e.to_string(),
                })?;
                push(out, chat_json(value, &format!("{path} line {}", n + 1), place)?);
            }
        }
        _ => {
            // Several prompts in one file are separated by `---` lines.
            let mut found = false;
            for part in split_on_separator(&text) {
                found = true;
                push(out, part);
            }
            if !found {
                return Err(PromptFileError::Empty { place: place.to_string(), path: path.to_string() });
            }
        }
    }
    Ok(())
}

/// A chat conversation as the JSON text templates read; a plain string is
/// a text prompt.
fn chat_json(value: Value, path: &str, place: &str) -> Result<String, PromptFileError> {
    if let Value::String(text) = value {
        return Ok(text);
    }
    let (place, path) = (place.to_string(), path.to_string());
    let messages: Vec<ChatMessage> = match serde_json::from_value(value) {
        Ok(messages) => messages,
        Err(e) => return Err(PromptFileError::NotChat { place, path, reason: e.to_string() }),
    };
    if messages.is_empty() {
        return Err(PromptFileError::NoMessages { place, path });
    }
    serde_json::to_string(&messages).map_err(|e| PromptFileError::Parse { place, path, reason: e.to_string() })
}

fn split_on_separator(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            parts.push(String::new());
        } else if let Some(current) = parts.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    parts.into_iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::files::UploadedFiles;
    use serde_json::json;

    fn files() -> UploadedFiles {
        UploadedFiles::new([
            ("p/two.txt".to_string(), "First {{a}}\n---\nSecond {{a}}\n".to_string()),
            ("p/chat.yaml".into(), "- role: system\n  content: Be brief\n- role: user\n  content: '{{q}}'\n".into()),
            ("p/bad.json".into(), "{\"not\": \"chat\"}".into()),
        ])
        .unwrap()
    }

    #[test]
    fn every_form_resolves() {
        let mut problems = Vec::new();
        let raw = json!(["Inline {{a}}", "file://p/two.txt", "p/chat.yaml", {"id": "file://p/two.txt", "label": "L"}, {"raw": "R", "label": "r"}]);
        let got = resolve(&raw, &files(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let labels: Vec<&str> = got.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["Inline {{a}}", "p/two.txt #1", "p/two.txt #2", "p/chat.yaml", "L #1", "L #2", "r"]);
        assert_eq!(got[2].template, "Second {{a}}");
        assert!(got[3].template.starts_with(r#"[{"role":"system","content":"Be brief"}"#));
        let map = resolve(&json!({"file://p/two.txt": "Two"}), &files(), &mut problems);
        assert_eq!(map.len(), 2);
        assert_eq!(map[0].label, "Two #1");
    }

    #[test]
    fn a_missing_file_is_an_error_never_text() {
        let mut problems = Vec::new();
        let got = resolve(
            &json!(["file://p/none.txt", "p/missing.txt", "file://p/bad.json", "file://x.py"]),
            &files(),
            &mut problems,
        );
        assert!(got.is_empty());
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("`p/none.txt` does not exist"), "{problems:?}");
        assert!(problems[2].contains("not a chat conversation"), "{problems:?}");
        assert!(problems[3].contains("not supported yet"), "{problems:?}");
    }
}
