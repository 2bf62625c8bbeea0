//! Reading a grader's answer: the JSON object it was asked for, wherever it
//! sits in the text (models wrap it in prose, code fences or both), and
//! its fields read leniently (`"true"`, `"yes"`, `"0.8"`, `8/10`).

use cardrun_plugin_sdk::serde_json::{self, Map, Value};

/// The first JSON object in `text` that has `key`; a malformed answer is
/// an error quoting the start of it.
pub fn object_with(text: &str, key: &str) -> Result<Map<String, Value>, String> {
    let mut from = 0;
    while let Some(offset) = text[from..].find('{') {
        let start = from + offset;
        let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        if let Some(Ok(Value::Object(map))) = stream.next()
            && map.contains_key(key)
        {
            return Ok(map);
        }
        from = start + 1;
    }
    Err(format!("the grader's answer has no JSON object with `{key}`: {}", clip(text, 200)))
}

/// A boolean field: `true`/`false`, or the strings `true`, `yes`, `pass`,
/// `false`, `no`, `fail` in any case.
pub fn boolean(map: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match map.get(key) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "pass" | "passed" => Ok(true),
            "false" | "no" | "n" | "fail" | "failed" => Ok(false),
            _ => Err(format!("the grader's `{key}` is {s:?}, not true or false")),
        },
        Some(other) => Err(format!("the grader's `{key}` is {other}, not true or false")),
        None => Err(format!("the grader's answer has no `{key}`")),
    }
}

/// A numeric field, as a number or a numeric string (`"8"`, `"8/10"`:
/// the part before a slash); `None` when absent.
pub fn number(map: &Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    let value = match map.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.split('/').next().and_then(|n| n.trim().parse::<f64>().ok()),
        Some(_) => None,
    };
    match value {
        Some(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(format!(
            "the grader's `{key}` is {}, not a number",
            map.get(key).map_or_else(String::new, Value::to_string)
        )),
    }
}

/// A string field, `""` when absent.
pub fn text<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A list of strings.
pub fn strings(map: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match map.get(key) {
        Some(Value::Array(items)) => {
            let texts: Vec<String> = items
                .iter()
                .filter_map(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            if texts.is_empty() { Err(format!("the grader's `{key}` lists nothing")) } else { Ok(texts) }
        }
        _ => Err(format!("the grader's `{key}` is not a list of strings")),
    }
}

/// At most `max` characters of `s`, marked when cut.
pub fn clip(s: &str, max: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_object_among_prose_fences_and_decoys() {
        let answer = "Sure! First, {not json}. Then an aside {\"note\": 1}.\n```json\n{\"reason\": \"polite\", \"pass\": \"Yes\", \"score\": \"0.8\"}\n```\nDone.";
        let map = object_with(answer, "pass").unwrap();
        assert!(boolean(&map, "pass").unwrap());
        assert_eq!(number(&map, "score").unwrap(), Some(0.8));
        assert_eq!(text(&map, "reason"), "polite");
        let nested = object_with("{\"verdict\": {\"pass\": false}}", "pass").unwrap();
        assert!(!boolean(&nested, "pass").unwrap());
    }

    #[test]
    fn malformed_answers_are_errors_that_quote_them() {
        let err = object_with("I think it is fine.", "pass").unwrap_err();
        assert!(err.contains("no JSON object") && err.contains("I think it is fine."), "{err}");
        let map = object_with("{\"pass\": \"maybe\", \"score\": \"high\", \"rating\": \"7/10\"}", "pass").unwrap();
        assert!(boolean(&map, "pass").is_err());
        assert!(number(&map, "score").is_err());
        assert_eq!(number(&map, "rating").unwrap(), Some(7.0));
        assert_eq!(number(&map, "absent").unwrap(), None);
        assert!(strings(&object_with("{\"questions\": []}", "questions").unwrap(), "questions").is_err());
    }
}
