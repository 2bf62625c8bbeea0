//! Measured checks: length, word-count, levenshtein, similarity, latency,
//! tokens.

use std::collections::HashMap;

use cardrun_plugin_sdk::{Input, Verdict};
use serde_json::Value;

use crate::spec::Bound;

/// `length`: the output's length in characters (Unicode scalar values)
/// satisfies the bound in `value`.
pub fn length(input: &Input) -> Result<Verdict, String> {
    let bound = Bound::parse(input.value()).map_err(|e| format!("`length`: {e}"))?;
    let n = input.output().chars().count();
    Ok(Verdict::check(
        bound.holds(n as f64),
        format!("length {n} is {}", bound.describe()),
        format!("length {n} is not {}", bound.describe()),
    ))
}

/// `word-count`: the number of white-space separated words satisfies the
/// bound in `value`.
pub fn word_count(input: &Input) -> Result<Verdict, String> {
    let bound = Bound::parse(input.value()).map_err(|e| format!("`word-count`: {e}"))?;
    let n = input.output().split_whitespace().count();
    Ok(Verdict::check(
        bound.holds(n as f64),
        format!("{n} words is {}", bound.describe()),
        format!("{n} words is not {}", bound.describe()),
    ))
}

/// `levenshtein`: the edit distance between the output and `value` (or the
/// expected output) is at most `threshold` (default 5). The threshold is a
/// distance, not a score, so the score is 1 for a pass and 0 for a failure
/// (as promptfoo scores it); the reason gives the distance.
pub fn levenshtein(input: &Input) -> Result<Verdict, String> {
    let reference = input.value_text()?;
    let max = input.threshold().unwrap_or(5.0);
    if max < 0.0 {
        return Err("`levenshtein` threshold must be >= 0".to_string());
    }
    let distance = strsim::levenshtein(input.output(), reference);
    Ok(Verdict::check(
        distance as f64 <= max,
        format!("edit distance {distance} (allowed {max})"),
        format!("edit distance {distance} is more than the {max} allowed"),
    ))
}

/// `similarity`: a named similarity measure between the output and `value`
/// (or the expected output) is at least `threshold` (default 0.8).
///
/// `config.method` picks the measure:
/// - `cosine` (default): cosine similarity of bag-of-words term-frequency
///   vectors (lower-cased alphanumeric words). Order-insensitive; good for
///   "says the same things".
/// - `dice`: Sorensen-Dice coefficient of character bigrams.
/// - `jaro-winkler`: Jaro-Winkler similarity (favours common prefixes).
/// - `levenshtein`: `1 - edit distance / longer length`.
///
/// None of these is semantic (no embeddings): they measure surface overlap.
pub fn similarity(input: &Input) -> Result<Verdict, String> {
    let reference = input.value_text()?;
    let threshold = input.min_score(0.8)?;
    let method = input.config().get("method").and_then(Value::as_str).unwrap_or("cosine");
    let output = input.output();
    let score = match method {
        "cosine" => cosine_bag_of_words(output, reference),
        "dice" => strsim::sorensen_dice(output, reference),
        "jaro-winkler" => strsim::jaro_winkler(output, reference),
        "levenshtein" => strsim::normalized_levenshtein(output, reference),
        other => {
            return Err(format!(
                "unknown similarity method `{other}` (known: cosine, dice, jaro-winkler, levenshtein)"
            ));
        }
    };
    Ok(Verdict::scored(score, threshold, format!("{method} similarity {score:.3} (threshold {threshold})")))
}

/// Cosine similarity of term-frequency vectors over lower-cased words.
pub fn cosine_bag_of_words(a: &str, b: &str) -> f64 {
    fn counts(s: &str) -> HashMap<String, f64> {
        let mut map = HashMap::new();
        for word in s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            *map.entry(word.to_lowercase()).or_insert(0.0) += 1.0;
        }
        map
    }
    let (va, vb) = (counts(a), counts(b));
    if va.is_empty() && vb.is_empty() {
        return 1.0;
    }
    let dot: f64 = va.iter().map(|(w, x)| x * vb.get(w).copied().unwrap_or(0.0)).sum();
    let squares = |v: &HashMap<String, f64>| v.values().map(|x| x * x).sum::<f64>();
    // One square root of the product: the product of two roots rounds, and
    // identical texts would score 0.9999999999999998 and fail a threshold of 1.
    let denominator = (squares(&va) * squares(&vb)).sqrt();
    if denominator == 0.0 { 0.0 } else { (dot / denominator).min(1.0) }
}

/// `latency`: the model call's latency in ms satisfies `value` (a plain
/// number means "at most"), or is at most `threshold`.
pub fn latency(input: &Input) -> Result<Verdict, String> {
    let bound = upper_bound(input, "latency")?;
    let ms = input.latency_ms();
    Ok(Verdict::check(
        bound.holds(ms as f64),
        format!("latency {ms} ms is {}", bound.describe()),
        format!("latency {ms} ms is not {}", bound.describe()),
    ))
}

/// `cost`: the model call's cost in US dollars is at most `value` (or
/// `threshold`, as promptfoo writes it).
pub fn cost(input: &Input, cost: Option<f64>) -> Result<Verdict, String> {
    let bound = upper_bound(input, "cost")?;
    let cost = cost.ok_or(
        "`cost`: the model call's cost is unknown: the model has no price (set the provider's `config.cost`, or a prices file in CARDRUN_PRICES) or its server counted no tokens",
    )?;
    Ok(Verdict::check(
        bound.holds(cost),
        format!("cost ${cost:.6} is {}", bound.describe()),
        format!("cost ${cost:.6} is not {}", bound.describe()),
    ))
}

/// `perplexity` and `perplexity-score`, as promptfoo computes them from
/// the tokens' log-probabilities: perplexity is `exp(-mean(logprob))`, 1
/// for a model certain of every token. `perplexity` passes when it is at
/// most `threshold` (always without one), scored 1 or 0;
/// `perplexity-score` scores `1 / (1 + perplexity)` and passes at or above
/// `threshold`.
pub fn perplexity(input: &Input, logprobs: Option<&[f64]>) -> Result<Verdict, String> {
    let name = input.assertion_type();
    let logprobs = logprobs.ok_or_else(|| {
        format!("`{name}`: the model call has no log-probabilities (the adapter does not return them: `ollama`, `openai` and adapters of the `logprob-adapter` world do)")
    })?;
    if logprobs.is_empty() {
        return Err(format!("`{name}`: the model generated no tokens to judge"));
    }
    if let Some(t) = input.threshold().filter(|t| !(t.is_finite() && *t > 0.0)) {
        return Err(format!("`{name}`: threshold must be a positive number, not {t}"));
    }
    let mean = logprobs.iter().sum::<f64>() / logprobs.len() as f64;
    let perplexity = (-mean).exp();
    if !perplexity.is_finite() {
        return Err(format!("`{name}`: the log-probabilities give no finite perplexity"));
    }
    let threshold = input.threshold();
    if name == "perplexity" {
        let pass = threshold.is_none_or(|t| perplexity <= t);
        let bound = threshold.map_or_else(String::new, |t| format!(" (at most {t})"));
        return Ok(Verdict::check(
            pass,
            format!("perplexity {perplexity:.3}{bound}"),
            format!("perplexity {perplexity:.3} is over {}", threshold.unwrap_or_default()),
        ));
    }
    let score = 1.0 / (1.0 + perplexity);
    let pass = threshold.is_none_or(|t| score >= t);
    let reason = format!(
        "perplexity score {score:.3} (perplexity {perplexity:.3}){}",
        threshold.map_or_else(String::new, |t| format!(", {} {t}", if pass { "at least" } else { "under" }))
    );
    Ok(Verdict { pass, score, reason })
}

/// `finish-reason`: the model stopped for `value`'s reason. Servers' own
/// words are read as OpenAI's (`end_turn` and `stop_sequence` are `stop`,
/// `max_tokens` is `length`, `tool_use` is `tool_calls`), case aside.
pub fn finish_reason(input: &Input, reason: &str) -> Result<Verdict, String> {
    let wanted = match input.value() {
        Value::String(s) if !s.trim().is_empty() => normal_reason(s),
        _ => return Err("`finish-reason` needs the expected reason as its value, e.g. `stop` or `length`".into()),
    };
    let got = normal_reason(reason);
    Ok(Verdict::check(
        got == wanted,
        format!("finish reason is `{got}`"),
        format!("finish reason is `{}`, not `{wanted}`", if got.is_empty() { "unknown" } else { &got }),
    ))
}

fn normal_reason(reason: &str) -> String {
    let reason = reason.trim().to_ascii_lowercase();
    match reason.as_str() {
        "end_turn" | "stop_sequence" | "eos" => "stop".into(),
        "max_tokens" | "max_length" => "length".into(),
        "tool_use" | "function_call" => "tool_calls".into(),
        _ => reason,
    }
}

/// `tokens`: the token count satisfies `value` (a plain number means "at
/// most"). `config.count` picks `total` (default), `prompt` or `completion`.
pub fn tokens(input: &Input) -> Result<Verdict, String> {
    let bound = upper_bound(input, "tokens")?;
    let (prompt, completion) = input.tokens().ok_or("`tokens`: the model adapter reported no token counts")?;
    let which = input.config().get("count").and_then(Value::as_str).unwrap_or("total");
    let n = match which {
        "total" => prompt + completion,
        "prompt" => prompt,
        "completion" => completion,
        other => return Err(format!("`tokens`: unknown count `{other}` (total, prompt, completion)")),
    };
    Ok(Verdict::check(
        bound.holds(f64::from(n)),
        format!("{n} {which} tokens is {}", bound.describe()),
        format!("{n} {which} tokens is not {}", bound.describe()),
    ))
}

fn upper_bound(input: &Input, name: &str) -> Result<Bound, String> {
    let bound = match (input.value(), input.threshold()) {
        (Value::Null, Some(t)) => Bound::AtMost(t),
        (Value::Null, None) => return Err(format!("`{name}` needs a value such as 500 or \"<=500\"")),
        (value, _) => Bound::parse(value).map_err(|e| format!("`{name}`: {e}"))?,
    };
    Ok(match bound {
        Bound::Exact(v) => Bound::AtMost(v),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(t: &str, output: &str, value: Value) -> Result<Verdict, String> {
        crate::evaluate(&Input::new(t, output, value))
    }

    struct Called(&'static str, Option<f64>);

    impl crate::Call for Called {
        fn finish_reason(&self) -> String {
            self.0.to_string()
        }
        fn cost(&self) -> Option<f64> {
            self.1
        }
        fn logprobs(&self) -> Option<Vec<f64>> {
            None
        }
    }

    #[test]
    fn perplexity_is_promptfoos_and_needs_log_probabilities() {
        let judge = |t: &str, threshold: Option<f64>, logprobs: &[f64]| {
            let mut input = Input::new(t, "x", Value::Null);
            if let Some(t) = threshold {
                input = input.with_threshold(t);
            }
            perplexity(&input, Some(logprobs))
        };
        // mean -0.5: perplexity e^0.5 = 1.6487.
        let lp = [-0.25, -0.75];
        assert!(judge("perplexity", Some(1.7), &lp).unwrap().pass);
        let over = judge("perplexity", Some(1.6), &lp).unwrap();
        assert!(!over.pass && over.score == 0.0 && over.reason.contains("1.649"), "{over:?}");
        assert!(judge("perplexity", None, &lp).unwrap().pass);
        let scored = judge("perplexity-score", Some(0.3), &lp).unwrap();
        assert!(scored.pass && (scored.score - 1.0 / (1.0 + 0.5f64.exp())).abs() < 1e-12, "{scored:?}");
        assert!(!judge("perplexity-score", Some(0.4), &lp).unwrap().pass);
        assert!(
            perplexity(&Input::new("perplexity", "x", Value::Null), None).unwrap_err().contains("log-probabilities")
        );
        assert!(judge("perplexity", Some(2.0), &[]).is_err());
        assert!(judge("perplexity", Some(-1.0), &lp).is_err());
    }

    #[test]
    fn cost_is_at_most_the_value_or_threshold_and_unknown_is_an_error() {
        let call = Called("stop", Some(0.0004));
        let judge = |input: Input| crate::evaluate_call(&input, &call);
        assert!(judge(Input::new("cost", "x", json!(0.001))).unwrap().pass);
        assert!(!judge(Input::new("cost", "x", json!(0.0001))).unwrap().pass);
        let by_threshold = judge(Input::new("cost", "x", Value::Null).with_threshold(0.001)).unwrap();
        assert!(by_threshold.pass && by_threshold.reason.contains("$0.000400"), "{by_threshold:?}");
        let unknown = crate::evaluate_call(&Input::new("cost", "x", json!(1)), &Called("stop", None)).unwrap_err();
        assert!(unknown.contains("config.cost"), "{unknown}");
        assert!(
            <crate::Builtins as cardrun_plugin_sdk::Evaluator>::check(&Input::for_check("cost", Value::Null)).is_err()
        );
        assert!(
            <crate::Builtins as cardrun_plugin_sdk::Evaluator>::check(&Input::for_check("cost", json!(0.01))).is_ok()
        );
    }

    #[test]
    fn finish_reasons_are_read_as_openai_names_them() {
        let judge = |reason: &'static str, want: &str| {
            crate::evaluate_call(&Input::new("finish-reason", "x", json!(want)), &Called(reason, None)).unwrap()
        };
        assert!(judge("stop", "stop").pass);
        assert!(judge("end_turn", "stop").pass, "Anthropic's end_turn is a stop");
        assert!(judge("max_tokens", "length").pass);
        assert!(judge("tool_use", "tool_calls").pass);
        let miss = judge("length", "stop");
        assert!(!miss.pass && miss.reason.contains("`length`, not `stop`"), "{miss:?}");
        assert!(
            <crate::Builtins as cardrun_plugin_sdk::Evaluator>::check(&Input::for_check("finish-reason", Value::Null))
                .is_err()
        );
    }

    #[test]
    fn length_bounds() {
        assert!(run("length", "abcde", json!(5)).unwrap().pass);
        assert!(run("length", "abcde", json!(">=5")).unwrap().pass);
        assert!(!run("length", "abcde", json!(">5")).unwrap().pass);
        assert!(run("length", "abcde", json!("<=5")).unwrap().pass);
        assert!(!run("length", "abcde", json!("<5")).unwrap().pass);
        assert!(run("length", "abcde", json!("3-7")).unwrap().pass);
        assert!(run("length", "héllo", json!(5)).unwrap().pass);
        assert!(run("length", "x", json!("long")).is_err());
    }

    #[test]
    fn word_count_bounds() {
        assert!(run("word-count", "one two  three", json!(3)).unwrap().pass);
        assert!(!run("word-count", "one two three", json!("<3")).unwrap().pass);
        assert!(run("word-count", "one", json!({"min": 1, "max": 2})).unwrap().pass);
    }

    #[test]
    fn levenshtein_threshold() {
        let near = Input::new("levenshtein", "kitten", json!("sitting")).with_threshold(3.0);
        assert!(crate::evaluate(&near).unwrap().pass);
        let far = Input::new("levenshtein", "kitten", json!("sitting")).with_threshold(2.0);
        assert!(!crate::evaluate(&far).unwrap().pass);
        // A pass that shares no character still scores 1: the threshold is a
        // distance, and the score agrees with the verdict.
        let disjoint = crate::evaluate(&Input::new("levenshtein", "abc", json!("xyz"))).unwrap();
        assert!(disjoint.pass && disjoint.score == 1.0);
    }

    #[test]
    fn similarity_threshold_must_be_a_score_above_zero() {
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            let v = Input::new("similarity", "a", json!("a")).with_threshold(bad);
            assert!(crate::evaluate(&v).is_err(), "threshold {bad} accepted");
        }
        // Identical texts reach a threshold of 1 under every method.
        for method in ["cosine", "dice", "jaro-winkler", "levenshtein"] {
            let exact = Input::new("similarity", "the cat sat on the mat", json!("the cat sat on the mat"))
                .with_threshold(1.0)
                .with_config(json!({"method": method}));
            assert!(crate::evaluate(&exact).unwrap().pass, "{method}");
        }
    }

    #[test]
    fn cosine_similarity_is_bag_of_words() {
        assert!((cosine_bag_of_words("the cat sat", "sat the cat") - 1.0).abs() < 1e-9);
        assert_eq!(cosine_bag_of_words("alpha", "beta"), 0.0);
        let v = Input::new("similarity", "The cat sat on the mat", json!("the cat sat on a mat"));
        assert!(crate::evaluate(&v).unwrap().pass);
        let low = Input::new("similarity", "completely different", json!("the cat sat"));
        assert!(!crate::evaluate(&low).unwrap().pass);
        let dice = Input::new("similarity", "night", json!("nacht"))
            .with_config(json!({"method": "dice"}))
            .with_threshold(0.2);
        assert!(crate::evaluate(&dice).unwrap().pass);
        let bad = Input::new("similarity", "a", json!("b")).with_config(json!({"method": "magic"}));
        assert!(crate::evaluate(&bad).is_err());
    }

    #[test]
    fn latency_and_tokens() {
        let fast = Input::new("latency", "", json!(100)).with_metrics(40, None);
        assert!(crate::evaluate(&fast).unwrap().pass);
        let slow = Input::new("latency", "", json!(100)).with_metrics(140, None);
        assert!(!crate::evaluate(&slow).unwrap().pass);
        let toks = Input::new("tokens", "", json!("<=50")).with_metrics(1, Some((20, 25)));
        assert!(crate::evaluate(&toks).unwrap().pass);
        let none = Input::new("tokens", "", json!(50));
        assert!(crate::evaluate(&none).is_err());
    }

    #[test]
    fn unknown_type_lists_known_ones() {
        let err = run("vibes", "x", Value::Null).unwrap_err();
        assert!(err.contains("equals") && err.contains("tokens"), "{err}");
    }
}
