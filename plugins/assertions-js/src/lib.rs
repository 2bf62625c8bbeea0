//! cardrun's built-in `javascript` assertion type, as promptfoo defines it.
//!
//! The assertion's `value` is JavaScript source: a one-line expression
//! (`output.includes('Paris')`), or a function body that `return`s (several
//! lines, or any source containing `return`). It sees `output` (the model's
//! text) and `context` (`vars`, `prompt`, `test.description`... see
//! [`context`]), and returns:
//! - a boolean: pass or fail, scored 1 or 0;
//! - a number: a score. With a `threshold` it passes at or above it;
//!   without one it passes above 0. Scores are kept in 0..=1 for the
//!   verdict, the script's own number is in the reason;
//! - `{pass, score, reason}`.
//!
//! A script that throws fails the assertion with the error as its reason,
//! as in promptfoo. A script that cannot be compiled is refused by
//! `check`, when the test case is written. The engine runs inside this
//! component, under the sandbox's fuel, memory and deadline like any
//! plugin; a fresh instance (a fresh realm) per evaluation, so no state is
//! shared between tests. No network, files, environment or clock beyond
//! what the sandbox gives every plugin.
//!
//! It also runs the host's own scripts (the `scripted-assertion` world's
//! `call`): transforms of an output and custom template filters.

mod script;

use cardrun_plugin_sdk::{Evaluator, Input, Scripts, Verdict, export_scripted_evaluator};

pub struct JavascriptBuiltin;

impl Evaluator for JavascriptBuiltin {
    const NAME: &'static str = "builtin-js-assertions";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const TYPES: &'static [&'static str] = &["javascript"];
    const DESCRIPTION: &'static str = "promptfoo-style JavaScript assertions, run by the Boa engine in the sandbox";

    fn evaluate(input: &Input) -> Result<Verdict, String> {
        script::evaluate(input)
    }

    fn check(input: &Input) -> Result<(), String> {
        script::check(input)
    }
}

/// The host's scripts: promptfoo's `transform` and custom Nunjucks
/// filters, under the same limits as an assertion.
impl Scripts for JavascriptBuiltin {
    fn call(function: &str, arguments: &str) -> Result<String, String> {
        script::call(function, arguments)
    }
}

export_scripted_evaluator!(JavascriptBuiltin);
