//! cardrun's built-in model-graded assertion types.
//!
//! Each type asks the host's grader model (the `grader` capability of the
//! `graded-assertion` world) with a prompt written for cardrun
//! (`prompts.rs`), reads the verdict out of whatever prose surrounds it
//! (`verdict.rs`), and gives a score, a pass and a reason. A grader that
//! cannot be reached, or whose answer cannot be read, makes the assertion
//! an error, never a pass.
//!
//! The grading logic is written against [`Judge`], so that it is
//! unit-tested natively with a scripted judge; in the component the judge
//! is the host's grader.

mod custom;
mod prompts;
mod similarity;
mod verdict;

use cardrun_plugin_sdk::serde_json::Value;
use cardrun_plugin_sdk::{Evaluator, Input, Verdict, export_graded_evaluator, grader};

pub use similarity::cosine;

/// Every type this component evaluates.
pub const TYPES: &[&str] =
    &["llm-rubric", "model-graded-closedqa", "factuality", "answer-relevance", "g-eval", "similar", "select-best"];

/// Default minimum scores, where a type reads its threshold as one.
const ANSWER_RELEVANCE_THRESHOLD: f64 = 0.7;
const G_EVAL_THRESHOLD: f64 = 0.7;
const SIMILAR_THRESHOLD: f64 = 0.75;
/// Longest grader reason kept in a verdict.
const MAX_REASON_CHARS: usize = 500;

/// What the grading logic asks of a model.
pub trait Judge {
    /// The grader model's answer to `prompt`.
    fn complete(&self, prompt: &str) -> Result<String, String>;
    /// The grader model's answer to a conversation of (role, content).
    fn chat(&self, messages: &[(String, String)]) -> Result<String, String>;
    /// One embedding per text.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String>;
}

/// The host's grader.
struct HostGrader;

impl Judge for HostGrader {
    fn complete(&self, prompt: &str) -> Result<String, String> {
        grader::complete(prompt).map(|answer| answer.text)
    }

    fn chat(&self, messages: &[(String, String)]) -> Result<String, String> {
        let messages: Vec<(&str, &str)> = messages.iter().map(|(r, c)| (r.as_str(), c.as_str())).collect();
        grader::chat(&messages).map(|answer| answer.text)
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        grader::embed(texts)
    }
}

pub struct Graded;

impl Evaluator for Graded {
    const NAME: &'static str = "builtin-graded-assertions";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const TYPES: &'static [&'static str] = TYPES;
    const DESCRIPTION: &'static str = "cardrun's built-in model-graded assertion types, through the host's grader";

    fn evaluate(input: &Input) -> Result<Verdict, String> {
        evaluate(input, &HostGrader)
    }

    fn check(input: &Input) -> Result<(), String> {
        check(input)
    }
}

export_graded_evaluator!(Graded);

/// The placeholders a type's `rubricPrompt` may use (each with the
/// names promptfoo gives it), filled from the input; `None` for the types
/// that take no custom prompt.
fn prompt_fields(input: &Input, value: &str) -> Option<Vec<(&'static str, String)>> {
    let (output, question) = (input.output().to_string(), input.prompt().to_string());
    match input.assertion_type() {
        "llm-rubric" => Some(vec![("output", output), ("rubric", value.to_string())]),
        "model-graded-closedqa" => Some(vec![
            ("input", question.clone()),
            ("question", question),
            ("criteria", value.to_string()),
            ("completion", output.clone()),
            ("output", output),
        ]),
        "factuality" => Some(vec![
            ("input", question.clone()),
            ("question", question),
            ("ideal", value.to_string()),
            ("expected", value.to_string()),
            ("completion", output.clone()),
            ("output", output),
        ]),
        _ => None,
    }
}

/// Asks the grader `default`, or the assertion's own `rubricPrompt` filled
/// with `value` and the input.
fn ask(input: &Input, judge: &dyn Judge, value: &str, default: String) -> Result<String, String> {
    let fields = prompt_fields(input, value).unwrap_or_default();
    let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    match custom::prompt(input, &fields)? {
        None => judge.complete(&default),
        Some(custom::Custom::Text(text)) => judge.complete(&text),
        Some(custom::Custom::Chat(messages)) => judge.chat(&messages),
    }
}

/// Checks the parameters a type needs, without asking any model.
pub fn check(input: &Input) -> Result<(), String> {
    let kind = input.assertion_type();
    if input.config().get(custom::KEY).is_some() {
        prompt_fields(input, "").ok_or_else(|| format!("`{kind}` takes no `{}`", custom::KEY))?;
        custom::check(input)?;
    }
    match kind {
        "llm-rubric" | "model-graded-closedqa" | "g-eval" | "select-best" => {
            required_text(input)?;
        }
        "factuality" => {
            if input.value().is_null() && input.expected().is_none() {
                return Err(
                    "`factuality` needs the reference answer as its `value` (or the test's expected output)".into()
                );
            }
            category_scores(input)?;
        }
        "answer-relevance" => {
            input.min_score(ANSWER_RELEVANCE_THRESHOLD)?;
        }
        "similar" => {
            references(input)?;
            input.min_score(SIMILAR_THRESHOLD)?;
        }
        other => return Err(format!("unknown assertion type `{other}`")),
    }
    if kind == "g-eval" {
        input.min_score(G_EVAL_THRESHOLD)?;
    }
    Ok(())
}

/// Judges `input` with `judge`.
pub fn evaluate(input: &Input, judge: &dyn Judge) -> Result<Verdict, String> {
    check(input)?;
    match input.assertion_type() {
        "llm-rubric" => llm_rubric(input, judge),
        "model-graded-closedqa" => closed_qa(input, judge),
        "factuality" => factuality(input, judge),
        "answer-relevance" => answer_relevance(input, judge),
        "g-eval" => g_eval(input, judge),
        "similar" => similar(input, judge),
        "select-best" => select_best(input, judge),
        other => Err(format!("unknown assertion type `{other}`")),
    }
}

/// The assertion's `value` as the text a grading prompt quotes: a string
/// as it is, anything else as JSON; empty is an error.
fn required_text(input: &Input) -> Result<String, String> {
    let text = match input.value() {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    if text.trim().is_empty() {
        return Err(format!("`{}` needs a `value`: what the grader is to check", input.assertion_type()));
    }
    Ok(text)
}

fn reason(map: &cardrun_plugin_sdk::serde_json::Map<String, Value>) -> String {
    let text = verdict::text(map, "reason");
    if text.is_empty() { "the grader gave no reason".into() } else { verdict::clip(text, MAX_REASON_CHARS) }
}

fn llm_rubric(input: &Input, judge: &dyn Judge) -> Result<Verdict, String> {
    let rubric = required_text(input)?;
    let answer = ask(input, judge, &rubric, prompts::rubric(input.output(), &rubric))?;
    let map = verdict::object_with(&answer, "pass")?;
    let pass = verdict::boolean(&map, "pass")?;
    let score = verdict::number(&map, "score")?.map(|s| s.clamp(0.0, 1.0));
    let reason = reason(&map);
    Ok(match input.threshold() {
        // With a threshold, the score decides (a missing one is the pass).
        Some(_) => {
            let threshold = input.min_score(0.5)?;
            Verdict::scored(score.unwrap_or(if pass { 1.0 } else { 0.0 }), threshold, reason)
        }
        None => {
            let consistent = score.filter(|s| if pass { *s > 0.0 } else { *s < 1.0 });
            Verdict { pass, score: consistent.unwrap_or(if pass { 1.0 } else { 0.0 }), reason }
        }
    })
}

fn closed_qa(input: &Input, judge: &dyn Judge) -> Result<Verdict, String> {
    let criterion = required_text(input)?;
    let answer = ask(input, judge, &criterion, prompts::closed_qa(input.prompt(), input.output(), &criterion))?;
    let map = verdict::object_with(&answer, "pass")?;
    let pass = verdict::boolean(&map, "pass")?;
    Ok(Verdict { pass, score: if pass { 1.0 } else { 0.0 }, reason: reason(&map) })
}

/// promptfoo's category names, the letters, and the default scores: every
/// category passes but a disagreement.
const CATEGORIES: [(&str, &str, f64); 5] = [
    ("A", "subset", 1.0),
    ("B", "superset", 1.0),
    ("C", "agree", 1.0),
    ("D", "disagree", 0.0),
    ("E", "differButFactual", 1.0),
];

/// Each category's score: the defaults, overridden by `config` keys named
/// as promptfoo names them (`subset`, `superset`, `agree`, `disagree`,
/// `differButFactual`), each in 0..=1.
fn category_scores(input: &Input) -> Result<[f64; 5], String> {
    let mut scores = CATEGORIES.map(|(_, _, score)| score);
    let Value::Object(config) = input.config() else { return Ok(scores) };
    for (key, value) in config.iter().filter(|(key, _)| *key != custom::KEY) {
        let Some(i) = CATEGORIES.iter().position(|(_, name, _)| name == key) else {
            return Err(format!(
                "`factuality` config key `{key}` is not a category; the categories are subset, superset, agree, disagree, differButFactual"
            ));
        };
        match value.as_f64() {
            Some(score) if (0.0..=1.0).contains(&score) => scores[i] = score,
            _ => return Err(format!("`factuality` config `{key}` must be a score from 0 to 1, not {value}")),
        }
    }
    Ok(scores)
}

fn factuality(input: &Input, judge: &dyn Judge) -> Result<Verdict, String> {
    let reference = match input.value() {
        Value::Null => input.expected().unwrap_or_default().to_string(),
        _ => required_text(input)?,
    };
    let answer = ask(input, judge, &reference, prompts::factuality(input.prompt(), &reference, input.output()))?;
    let map = verdict::object_with(&answer, "category")?;
    let raw = verdict::text(&map, "category").trim().trim_matches(|c| c == '(' || c == ')').to_ascii_uppercase();
    let Some(i) = CATEGORIES.iter().position(|(letter, _, _)| raw.starts_with(letter)) else {
        return Err(format!("the grader's category is {raw:?}, not one of A, B, C, D, E"));
    };
    let score = category_scores(input)?[i];
    let (letter, name, _) = CATEGORIES[i];
    let reason = format!("category {letter} ({name}): {}", reason(&map));
    Ok(match input.threshold() {
        Some(_) => Verdict::scored(score, input.min_score(1.0)?, reason),
        None => Verdict { pass: score > 0.0, score, reason },
    })
}

/// The question the output answers: the `query` or `question` variable,
/// else the prompt.
fn query(input: &Input) -> String {
    input
        .variables()
        .iter()
        .find(|(name, _)| name == "query" || name == "question")
        .map_or_else(|| input.prompt().to_string(), |(_, value)| value.clone())
}

fn answer_relevance(input: &Input, judge: &dyn Judge) -> Result<Verdict, String> {
    let threshold = input.min_score(ANSWER_RELEVANCE_THRESHOLD)?;
    let query = query(input);
    if query.trim().is_empty() {
        return Err("`answer-relevance` needs the question: a `query` variable, or the prompt".into());
    }
    let answer = judge.complete(&prompts::questions_for(input.output()))?;
    let questions = verdict::strings(&verdict::object_with(&answer, "questions")?, "questions")?;
    let mut texts = vec![query];
    texts.extend(questions.iter().take(5).cloned());
    let vectors = judge.embed(&texts)?;
    let (first, rest) = vectors.split_first().ok_or("the grader returned no embeddings")?;
    let similarities = rest.iter().map(|v| cosine(first, v)).collect::<Result<Vec<f64>, String>>()?;
    let score = (similarities.iter().sum::<f64>() / similarities.len().max(1) as f64).clamp(0.0, 1.0);
    Ok(Verdict::scored(
        score,
        threshold,
        format!(
            "relevance {score:.3} (threshold {threshold}): the answer replies to {:?}",
            verdict::clip(&questions[0], 120)
        ),
    ))
}

fn g_eval(input: &Input, judge: &dyn Judge) -> Result<Verdict, String> {
    let threshold = input.min_score(G_EVAL_THRESHOLD)?;
    let criteria = required_text(input)?;
    let answer = judge.complete(&prompts::evaluation_steps(&criteria))?;
    let steps = verdict::strings(&verdict::object_with(&answer, "steps")?, "steps")?;
    let answer = judge.complete(&prompts::rating(&criteria, &steps, input.prompt(), input.output()))?;
    let map = verdict::object_with(&answer, "rating")?;
    let rating = verdict::number(&map, "rating")?.ok_or("the grader gave no rating")?;
    if !(0.0..=10.0).contains(&rating) {
        return Err(format!("the grader's rating is {rating}, not from 0 to 10"));
    }
    let score = rating / 10.0;
    Ok(Verdict::scored(score, threshold, format!("rated {rating}/10 (threshold {threshold}): {}", reason(&map))))
}

/// Most outputs one `select-best` compares.
const MAX_CANDIDATES: usize = 64;

/// `select-best`: the host gives every output of the test's row across an
/// evaluation's pairs (`config.outputs`, in pair order) and which one this
/// pair's is (`config.index`); it passes when the grader picks this one.
/// Every pair asks the same prompt, so the grader is asked once per row.
fn select_best(input: &Input, judge: &dyn Judge) -> Result<Verdict, String> {
    let criteria = required_text(input)?;
    let config = input.config();
    let decided_later = "`select-best` compares a test's outputs across an evaluation's pairs, so it is decided once every pair has run";
    let outputs: Vec<String> = match config.get("outputs").and_then(Value::as_array) {
        Some(items) => {
            items.iter().map(|o| o.as_str().map(str::to_string).ok_or(decided_later)).collect::<Result<_, _>>()?
        }
        None => return Err(decided_later.into()),
    };
    if outputs.len() < 2 {
        return Err(format!("`select-best` needs at least two outputs to compare; this test ran on {}", outputs.len()));
    }
    if outputs.len() > MAX_CANDIDATES {
        return Err(format!("`select-best` compares at most {MAX_CANDIDATES} outputs, not {}", outputs.len()));
    }
    let index = config.get("index").and_then(Value::as_u64).ok_or(decided_later)?;
    let answer = judge.complete(&prompts::select_best(&criteria, &outputs))?;
    let map = verdict::object_with(&answer, "best")?;
    let best = verdict::number(&map, "best")?.ok_or("the grader named no best output")?;
    if best.fract() != 0.0 || best < 0.0 || best >= outputs.len() as f64 {
        return Err(format!("the grader's best output is {best}, not an index from 0 to {}", outputs.len() - 1));
    }
    let chosen = best as u64;
    let reason = reason(&map);
    Ok(if chosen == index {
        Verdict { pass: true, score: 1.0, reason: format!("chosen as the best of {}: {reason}", outputs.len()) }
    } else {
        Verdict {
            pass: false,
            score: 0.0,
            reason: format!("output {chosen} of {} was chosen: {reason}", outputs.len()),
        }
    })
}

/// `similar`'s references: its value, a string or a list of strings.
fn references(input: &Input) -> Result<Vec<String>, String> {
    let bad = || "`similar` needs a `value`: the expected text, or a list of them".to_string();
    match input.value() {
        Value::String(s) if !s.trim().is_empty() => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().filter(|s| !s.trim().is_empty()).map(str::to_string).ok_or_else(bad))
            .collect(),
        Value::Null => input.expected().filter(|e| !e.trim().is_empty()).map(|e| vec![e.to_string()]).ok_or_else(bad),
        _ => Err(bad()),
    }
}

fn similar(input: &Input, judge: &dyn Judge) -> Result<Verdict, String> {
    let threshold = input.min_score(SIMILAR_THRESHOLD)?;
    let references = references(input)?;
    let mut texts = vec![input.output().to_string()];
    texts.extend(references.iter().cloned());
    let vectors = judge.embed(&texts)?;
    let (output, rest) = vectors.split_first().ok_or("the grader returned no embeddings")?;
    let mut best = (f64::MIN, 0);
    for (i, v) in rest.iter().enumerate() {
        let s = cosine(output, v)?;
        if s > best.0 {
            best = (s, i);
        }
    }
    let score = best.0.clamp(0.0, 1.0);
    Ok(Verdict::scored(
        score,
        threshold,
        format!("cosine similarity {score:.3} (threshold {threshold}) to {:?}", verdict::clip(&references[best.1], 80)),
    ))
}

#[cfg(test)]
mod tests;
