//! The high-level evaluator API: [`Evaluator`], [`Input`] and [`Verdict`].

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::assertion::AssertionInput;
use crate::assertion::cardrun::plugin::types::{AssertionParams, TokenUsage};

/// An assertion plugin. Implement it and call [`crate::export_evaluator!`].
pub trait Evaluator {
    /// The plugin's name.
    const NAME: &'static str;
    /// The plugin's version.
    const VERSION: &'static str = "0.1.0";
    /// The assertion types this plugin provides (lowercase, no `not-`).
    const TYPES: &'static [&'static str];
    /// One line about what it does.
    const DESCRIPTION: &'static str = "";

    /// Judges one output. Return `Err` when the assertion cannot be evaluated
    /// (bad parameters); return a failing [`Verdict`] when the output is wrong.
    fn evaluate(input: &Input) -> Result<Verdict, String>;

    /// Checks an assertion's parameters when a test case is written, before
    /// any output exists, so that the host refuses a bad one with a 400
    /// instead of running it. `input` holds the assertion type, value,
    /// threshold, config and expected output; its output, prompt and
    /// variables are empty, latency is 0 and token counts are (0, 0).
    ///
    /// Return `Err` naming the problem. The default accepts everything (the
    /// parameters are then found wrong only at run time). An evaluator whose
    /// errors depend only on its parameters can check by evaluating:
    /// `Self::evaluate(input).map(|_| ())`.
    fn check(input: &Input) -> Result<(), String> {
        let _ = input;
        Ok(())
    }
}

/// One assertion's input with its JSON fields already parsed.
#[derive(Debug, Clone)]
pub struct Input {
    assertion_type: String,
    output: String,
    expected: Option<String>,
    value: Value,
    threshold: Option<f64>,
    config: Value,
    variables: Vec<(String, String)>,
    prompt: String,
    latency_ms: u64,
    tokens: Option<(u32, u32)>,
}

impl Input {
    pub(crate) fn from_raw(raw: AssertionInput) -> Result<Self, String> {
        let value = parse_json_field("value", &raw.value)?;
        let config = parse_json_field("config", &raw.config)?;
        Ok(Self {
            assertion_type: raw.assertion_type,
            output: raw.output,
            expected: raw.expected,
            value,
            threshold: raw.threshold,
            config,
            variables: raw.context.variables,
            prompt: raw.context.prompt,
            latency_ms: raw.context.latency_ms,
            tokens: raw.context.tokens.map(|TokenUsage { prompt, completion }| (prompt, completion)),
        })
    }

    /// The input `check` sees: the parameters, with an empty output.
    pub(crate) fn from_params(raw: AssertionParams) -> Result<Self, String> {
        let mut input = Self::for_check(&raw.assertion_type, parse_json_field("value", &raw.value)?);
        input.config = parse_json_field("config", &raw.config)?;
        input.expected = raw.expected;
        input.threshold = raw.threshold;
        Ok(input)
    }

    /// An input as [`Evaluator::check`] sees it: no output, no prompt, no
    /// variables, latency 0 and token counts (0, 0). For a plugin's tests.
    pub fn for_check(assertion_type: &str, value: Value) -> Self {
        Self::new(assertion_type, "", value).with_metrics(0, Some((0, 0)))
    }

    /// Builds an input by hand, e.g. for a plugin's own unit tests.
    pub fn new(assertion_type: &str, output: &str, value: Value) -> Self {
        Self {
            assertion_type: assertion_type.to_string(),
            output: output.to_string(),
            expected: None,
            value,
            threshold: None,
            config: Value::Object(Default::default()),
            variables: Vec::new(),
            prompt: String::new(),
            latency_ms: 0,
            tokens: None,
        }
    }

    /// Sets the expected output (builder for tests).
    pub fn with_expected(mut self, expected: &str) -> Self {
        self.expected = Some(expected.to_string());
        self
    }

    /// Sets the threshold (builder for tests).
    pub fn with_threshold(mut self, threshold: f64) -> Self {
        self.threshold = Some(threshold);
        self
    }

    /// Sets the config object (builder for tests).
    pub fn with_config(mut self, config: Value) -> Self {
        self.config = config;
        self
    }

    /// Sets the template variables (builder for tests).
    pub fn with_variables(mut self, variables: &[(&str, &str)]) -> Self {
        self.variables = variables.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self
    }

    /// Sets the prompt as sent to the model (builder for tests).
    pub fn with_prompt(mut self, prompt: &str) -> Self {
        self.prompt = prompt.to_string();
        self
    }

    /// Sets latency and token counts (builder for tests).
    pub fn with_metrics(mut self, latency_ms: u64, tokens: Option<(u32, u32)>) -> Self {
        self.latency_ms = latency_ms;
        self.tokens = tokens;
        self
    }

    /// The assertion type being evaluated (without `not-`).
    pub fn assertion_type(&self) -> &str {
        &self.assertion_type
    }

    /// The model's output.
    pub fn output(&self) -> &str {
        &self.output
    }

    /// The test case's expected output, if any.
    pub fn expected(&self) -> Option<&str> {
        self.expected.as_deref()
    }

    /// The assertion's raw `value` (`Value::Null` when absent).
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The `value` deserialized into `T`, with a readable error.
    pub fn value_as<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(self.value.clone()).map_err(|e| format!("`{}`: invalid value: {e}", self.assertion_type))
    }

    /// The `value` as text: a JSON string as is, `null` as the expected
    /// output, anything else is an error naming the assertion type.
    pub fn value_text(&self) -> Result<&str, String> {
        match &self.value {
            Value::String(s) => Ok(s),
            Value::Null => self
                .expected()
                .ok_or_else(|| format!("`{}` needs a string value (or an expected output)", self.assertion_type)),
            other => Err(format!("`{}` needs a string value, got {other}", self.assertion_type)),
        }
    }

    /// The optional threshold, as written (a distance, a bound or a
    /// minimum score, depending on the type).
    pub fn threshold(&self) -> Option<f64> {
        self.threshold
    }

    /// The threshold read as a minimum score, `default` when absent.
    ///
    /// The host holds every verdict to this reading when the threshold is
    /// in (0, 1]: the verdict passes exactly when its score is at least the
    /// threshold. A value of 0 or below, or above 1, is an error naming the
    /// type, because no score could agree with it.
    pub fn min_score(&self, default: f64) -> Result<f64, String> {
        let t = self.threshold.unwrap_or(default);
        if t > 0.0 && t <= 1.0 {
            Ok(t)
        } else {
            Err(format!(
                "`{}` threshold is a minimum score and must be above 0 and at most 1, got {t}",
                self.assertion_type
            ))
        }
    }

    /// The `config` object.
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// A boolean config flag, `false` when absent.
    pub fn flag(&self, name: &str) -> bool {
        self.config.get(name).and_then(Value::as_bool).unwrap_or(false)
    }

    /// The template variables the prompt was rendered with.
    pub fn variables(&self) -> &[(String, String)] {
        &self.variables
    }

    /// The prompt as sent to the model.
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// Latency of the model call in milliseconds.
    pub fn latency_ms(&self) -> u64 {
        self.latency_ms
    }

    /// `(prompt, completion)` token counts, when the adapter reported them.
    pub fn tokens(&self) -> Option<(u32, u32)> {
        self.tokens
    }
}

fn parse_json_field(name: &str, text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).map_err(|e| format!("assertion {name} is not valid JSON: {e}"))
}

/// An evaluator's judgement.
///
/// The host refuses (`bad_verdict`) a verdict whose score disagrees with
/// its `pass`: with a threshold in (0, 1], `pass` must equal
/// `score >= threshold`; without one, a pass must score above 0 and a
/// failure below 1. [`Verdict::pass`], [`Verdict::fail`] and
/// [`Verdict::scored`] (with [`Input::min_score`]) always agree.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub pass: bool,
    /// 0..=1; anything else (NaN, infinities, values outside) makes the
    /// verdict a `bad_verdict` error.
    pub score: f64,
    pub reason: String,
}

impl Verdict {
    /// A pass with score 1.
    pub fn pass(reason: impl Into<String>) -> Self {
        Self { pass: true, score: 1.0, reason: reason.into() }
    }

    /// A failure with score 0.
    pub fn fail(reason: impl Into<String>) -> Self {
        Self { pass: false, score: 0.0, reason: reason.into() }
    }

    /// A pass or a failure depending on `ok`, with the matching reason.
    pub fn check(ok: bool, pass_reason: impl Into<String>, fail_reason: impl Into<String>) -> Self {
        if ok { Self::pass(pass_reason) } else { Self::fail(fail_reason) }
    }

    /// A graded verdict: passes when `score >= threshold`. Take the
    /// threshold from [`Input::min_score`] so that it is in (0, 1].
    pub fn scored(score: f64, threshold: f64, reason: impl Into<String>) -> Self {
        Self { pass: score >= threshold, score, reason: reason.into() }
    }
}
