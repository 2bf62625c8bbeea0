//! cardrun's built-in text and measure assertion types.
//!
//! One component provides these types (the JSON ones live in
//! `cardrun-builtin-json-assertions`); the host routes each type name to
//! its component and applies `not-` negation itself. Each module holds one
//! family of checks and is unit-tested natively (`cargo test`).

mod measure;
mod overlap;
mod refusal;
mod spec;
mod text;

use cardrun_plugin_sdk::{Evaluator, Input, Verdict, export_graded_evaluator, model_call};

/// Every type this component evaluates.
pub const TYPES: &[&str] = &[
    "equals",
    "contains",
    "icontains",
    "contains-any",
    "contains-all",
    "icontains-any",
    "icontains-all",
    "starts-with",
    "ends-with",
    "regex",
    "length",
    "word-count",
    "levenshtein",
    "similarity",
    "latency",
    "tokens",
    "rouge-n",
    "bleu",
    "is-refusal",
    "cost",
    "finish-reason",
    "perplexity",
    "perplexity-score",
];

pub struct Builtins;

impl Evaluator for Builtins {
    const NAME: &'static str = "builtin-assertions";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const TYPES: &'static [&'static str] = TYPES;
    const DESCRIPTION: &'static str = "cardrun's built-in assertion types";

    fn evaluate(input: &Input) -> Result<Verdict, String> {
        evaluate_call(input, &HostCall)
    }

    /// Every error of these types comes from the parameters (the one that
    /// depends on the model call, `tokens` without counts, cannot occur with
    /// the (0, 0) counts a check carries), so evaluating the empty output
    /// finds exactly the parameters that would fail at run time.
    fn check(input: &Input) -> Result<(), String> {
        match input.assertion_type() {
            // Their subject is the model call, which a check has not got.
            "cost" => measure::cost(input, Some(0.0)).map(|_| ()),
            "finish-reason" => measure::finish_reason(input, "").map(|_| ()),
            "perplexity" | "perplexity-score" => measure::perplexity(input, Some(&[-0.1])).map(|_| ()),
            _ => evaluate(input).map(|_| ()),
        }
    }
}

/// What the host says of the test's model call.
pub trait Call {
    fn finish_reason(&self) -> String;
    fn cost(&self) -> Option<f64>;
    fn logprobs(&self) -> Option<Vec<f64>>;
}

/// The host's `model-call` import (only called by the types that need it,
/// so the other types cost no host call).
struct HostCall;

impl Call for HostCall {
    fn finish_reason(&self) -> String {
        model_call::finish_reason()
    }

    fn cost(&self) -> Option<f64> {
        model_call::cost()
    }

    fn logprobs(&self) -> Option<Vec<f64>> {
        model_call::logprobs()
    }
}

/// [`evaluate`], with `call` answering `cost`, `finish-reason` and the
/// perplexity types.
pub fn evaluate_call(input: &Input, call: &dyn Call) -> Result<Verdict, String> {
    match input.assertion_type() {
        "cost" => measure::cost(input, call.cost()),
        "finish-reason" => measure::finish_reason(input, &call.finish_reason()),
        "perplexity" | "perplexity-score" => measure::perplexity(input, call.logprobs().as_deref()),
        _ => evaluate(input),
    }
}

/// Dispatches on the assertion type.
pub fn evaluate(input: &Input) -> Result<Verdict, String> {
    match input.assertion_type() {
        "equals" => text::equals(input),
        "contains" => text::contains(input, false),
        "icontains" => text::contains(input, true),
        "contains-any" => text::contains_set(input, text::SetMode::Any, false),
        "contains-all" => text::contains_set(input, text::SetMode::All, false),
        "icontains-any" => text::contains_set(input, text::SetMode::Any, true),
        "icontains-all" => text::contains_set(input, text::SetMode::All, true),
        "starts-with" => text::starts_with(input),
        "ends-with" => text::ends_with(input),
        "regex" => text::regex(input),
        "length" => measure::length(input),
        "word-count" => measure::word_count(input),
        "levenshtein" => measure::levenshtein(input),
        "similarity" => measure::similarity(input),
        "latency" => measure::latency(input),
        "tokens" => measure::tokens(input),
        "rouge-n" => overlap::rouge_n(input),
        "bleu" => overlap::bleu(input),
        "is-refusal" => refusal::is_refusal(input),
        other => Err(format!("unknown assertion type `{other}`; known types: {}", TYPES.join(", "))),
    }
}

export_graded_evaluator!(Builtins);
