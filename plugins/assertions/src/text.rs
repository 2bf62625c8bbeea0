//! String checks: equals, contains (and friends), starts/ends-with, regex.

use cardrun_plugin_sdk::{Input, Verdict};
use regex::RegexBuilder;
use serde_json::Value;

/// `equals`: the output equals `value` (or the expected output when no value
/// is given). A non-string JSON value is compared as JSON with the parsed
/// output. `config.trim` compares with surrounding white space removed.
pub fn equals(input: &Input) -> Result<Verdict, String> {
    let output = maybe_trim(input, input.output());
    match input.value() {
        Value::String(_) | Value::Null => {
            let want = maybe_trim(input, input.value_text()?);
            Ok(Verdict::check(
                output == want,
                "output equals the expected text",
                format!("expected {:?}, got {:?}", clip(want), clip(output)),
            ))
        }
        want => {
            let got: Value = match serde_json::from_str(output) {
                Ok(v) => v,
                Err(e) => return Ok(Verdict::fail(format!("output is not JSON: {e}"))),
            };
            Ok(Verdict::check(
                &got == want,
                "output equals the expected JSON",
                format!("expected JSON {want}, got {got}"),
            ))
        }
    }
}

/// `contains` / `icontains`: the output contains `value`.
pub fn contains(input: &Input, ignore_case: bool) -> Result<Verdict, String> {
    let needle = input.value_text()?;
    let found = if ignore_case {
        input.output().to_lowercase().contains(&needle.to_lowercase())
    } else {
        input.output().contains(needle)
    };
    Ok(Verdict::check(
        found,
        format!("output contains {:?}", clip(needle)),
        format!("output does not contain {:?}", clip(needle)),
    ))
}

pub enum SetMode {
    Any,
    All,
}

/// `contains-any` / `contains-all`: `value` is a list of strings (or one
/// comma-separated string). `config.case_insensitive` ignores case, and so
/// do `icontains-any` and `icontains-all`.
///
/// `contains-any` scores 1 when it passes and 0 when it fails.
/// `contains-all` scores the share of strings present and passes when that
/// share is at least `threshold` (a minimum score, default 1: every string).
pub fn contains_set(input: &Input, mode: SetMode, ignore_case: bool) -> Result<Verdict, String> {
    let needles: Vec<String> = match input.value() {
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Ok(other.to_string()),
            })
            .collect::<Result<_, String>>()?,
        Value::String(s) => s.split(',').map(|p| p.trim().to_string()).collect(),
        _ => {
            return Err(format!("`{}` needs a list of strings as its value", input.assertion_type()));
        }
    };
    if needles.is_empty() {
        return Err(format!("`{}` needs at least one string", input.assertion_type()));
    }
    let fold = ignore_case || input.flag("case_insensitive");
    let haystack = if fold { input.output().to_lowercase() } else { input.output().to_string() };
    let present: Vec<bool> = needles
        .iter()
        .map(|n| if fold { haystack.contains(&n.to_lowercase()) } else { haystack.contains(n.as_str()) })
        .collect();
    let hits = present.iter().filter(|p| **p).count();
    let score = hits as f64 / needles.len() as f64;
    let missing: Vec<&str> = needles.iter().zip(&present).filter(|(_, p)| !**p).map(|(n, _)| n.as_str()).collect();
    Ok(match mode {
        SetMode::Any => Verdict::check(
            hits > 0,
            format!("output contains {hits} of {} strings", needles.len()),
            format!("output contains none of {needles:?}"),
        ),
        SetMode::All => {
            let needed = input.min_score(1.0)?;
            let reason = if missing.is_empty() {
                "output contains every string".to_string()
            } else {
                format!("output contains {hits} of {} strings; missing {missing:?}", needles.len())
            };
            Verdict::scored(score, needed, reason)
        }
    })
}

/// `starts-with`.
pub fn starts_with(input: &Input) -> Result<Verdict, String> {
    let prefix = input.value_text()?;
    Ok(Verdict::check(
        input.output().starts_with(prefix),
        format!("output starts with {:?}", clip(prefix)),
        format!("output does not start with {:?}", clip(prefix)),
    ))
}

/// `ends-with`.
pub fn ends_with(input: &Input) -> Result<Verdict, String> {
    let suffix = input.value_text()?;
    Ok(Verdict::check(
        input.output().ends_with(suffix),
        format!("output ends with {:?}", clip(suffix)),
        format!("output does not end with {:?}", clip(suffix)),
    ))
}

/// `regex`: `value` is a pattern, either bare (flags in `config.flags`) or
/// in slash form `/pattern/flags`. Flags: `i` case-insensitive, `m`
/// multi-line, `s` dot matches newline, `x` verbose.
pub fn regex(input: &Input) -> Result<Verdict, String> {
    let raw = input.value_text()?;
    let (pattern, mut flags) = split_slash_form(raw);
    if let Some(extra) = input.config().get("flags").and_then(Value::as_str) {
        flags.push_str(extra);
    }
    let mut builder = RegexBuilder::new(pattern);
    for flag in flags.chars() {
        match flag {
            'i' => builder.case_insensitive(true),
            'm' => builder.multi_line(true),
            's' => builder.dot_matches_new_line(true),
            'x' => builder.ignore_whitespace(true),
            // `g` and `u` are accepted for JavaScript-style patterns: matching
            // is always global enough to find one match, and always Unicode.
            'g' | 'u' => &mut builder,
            other => return Err(format!("unknown regex flag `{other}` (known: i, m, s, x)")),
        };
    }
    let re = builder.size_limit(1 << 20).build().map_err(|e| format!("invalid regex {pattern:?}: {e}"))?;
    Ok(Verdict::check(
        re.is_match(input.output()),
        format!("output matches /{pattern}/{flags}"),
        format!("output does not match /{pattern}/{flags}"),
    ))
}

fn split_slash_form(raw: &str) -> (&str, String) {
    if raw.len() >= 2
        && raw.starts_with('/')
        && let Some(end) = raw.rfind('/').filter(|&end| end > 0)
    {
        let flags = &raw[end + 1..];
        if flags.chars().all(|c| c.is_ascii_alphabetic()) {
            return (&raw[1..end], flags.to_string());
        }
    }
    (raw, String::new())
}

fn maybe_trim<'a>(input: &Input, s: &'a str) -> &'a str {
    if input.flag("trim") { s.trim() } else { s }
}

/// Shortens long text for reasons.
pub fn clip(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(t: &str, output: &str, value: Value) -> Result<Verdict, String> {
        crate::evaluate(&Input::new(t, output, value))
    }

    #[test]
    fn check_refuses_parameters_that_would_fail_at_run_time() {
        use cardrun_plugin_sdk::Evaluator;
        let check = |t: &str, value: Value| crate::Builtins::check(&Input::for_check(t, value));
        assert!(check("regex", json!("^a+$")).is_ok());
        assert!(check("regex", json!("(unclosed")).unwrap_err().contains("invalid regex"));
        assert!(check("contains-any", json!([])).is_err());
        assert!(check("length", json!("9-3")).is_err());
        assert!(check("similarity", json!("ref")).is_ok());
        assert!(crate::Builtins::check(&Input::for_check("similarity", json!("ref")).with_threshold(1.5)).is_err());
        assert!(check("tokens", json!("<=100")).is_ok(), "a check carries token counts");
        // `contains` with no value reads the expected output: absent here.
        assert!(check("contains", Value::Null).is_err());
        assert!(crate::Builtins::check(&Input::for_check("contains", Value::Null).with_expected("x")).is_ok());
    }

    #[test]
    fn equals_text_json_and_expected() {
        assert!(run("equals", "hi", json!("hi")).unwrap().pass);
        assert!(!run("equals", "hi ", json!("hi")).unwrap().pass);
        assert!(run("equals", "{\"a\": 1}", json!({"a": 1})).unwrap().pass);
        let with_expected = Input::new("equals", "x", Value::Null).with_expected("x");
        assert!(crate::evaluate(&with_expected).unwrap().pass);
        assert!(run("equals", "x", Value::Null).is_err());
    }

    #[test]
    fn contains_family() {
        assert!(run("contains", "Hello world", json!("world")).unwrap().pass);
        assert!(!run("contains", "Hello world", json!("World")).unwrap().pass);
        assert!(run("icontains", "Hello world", json!("WORLD")).unwrap().pass);
        assert!(run("contains-any", "a cat", json!(["dog", "cat"])).unwrap().pass);
        assert!(!run("contains-any", "a cow", json!(["dog", "cat"])).unwrap().pass);
        let all = run("contains-all", "a cat", json!(["a", "cat", "dog"])).unwrap();
        assert!(!all.pass);
        assert!((all.score - 2.0 / 3.0).abs() < 1e-9);
        assert!(run("contains-all", "a cat", json!("a, cat")).unwrap().pass);
        let most = Input::new("contains-all", "a cat", json!(["a", "cat", "dog"])).with_threshold(0.6);
        assert!(crate::evaluate(&most).unwrap().pass);
        let any = run("contains-any", "a cat", json!(["dog", "cat", "cow"])).unwrap();
        assert!(any.pass && any.score == 1.0);
        assert!(run("contains-any", "x", json!(5)).is_err());
        assert!(run("contains", "x", json!(5)).is_err());
    }

    #[test]
    fn prefixes_and_suffixes() {
        assert!(run("starts-with", "Hello", json!("He")).unwrap().pass);
        assert!(!run("starts-with", "Hello", json!("lo")).unwrap().pass);
        assert!(run("ends-with", "Hello", json!("lo")).unwrap().pass);
    }

    #[test]
    fn regex_with_flags() {
        assert!(run("regex", "Order 42", json!("\\d+")).unwrap().pass);
        assert!(!run("regex", "ORDER", json!("order")).unwrap().pass);
        assert!(run("regex", "ORDER", json!("/order/i")).unwrap().pass);
        let cfg = Input::new("regex", "ORDER", json!("order")).with_config(json!({"flags": "i"}));
        assert!(crate::evaluate(&cfg).unwrap().pass);
        assert!(run("regex", "a\nb", json!("/^b$/m")).unwrap().pass);
        assert!(run("regex", "x", json!("(")).is_err());
        assert!(run("regex", "x", json!("/x/q")).is_err());
    }
}
