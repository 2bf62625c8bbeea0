//! `{{name}}`: a cardrun assertion plugin. The output must mention every
//! word of `value` (a list of strings), ignoring case; its score is the
//! share it mentions, and a `threshold` in (0, 1] lowers the bar.
//!
//! Build: cargo build --release --target wasm32-wasip2
//! Check: cardrun plugin check target/wasm32-wasip2/release/{{crate}}.wasm

wit_bindgen::generate!({ world: "checked-assertion", path: "wit" });


struct Plugin;

impl Guest for Plugin {
    fn describe() -> AssertionInfo {
        AssertionInfo {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            assertion_types: vec!["{{name}}".into()],
            description: "the output mentions every given word, ignoring case".into(),
        }
    }

    fn check(params: AssertionParams) -> Result<(), String> {
        words(&params.value).map(|_| ())
    }

    fn evaluate(input: AssertionInput) -> Result<Verdict, String> {
        let words = words(&input.value)?;
        let output = input.output.to_lowercase();
        let missing: Vec<&String> = words.iter().filter(|w| !output.contains(&w.to_lowercase())).collect();
        let score = 1.0 - missing.len() as f64 / words.len() as f64;
        let pass = match input.threshold {
            Some(t) if t > 0.0 && t <= 1.0 => score >= t,
            _ => missing.is_empty(),
        };
        let reason = if missing.is_empty() { "mentions every word".to_string() } else { format!("missing {missing:?}") };
        Ok(Verdict { pass, score, reason })
    }
}

/// `value` as a non-empty list of words.
fn words(value: &str) -> Result<Vec<String>, String> {
    let words: Vec<String> =
        serde_json::from_str(value).map_err(|_| "`value` must be a list of words".to_string())?;
    if words.is_empty() || words.iter().any(|w| w.trim().is_empty()) {
        return Err("`value` must list at least one non-empty word".into());
    }
    Ok(words)
}

export!(Plugin);
