//! promptfoo-like YAML suites: import into cards and test cases, export back.
//!
//! ```yaml
//! description: Capitals
//! prompts:
//!   - "What is the capital of {{country}}? Answer with one word."
//! providers: [echo:upper]        # optional: the default model for `cardrun run`
//! tests:
//!   - description: France
//!     vars: { country: France }
//!     expected: Paris            # optional expected_output
//!     assert:
//!       - type: icontains
//!         value: paris
//! ```
//! Each prompt becomes one card holding every test.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::AssertionSpec;
use crate::domain::{PromptCard, Template, TestCase};
use crate::store::{CardInput, TestCaseInput};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    #[serde(default)]
    pub description: String,
    pub prompts: Prompts,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    pub tests: Vec<SuiteTest>,
    /// The YAML it was read from, to give problems their line.
    #[serde(skip)]
    source: Option<String>,
}

/// One prompt or a list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged, expecting = "a prompt (text) or a list of prompts")]
pub enum Prompts {
    One(String),
    Many(Vec<String>),
}

impl Prompts {
    pub fn list(&self) -> Vec<String> {
        match self {
            Prompts::One(p) => vec![p.clone()],
            Prompts::Many(ps) => ps.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteTest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub vars: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(default, rename = "assert", skip_serializing_if = "Vec::is_empty")]
    pub assertions: Vec<AssertionSpec>,
}

/// A suite ready to store: one card per prompt, with its test cases.
pub struct SuitePlan {
    pub cards: Vec<(CardInput, Vec<TestCaseInput>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("invalid suite YAML: {0}")]
    Yaml(String),
    /// Every problem found, each with where it is.
    #[error("{}", problems(.0))]
    Invalid(Vec<String>),
}

fn problems(list: &[String]) -> String {
    match list {
        [one] => format!("invalid suite: {one}"),
        many => format!("invalid suite, {} problems:\n  - {}", many.len(), many.join("\n  - ")),
    }
}

impl Suite {
    pub fn from_yaml(text: &str) -> Result<Self, SuiteError> {
        let mut suite: Suite =
            serde_yaml_ng::from_str(text).map_err(|e| SuiteError::Yaml(suggest_field(&e.to_string())))?;
        suite.source = Some(text.to_string());
        Ok(suite)
    }

    /// "line N: " for the first line of the source holding every one of
    /// `needles`, if the suite was read from text.
    fn line_of(&self, needles: &[&str]) -> String {
        let found = self
            .source
            .as_deref()
            .and_then(|text| text.lines().position(|line| needles.iter().all(|n| line.contains(n))));
        found.map_or_else(String::new, |i| format!("line {}: ", i + 1))
    }

    pub fn to_yaml(&self) -> Result<String, SuiteError> {
        serde_yaml_ng::to_string(self).map_err(|e| SuiteError::Yaml(e.to_string()))
    }

    /// Validates and turns the suite into cards and test cases.
    /// `known_type` checks assertion types against the plugin registry.
    /// Every problem is reported at once, each with its place (line, and
    /// `tests[n]`).
    pub fn plan(&self, known_type: impl Fn(&str) -> Result<(), String>) -> Result<SuitePlan, SuiteError> {
        let prompts = self.prompts.list();
        let mut problems = Vec::new();
        if prompts.is_empty() {
            problems.push(format!("{}`prompts` is empty", self.line_of(&["prompts"])));
        }
        if self.tests.is_empty() {
            problems.push(format!("{}`tests` is empty", self.line_of(&["tests"])));
        }
        for (n, test) in self.tests.iter().enumerate() {
            let name = test.description.clone().unwrap_or_else(|| format!("test {}", n + 1));
            for (j, a) in test.assertions.iter().enumerate() {
                if let Err(e) = known_type(&a.kind) {
                    let line = self.line_of(&["type", &a.kind]);
                    problems.push(format!("{line}tests[{n}] `{name}`, assert[{j}]: {e}"));
                }
            }
            for (i, prompt) in prompts.iter().enumerate() {
                let missing: Vec<String> = Template::new(prompt)
                    .variables()
                    .into_iter()
                    .filter(|v| !test.vars.contains_key(v))
                    .map(|v| format!("`{v}`"))
                    .collect();
                if !missing.is_empty() {
                    let line = match &test.description {
                        Some(d) => self.line_of(&["description", d]),
                        None => String::new(),
                    };
                    problems.push(format!(
                        "{line}tests[{n}] `{name}` lacks variable(s) {} used by prompt {}",
                        missing.join(", "),
                        i + 1
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(SuiteError::Invalid(problems));
        }
        let mut cards = Vec::new();
        for (i, prompt) in prompts.iter().enumerate() {
            let variables = Template::new(prompt).variables();
            let title = match (self.description.is_empty(), prompts.len()) {
                (true, _) => format!("Prompt {}", i + 1),
                (false, 1) => self.description.clone(),
                (false, _) => format!("{} #{}", self.description, i + 1),
            };
            let card = CardInput {
                title,
                description: self.description.clone(),
                prompt_template: prompt.clone(),
                variables: variables.clone(),
            };
            let mut cases = Vec::new();
            for (n, test) in self.tests.iter().enumerate() {
                let name = test.description.clone().unwrap_or_else(|| format!("test {}", n + 1));
                cases.push(TestCaseInput {
                    name,
                    input_variables: test.vars.clone(),
                    expected_output: test.expected.clone(),
                    assertions: test.assertions.clone(),
                });
            }
            cards.push((card, cases));
        }
        Ok(SuitePlan { cards })
    }

    /// A suite holding one card and its test cases.
    pub fn export(card: &PromptCard, cases: &[TestCase]) -> Self {
        Suite {
            description: card.title.clone(),
            prompts: Prompts::One(card.prompt_template.clone()),
            providers: vec![],
            source: None,
            tests: cases
                .iter()
                .map(|tc| SuiteTest {
                    description: Some(tc.name.clone()),
                    vars: tc.input_variables.clone(),
                    expected: tc.expected_output.clone(),
                    assertions: tc.assertions.clone(),
                })
                .collect(),
        }
    }
}

/// serde's "unknown field `asert`, expected one of `a`, `b`" with "; did
/// you mean `assert`?" when one of them is close.
fn suggest_field(message: &str) -> String {
    let parse = || {
        let (_, rest) = message.split_once("unknown field `")?;
        let (field, rest) = rest.split_once('`')?;
        let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        let best = crate::domain::closest(field, &expected)?;
        let (head, tail) = message.split_at(message.find(" at line ").unwrap_or(message.len()));
        Some(format!("{head}; did you mean `{best}`?{tail}"))
    };
    parse().unwrap_or_else(|| message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once_with_its_line() {
        let yaml = "description: d\nprompts: ['{{a}} {{b}}']\ntests:\n  - description: one\n    vars: { a: 1 }\n    assert:\n      - type: contians\n  - description: two\n    vars: { a: 1, b: 2 }\n";
        let suite = Suite::from_yaml(yaml).unwrap();
        let err = suite
            .plan(|kind| if kind == "contains" { Ok(()) } else { Err(format!("unknown assertion type `{kind}`")) })
            .err()
            .expect("invalid");
        let SuiteError::Invalid(problems) = &err else { panic!("{err}") };
        assert_eq!(problems.len(), 2, "{err}");
        assert!(problems[0].starts_with("line 7: tests[0] `one`, assert[0]: unknown assertion type"), "{err}");
        assert!(problems[1].starts_with("line 4: tests[0] `one` lacks variable(s) `b`"), "{err}");
    }

    #[test]
    fn unknown_fields_get_a_suggestion_and_no_rust_type_names() {
        let err = Suite::from_yaml("prompts: ['x']\ntests:\n  - asert: []\n").expect_err("invalid").to_string();
        assert!(err.contains("unknown field `asert`") && err.contains("did you mean `assert`?"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        let err = Suite::from_yaml("prompts: {a: 1}\ntests: []\n").expect_err("invalid").to_string();
        assert!(err.contains("a prompt (text) or a list of prompts") && !err.contains("Prompts"), "{err}");
    }
}
