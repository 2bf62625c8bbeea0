//! The host's own scripts: promptfoo's `transform` (of a test's output, or
//! of the output one assertion sees) and custom template filters. They are
//! user code like any plugin, so they run in the built-in JavaScript
//! component (the `scripted-assertion` world's `call`), in a fresh
//! instance under the caller's limits, never in the host.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::assertion::AssertionPlugin;
use super::{Limits, Sandbox, SandboxError};

/// The assertion type whose shared (built-in) plugin runs scripts.
const SCRIPT_TYPE: &str = "javascript";

/// A transform as written, the way promptfoo reads it: several lines, or
/// a `return`, make a function body; anything else is an expression. Either
/// sees `output` and `context`. The same rule as the `javascript` type's.
pub fn transform_function(script: &str) -> String {
    let body = if script.contains('\n') || script.contains("return") {
        script.to_string()
    } else {
        format!("return (\n{script}\n);")
    };
    // Closing brackets on lines of their own, so that a `//` comment
    // ending the script does not swallow them.
    format!("(function (output, context) {{\n{body}\n}})")
}

/// What a transform's result becomes: text stays text; anything else is
/// written as JSON (an object for `is-json`, say), as promptfoo hands a
/// transformed value to string assertions.
pub fn transformed_text(result: Value) -> String {
    match result {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

impl Sandbox {
    /// The shared plugin that runs scripts. Tenants' plugins never do: a
    /// transform is the host's, whatever types a tenant uploads.
    fn script_runner(&self) -> Result<Arc<AssertionPlugin>, SandboxError> {
        let plugin = self.assertion_plugin_for(None, SCRIPT_TYPE)?;
        if !plugin.runs_scripts() {
            return Err(SandboxError::Internal(format!("the `{SCRIPT_TYPE}` plugin does not run scripts")));
        }
        Ok(plugin)
    }

    /// The limits of a script run outside a test (a template filter while
    /// an execution is planned, a syntax check): as a parameter check, a
    /// second of CPU within 2 s and 64 MiB, with a prompt's worth of output.
    pub fn script_limits(&self) -> Limits {
        let mut limits = Limits::from_resource_limits(50.0, 64, 2_000, 1).with_fuel_rate(self.fuel.fuel_per_ms);
        limits.deadline = Duration::from_secs(2);
        limits
    }

    /// Calls the script `function` (an expression whose value is a
    /// function: `(s) => s`, `function (s) { ... }`) with `arguments`, under
    /// `limits`: its JSON result.
    pub async fn run_script(
        &self,
        function: &str,
        arguments: &[Value],
        limits: &Limits,
    ) -> Result<Value, SandboxError> {
        // In brackets, so that `function (s) {...}` is an expression, not a
        // declaration without a name; on lines of their own, so that a
        // trailing `//` comment does not swallow them.
        let expression = format!("(\n{function}\n)");
        self.script_runner()?.call_script(&expression, arguments, limits).await
    }

    /// Applies the transform `script` (as written: an expression or a
    /// function body) to `output`, with `context` as promptfoo gives it.
    pub async fn transform(
        &self,
        script: &str,
        output: &str,
        context: Value,
        limits: &Limits,
    ) -> Result<String, SandboxError> {
        let arguments = [Value::String(output.to_string()), context];
        self.run_script(&transform_function(script), &arguments, limits).await.map(transformed_text)
    }

    /// Checks that `function` compiles, without running it: a bad
    /// transform or filter is refused when it is written.
    pub async fn check_script(&self, function: &str) -> Result<(), SandboxError> {
        // Compiling the outer function compiles `function`; only the outer
        // one is called, and returns before reaching it.
        let wrapped = format!("function () {{\nreturn null;\n(\n{function}\n);\n}}");
        self.run_script(&wrapped, &[], &self.script_limits()).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_and_bodies_become_functions() {
        assert_eq!(
            transform_function("output.trim()"),
            "(function (output, context) {\nreturn (\noutput.trim()\n);\n})"
        );
        let body = "const a = output;\nreturn a;";
        assert_eq!(transform_function(body), format!("(function (output, context) {{\n{body}\n}})"));
    }

    #[test]
    fn results_become_text() {
        assert_eq!(transformed_text(Value::String("x".into())), "x");
        assert_eq!(transformed_text(serde_json::json!({"a": [1]})), r#"{"a":[1]}"#);
        assert_eq!(transformed_text(Value::Null), "null");
    }
}
