//! cardrun's built-in structured-output assertion types: JSON, XML,
//! HTML, SQL and OpenAI tool calls.
//!
//! They are a component of their own, apart from the text and measure
//! types in `cardrun-builtin-assertions`, because JSON Schema validation
//! makes a component several times bigger and adds WASI imports: paid on
//! every fresh instance, it would slow down `equals` and `contains` too.

mod html;
mod json;
mod sql;
mod tools;
mod xml;

use cardrun_plugin_sdk::{Evaluator, Input, Verdict, export_evaluator};

/// Every type this component evaluates.
pub const TYPES: &[&str] = &[
    "is-json",
    "contains-json",
    "json-schema",
    "is-xml",
    "contains-xml",
    "is-html",
    "contains-html",
    "is-sql",
    "contains-sql",
    "is-valid-openai-tools-call",
];

pub struct JsonBuiltins;

impl Evaluator for JsonBuiltins {
    const NAME: &'static str = "builtin-json-assertions";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const TYPES: &'static [&'static str] = TYPES;
    const DESCRIPTION: &'static str =
        "cardrun's built-in structured-output assertion types (JSON, XML, HTML, SQL, tool calls)";

    fn evaluate(input: &Input) -> Result<Verdict, String> {
        evaluate(input)
    }

    fn check(input: &Input) -> Result<(), String> {
        match input.assertion_type() {
            "is-xml" | "contains-xml" => xml::check(input),
            "is-sql" | "contains-sql" => sql::check(input),
            "is-html" | "contains-html" => html::check(input),
            "is-valid-openai-tools-call" => tools::check(input),
            _ => json::check(input),
        }
    }
}

/// Dispatches on the assertion type.
pub fn evaluate(input: &Input) -> Result<Verdict, String> {
    match input.assertion_type() {
        "is-json" => json::is_json(input),
        "contains-json" => json::contains_json(input),
        "json-schema" => json::json_schema(input),
        "is-xml" => xml::is_xml(input),
        "contains-xml" => xml::contains_xml(input),
        "is-html" => html::is_html(input),
        "contains-html" => html::contains_html(input),
        "is-sql" => sql::is_sql(input),
        "contains-sql" => sql::contains_sql(input),
        "is-valid-openai-tools-call" => tools::is_valid_openai_tools_call(input),
        other => Err(format!("unknown assertion type `{other}`; known types: {}", TYPES.join(", "))),
    }
}

export_evaluator!(JsonBuiltins);
