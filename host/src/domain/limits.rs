//! How much one card, test case or execution may hold. Checked where input
//! enters (the API, suite import, `cardrun run`), so nothing past that edge
//! sees more: a client cannot make the host render, store or ship an
//! unbounded amount for one request.
//!
//! The figures are far above real suites (every file of the 27-suite test
//! corpus is under 1 KB; promptfoo's long-context examples paste a few
//! pages) and keep the worst single test case near its 1 MiB of values.

use serde_json::{Map, Value};

use super::{AssertionSpec, Invalid};

/// A card's title, and a test case's name.
pub const MAX_NAME_BYTES: usize = 500;
/// A card's description.
pub const MAX_DESCRIPTION_BYTES: usize = 64 * 1024;
/// A prompt template, as written.
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;
/// Variables a card declares, or a test case sets.
pub const MAX_VARIABLES: usize = 256;
/// One variable's name.
pub const MAX_VARIABLE_NAME_BYTES: usize = 128;
/// A test case's variables together, as JSON.
pub const MAX_VARIABLES_BYTES: usize = 1024 * 1024;
/// A test case's expected output.
pub const MAX_EXPECTED_OUTPUT_BYTES: usize = 1024 * 1024;
/// Assertions of one test case.
pub const MAX_ASSERTIONS: usize = 64;
/// One assertion's `value` and `config` together, as JSON.
pub const MAX_ASSERTION_BYTES: usize = 256 * 1024;
/// Test cases one execution runs (issue 13 runs 100,000 at once).
pub const MAX_TESTS_PER_EXECUTION: usize = 100_000;

/// A card's fields are within the limits.
pub fn check_card(title: &str, description: &str, template: &str, variables: &[String]) -> Result<(), Invalid> {
    at_most("title", title.len(), MAX_NAME_BYTES, "bytes")?;
    at_most("description", description.len(), MAX_DESCRIPTION_BYTES, "bytes")?;
    check_template(template)?;
    at_most("variables", variables.len(), MAX_VARIABLES, "names")?;
    for name in variables {
        at_most("a variable name", name.len(), MAX_VARIABLE_NAME_BYTES, "bytes")?;
    }
    Ok(())
}

/// A template is within the limits.
pub fn check_template(template: &str) -> Result<(), Invalid> {
    at_most("prompt_template", template.len(), MAX_TEMPLATE_BYTES, "bytes")
}

/// A test case's fields are within the limits.
pub fn check_test_case(
    name: &str,
    variables: &Map<String, Value>,
    expected_output: Option<&str>,
    assertions: &[AssertionSpec],
) -> Result<(), Invalid> {
    at_most("name", name.len(), MAX_NAME_BYTES, "bytes")?;
    at_most("input_variables", variables.len(), MAX_VARIABLES, "variables")?;
    for key in variables.keys() {
        at_most("a variable name", key.len(), MAX_VARIABLE_NAME_BYTES, "bytes")?;
    }
    let values = variables.values().map(json_len).fold(0usize, usize::saturating_add);
    at_most("input_variables", values, MAX_VARIABLES_BYTES, "bytes of values")?;
    at_most("expected_output", expected_output.map_or(0, str::len), MAX_EXPECTED_OUTPUT_BYTES, "bytes")?;
    at_most("assertions", assertions.len(), MAX_ASSERTIONS, "assertions")?;
    for a in assertions {
        let size = json_len(&a.value).saturating_add(a.config.as_ref().map_or(0, json_len));
        at_most(&format!("assertion `{}`", a.kind), size, MAX_ASSERTION_BYTES, "bytes of value and config")?;
    }
    Ok(())
}

/// An execution runs at most [`MAX_TESTS_PER_EXECUTION`] test cases.
pub fn check_test_count(count: usize) -> Result<(), Invalid> {
    at_most("an execution", count, MAX_TESTS_PER_EXECUTION, "test cases")
}

fn at_most(what: &str, actual: usize, limit: usize, unit: &str) -> Result<(), Invalid> {
    if actual > limit {
        return Err(Invalid::new(format!("{what} has {actual} {unit}; at most {limit} are allowed")));
    }
    Ok(())
}

/// The length of `value` as compact JSON, without building the string.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail; a Value always serialises.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_len_is_the_compact_length() {
        let v = json!({"a": [1, "two", null]});
        assert_eq!(json_len(&v), v.to_string().len());
    }

    #[test]
    fn each_limit_names_its_field_and_figure() {
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let e = check_card(&long, "", "hi", &[]).unwrap_err();
        assert!(e.contains("title has 501 bytes; at most 500"), "{e}");
        let e = check_template(&"x".repeat(MAX_TEMPLATE_BYTES + 1)).unwrap_err();
        assert!(e.contains("prompt_template"), "{e}");
        let many: Vec<AssertionSpec> =
            (0..=MAX_ASSERTIONS).map(|_| AssertionSpec::new("contains", json!("a"))).collect();
        let e = check_test_case("t", &Map::new(), None, &many).unwrap_err();
        assert!(e.contains("assertions has 65 assertions; at most 64"), "{e}");
        let mut vars = Map::new();
        vars.insert("v".into(), json!("y".repeat(MAX_VARIABLES_BYTES)));
        let e = check_test_case("t", &vars, None, &[]).unwrap_err();
        assert!(e.contains("input_variables"), "{e}");
        let big = AssertionSpec::new("contains", json!("z".repeat(MAX_ASSERTION_BYTES)));
        let e = check_test_case("t", &Map::new(), None, &[big]).unwrap_err();
        assert!(e.contains("assertion `contains`"), "{e}");
        assert!(check_test_count(MAX_TESTS_PER_EXECUTION).is_ok());
        assert!(check_test_count(MAX_TESTS_PER_EXECUTION + 1).is_err());
    }

    #[test]
    fn inputs_at_the_limits_pass() {
        let vars: Map<String, Value> = (0..MAX_VARIABLES).map(|i| (format!("v{i}"), json!(i))).collect();
        let names: Vec<String> = vars.keys().cloned().collect();
        let asserts: Vec<AssertionSpec> =
            (0..MAX_ASSERTIONS).map(|_| AssertionSpec::new("equals", json!("a"))).collect();
        assert!(check_card(&"t".repeat(MAX_NAME_BYTES), "", "{{v0}}", &names).is_ok());
        assert!(check_test_case("t", &vars, Some("x"), &asserts).is_ok());
    }
}
