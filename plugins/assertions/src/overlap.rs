//! N-gram overlap with a reference text: `rouge-n` and `bleu`, on
//! lower-cased word tokens.

use std::collections::HashMap;

use cardrun_plugin_sdk::{Input, Verdict};
use serde_json::Value;

/// Lower-cased words (letters and digits), the tokens both measures count.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    if n > 0 && tokens.len() >= n {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// Matches of `candidate`'s n-grams in `reference`'s, each counted at most
/// as often as the reference has it (clipped).
fn clipped_matches(candidate: &HashMap<&[String], usize>, reference: &HashMap<&[String], usize>) -> usize {
    candidate.iter().map(|(gram, count)| (*count).min(reference.get(gram).copied().unwrap_or(0))).sum()
}

/// The reference texts: `value` as text or a list of texts, else the
/// expected output.
fn references(input: &Input) -> Result<Vec<String>, String> {
    let kind = input.assertion_type();
    let list = match input.value() {
        Value::Null => vec![
            input.expected().ok_or(format!("`{kind}` needs a reference: a `value` or an expected output"))?.to_string(),
        ],
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or(format!("`{kind}` references must be strings")))
            .collect::<Result<_, _>>()?,
        _ => return Err(format!("`{kind}` needs a reference text (or a list of them) as its value")),
    };
    if list.is_empty() || list.iter().all(|r| tokens(r).is_empty()) {
        return Err(format!("`{kind}` needs a reference with at least one word"));
    }
    Ok(list)
}

/// `config.n`: the n-gram length, 1 to 4.
fn order(input: &Input, default: usize) -> Result<usize, String> {
    match input.config().get("n") {
        None => Ok(default),
        Some(n) => n
            .as_u64()
            .filter(|n| (1..=4).contains(n))
            .map(|n| n as usize)
            .ok_or(format!("`{}` config.n must be 1, 2, 3 or 4", input.assertion_type())),
    }
}

/// ROUGE-N recall of `candidate` against one reference: the share of the
/// reference's n-grams the candidate has.
pub fn rouge_n_recall(candidate: &str, reference: &str, n: usize) -> f64 {
    let (c, r) = (tokens(candidate), tokens(reference));
    let (cg, rg) = (ngrams(&c, n), ngrams(&r, n));
    let total: usize = rg.values().sum();
    if total == 0 { 0.0 } else { clipped_matches(&cg, &rg) as f64 / total as f64 }
}

/// `rouge-n`: ROUGE-N recall against the reference (the best of several),
/// passing at `threshold` (a minimum score, default 0.75). `config.n` sets
/// N (default 1: unigrams).
pub fn rouge_n(input: &Input) -> Result<Verdict, String> {
    let references = references(input)?;
    let n = order(input, 1)?;
    let threshold = input.min_score(0.75)?;
    let score = references.iter().map(|r| rouge_n_recall(input.output(), r, n)).fold(0.0, f64::max);
    Ok(Verdict::scored(score, threshold, format!("ROUGE-{n} recall {score:.3} (threshold {threshold})")))
}

/// Sentence BLEU of `candidate` against `references` up to `max_n`-grams:
/// the geometric mean of clipped n-gram precisions (add-one smoothed above
/// unigrams, so a short candidate with no 4-gram match is not 0) times the
/// brevity penalty against the closest reference length.
pub fn sentence_bleu(candidate: &str, references: &[String], max_n: usize) -> f64 {
    let c = tokens(candidate);
    if c.is_empty() {
        return 0.0;
    }
    let refs: Vec<Vec<String>> = references.iter().map(|r| tokens(r)).collect();
    let mut log_sum = 0.0;
    for n in 1..=max_n {
        let cg = ngrams(&c, n);
        let total: usize = cg.values().sum();
        // The most times each n-gram appears in any one reference.
        let mut best: HashMap<&[String], usize> = HashMap::new();
        for r in &refs {
            for (gram, count) in ngrams(r, n) {
                let entry = best.entry(gram).or_insert(0);
                *entry = (*entry).max(count);
            }
        }
        let matches = clipped_matches(&cg, &best);
        let precision = if n == 1 {
            if matches == 0 {
                return 0.0;
            }
            matches as f64 / total as f64
        } else {
            (matches as f64 + 1.0) / (total as f64 + 1.0)
        };
        log_sum += precision.ln();
    }
    let closest = refs.iter().map(Vec::len).min_by_key(|len| (len.abs_diff(c.len()), *len)).unwrap_or(0);
    let penalty = if c.len() >= closest { 1.0 } else { (1.0 - closest as f64 / c.len() as f64).exp() };
    (penalty * (log_sum / max_n as f64).exp()).clamp(0.0, 1.0)
}

/// `bleu`: sentence BLEU against the reference(s), passing at `threshold`
/// (a minimum score, default 0.5). `config.n` sets the longest n-gram
/// (default 4).
pub fn bleu(input: &Input) -> Result<Verdict, String> {
    let references = references(input)?;
    let n = order(input, 4)?;
    let threshold = input.min_score(0.5)?;
    let score = sentence_bleu(input.output(), &references, n);
    Ok(Verdict::scored(score, threshold, format!("BLEU-{n} {score:.3} (threshold {threshold})")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rouge_counts_the_reference_ngrams_found() {
        assert_eq!(rouge_n_recall("the cat sat on the mat", "the cat sat", 1), 1.0);
        assert!((rouge_n_recall("the cat", "the cat sat on mats", 1) - 0.4).abs() < 1e-9);
        assert!((rouge_n_recall("the cat sat", "the cat sat down", 2) - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(rouge_n_recall("", "a b", 1), 0.0);
    }

    #[test]
    fn bleu_is_one_for_identity_and_falls_with_difference() {
        let reference = vec!["the quick brown fox jumps over the lazy dog".to_string()];
        assert!((sentence_bleu("The quick brown fox jumps over the lazy dog.", &reference, 4) - 1.0).abs() < 1e-9);
        let close = sentence_bleu("the quick brown fox jumped over the lazy dog", &reference, 4);
        let far = sentence_bleu("a slow red cat sleeps", &reference, 4);
        assert!(close > 0.4 && close < 1.0, "{close}");
        assert!(far < 0.1, "{far}");
        // Brevity is penalised.
        assert!(sentence_bleu("the quick brown fox", &reference, 4) < close);
    }

    #[test]
    fn parameters() {
        let input = Input::new("bleu", "x", json!(["a b", "c d"]));
        assert!(bleu(&input).is_ok());
        assert!(rouge_n(&Input::new("rouge-n", "x", json!(3))).is_err());
        assert!(rouge_n(&Input::new("rouge-n", "x", json!("a b")).with_config(json!({"n": 7}))).is_err());
        assert!(rouge_n(&Input::new("rouge-n", "x", Value::Null)).is_err());
        assert!(rouge_n(&Input::new("rouge-n", "x", Value::Null).with_expected("a b")).is_ok());
        let v = rouge_n(&Input::new("rouge-n", "the cat sat", json!("the cat sat down")).with_threshold(0.7)).unwrap();
        assert!(v.pass && (v.score - 0.75).abs() < 1e-9, "{v:?}");
    }
}
