//! `keywords`: an example cardrun evaluator written with the plugin SDK.
//!
//! ```yaml
//! assert:
//!   - type: keywords
//!     value: { required: [refund, "30 days"], banned: [guarantee] }
//!     threshold: 0.5   # share of required keywords needed (default: all)
//! ```
//! Matching ignores case. Any banned keyword fails the test outright.

use cardrun_plugin_sdk::{Evaluator, Input, Verdict, export_evaluator};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keywords {
    #[serde(default)]
    required: Vec<String>,
    #[serde(default)]
    banned: Vec<String>,
}

pub struct KeywordEvaluator;

impl Evaluator for KeywordEvaluator {
    const NAME: &'static str = "keywords";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const TYPES: &'static [&'static str] = &["keywords"];
    const DESCRIPTION: &'static str = "required and banned keywords, case-insensitive";

    fn evaluate(input: &Input) -> Result<Verdict, String> {
        let keywords = parameters(input)?;
        let text = input.output().to_lowercase();
        let has = |word: &String| text.contains(&word.to_lowercase());

        if let Some(word) = keywords.banned.iter().find(|w| has(w)) {
            return Ok(Verdict::fail(format!("mentions banned keyword {word:?}")));
        }
        if keywords.required.is_empty() {
            return Ok(Verdict::pass("mentions no banned keyword"));
        }
        let missing: Vec<&String> = keywords.required.iter().filter(|w| !has(w)).collect();
        let score = 1.0 - missing.len() as f64 / keywords.required.len() as f64;
        let reason = if missing.is_empty() {
            "mentions every required keyword".to_string()
        } else {
            format!("missing {missing:?}")
        };
        Ok(Verdict::scored(score, input.min_score(1.0)?, reason))
    }

    /// Refuses, when the test case is written, what `evaluate` would refuse
    /// at run time: an unknown field, no words, a threshold that is no score.
    fn check(input: &Input) -> Result<(), String> {
        parameters(input)?;
        input.min_score(1.0).map(|_| ())
    }
}

fn parameters(input: &Input) -> Result<Keywords, String> {
    let keywords: Keywords = input.value_as()?;
    if keywords.required.is_empty() && keywords.banned.is_empty() {
        return Err("`keywords` needs `required` and/or `banned` words".into());
    }
    Ok(keywords)
}

export_evaluator!(KeywordEvaluator);

#[cfg(test)]
mod tests {
    use super::*;
    use cardrun_plugin_sdk::serde_json::json;

    fn judge(output: &str, value: cardrun_plugin_sdk::serde_json::Value) -> Result<Verdict, String> {
        KeywordEvaluator::evaluate(&Input::new("keywords", output, value))
    }

    #[test]
    fn required_and_banned() {
        let value = json!({"required": ["refund", "30 days"], "banned": ["guarantee"]});
        assert!(judge("Refunds within 30 days.", value.clone()).unwrap().pass);
        assert!(!judge("Refunds, guaranteed!", value.clone()).unwrap().pass);
        let partial = judge("A refund is possible.", value).unwrap();
        assert!(!partial.pass);
        assert_eq!(partial.score, 0.5);
        assert!(judge("x", json!({})).is_err());
        assert!(judge("x", json!({"wanted": []})).is_err());
    }

    #[test]
    fn check_refuses_what_evaluate_would() {
        let check = |value| KeywordEvaluator::check(&Input::for_check("keywords", value));
        assert!(check(json!({"required": ["refund"]})).is_ok());
        assert!(check(json!({})).is_err());
        assert!(check(json!({"wanted": ["x"]})).is_err());
        let above_one = Input::for_check("keywords", json!({"banned": ["x"]})).with_threshold(2.0);
        assert!(KeywordEvaluator::check(&above_one).is_err());
    }
}
